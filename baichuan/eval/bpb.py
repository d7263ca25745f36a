"""Bits per byte and perplexity of a model on text: `bits_per_byte(model, tokenizer, texts)`.

bits/byte = (sum over tokens of -log p(token | preceding)) / ln 2 / (UTF-8 bytes of the text). It
is the number to compare across tokenizers (perplexity per token is not: a tokenizer with longer
tokens has fewer, harder tokens). Each text is one document, scored from its first token: it is
preceded by EOS, the document separator of our token shards, so the first token is predicted the
way training saw document starts; the EOS itself is not scored. A document longer than the
context is scored in consecutive windows of `context` tokens, each window starting fresh from its
first token (no overlap), as nanoGPT-style validation does.

Files: `.txt` (the whole file is one document) and `.jsonl` (one document per line, field "text"),
either optionally gzip'd. Unlike the data pipeline's readers, a bad line here is an error: a
score over silently fewer documents is not comparable.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from baichuan.errors import BaichuanError, json_objects
from baichuan.eval.scoring import (
    HEAD_CHUNK_ELEMENTS,
    _batches,
    _pad,
    has_split_head,
    model_device,
)
from baichuan.eval.settings import model_context

TEXT_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz")


def read_texts(path) -> list[str]:
    """The documents of one file (see the module docstring for the formats)."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise BaichuanError(f"{path}: no such text file")
    if not name.endswith(TEXT_SUFFIXES):
        raise BaichuanError(f"{path}: expected one of {', '.join(TEXT_SUFFIXES)}")
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            if ".txt" in name:
                return [f.read()]
            docs = []
            for n, record in json_objects(f, path):
                if not isinstance(record.get("text"), str):
                    raise BaichuanError(f"{path}:{n}: expected an object with a string field \"text\"")
                docs.append(record["text"])
            return docs
    except UnicodeDecodeError as e:
        raise BaichuanError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except (OSError, EOFError) as e:  # gzip: truncated or not gzip
        raise BaichuanError(f"{path}: cannot be read ({e})") from None


def expand_paths(paths: Iterable) -> list[Path]:
    """Files as given; folders become their text files (recursively, sorted)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(TEXT_SUFFIXES))
            if not found:
                raise BaichuanError(f"{p}: no {', '.join(TEXT_SUFFIXES)} files in this folder")
            out += found
        else:
            out.append(p)
    return out


def _windows(ids: list[int], context: int):
    """(input, targets) pairs covering every token of `ids[1:]` once, `context` tokens at a time."""
    for start in range(0, len(ids) - 1, context):
        chunk = ids[start:start + context + 1]
        yield chunk[:-1], chunk[1:]


def _nll_sum(model, inputs: list[list[int]], targets: list[list[int]], device) -> float:
    """Summed -log p(target) over every real position of a right-padded batch (fp32)."""
    ids = _pad(inputs, device)
    rows = torch.cat([torch.full((len(t),), i, device=device) for i, t in enumerate(targets)])
    pos = torch.cat([torch.arange(len(t), device=device) for t in targets])
    tgt = torch.tensor([x for t in targets for x in t], device=device)
    if has_split_head(model):
        h = model.model(ids)[rows, pos]
        # fp32 logits for `step` positions at a time: 1 GiB on a GPU, 256 MiB on a CPU
        elements = HEAD_CHUNK_ELEMENTS if ids.is_cuda else HEAD_CHUNK_ELEMENTS // 4
        vocab = getattr(getattr(model, "cfg", None), "vocab_size", None) or model.lm_head.weight.shape[0]
        step = max(1, elements // vocab)
        total = 0.0
        for i in range(0, h.shape[0], step):  # never hold [N, vocab] for a long batch
            logits = model.lm_head(h[i:i + step]).float()
            total += F.cross_entropy(logits, tgt[i:i + step], reduction="sum").item()
        return total
    logits = model(ids)[rows, pos].float()
    return F.cross_entropy(logits, tgt, reduction="sum").item()


def bits_per_byte(model, tokenizer, texts: Iterable[str], context: int | None = None, max_tokens: int | None = None,
                  batch_tokens: int = 16384, progress: bool = False, desc: str = "bits/byte") -> dict:
    """{docs, bytes, tokens, loss (nats/token), perplexity, bpb} of `model` on `texts`.

    max_tokens: score whole documents, in order, until at least this many tokens are covered (a
    quick, repeatable subset; whole documents keep the byte count exact)."""
    context = context or model_context(model)
    eos = tokenizer.eos_id
    texts = [t for t in texts if t]
    if not texts:
        raise BaichuanError(f"{desc}: no text to score")
    encoded = tokenizer.encode_batch(texts)
    if max_tokens is not None:
        kept, total = 0, 0
        while kept < len(encoded) and total < max_tokens:
            total += len(encoded[kept])
            kept += 1
        texts, encoded = texts[:kept], encoded[:kept]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    windows = [w for ids in encoded for w in _windows([eos] + ids, context)]
    tokens = sum(len(t) for _, t in windows)
    if not tokens:
        raise BaichuanError(f"{desc}: no tokens to score")
    device = model_device(model)
    was_training = getattr(model, "training", False)
    model.eval()
    nll = 0.0
    lengths = [len(i) for i, _ in windows]
    order = sorted(range(len(windows)), key=lambda i: -lengths[i])
    bar = tqdm(total=tokens, desc=desc, unit="tok", disable=not progress, leave=False)
    try:
        with torch.inference_mode():
            for batch in _batches(lengths, order, batch_tokens, max_rows=1024):
                nll += _nll_sum(model, [windows[i][0] for i in batch], [windows[i][1] for i in batch], device)
                bar.update(sum(lengths[i] for i in batch))
    finally:
        bar.close()
        model.train(was_training)
    loss = nll / tokens
    return {"docs": len(texts), "bytes": nbytes, "tokens": tokens, "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)), "bpb": nll / math.log(2) / nbytes, "context": context}


def bits_per_byte_files(model, tokenizer, paths: Iterable, **kw) -> dict[str, dict]:
    """bits_per_byte per file, plus "all" over every file together when there are several."""
    files = expand_paths(paths)
    texts = {str(p): read_texts(p) for p in files}
    out = {name: bits_per_byte(model, tokenizer, docs, desc=Path(name).name, **kw) for name, docs in texts.items()}
    if len(out) > 1:
        out["all"] = combine(list(out.values()))
    return out


def combine(parts: list[dict]) -> dict:
    """The bits_per_byte of several texts scored separately, as if scored together."""
    nll = sum(p["loss"] * p["tokens"] for p in parts)
    tokens, nbytes = sum(p["tokens"] for p in parts), sum(p["bytes"] for p in parts)
    return {"docs": sum(p["docs"] for p in parts), "bytes": nbytes, "tokens": tokens, "loss": nll / tokens,
            "perplexity": math.exp(min(nll / tokens, 700.0)), "bpb": nll / math.log(2) / nbytes,
            "context": parts[0]["context"]}

"""The data pipeline: raw text -> clean, deduplicated, mixed, tokenized shards.

    read -> per-document steps -> docs shards       (stage "clean", one task per input file)
         -> near/exact dedup over all shards         (stage "dedup", signatures -> clusters -> apply)
         -> mixture weights per language and source  (computed from what is left)
         -> token shards + tokens.json               (stage "tokenize", one task per docs shard)

Each task writes its outputs under temporary names and then a completion marker (its stats,
`stats/<stage>-<task>.json`); a rerun skips tasks whose marker exists and redoes the others from
scratch, so an interrupted run resumes without redoing finished work or duplicating output.
Output folder:

    clean/  dedup/     document shards (JSONL.gz or parquet) {"id", "text", "meta"}
    tokens/            token shards (see shards.py)
    stats/             per-task markers
    report.json/.md    counts per step and language; manifest.json: config, files, checksums
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import time
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from baichuan.data.document import Document
from baichuan.data.executor import run_tasks
from baichuan.data.readers import Problems, ReadSpec, list_inputs, read_file
from baichuan.data.stats import Stats
from baichuan.data.writers import ShardWriter, atomic_write_text, read_shard, sha256_file
from baichuan.errors import BaichuanError

# step name -> "module:Class"; options in the config are passed as keyword arguments
STEPS = {
    "normalize": "baichuan.data.normalize:Normalize",
    "langid": "baichuan.data.langid:LangId",
    "pii": "baichuan.data.pii:PIIScrubber",
    "gopher": "baichuan.data.filters:GopherFilter",
    "c4": "baichuan.data.filters:C4Filter",
    "chinese": "baichuan.data.filters:ChineseFilter",
    "repetition": "baichuan.data.filters:RepetitionFilter",
    "quality": "baichuan.data.quality:QualityFilter",
}
DEFAULT_STEPS = ["normalize", "langid", "gopher", "c4", "chinese", "repetition", "pii"]


@dataclass
class DataConfig:
    inputs: list                      # paths (files or folders), or {"path": ..., "source": ...} to name a source
    output: str
    read: ReadSpec = field(default_factory=ReadSpec)
    steps: list[dict] = field(default_factory=lambda: [{"name": n} for n in DEFAULT_STEPS])
    dedup: dict | None = field(default_factory=dict)   # None: off; {} defaults; see dedup.py
    mixture: dict | None = None       # {"lang": {"zh": 0.7, "en": 0.3}, "source": {...}, "seed": 0}
    tokenizer: str | None = None      # tokenizer.model or a folder holding one; None: no token shards
    format: str = "jsonl"             # docs shards: "jsonl" (gz) or "parquet"
    executor: str = "local"           # "local", "pool" or "ray"
    workers: int = 1
    shard_chars: int = 256 * 1024 ** 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path, **overrides) -> DataConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaichuanError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise BaichuanError(f"{path}: invalid TOML ({e})") from None
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(raw, str(path))


def config_from_dict(raw: dict, source: str = "config") -> DataConfig:
    known = {f.name for f in dataclasses.fields(DataConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise BaichuanError(f"{source}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for need in ("inputs", "output"):
        if need not in raw:
            raise BaichuanError(f"{source}: missing field {need!r}")
    raw = dict(raw)
    try:
        raw["read"] = ReadSpec(**raw.get("read", {}))
    except TypeError as e:
        raise BaichuanError(f"{source}: [read] {e}") from None
    steps = raw.get("steps")
    if steps is not None:
        raw["steps"] = [s if isinstance(s, dict) else {"name": s} for s in steps]
        for s in raw["steps"]:
            if s.get("name") not in STEPS:
                raise BaichuanError(f"{source}: unknown step {s.get('name')!r}; known: {', '.join(STEPS)}")
    if isinstance(raw.get("inputs"), (str, dict)):
        raw["inputs"] = [raw["inputs"]]
    for item in raw["inputs"]:
        if isinstance(item, dict) and (set(item) - {"path", "source"} or "path" not in item):
            raise BaichuanError(f"{source}: an input table takes 'path' and an optional 'source', got {sorted(item)}")
    return DataConfig(**raw)


def build_steps(specs: list[dict]) -> list:
    steps = []
    for spec in specs:
        opts = {k: v for k, v in spec.items() if k != "name"}
        module, cls = STEPS[spec["name"]].split(":")
        try:
            steps.append(getattr(importlib.import_module(module), cls)(**opts))
        except TypeError as e:
            raise BaichuanError(f"step {spec['name']!r}: bad option ({e})") from None
    return steps


def apply_steps(doc: Document, steps: list, stats: Stats) -> Document | None:
    """Run `doc` through `steps`, counting each step's outcome under the document's language."""
    for step in steps:
        before = doc.text
        out = step(doc)
        lang = (doc if isinstance(out, str) else out).lang
        stats.seen(step.name, lang, len(before))
        if isinstance(out, str):
            stats.dropped(step.name, lang, out)
            return None
        stats.kept(step.name, lang, len(out.text), modified=out.text is not before and out.text != before)
        doc = out
    return doc


# ------------------------------------------------------------------------------------ tasks

def _marker(out: Path, stage: str, task: int) -> Path:
    return out / "stats" / f"{stage}-{task:05d}.json"


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _done(marker: Path, fingerprint: str):
    """The marker's result if the task finished with the same settings; None means redo it."""
    if not marker.exists():
        return None
    result = json.loads(marker.read_text(encoding="utf-8"))
    return result if result.get("fingerprint") == fingerprint else None


def _finish(marker: Path, fingerprint: str, result: dict) -> dict:
    marker.parent.mkdir(parents=True, exist_ok=True)
    result = {**result, "fingerprint": fingerprint}
    atomic_write_text(marker, json.dumps(result, ensure_ascii=False))
    return result


def _composition(doc: Document, comp: dict) -> None:
    src = str(doc.meta.get("source", "unknown"))
    comp[doc.lang][src] = comp[doc.lang].get(src, 0) + len(doc.text)


def expand_inputs(inputs: list, problems: Problems | None = None) -> list[tuple[Path, str | None]]:
    """(file, source name or None for the reader's default) for every input file; what could not
    be listed (a symlink loop, a broken link) is counted in `problems`."""
    out = []
    for item in inputs:
        path, source = (item["path"], item.get("source")) if isinstance(item, dict) else (item, None)
        out += [(f, source) for f in list_inputs([path], problems)]
    return out


def _count_read_problems(stats: Stats, problems: Problems) -> None:
    for reason, n in problems.counts.items():
        stats.add("read", "unknown", "seen", n)
        stats.dropped("read", "unknown", reason, n)


def clean_task(task: int, path: str, cfg: DataConfig, source: str | None = None) -> dict:
    """Read one input file, run the per-document steps, write docs shards."""
    out = Path(cfg.output)
    marker = _marker(out, "clean", task)
    fp = _fingerprint(path, Path(path).stat().st_mtime_ns, cfg.read, source, cfg.steps, cfg.format, cfg.shard_chars)
    if (done := _done(marker, fp)) is not None:
        return done
    started = time.time()
    steps = build_steps(cfg.steps)
    stats, problems = Stats(), Problems()
    comp: dict = defaultdict(dict)
    in_bytes = Path(path).stat().st_size
    with ShardWriter(out / "clean", f"{task:05d}", cfg.format, cfg.shard_chars) as writer:
        spec = dataclasses.replace(cfg.read, source=source) if source else cfg.read
        for doc in read_file(Path(path), spec, problems):
            stats.seen("read", "unknown", len(doc.text))
            stats.kept("read", "unknown", len(doc.text))
            doc = apply_steps(doc, steps, stats)
            if doc is not None:
                writer.write(doc)
                _composition(doc, comp)
        files = writer.close()
    _count_read_problems(stats, problems)
    return _finish(marker, fp, {"input": path, "files": [f.name for f in files], "stats": stats.to_dict(),
                            "composition": comp, "input_bytes": in_bytes, "seconds": time.time() - started})


def tokenize_task(task: int, docs_files: list[str], cfg: DataConfig, rates: dict, dtype_name: str) -> dict:
    """Tokenize one docs shard (with mixture copies) into one token shard."""
    import numpy as np

    from baichuan.data.shards import write_shard
    from baichuan.tokenizer import Tokenizer
    out = Path(cfg.output)
    marker = _marker(out, "tokens", task)
    tok = Tokenizer.load(cfg.tokenizer)
    fp = _fingerprint(docs_files, [Path(f).stat().st_mtime_ns for f in docs_files],
                      hashlib.sha256(tok.model_proto).hexdigest(), rates, cfg.mixture)
    if (done := _done(marker, fp)) is not None:
        return done
    seed = (cfg.mixture or {}).get("seed", 0)
    counts = {"bytes": 0, "docs_in": 0}

    def documents():
        batch: list[str] = []
        for f in docs_files:
            for doc in read_shard(Path(f)):
                counts["docs_in"] += 1
                copies = mixture_copies(doc, rates, seed)
                batch.extend([doc.text] * copies)
                if len(batch) >= 256:
                    yield from _encode(batch)
                    batch = []
        yield from _encode(batch)

    def _encode(texts):
        for text, ids in zip(texts, tok.encode_batch(texts)):
            counts["bytes"] += len(text.encode("utf-8"))
            yield ids

    (out / "tokens").mkdir(parents=True, exist_ok=True)
    entry = write_shard(out / "tokens" / f"{task:05d}.bin", documents(), np.dtype(dtype_name), tok.eos_id)
    return _finish(marker, fp, {**entry, **counts})


# ---------------------------------------------------------------------------------- mixture

def mixture_rates(composition: dict, mixture: dict | None) -> dict:
    """Sampling rate per language and source: rate 0.5 keeps half the documents, 2.0 repeats each
    twice. Language targets are shares of the total characters (the total is preserved); source
    targets are shares within their language, unlisted sources splitting the rest in their natural
    proportions; when a language lacks some listed sources, the shares of those it has are scaled up
    to fill it. Languages without a target are dropped (rate 0) once any language target is given."""
    rates = {lang: {src: 1.0 for src in srcs} for lang, srcs in composition.items()}
    if not mixture or not (mixture.get("lang") or mixture.get("source")):
        return rates
    total = sum(sum(s.values()) for s in composition.values())
    lang_t = mixture.get("lang") or {}
    if lang_t and abs(sum(lang_t.values()) - 1) > 1e-6:
        raise BaichuanError(f"mixture.lang shares must sum to 1, got {sum(lang_t.values())}")
    src_t = mixture.get("source") or {}
    for lang, srcs in composition.items():
        have = sum(srcs.values())
        target = lang_t.get(lang, 0.0) * total if lang_t else have
        listed = {s: src_t[s] for s in srcs if s in src_t}
        if sum(listed.values()) > 1 + 1e-6:
            raise BaichuanError(f"mixture.source shares for {lang} sum to more than 1")
        rest = sum(c for s, c in srcs.items() if s not in listed)
        remainder = max(0.0, 1 - sum(listed.values())) if rest else 0.0
        norm = sum(listed.values()) + remainder  # shares of sources this language lacks go to the others
        for src, chars in srcs.items():
            if not norm:  # every source of this language has share 0 (adapt --replay 0: general-only languages)
                rates[lang][src] = 0.0
                continue
            share = listed[src] / norm if src in listed else remainder / norm * chars / rest
            rates[lang][src] = target * share / chars if chars else 0.0
    return rates


def mixture_copies(doc: Document, rates: dict, seed: int) -> int:
    """How many times `doc` goes into the token stream: floor(rate), plus one more with probability
    frac(rate), decided by a hash of (seed, id) so it is the same on every machine and rerun."""
    rate = rates.get(doc.lang, {}).get(str(doc.meta.get("source", "unknown")), 1.0)
    whole = int(rate)
    u = int.from_bytes(hashlib.blake2b(f"{seed}:{doc.id}".encode(), digest_size=8).digest(), "little") / 2 ** 64
    return whole + (1 if u < rate - whole else 0)


# ------------------------------------------------------------------------------------- run

def run(cfg: DataConfig, progress: bool = True) -> dict:
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    listing = Problems()
    inputs = expand_inputs(cfg.inputs, listing)
    build_steps(cfg.steps)  # fail on bad options before starting workers
    if cfg.tokenizer:  # and on a bad tokenizer before cleaning, not after
        from baichuan.tokenizer import Tokenizer
        Tokenizer.load(cfg.tokenizer)
    started = time.time()
    clean = run_tasks(clean_task, [(i, str(p), cfg, src) for i, (p, src) in enumerate(inputs)], cfg.executor, cfg.workers,
                      desc="clean", progress=progress)
    stats = Stats()
    _count_read_problems(stats, listing)
    for r in clean:
        stats.merge(Stats.from_dict(r["stats"]))
    docs_dir, shard_groups, composition = out / "clean", [[out / "clean" / f for f in r["files"]] for r in clean], \
        _merge_composition(r["composition"] for r in clean)
    dedup_report = None
    if cfg.dedup is not None:
        from baichuan.data import dedup
        result = dedup.run_stage(cfg, shard_groups, progress=progress)
        stats.merge(Stats.from_dict(result["stats"]))
        docs_dir, shard_groups, composition = out / "dedup", result["files"], result["composition"]
        dedup_report = result["report"]
    rates = mixture_rates(composition, cfg.mixture)
    tokens = None
    if cfg.tokenizer:
        tokens = _tokenize(cfg, shard_groups, rates, progress)
    docs = [{"file": str(f.relative_to(out)), "sha256": sha256_file(f)} for g in shard_groups for f in g]
    report = {"stats": stats.to_dict(), "unbalanced": stats.unbalanced(), "dedup": dedup_report,
              "composition": composition, "mixture_rates": rates,
              "input_bytes": sum(r["input_bytes"] for r in clean), "seconds": time.time() - started}
    atomic_write_text(out / "report.json", json.dumps(report, indent=1, ensure_ascii=False))
    atomic_write_text(out / "report.md", _markdown(report, stats))
    manifest = {"config": cfg.to_dict(), "inputs": [str(p) for p, _ in inputs], "docs_dir": docs_dir.name,
                "docs": docs, "mixture": {"targets": cfg.mixture, "rates": rates}, "tokens": tokens}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False, default=str))
    return report


def _merge_composition(parts) -> dict:
    comp: dict = defaultdict(dict)
    for part in parts:
        for lang, srcs in part.items():
            for src, n in srcs.items():
                comp[lang][src] = comp[lang].get(src, 0) + n
    return {k: dict(v) for k, v in comp.items()}


def _tokenize(cfg: DataConfig, shard_groups: list[list[Path]], rates: dict, progress: bool) -> dict:
    from baichuan.data.shards import token_dtype, write_manifest
    from baichuan.tokenizer import Tokenizer, model_file
    tok = Tokenizer.load(cfg.tokenizer)
    dtype = token_dtype(tok.vocab_size)
    tasks = [(i, [str(f) for f in files], cfg, rates, dtype.name) for i, files in enumerate(shard_groups) if files]
    entries = run_tasks(tokenize_task, tasks, cfg.executor, cfg.workers, desc="tokenize", progress=progress)
    shards = [{k: e[k] for k in ("file", "tokens", "docs", "sha256", "bytes")} for e in entries]
    (Path(cfg.output) / "tokens").mkdir(parents=True, exist_ok=True)  # no document left: an empty set of shards
    tok_file = model_file(cfg.tokenizer)
    write_manifest(Path(cfg.output) / "tokens", shards, dtype, tok.eos_id, tok.vocab_size,
                   tokenizer_sha256=sha256_file(tok_file), mixture={"targets": cfg.mixture, "rates": rates},
                   total_bytes=sum(s["bytes"] for s in shards))
    return {"dir": "tokens", "total_tokens": sum(s["tokens"] for s in shards), "shards": len(shards)}


def _markdown(report: dict, stats: Stats) -> str:
    lines = ["# Data pipeline report", "", stats.markdown()]
    if report["unbalanced"]:
        lines.append(f"**Unbalanced counts (a bug): {', '.join(report['unbalanced'])}**\n")
    lines += ["## Composition after cleaning and dedup (characters)", "", "| lang | source | chars | rate |",
              "|---|---|---:|---:|"]
    for lang, srcs in sorted(report["composition"].items()):
        for src, n in sorted(srcs.items()):
            lines.append(f"| {lang} | {src} | {n} | {report['mixture_rates'][lang][src]:.3f} |")
    mb = report["input_bytes"] / 1e6
    lines += ["", f"{mb:.1f} MB of input in {report['seconds']:.1f} s"]
    return "\n".join(lines) + "\n"

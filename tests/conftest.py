import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("BAICHUAN_ASSETS", REPO.parent / "shared" / "baichuan-assets"))

torch.set_num_threads(min(2, torch.get_num_threads()))

# For subprocesses whose results are compared bit for bit: MKL's dynamic threading (on by default)
# may use fewer threads on a busy machine, which changes float sums in the last bits.
FIXED_THREADS = {"OMP_NUM_THREADS": "2", "MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}


def assets(*parts) -> Path:
    """A path inside ../shared/baichuan-assets; skip the test when the fixtures are absent."""
    path = ASSETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"Baichuan fixture {path} is absent (set BAICHUAN_ASSETS to its folder)")
    return path


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory):
    """A 3,000-piece tokenizer trained with our recipe on a slice of the bundled corpus."""
    from baichuan import corpus
    from baichuan.tokenizer import train_tokenizer
    root = tmp_path_factory.mktemp("tok")
    text = root / "train.txt"
    with open(text, "w", encoding="utf-8") as f:
        for lang, docs in (("zh", 40), ("en", 100)):
            for i, t in enumerate(corpus.iter_texts(lang=lang, split="train")):
                if i >= docs:
                    break
                f.write(t + "\n")
    # 0.98 coverage: a 3,000-piece vocab cannot hold every character of 40 Tang-poetry documents
    return train_tokenizer([text], root / "tokenizer", vocab_size=3000, character_coverage=0.98, progress=False)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, small_tokenizer):
    """A tiny random Baichuan model with the small tokenizer, saved as an HF-style directory."""
    from baichuan.checkpoint import save_pretrained
    from baichuan.config import preset
    from baichuan.model import build
    torch.manual_seed(0)
    model = build(preset("tiny", vocab_size=small_tokenizer.vocab_size))
    return save_pretrained(model, tmp_path_factory.mktemp("models") / "tiny", tokenizer=small_tokenizer)


@pytest.fixture(scope="session")
def tiny_tokens(tmp_path_factory, small_tokenizer):
    """Token shards (train and held-out) of a slice of the bundled corpus, with the small tokenizer."""

    from baichuan import corpus
    from baichuan.data.shards import token_dtype, write_manifest, write_shard
    root = tmp_path_factory.mktemp("tokens")
    dtype = token_dtype(small_tokenizer.vocab_size)
    for split, docs in (("train", 60), ("heldout", 10)):
        (root / split).mkdir()
        entries, nbytes = [], 0
        for lang in ("zh", "en"):
            texts = [t for _, t in zip(range(docs), corpus.iter_texts(lang=lang, split=split))]
            nbytes += sum(len(t.encode()) for t in texts)
            entries.append(write_shard(root / split / f"{lang}.bin", small_tokenizer.encode_batch(texts), dtype,
                                       small_tokenizer.eos_id))
        write_manifest(root / split, entries, dtype, small_tokenizer.eos_id, small_tokenizer.vocab_size,
                       total_bytes=nbytes)
    return root

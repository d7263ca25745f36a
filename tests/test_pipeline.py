"""The whole data pipeline: counts balance, duplicates go, token shards load, every executor gives
the same output, an interrupted run resumes without redoing or duplicating work, mixture rates."""

import gzip
import json
from pathlib import Path

import pytest

from baichuan import corpus
from baichuan.cli import main
from baichuan.data.document import Document
from baichuan.data.loader import TokenLoader
from baichuan.data.pipeline import config_from_dict, load_config, mixture_copies, mixture_rates, run
from baichuan.data.shards import open_shards
from baichuan.data.writers import read_shard
from baichuan.errors import BaichuanError


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Three input files: zh and en corpus slices with injected duplicates, and one with bad lines."""
    root = tmp_path_factory.mktemp("raw")
    zh = [d for _, d in zip(range(40), corpus.iter_documents(lang="zh"))]
    en = [d for _, d in zip(range(40), corpus.iter_documents(lang="en"))]
    dup = dict(en[3], id="copy-of-en-3")
    t = zh[5]["text"]
    near = dict(zh[5], id="near-zh-5", text="".join(c for i, c in enumerate(t) if i % 150 != 75))  # ~0.7% deleted
    for name, rows in (("zh.jsonl.gz", zh + [near]), ("en.jsonl", en + [dup])):
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        (root / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    (root / "bad.jsonl").write_bytes(b'{"text": "ok but short"}\n{broken\n\xff\n{"id": 1}\n')
    return root


def base_cfg(raw, out, tokenizer, **kw):
    d = {"inputs": [str(raw)], "output": str(out), "tokenizer": str(tokenizer), "dedup": {}}
    d.update(kw)
    return config_from_dict(d)


def docs_of(out):
    manifest = json.loads((out / "manifest.json").read_text())
    return {d.id: d.text for f in manifest["docs"] for d in read_shard(out / f["file"])}


def test_pipeline_end_to_end(raw, tmp_path, small_tokenizer):
    tok_dir = Path(small_tokenizer.source).parent
    report = run(base_cfg(raw, tmp_path, tok_dir), progress=False)
    assert report["unbalanced"] == []
    read = report["stats"]["read"]["unknown"]
    assert read["dropped:bad_json"] == 1 and read["dropped:invalid_utf8"] == 1 and read["dropped:missing_field:text"] == 1
    docs = docs_of(tmp_path)
    assert "copy-of-en-3" not in docs and "near-zh-5" not in docs  # duplicates removed, the first kept
    assert report["dedup"]["docs_dropped"]["exact_dup"] >= 1 and report["dedup"]["docs_dropped"]["near_dup"] >= 1
    shards = open_shards(tmp_path / "tokens")
    shards.verify()
    assert shards.manifest["total_tokens"] > 10_000 and shards.manifest["total_bytes"] > 0
    assert TokenLoader(shards, 64, 2).next_batch()[0].shape == (2, 64)
    assert "| dedup |" in (tmp_path / "report.md").read_text()


def test_inputs_that_cannot_be_listed_are_counted_in_the_report(raw, tmp_path):
    import os
    src = tmp_path / "in"
    src.mkdir()
    (src / "en.jsonl").write_bytes((raw / "en.jsonl").read_bytes())
    os.symlink(src, src / "loop")
    os.symlink(tmp_path / "missing.jsonl", src / "missing.jsonl")
    report = run(config_from_dict({"inputs": [str(src)], "output": str(tmp_path / "out")}), progress=False)
    assert report["unbalanced"] == []
    read = report["stats"]["read"]["unknown"]
    assert read["dropped:symlink_loop"] == 1 and read["dropped:unreadable_input"] == 1


def test_executors_give_identical_output(raw, tmp_path, small_tokenizer):
    tok_dir = Path(small_tokenizer.source).parent
    outs = {}
    for ex in ("local", "pool", "ray"):
        run(base_cfg(raw, tmp_path / ex, tok_dir, executor=ex, workers=2), progress=False)
        outs[ex] = (docs_of(tmp_path / ex), [s["sha256"] for s in open_shards(tmp_path / ex / "tokens").manifest["shards"]])
    assert outs["local"] == outs["pool"] == outs["ray"]


def test_interrupted_run_resumes_without_redoing_or_duplicating(raw, tmp_path, small_tokenizer):
    tok_dir = Path(small_tokenizer.source).parent
    cfg = base_cfg(raw, tmp_path, tok_dir)
    run(cfg, progress=False)
    before = docs_of(tmp_path)
    tokens_before = open_shards(tmp_path / "tokens").manifest
    clean_files = sorted((tmp_path / "clean").iterdir())
    mtimes = {f: f.stat().st_mtime_ns for f in clean_files}
    # simulate a crash inside clean task 1: no marker, a finished part and a temp file left behind
    (tmp_path / "stats" / "clean-00001.json").unlink()
    (tmp_path / "clean" / "00001-007.jsonl.gz").write_bytes(gzip.compress(b'{"id":"x","text":"stale","meta":{}}\n'))
    (tmp_path / "clean" / ".00001-008.jsonl.gz.tmp-99").write_text("partial")
    run(cfg, progress=False)
    after_files = sorted((tmp_path / "clean").iterdir())
    assert [f.name for f in after_files] == [f.name for f in clean_files]
    redone = [f for f in clean_files if f.stat().st_mtime_ns != mtimes[f]]
    assert [f.name[:5] for f in redone] == ["00001"]
    assert docs_of(tmp_path) == before
    assert open_shards(tmp_path / "tokens").manifest["shards"] == tokens_before["shards"]
    # changed settings are not silently reused
    run(base_cfg(raw, tmp_path, tok_dir, steps=["normalize"]), progress=False)
    assert all(f.stat().st_mtime_ns != mtimes[f] for f in clean_files if f.exists())


def test_mixture_rates_hit_the_targets():
    comp = {"zh": {"a": 100, "b": 300}, "en": {"c": 600}, "ja": {"d": 50}}
    rates = mixture_rates(comp, {"lang": {"zh": 0.5, "en": 0.5}, "source": {"a": 0.5}})
    total = 1050
    assert rates["en"]["c"] == pytest.approx(0.5 * total / 600)
    assert rates["zh"]["a"] == pytest.approx(0.25 * total / 100)
    assert rates["zh"]["b"] == pytest.approx(0.25 * total / 300)
    assert rates["ja"]["d"] == 0
    assert mixture_rates(comp, None)["zh"]["a"] == 1.0
    with pytest.raises(BaichuanError, match="sum to 1"):
        mixture_rates(comp, {"lang": {"zh": 0.7, "en": 0.7}})
    # adapt --replay 0: a language only the general source has gets nothing (it divided by zero)
    replay0 = mixture_rates({"zh": {"domain": 100, "general": 50}, "en": {"general": 80}},
                            {"source": {"domain": 1.0, "general": 0.0}})
    assert replay0["en"]["general"] == 0 and replay0["zh"]["general"] == 0 and replay0["zh"]["domain"] == 1.5
    docs = [Document(text="x", id=str(i), meta={"lang": "zh", "source": "b"}) for i in range(4000)]
    copies = [mixture_copies(d, {"zh": {"b": 1.3}}, seed=0) for d in docs]
    assert set(copies) == {1, 2} and sum(copies) / len(copies) == pytest.approx(1.3, abs=0.03)
    assert copies == [mixture_copies(d, {"zh": {"b": 1.3}}, seed=0) for d in docs]


def test_toml_config_and_cli(raw, tmp_path, small_tokenizer, capsys):
    toml = tmp_path / "data.toml"
    toml.write_text(f'''
inputs = ["{raw}"]
output = "{tmp_path / 'out'}"
tokenizer = "{Path(small_tokenizer.source).parent}"
steps = ["normalize", {{name = "langid", keep = ["zh"]}}]

[dedup]
levels = ["document", "paragraph"]

[mixture]
lang = {{zh = 1.0}}
''')
    cfg = load_config(toml)
    assert cfg.steps[1] == {"name": "langid", "keep": ["zh"]}
    assert main(["data", "run", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "| langid | en |" in out and "lang_other" not in out.split("| langid | en |")[0]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["mixture"]["targets"] == {"lang": {"zh": 1.0}}
    bad = tmp_path / "bad.toml"
    bad.write_text('inputs = ["x"]\noutput = "y"\nstepz = []\n')
    assert main(["data", "run", "--config", str(bad)]) == 1
    assert "unknown field(s) stepz" in capsys.readouterr().err

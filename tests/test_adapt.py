"""Domain adaptation in one command: replay mixture, continued pretraining, before/after exam report."""

import json

import pytest

from baichuan import corpus
from baichuan.cli import main
from conftest import REPO


def test_adapt_mixes_replay_trains_and_reports(tiny_model_dir, tmp_path, capsys):
    evaldata = REPO.parent / "shared" / "evaldata"
    domain, general = tmp_path / "domain.jsonl", tmp_path / "general.jsonl"
    zh, en = list(corpus.iter_documents(lang="zh"))[:40], list(corpus.iter_documents(lang="en"))[:40]
    for path, rows in ((domain, zh[:25] + en[:10]), (general, zh[25:] + en[10:])):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    args = ["adapt", "--init-from", str(tiny_model_dir), "--domain", str(domain), "--general", str(general),
            "--replay", "0.25", "--out", str(tmp_path / "out"), "--steps", "4", "--seq-len", "64",
            "--batch-size", "2", "--warmup", "1", "--workers", "1"]
    if evaldata.exists():
        args += ["--evaldata", str(evaldata), "--eval-limit", "3"]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "adapt.json").read_text())
    rates = summary["mixture_rates"]
    comp = json.loads((tmp_path / "out" / "data" / "report.json").read_text())["composition"]
    for lang in ("zh", "en"):  # after sampling, general text is 25% of each language's characters
        mixed = {src: rates[lang][src] * comp[lang][src] for src in ("domain", "general")}
        assert mixed["general"] / sum(mixed.values()) == pytest.approx(0.25)
    assert summary["train"]["steps"] == 4 and (tmp_path / "out" / "train" / "model" / "config.json").exists()
    if evaldata.exists():
        groups = {r["group"]: r for r in summary["exam"]["rows"]}
        assert set(groups) == {"medicine", "general"} and all(0 <= r["after"] <= 1 for r in groups.values())
        assert "| medicine (4) |" in capsys.readouterr().out

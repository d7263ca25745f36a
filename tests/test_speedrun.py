"""The main job runs end to end (the README's first command, minus the venv setup)."""

import json

from baichuan.checkpoint import load_pretrained
from baichuan.speedrun import run
from baichuan.tokenizer import Tokenizer


def test_speedrun_end_to_end(tmp_path, capsys):
    summary = run(out_dir=tmp_path, profile="test")
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    tok = Tokenizer.load(tmp_path / "train" / "model")
    assert tok.vocab_size == 16000 and tok.chat_role_ids == (195, 196)
    model = load_pretrained(tmp_path / "train" / "model")
    assert model.cfg.vocab_size == 16000 and model.cfg.num_layers == 2
    rows = json.loads((tmp_path / "tokenizer_report.json").read_text())
    assert {(r["tokenizer"], r["lang"]) for r in rows} >= {("ours", "zh"), ("ours", "en")}
    assert all(0 < r["tokens_per_char"] < 2 for r in rows)
    assert len(summary["samples"]) == 4 and summary["data"]["unbalanced"] == []
    assert [m["role"] for m in summary["chat"]] == ["user", "assistant"] * 2
    assert load_pretrained(summary["chat_model"]).cfg.vocab_size == 16000
    assert set(summary["eval"]) == {"zh", "en"} and all(e["bpb"] > 0 for e in summary["eval"].values())
    assert "done in" in capsys.readouterr().out

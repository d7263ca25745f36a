"""Pretraining on CPU: it learns, it exports, it resumes exactly after SIGKILL, 2 ranks equal 1."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baichuan.checkpoint import load_pretrained
from baichuan.errors import BaichuanError
from baichuan.train.pretrain import TrainConfig, train
from conftest import FIXED_THREADS

TINY = {"num_layers": 2, "hidden_size": 64, "num_heads": 4, "intermediate_size": 128}


def cfg(tokens, out, **kw):
    base = dict(data=str(tokens / "train"), out=str(out), preset="tiny", model=TINY, seq_len=32, batch_size=4,
                steps=12, lr=3e-3, warmup=2, log_every=1, eval_every=6, eval_batches=2, ckpt_every=6,
                val_data={"heldout": str(tokens / "heldout")})
    base.update(kw)
    return TrainConfig(**base)


def losses(out):
    by_step = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == "train":
            by_step[r["step"]] = r["loss"]  # after a resume the re-run steps overwrite
    return [by_step[s] for s in sorted(by_step)]


def test_trains_logs_checkpoints_and_exports(tiny_tokens, tmp_path, capsys):
    result = train(cfg(tiny_tokens, tmp_path, steps=80, batch_size=8, eval_every=40, ckpt_every=20))
    out = capsys.readouterr().out
    assert "baseline  unigram validation loss" in out and "tok/s" in out and "MFU       not shown" in out
    ls = losses(tmp_path)
    assert len(ls) == 80 and ls[-1] < ls[0] - 1.0
    assert result["val"]["heldout"]["loss"] < result["baseline"]
    assert result["val"]["heldout"]["bpb"] > 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000040", "step_00000060",
                                                                             "step_00000080"]
    assert (tmp_path / "loss.png").stat().st_size > 1000
    model = load_pretrained(tmp_path / "model")
    assert model.cfg.num_layers == 2 and model.cfg.vocab_size == 3000
    # run again: the last checkpoint already reaches --steps, so nothing trains, but it is evaluated
    again = train(cfg(tiny_tokens, tmp_path, steps=80, batch_size=8, eval_every=40, ckpt_every=20))
    assert "nothing to train" in capsys.readouterr().out
    assert again["final_loss"] is None and again["steps"] == 80
    assert again["val"]["heldout"]["loss"] == pytest.approx(result["val"]["heldout"]["loss"], rel=1e-6)


def _run(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "baichuan.train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **FIXED_THREADS, **(env or {})})


def _args(tokens, out, steps=12):
    return ["--data", str(tokens / "train"), "--out", str(out), "--preset", "tiny", "--model", json.dumps(TINY),
            "--seq-len", "32", "--batch-size", "4", "--steps", str(steps), "--lr", "3e-3", "--warmup", "2",
            "--log-every", "1", "--ckpt-every", "4", "--eval-every", "1000", "--no-export"]


def test_resume_after_sigkill_gives_the_same_losses(tiny_tokens, tmp_path):
    ref = _run(_args(tiny_tokens, tmp_path / "ref"))
    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    killed = _run(_args(tiny_tokens, tmp_path / "run"))
    deadline = time.time() + 240
    # killed at the first checkpoint: two more would have to be written before the kill lands for
    # the run to finish (killed at the second, a busy machine once let the run reach its last)
    while not (tmp_path / "run" / "checkpoints" / "step_00000004").exists():
        assert time.time() < deadline and killed.poll() is None, "no checkpoint appeared"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "run" / "checkpoints" / "step_00000012").exists()
    resumed = _run(_args(tiny_tokens, tmp_path / "run"))
    output = resumed.stdout.read()
    assert resumed.wait(timeout=300) == 0, output
    assert "resumed from" in output
    assert losses(tmp_path / "run") == losses(tmp_path / "ref")
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if line and json.loads(line)["kind"] == "train"]
    assert logged == sorted(set(logged)), logged  # steps logged before the kill are not there twice


def test_two_ranks_fsdp_match_one_rank(tiny_tokens, tmp_path):
    one = _run(_args(tiny_tokens, tmp_path / "one", steps=6))
    assert one.wait(timeout=300) == 0, one.stdout.read()
    args = _args(tiny_tokens, tmp_path / "two", steps=6)
    args[args.index("--batch-size") + 1] = "2"
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                          "-m", "baichuan.train", *args], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)


def test_incompatible_resume_is_refused_and_export_on_demand(tiny_tokens, tmp_path):
    with pytest.raises(BaichuanError, match="no checkpoint to export"):
        train(cfg(tiny_tokens, tmp_path, export_only=True))
    train(cfg(tiny_tokens, tmp_path, steps=6, export=False))
    assert not (tmp_path / "model").exists()
    assert train(cfg(tiny_tokens, tmp_path, export_only=True))["steps"] == 6
    import shutil
    from baichuan.train.pretrain import main
    shutil.rmtree(tmp_path / "model")
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "resume": "never", "gone_option": 1}))
    main(["--out", str(tmp_path), "--export-only"])     # the run's saved config stands in for its options
    assert load_pretrained(tmp_path / "model").cfg.num_layers == 2
    assert load_pretrained(tmp_path / "model").cfg.num_layers == 2
    with pytest.raises(BaichuanError, match="another model or training config .num_layers 2 -> 3"):
        train(cfg(tiny_tokens, tmp_path, steps=8, model={**TINY, "num_layers": 3}, export=False))
    with pytest.raises(BaichuanError, match="global batch"):
        train(cfg(tiny_tokens, tmp_path, steps=8, batch_size=2, export=False))
    with pytest.raises(BaichuanError, match="longer than the model's context"):
        train(cfg(tiny_tokens, tmp_path / "long", seq_len=4096, export=False))
    with pytest.raises(BaichuanError, match="--init-from .*: not a model directory"):
        train(cfg(tiny_tokens, tmp_path / "init", init_from=str(tmp_path / "nothing"), export=False))


def test_a_config_that_does_not_fit_is_refused_before_allocating(tiny_tokens, tmp_path):
    with pytest.raises(BaichuanError, match=r"needs about [\d.]+ GB per rank"):
        train(cfg(tiny_tokens, tmp_path, preset="baichuan-13b", model={}, seq_len=4096, batch_size=64))


def test_nan_loss_steps_are_skipped_and_a_run_of_them_stops_training(tiny_tokens, tmp_path, capsys):
    with pytest.raises(BaichuanError, match="consecutive steps skipped"):
        train(cfg(tiny_tokens, tmp_path, lr=1e30, max_skips=2, steps=20, export=False))
    assert "skipped (loss" in capsys.readouterr().out


def test_shards_and_tokenizer_must_match_and_the_export_finds_it(tiny_tokens, tiny_model_dir, tmp_path):
    import shutil
    from baichuan.data.writers import sha256_file
    data = tmp_path / "data"
    shards = shutil.copytree(tiny_tokens / "train", data / "tokens")
    manifest = json.loads((shards / "tokens.json").read_text())
    # as `baichuan data run` leaves them: the tokenizer's path in manifest.json, its checksum in tokens.json
    (data / "manifest.json").write_text(json.dumps({"config": {"tokenizer": str(tiny_model_dir)}}))
    made_with = sha256_file(tiny_model_dir / "tokenizer.model")
    (shards / "tokens.json").write_text(json.dumps({**manifest, "tokenizer_sha256": made_with}))
    result = train(cfg(tiny_tokens, tmp_path / "run", data=str(shards), steps=2, val_data={}))
    assert (Path(result["model_dir"]) / "tokenizer.model").exists()   # found without --tokenizer
    (shards / "tokens.json").write_text(json.dumps({**manifest, "tokenizer_sha256": "0" * 64}))
    with pytest.raises(BaichuanError, match="is not the tokenizer the shards"):
        train(cfg(tiny_tokens, tmp_path / "run2", data=str(shards), steps=2, val_data={}, tokenizer=str(tiny_model_dir)))


def test_settings_are_checked_before_any_work(tmp_path):
    """A misspelled schedule failed after the warmup; zero intervals divided by zero; zero batches
    trained nothing; --lora '{}' (the defaults) silently trained the whole model."""
    def make(**kw):
        return TrainConfig(data=str(tmp_path), out=str(tmp_path / "out"), **kw)
    for kw, message in (({"schedule": "cosin"}, "schedule must be cosine, linear or constant"),
                        ({"ckpt_every": 0}, "ckpt_every must be a whole number >= 1"),
                        ({"log_every": 0}, "log_every must be"), ({"batch_size": 0}, "batch_size must be"),
                        ({"grad_accum": 0}, "grad_accum must be"), ({"lr": 0.0}, "lr and dpo_beta > 0"),
                        ({"lora": {"r": "8"}}, "r must be a whole number"), ({"lora": {"r": 8.5}}, "r must be"),
                        ({"lora": {"dropout": 1.5}}, "dropout must be below 1"),
                        ({"lora": {"targets": []}}, "targets must be a non-empty list"),
                        ({"lora": {"targets": "W_pack"}}, "targets must be a non-empty list"),
                        ({"lora": True}, "--lora must be a JSON object"),
                        ({"quantize_base": "int4"}, "give lora settings too")):
        with pytest.raises(BaichuanError, match=message):
            make(**kw)
    assert make(lora={}, quantize_base="int4").lora == {}     # {}: LoRA with add_lora's defaults, QLoRA allowed


def test_resume_never_starts_over_in_the_same_folder(tiny_tokens, tmp_path, capsys):
    """The earlier run's later checkpoints used to survive (and its earlier ones be pruned in their
    place), so a later resume or --export-only picked up the old run."""
    from baichuan.train.state import checkpoints
    out = tmp_path / "run"
    train(cfg(tiny_tokens, out, steps=6, ckpt_every=3))
    train(cfg(tiny_tokens, out, steps=4, ckpt_every=2, resume="never"))
    assert "removed 2 checkpoint(s) of an earlier run" in capsys.readouterr().out
    assert [p.name for p in checkpoints(out / "checkpoints")] == ["step_00000002", "step_00000004"]
    assert len(losses(out)) == 4                                     # the metrics are the new run's alone

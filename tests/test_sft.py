"""Post-training: exact chat labels in both templates, packing, all-masked batches, SFT and DPO runs
with LoRA / QLoRA, resume, adapters, and bad input reported by line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from baichuan.errors import BaichuanError
from baichuan.model import lm_loss
from baichuan.tokenizer import Tokenizer
from baichuan.train.chat_data import IGNORE, load_chats, load_pairs, pack, render
from baichuan.train.pretrain import TrainConfig, train
from conftest import FIXED_THREADS, assets

CHAT = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]


@pytest.mark.parametrize("which", ["baichuan1", "baichuan2"])
def test_multi_turn_labels_follow_baichuan2_fine_tune(which):
    tok = Tokenizer.load(assets(which, "tokenizer.model"))
    e = tok.encode
    ids, labels = render(tok, CHAT, eos_id=2)
    u1, a1, u2, a2 = e("你好"), e("你好！"), e("Hi"), e("Hello.")
    assert ids == [195] + u1 + [196] + a1 + [195] + u2 + [196] + a2 + [2]
    X = IGNORE
    assert labels == ([X] + [X] * len(u1) + [X] + a1 + [2] + [X] * len(u2) + [X] + a2 + [2])
    # with a system text: raw ids first, never learned, and no EOS label at the first user token
    ids_s, labels_s = render(tok, [{"role": "system", "content": "你是助手"}] + CHAT, eos_id=2)
    sys_ids = e("你是助手")
    assert ids_s == sys_ids + ids and labels_s == [X] * len(sys_ids) + labels


def test_packing_keeps_conversations_apart(small_tokenizer):
    ex = [render(small_tokenizer, CHAT, 2), render(small_tokenizer, CHAT[:2], 2), render(small_tokenizer, CHAT[:2], 2)]
    arrays = pack(ex, seq_len=len(ex[0][0]) + len(ex[1][0]))
    assert arrays["tokens"].shape[1] == len(ex[0][0]) + len(ex[1][0]) + 1
    assert len(arrays["tokens"]) == 2
    row = arrays["segments"][0]
    first = len(ex[0][0])
    assert (row[:first] == 0).all() and (row[first:first + len(ex[1][0])] == 1).all()
    assert arrays["positions"][0, first] == 0  # positions restart per conversation
    assert arrays["labels"][0, first] == IGNORE  # nothing is learned across the boundary
    learned = sum(int((np.array(lab) != IGNORE).sum()) - (lab[0] != IGNORE) for _, lab in ex)
    assert int((arrays["labels"] != IGNORE).sum()) == learned


def test_all_masked_batch_is_zero_not_nan():
    logits = torch.randn(2, 5, 11, requires_grad=True)
    loss = lm_loss(logits, torch.full((2, 5), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_bad_conversations_are_reported_by_line(tmp_path, small_tokenizer):
    rows = [{"messages": CHAT},
            {"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]},
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]},
            {"conversations": [{"from": "human", "value": "写长一点"}, {"from": "gpt", "value": "长" * 500}]},
            "{broken",
            {"conversations": [{"from": "human", "value": "问"}, {"from": "gpt", "value": "答"}]},
            {"messages": 5}, {"conversations": True},                     # valid JSON of the wrong shape
            {"messages": [{"role": ["user"], "content": "x"}, {"role": "assistant", "content": "y"}]}]
    f = write_jsonl(tmp_path / "chats.jsonl", rows)
    examples, report = load_chats(f, small_tokenizer, max_tokens=64)
    assert report.lines == 9 and report.kept == 2 and len(examples) == 2
    assert dict(report.dropped) == {"unknown_role:wizard": 1, "empty_assistant_turn": 1, "longer_than_context": 1,
                                    "bad_json": 1, "messages_not_a_list": 1, "conversations_not_a_list": 1,
                                    "unknown_role:['user']": 1}
    assert any(e.startswith(f"{f}:2:") for e in report.examples)
    assert f"dropped {f}:5: bad_json" in report.dropped_lines()   # what the training banner prints
    _, report = load_chats(f, small_tokenizer, max_tokens=64, on_long="truncate")
    assert report.kept == 3 and report.truncated == 1
    with pytest.raises(BaichuanError, match=r"chats.jsonl:2: unknown_role:wizard"):
        load_chats(f, small_tokenizer, max_tokens=64, on_error="refuse")
    bom = tmp_path / "bom.jsonl"                                      # as Windows editors save UTF-8
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"messages": CHAT}).encode() + b"\n")
    assert load_chats(bom, small_tokenizer, max_tokens=64)[1].kept == 1
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "1+1=?", "chosen": "2", "rejected": "3"},
                                                   {"prompt": "hi", "chosen": "same", "rejected": "same"},
                                                   {"prompt": "hi", "chosen": 5, "rejected": "x"},
                                                   {"prompt": "hi", "rejected": "x"},
                                                   {"prompt": "hi", "chosen": " ", "rejected": "x"},
                                                   {"prompt": "长" * 60, "chosen": "好", "rejected": "坏"}])
    arrays, report = load_pairs(pairs, small_tokenizer, seq_len=32)
    assert arrays["tokens"].shape == (1, 2, 33)
    assert dict(report.dropped) == {"identical_answers": 1, "chosen_or_rejected_not_text": 1,
                                    "chosen_or_rejected_missing": 1, "empty_answer": 1, "longer_than_context": 1}
    _, report = load_pairs(pairs, small_tokenizer, seq_len=32, on_long="truncate")  # cut to the prompt: nothing left
    assert report.kept == 1 and report.truncated == 0 and report.dropped["nothing_to_learn"] == 1


SFT_ROWS = [{"messages": [{"role": "user", "content": f"{a}加{b}等于几？"}, {"role": "assistant", "content": f"等于{a + b}。"}]}
            for a in range(1, 9) for b in range(1, 4)] + \
           [{"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"},
                          {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "Hello again!"}]}] * 4


@pytest.fixture
def chats(tmp_path):
    return write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)


def sft_cfg(chats, base, out, **kw):
    d = dict(task="sft", data=str(chats), init_from=str(base), out=str(out), seq_len=48, batch_size=4, steps=12,
             lr=3e-3, warmup=2, log_every=1, eval_every=1000, ckpt_every=4)
    d.update(kw)
    return TrainConfig(**d)


def losses(out):
    by = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        by[r["step"]] = r
    return [by[s] for s in sorted(by)]


def test_full_sft_learns_and_exports(chats, tiny_model_dir, tmp_path):
    result = train(sft_cfg(chats, tiny_model_dir, tmp_path / "full", steps=25))
    ls = [r["loss"] for r in losses(tmp_path / "full")]
    assert ls[-1] < ls[0] - 0.5
    from baichuan.checkpoint import load_pretrained
    assert load_pretrained(result["model_dir"]).cfg.vocab_size == 3000
    assert (tmp_path / "full" / "model" / "tokenizer.model").exists()


def test_sft_loss_does_not_depend_on_how_the_global_batch_is_split(chats, tiny_model_dir, tmp_path):
    """Packed chats learn a different number of tokens per row: 4 rows at once, or 2 + 2 by
    gradient accumulation, give the same losses (a mean of micro-batch means did not)."""
    whole = train(sft_cfg(chats, tiny_model_dir, tmp_path / "whole", steps=3, export=False))
    split = train(sft_cfg(chats, tiny_model_dir, tmp_path / "split", steps=3, batch_size=2, grad_accum=2,
                          export=False))
    a, b = [r["loss"] for r in losses(tmp_path / "whole")], [r["loss"] for r in losses(tmp_path / "split")]
    assert whole["steps"] == split["steps"] == 3 and len(a) == 3
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)


def test_lora_sft_resumes_exactly_and_merges(chats, tiny_model_dir, tmp_path):
    lora = {"r": 4, "alpha": 8, "dropout": 0.0}
    common = ["--task", "sft", "--data", str(chats), "--init-from", str(tiny_model_dir), "--seq-len", "48",
              "--batch-size", "4", "--steps", "12", "--lr", "3e-3", "--warmup", "2", "--log-every", "1",
              "--eval-every", "1000", "--ckpt-every", "4", "--lora", json.dumps(lora)]
    env = {**os.environ, **FIXED_THREADS}  # both runs in processes alike
    done = subprocess.run([sys.executable, "-m", "baichuan.train", *common, "--out", str(tmp_path / "ref")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    ref = {"model_dir": tmp_path / "ref" / "model", "adapter_dir": tmp_path / "ref" / "adapter"}
    args = [*common, "--out", str(tmp_path / "run"), "--no-export"]
    killed = subprocess.Popen([sys.executable, "-m", "baichuan.train", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while not (tmp_path / "run" / "checkpoints" / "step_00000004").exists():
        assert time.time() < deadline and killed.poll() is None
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = subprocess.run([sys.executable, "-m", "baichuan.train", *args], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stdout + resumed.stderr
    got, want = [r["loss"] for r in losses(tmp_path / "run")], [r["loss"] for r in losses(tmp_path / "ref")]
    # Two processes of the same fp32 run once differed by 1e-6 from step 1 on (8.0329552 vs 8.0329542,
    # before any resume; 1 fresh CI run in 8 on an AVX-512 Xeon): the bound is far below what a wrong
    # resume (another batch, lost optimizer state) moves the losses by.
    assert len(got) == len(want) == 12 and max(abs(a - b) for a, b in zip(got, want)) < 1e-5, (got, want)
    ckpt = tmp_path / "ref" / "checkpoints" / "step_00000012"
    assert sum(f.stat().st_size for f in ckpt.iterdir()) < 2_000_000  # adapters and their optimizer state only
    # the merged model equals the base + adapter
    from baichuan.checkpoint import load_pretrained
    from baichuan.train.lora import load_adapter
    merged = load_pretrained(ref["model_dir"])
    adapted = load_adapter(load_pretrained(tiny_model_dir), ref["adapter_dir"]).eval()
    ids = torch.randint(3, 3000, (2, 20))
    with torch.no_grad():
        assert (merged(ids) - adapted(ids)).abs().max().item() < 1e-4
        assert not torch.allclose(merged(ids), load_pretrained(tiny_model_dir)(ids))


def test_qlora_trains_adapters_over_int4(chats, tiny_model_dir, tmp_path):
    pytest.importorskip("baichuan.quant")
    from torch.distributed.checkpoint import FileSystemReader
    from baichuan.train.state import checkpoints
    qlora = dict(lora={"r": 4, "alpha": 8}, quantize_base="int4:32", ckpt_every=4)
    result = train(sft_cfg(chats, tiny_model_dir, tmp_path / "q", steps=8, **qlora))
    ls = [r["loss"] for r in losses(tmp_path / "q")]
    assert ls[-1] < ls[0]
    assert (tmp_path / "q" / "adapter" / "adapter_model.safetensors").exists() and result["model_dir"]
    adapter = json.loads((tmp_path / "q" / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())  # usable from anywhere
    saved = FileSystemReader(str(checkpoints(tmp_path / "q" / "checkpoints")[0])).read_metadata().state_dict_metadata
    weights = [k for k in saved if k.startswith("model.")]
    assert weights and all("lora_" in k for k in weights), weights    # the adapters only, not the int4 base
    shutil.rmtree(checkpoints(tmp_path / "q" / "checkpoints")[-1])   # resumed from step 4 alone: as one run
    train(sft_cfg(chats, tiny_model_dir, tmp_path / "q", steps=8, **qlora))
    assert [r["loss"] for r in losses(tmp_path / "q")] == pytest.approx(ls, rel=1e-5)


def test_dpo_raises_the_reward_margin(tmp_path, tiny_model_dir):
    pairs = write_jsonl(tmp_path / "pairs.jsonl",
                        [{"prompt": f"{a}加{a}等于几？", "chosen": f"等于{2 * a}。", "rejected": "我不知道，你自己算吧！"}
                         for a in range(1, 13)])
    train(TrainConfig(task="dpo", data=str(pairs), init_from=str(tiny_model_dir), out=str(tmp_path / "dpo"),
                      seq_len=32, batch_size=4, steps=15, lr=3e-3, warmup=1, log_every=1, ckpt_every=100,
                      dpo_beta=0.5))
    rec = losses(tmp_path / "dpo")
    assert rec[0]["loss"] == pytest.approx(np.log(2), abs=1e-3)  # policy == reference at the start
    assert rec[-1]["loss"] < rec[0]["loss"] and rec[-1]["reward_margin"] > 0 and rec[-1]["reward_accuracy"] > 0.5

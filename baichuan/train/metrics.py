"""What a training run shows and records: the header and its lines on rank 0, MFU against a table
of peak FLOP/s, the unigram baseline, metrics as JSONL, a loss plot, the run's config.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from baichuan.data.shards import TokenShards
    from baichuan.train.settings import TrainConfig
    from baichuan.train.setup import Run


def print0(*args, **kw):
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(*args, **kw, flush=True)


def duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def header(cfg: TrainConfig, run: Run, baseline: float | None) -> str:
    """What is about to train, on what, how, and the loss to beat: printed before the first step."""
    mc = run.mc
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    return (f"task      {cfg.task}" + (f" with LoRA {cfg.lora}" if cfg.lora is not None else "")
            + (f" over a {cfg.quantize_base} base" if cfg.quantize_base else "") + "\n"
            f"model     {mc.describe()}\n"
            f"          {mc.num_params(embeddings=False) / 1e6:,.1f}M non-embedding params, {trainable / 1e6:,.2f}M "
            f"trainable, {run.flops_per_token / 1e9:.3f} GFLOP/token at seq {cfg.seq_len}\n"
            f"data      {run.data_line}\n"
            f"batch     {cfg.batch_size} seq x {run.world} rank(s) x {cfg.grad_accum} accum = "
            f"{cfg.global_batch(run.world)} seq = {run.tokens_per_step:,} tokens/step, {cfg.steps} steps\n"
            f"compute   {run.device.type} x {run.world}, {str(run.dtype).removeprefix('torch.')} compute, fp32 master "
            f"weights, compile {run.compiled}, activation checkpointing {cfg.activation_checkpointing}\n"
            f"memory    ~{run.memory_need / 1e9:.2f} GB/rank estimated of {run.memory_have / 1e9:.1f} GB"
            + (f"\nbaseline  unigram validation loss {baseline:.4f}" if baseline is not None else "")
            + ("" if run.peak else "\nMFU       not shown: no peak FLOP/s known for this device"))


def start_records(cfg: TrainConfig, run: Run, step: int) -> tuple[MetricsLog, float | None]:
    """(metrics.jsonl cut back to `step`, the unigram baseline for pretraining with validation
    data); writes config.json and prints the header."""
    out = Path(cfg.out)
    log = MetricsLog(out / "metrics.jsonl", enabled=run.rank == 0)
    log.drop_after(step)
    baseline = None
    if run.val and cfg.task == "pretrain":
        from baichuan.data.shards import open_shards
        baseline = unigram_baseline(open_shards(cfg.data), next(iter(run.val.values())), run.mc.vocab_size)
    if run.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(saved_config(cfg), indent=1) + "\n")
    print0(header(cfg, run, baseline))
    return log, baseline


def saved_config(cfg: TrainConfig) -> dict:
    """config.json of a run, with absolute paths: `--export-only` may read it from anywhere
    (settings.config_from_args)."""
    d = dataclasses.asdict(cfg)
    for k in ("data", "out", "init_from", "tokenizer"):
        if d.get(k):
            d[k] = str(Path(d[k]).resolve())
    d["val_data"] = {n: str(Path(p).resolve()) for n, p in (d.get("val_data") or {}).items()}
    return d


def unigram_baseline(train: TokenShards, val: TokenShards, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of the validation tokens under the training unigram distribution
    (add-one smoothed): the loss a model that ignores context would get."""
    counts = np.ones(vocab_size, dtype=np.float64)
    for i in range(len(train.files)):
        counts += np.bincount(np.asarray(train.memmap(i)), minlength=vocab_size)[:vocab_size]
    logp = np.log(counts / counts.sum())
    total, n = 0.0, 0
    for i in range(len(val.files)):
        v = np.asarray(val.memmap(i))
        total -= logp[v].sum()
        n += v.size
    return total / max(n, 1)

# Dense bf16 peak FLOP/s per device (never the 2:4-sparse figure). Unknown devices get no MFU
# rather than a guess: a wrong peak makes every MFU number wrong.
PEAK_BF16_FLOPS = {
    "H100 80GB HBM3": 989e12, "H100 SXM": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12,
    "H200": 989e12, "H800": 989e12, "GH200": 989e12,
    "A100": 312e12, "A800": 312e12,
    "L40S": 362e12, "L40": 181e12, "L4": 121e12, "A10G": 70e12, "A10": 125e12,
    "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12,
}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    # longest key first so "H100 PCIe" wins over a shorter match
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_FLOPS[key]
    return None


class MetricsLog:
    """Appends one JSON object per record to metrics.jsonl (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **record) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def drop_after(self, step: int) -> None:
        """Forget the records past `step`: a run resumed from there logs those steps again (after a
        crash they would appear twice, and the loss curve would double back)."""
        if self.enabled and self.path.exists():
            from baichuan.data.writers import atomic_write_text
            kept = [r for r in self.records() if r.get("step", 0) <= step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a crash mid-write: the run goes on without it
                continue
        return out


def plot_losses(records: list[dict], out: Path, baseline: float | None = None) -> Path | None:
    """Training and validation loss against step, as a PNG beside metrics.jsonl."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("kind") == "val"]
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", label=f"unigram baseline {baseline:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

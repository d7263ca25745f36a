"""What a training step optimizes, behind one interface, so pretraining, SFT and DPO share the loop,
checkpoints, resume, logging and export (pretrain.py and the modules it calls):

    objective.next_batch() -> dict of CPU tensors (this rank's share of the next global batch)
    objective.loss(model, batch, device) -> (loss, metrics)
    objective.state_dict() / load_state_dict()     the data position, for exact resume

    LMObjective    next-token loss on token windows (pretraining) or packed chats (SFT)
    DPOObjective   direct preference optimization against a frozen reference (log-probs computed once)
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
import torch.nn.functional as F

from baichuan.data.loader import TokenLoader, permute
from baichuan.errors import BaichuanError
from baichuan.train.chat_data import IGNORE


class PackedLoader:
    """Rows of equally shaped arrays (e.g. packed chats [N, seq_len+1]) in a seeded order, epoch
    after epoch, split across ranks the way TokenLoader splits windows (one global position)."""

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        self.arrays, self.batch_size, self.rank, self.world_size, self.seed = arrays, batch_size, rank, world_size, seed
        self.total = len(next(iter(arrays.values())))
        if self.total == 0:
            raise BaichuanError("no training rows")
        self.position = 0

    def next_rows(self) -> dict[str, torch.Tensor]:
        first = self.position + self.rank * self.batch_size
        idx = [permute(i % self.total, self.total, (self.seed, i // self.total))
               for i in range(first, first + self.batch_size)]
        self.position += self.batch_size * self.world_size
        return {k: torch.from_numpy(v[idx].astype(np.int64) if v.dtype.kind in "iu" else v[idx])
                for k, v in self.arrays.items()}

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps([self.seed, self.total]).encode())
        for k in sorted(self.arrays):
            h.update(k.encode() + np.ascontiguousarray(self.arrays[k]).tobytes())
        return h.hexdigest()[:16]

    def state_dict(self) -> dict:
        return {"position": self.position, "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self.fingerprint():
            raise BaichuanError("data loader state is from other training data or another seed")
        self.position = int(state["position"])

    @property
    def epoch(self) -> float:
        return self.position / self.total


class LMObjective:
    """Mean cross-entropy over the labelled next tokens (+ Baichuan 2's max-z loss, by the model
    config's z_loss_weight)."""

    def __init__(self, loader: TokenLoader | PackedLoader):
        self.loader = loader

    def next_batch(self) -> dict[str, torch.Tensor]:
        if isinstance(self.loader, TokenLoader):
            x, y = self.loader.next_batch()
            return {"input_ids": x, "targets": y}
        rows = self.loader.next_rows()  # packed chats: inputs and labels shifted by one
        return {"input_ids": rows["tokens"][:, :-1], "targets": rows["labels"][:, 1:],
                "position_ids": rows["positions"][:, :-1], "segments": rows["segments"][:, :-1]}

    @staticmethod
    def weight(batch) -> int:
        """What the batch's mean loss is over: its labelled tokens (packed chats learn some only)."""
        return int((batch["targets"] != IGNORE).sum())

    def loss(self, model, batch, device):
        b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        # the model computes the loss itself: above 2^28 logits in 4,096-position chunks, recomputed
        # in backward, so the [tokens, vocab] fp32 logits never exist at once
        loss = model(b["input_ids"], position_ids=b.get("position_ids"), segments=b.get("segments"),
                     targets=b["targets"])
        return loss, {}

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)


def sequence_logps(model, tokens: torch.Tensor, labels: torch.Tensor, positions=None) -> torch.Tensor:
    """Sum of log p(labels[t+1] | tokens[..t]) over labelled positions, per row."""
    logits = model(tokens[:, :-1], position_ids=None if positions is None else positions[:, :-1]).float()
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logp = torch.gather(F.log_softmax(logits, -1), 2, targets.clamp(min=0)[..., None])[..., 0]
    return (logp * keep).sum(-1)


class DPOObjective:
    """DPO (Rafailov et al. 2023): -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) over pairs.

    `arrays` hold [N, 2, L+1] tokens and labels (row 0 chosen, row 1 rejected, labels only on the
    answer). The reference is the model as it is at construction (the SFT model): its log-probs
    are computed once, here, and kept with the data, so no second model is held in memory."""

    def __init__(self, model, arrays: dict[str, np.ndarray], batch_size: int, rank: int, world: int, seed: int,
                 beta: float, device, amp):
        ref = np.zeros((len(arrays["tokens"]), 2), dtype=np.float64)
        model.eval()
        with torch.no_grad(), amp():
            for i in range(0, len(ref), batch_size):
                t = torch.from_numpy(arrays["tokens"][i:i + batch_size].astype(np.int64)).to(device)
                lab = torch.from_numpy(arrays["labels"][i:i + batch_size].astype(np.int64)).to(device)
                n = t.shape[0]
                ref[i:i + n] = sequence_logps(model, t.flatten(0, 1), lab.flatten(0, 1)).view(n, 2).double().cpu().numpy()
        model.train()
        self.loader = PackedLoader({**arrays, "ref": ref}, batch_size, rank, world, seed)
        self.beta = beta

    def next_batch(self):
        return self.loader.next_rows()

    @staticmethod
    def weight(batch) -> int:
        return batch["tokens"].shape[0]  # pairs

    def loss(self, model, batch, device):
        t, lab = batch["tokens"].to(device), batch["labels"].to(device)
        n = t.shape[0]
        pi = sequence_logps(model, t.flatten(0, 1), lab.flatten(0, 1)).view(n, 2)
        ref = batch["ref"].to(device=device, dtype=pi.dtype)
        margin = self.beta * ((pi[:, 0] - ref[:, 0]) - (pi[:, 1] - ref[:, 1]))
        loss = -F.logsigmoid(margin).mean()
        return loss, {"reward_margin": margin.mean().item(), "reward_accuracy": (margin > 0).float().mean().item()}

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)

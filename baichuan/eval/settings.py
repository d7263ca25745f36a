"""How an evaluation runs: one `EvalSettings` travels from `baichuan eval` (or speedrun, adapt)
down to the scorer, and its defaults are the only ones (the CLI's flags read them from here).

    from baichuan.eval.settings import EvalSettings
    settings = EvalSettings(protocol="baichuan", subjects=["law"], limit_per_subject=20, progress=False)
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CONTEXT = 2048   # lm-eval's default max_length when a model does not say


@dataclass(frozen=True)
class EvalSettings:
    protocol: str = "lm-eval"            # protocols.py: lm-eval, baichuan or official
    shots: int = 5
    subjects: list[str] | dict[str, list[str]] | None = None   # None: all; a list applies to every task
    limit_per_subject: int | None = None  # the first N questions of each subject (file order)
    context: int | None = None           # tokens the model sees (None: model_context(model))
    batch_tokens: int = 32768            # tokens per forward batch of the multiple-choice scorer
    seed: int = 1234                     # the baichuan protocol's C-Eval shot shuffle (the original had none)
    share_prefix: bool = True            # run each subject's few-shot block once (K/V shared)
    keep_predictions: bool = False       # per-question predictions in the results
    bpb_max_tokens: int | None = None    # bpb: whole documents up to about this many tokens per text
    progress: bool = True


def model_context(model) -> int:
    """The context a model was built for (its config's max_len), else lm-eval's default."""
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "max_len", None) or DEFAULT_CONTEXT

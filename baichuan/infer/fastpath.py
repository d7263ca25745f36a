"""How the engine's decode step is made fast, per device, applied from outside the engine.

The engine (engine.py) is a scheduler: rows, admission, cancel. What its decode step runs as is a
`DecodePath`, made here for the model's device by `decode_path(model, compile)`:

- a CPU (cpu.py): eager with fp32 weights stored column-major, or compiled with inductor through
  cpu.py's backend over the active rows rounded up to a power of two;
- CUDA (cuda.py): eager, or CUDA graphs over all rows, a graph per span.

The path prepares the model where it must (column-major weights on an eager CPU; NormHead rows
normalized once before a graph is traced, which the model would otherwise do on first use) and
keeps torch's process-wide settings to the calls of the step: dynamo's recompile limit (one graph
per row count and sampling kind) and inductor's options are patched around each call or passed to
`torch.compile`, never set for the whole process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from baichuan.model import Baichuan, NormHead


def _round64(n: int) -> int:
    return -(-n // 64) * 64


@dataclass
class DecodePath:
    compiled: bool = False
    compiled_rows: int | None = None  # steps over more rows run eager (None: every row count is compiled)
    all_rows: bool = False     # every step runs all rows (CUDA graphs replay fixed shapes)
    graph_spans: bool = False  # a graph per span, 64 times a power of two (CUDA graphs)
    warm_calls: int = 1        # calls per variant in warm_up (CUDA graphs record on the second)
    compile: Callable | None = None  # (step function, its fixed-address buffers, compile_options) -> compiled step
    inductor_options: dict = field(default_factory=dict)  # patched around each call (read at run time)

    def compiles(self, rows: int) -> bool:
        """Whether a step over `rows` rows runs compiled."""
        return self.compiled and (self.compiled_rows is None or rows <= self.compiled_rows)

    def rows(self, active: int, max_batch: int) -> int:
        """Rows the decode step runs over: the active ones, or one of a few fixed counts when compiled."""
        if not self.compiled:
            return active
        rows = max_batch if self.all_rows else min(max_batch, 1 << (active - 1).bit_length())
        return rows if self.compiles(rows) else active

    def cache_slots(self, max_len: int) -> int:
        """Slots per cache row. Compiled, every span is a multiple of 64 (a guard on a size's
        alignment holds for all of them) and a spare slot follows the longest: a span over the
        whole cache would be a contiguous view, a case dynamo compiles separately. On a CPU the
        slots past `max_len` are never written, so they take no memory (model.py `_zeros`)."""
        return _round64(max_len) + 1 if self.compiled else max_len

    def spans(self, max_len: int) -> list[int]:
        """The spans a step is compiled for: with a graph per span, 64 times a power of two up to
        the context rounded up to 64; else one symbolic span (64 stands for all)."""
        top = _round64(max_len)
        if not self.graph_spans:
            return [64]
        return [s for s in (64 << i for i in range(top.bit_length())) if s < top] + [top]

    def span(self, need: int, max_len: int) -> int:
        """The slots a step attends over when its longest row holds `need`: rounded up to 64, or
        to the next graph's span."""
        if self.graph_spans:
            return next(s for s in self.spans(max_len) if s >= need)
        return _round64(need) if self.compiled else min(max_len, _round64(need))

    def step(self, fn: Callable, buffers: list[torch.Tensor], variants: int) -> Callable:
        """`fn` compiled, with dynamo allowed `variants` graphs of it (past dynamo's default limit
        of 8 the rest would silently run eager); `fn` itself when the path is eager. The engine
        calls it for the row counts the path `compiles`."""
        if not self.compiled:
            return fn
        compiled = self.compile(fn, buffers, compile_options(variants))
        if not self.inductor_options:
            return compiled
        from torch._inductor import config as inductor_config

        def call(*args):
            with inductor_config.patch(self.inductor_options):
                return compiled(*args)
        return call


def compile_options(variants: int) -> dict:
    """`torch.compile` arguments for an engine's decode step of `variants` graphs (a row count and
    sampling kind each). The step's compiled graphs are the engine's own (`isolate_recompiles`:
    another engine's model, of another shape or config, never meets them) and are not checked
    against the model's modules and weights at each call: once an engine is built its model's
    weights may change in value, not in shape, type or structure. Those checks (a 32-layer
    model's several hundred guards) cost 0.6 ms a decode step on a 2-core Xeon, against 0.1 ms for
    what stays guarded: the step's inputs, their shapes and the sampling kind."""
    skip = getattr(torch.compiler, "skip_guard_on_all_nn_modules_unsafe", None)
    return dict(dynamic=False, recompile_limit=variants + 2, isolate_recompiles=True,
                options={"guard_filter_fn": skip} if skip else {})


def normalize_head(model: Baichuan) -> None:
    """NormHead rows normalized now, eagerly: a traced graph uses them as they are (it cannot
    guard on the version counter its own normalization would bump)."""
    if isinstance(model.lm_head, NormHead):
        with torch.no_grad():
            model.lm_head.effective_weight()


def decode_path(model: Baichuan, compile: bool, compiled_rows: int | None = None) -> DecodePath:
    """The decode path for `model` on its device: compiled where asked and available, for steps
    of up to `compiled_rows` rows where given (CUDA graphs always run every row)."""
    device = next(model.parameters()).device.type
    if device == "cpu":
        from baichuan.infer.cpu import cpu_decode_path
        return cpu_decode_path(model, compile, compiled_rows)
    if device == "cuda" and compile:
        from baichuan.infer.cuda import cuda_decode_path
        return cuda_decode_path(model)
    if compile:  # another device: torch.compile's defaults
        normalize_head(model)
        return DecodePath(compiled=True, compiled_rows=compiled_rows,
                          compile=lambda fn, buffers, options: torch.compile(fn, **options))
    return DecodePath()

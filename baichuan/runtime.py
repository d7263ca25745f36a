"""Where and in what precision every stage runs: the one place that decides device and dtype, and
the one function that loads a model directory with its tokenizer for a command.

    default_device(None)          "cuda" when this machine has a CUDA device, else "cpu"
    checked_device("cuda:1")      a torch.device, or a one-line error when it cannot be used
    model_dtype(device, ...)      bf16 where bf16 is native (CUDA with bf16 support) or where the
                                  weights are int8/int4, else fp32
    load_model_and_tokenizer(dir) what generate, chat, serve, eval and ask start from
    compile_decode(model)         whether a command compiles its decode step by default
    release_freed_heap()          the C heap's free pages back to the OS (after loading, compiling)
    ready_engine(model, ...)      the engine chat, generate and serve decode with: compiled where
                                  that pays, warmed up, eager when compiling fails
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from baichuan.errors import BaichuanError


def default_device(name: str | None = None) -> str:
    """`name` if given, else CUDA when available, else the CPU."""
    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def checked_device(device) -> torch.device:
    """`device` as a torch.device, refused in one line when this machine cannot use it."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise BaichuanError(f"device {device!r}: not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise BaichuanError(f"device {device!r}: this machine or this torch build has no CUDA device")
    return d


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 matmuls run at full speed here (Ampere and newer GPUs)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def model_dtype(device, asked: str | torch.dtype | None = None, quantized: bool = False) -> torch.dtype:
    """The dtype a model computes in: `asked` if given ("auto" and None choose); else bf16 for
    int8/int4 weights on every device (torch's int8/int4 kernels take bf16 activations, and on a
    CPU the fp32 path was 6x slower at int4: 4.6 against 29.6 tok/s, 168M shape, eager), bf16
    where it is native, fp32 elsewhere."""
    if isinstance(asked, torch.dtype):
        return asked
    if asked not in (None, "auto"):
        if asked not in ("float32", "bfloat16", "float16"):
            raise BaichuanError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {asked!r}")
        return getattr(torch, asked)
    if quantized or bf16_native(torch.device(device)):
        return torch.bfloat16
    return torch.float32


# Below this many weight bytes a CPU decode step is bound by per-operator overhead, which
# compiling removes; above it by weight bandwidth, which compiling does not change. Measured on a
# 2-vCPU VM, bf16, batch 1: 168M shape (0.34 GB) 20 -> 43 tok/s; 1B shape (2.3 GB) 6.5 -> 6.9.
COMPILE_BELOW_BYTES = 1 << 30
# A server, which decodes batches eager and compiles one-row steps only, compiles below this many:
# the compiler's imports and graphs add about 280 MB to its peak RSS (1B shape, int4, 983 MB of
# weights, 16 streams: 1574 -> 1854 MB, 1.24x -> 1.46x the weights plus KV cache) and 28 s to
# its start, for a lone stream at 35 rather than 27.5 tok/s. Smaller models gain 2x, and torch's
# own 220 MB already outweighs them.
SERVE_COMPILE_BELOW_BYTES = 512 << 20
# A one-shot generation compiles only when it is this long: a compile read from inductor's cache
# takes about 15 s at the 168M shape, which 1024 tokens at 20 -> 43 tok/s win back (51 s -> 39 s).
COMPILE_FROM_TOKENS = 1024


def weight_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def compile_decode(model, asked: bool | None = None, new_tokens: int | None = None) -> bool:
    """Whether a command compiles its decode step: `asked` if given; else on a CPU when inductor's
    CPU backend is there, the weights are small enough to gain (a first compile takes 40-70 s at
    these sizes, a later run reads inductor's cache: about 15 s) and, for a one-shot generation of
    `new_tokens`, when it is long enough to win the compile back. On a GPU a command stays eager
    unless asked: CUDA graphs are compiled per span."""
    if asked is not None:
        return asked
    if new_tokens is not None and new_tokens < COMPILE_FROM_TOKENS:
        return False
    weights = next(model.parameters())
    if weights.device.type != "cpu":
        return False
    from baichuan.infer.cpu import decode_backend_available
    return weight_bytes(model) < COMPILE_BELOW_BYTES and decode_backend_available()


def release_freed_heap() -> None:
    """Return the C heap's free pages to the OS (glibc's `malloc_trim`; elsewhere nothing). glibc
    holds freed memory for reuse, and both loading and prefill free as much as they keep: loading
    (safetensors reads, int4 bytes repacked for the CPU kernels) at the 1B shape, int4, 145 MB of a
    loaded process's 1438 MB RSS (1293 after this); a prefill of 16 prompts of 64 tokens there,
    about 100 MB (its activations and dequantized weights). Unlike a fixed mmap threshold, which
    returns each large buffer as it is freed but made that prefill 2x slower (a page fault per
    4 KB of every buffer), this costs only the re-faulting of what it returned."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes
    import ctypes.util
    import sys
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries lack malloc_trim
        return None


def load_model_and_tokenizer(path: str | Path, device: str | None = None, dtype: str | torch.dtype | None = None):
    """A model directory -> (model in eval mode, its tokenizer), on `device` (default: as
    `default_device`) in `dtype` (default: as `model_dtype`)."""
    from baichuan.checkpoint import is_model_dir, load_pretrained
    from baichuan.tokenizer import Tokenizer
    if not Path(path).is_dir():
        raise BaichuanError(f"{path}: no such model directory")
    if not is_model_dir(path):
        raise BaichuanError(f"{path}: not a model directory (needs config.json and weights)")
    tok = Tokenizer.load(path)
    model = load_pretrained(path, device=default_device(device), dtype=dtype)  # `model_dtype` reads it
    release_freed_heap()
    return model, tok


def ready_engine(model, asked: bool | None, warm: list | None, announce=None, new_tokens: int | None = None, **engine_args):
    """The engine a command decodes with: compiled as `compile_decode(model, asked, new_tokens)`
    says (with `engine_args`, e.g. `compiled_rows`), its decode step compiled now for the kinds the
    SamplingParams in `warm` decode with (`warm=None`: every kind). `announce(text)` is told
    before a compile starts. Where compiling fails (inductor needs a C++ compiler, which not every
    machine has): a one-line error when compiling was asked for, else a note and an eager engine."""
    from baichuan.infer.engine import Engine
    engine = Engine(model, compile=compile_decode(model, asked, new_tokens), **engine_args)
    if not engine.compiled:
        return engine
    if announce:
        announce("compiling the decode step (about a minute the first time; later runs read inductor's cache) ...")
    try:
        if warm is None:
            engine.warm_up()
        for params in warm or []:
            engine.warm_up(only=params)
    except Exception as e:  # noqa: BLE001 - any compile failure leaves the eager engine, which needs nothing
        if asked:
            raise BaichuanError(f"--compile: compiling the decode step failed ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); run without it") from e
        import sys
        print(f"note: compiling the decode step failed ({type(e).__name__}); decoding eager", file=sys.stderr)
        del engine  # its cache and graphs go before the eager engine's cache is allocated
        engine = Engine(model, compile=False, **engine_args)
    release_freed_heap()  # what tracing and compiling allocated and freed
    return engine

"""Flags that several commands share, declared once (torch-free: the parser is built without it).
What they choose by default is decided in runtime.py."""

DTYPES = ("float32", "bfloat16", "float16")


def add_device_arguments(p) -> None:
    """--device and --dtype of a command that loads a model directory."""
    g = p.add_argument_group("where it runs")
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--dtype", choices=DTYPES,
                   help="default: bf16 where the GPU has it natively and for int8/int4 directories, else fp32")

"""Who may import whom (docs/architecture.md): a new import across stages must be a decision, made
here and in that page, not an accident."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "baichuan"

SHARED = {"errors", "config", "model", "tokenizer", "templates", "toolcalls", "hf", "checkpoint", "runtime", "flags",
          "corpus", "data.writers", "data.text"}  # formats, math, policy and file helpers every stage may use
ALLOWED = {
    "errors": set(),
    "flags": set(),  # shared command-line flags, torch-free
    "config": {"errors"},
    "model": {"config", "errors"},  # the math only: no files, devices, parallelism or quantization
    "corpus": {"errors"},
    "hf": set(),  # copied into model directories: imports nothing of ours
    "templates": {"errors", "tokenizer"},
    "toolcalls": {"errors"},  # the tool-call text format: server, chat and SFT
    "tokenizer": {"config", "errors", "hf", "templates", "data.writers"},
    "runtime": {"errors", "checkpoint", "tokenizer", "infer"},  # infer: whether its CPU compile backend is there
    "checkpoint": {"config", "errors", "hf", "model", "runtime", "data.writers", "quant"},  # quant: int8/int4 dirs
    "data": {"errors", "corpus", "tokenizer", "eval"},  # eval: `tokenizer report` reuses its report
    "kernels": set(),  # the CPU decode products (C extension + torch ops): imports nothing of ours
    "quant": SHARED | {"kernels"},
    "eval": SHARED,
    "gguf": SHARED | {"quant"},
    "train": SHARED | {"data", "quant", "eval"},  # quant: QLoRA bases; eval: adapt's before/after exam
    "infer": SHARED | {"generate", "quant", "rag", "kernels"},  # rag: the server's /v1/ask
    "generate": SHARED | {"infer"},
    "rag": SHARED | {"infer", "generate"},
    "speedrun": SHARED | {"data", "train", "eval", "generate"},
    "cli": {"errors"},  # the stages' command modules are named in its table, imported by name
}


def unit(module: str) -> str:
    """The layer a module belongs to: its stage package, or the shared module itself."""
    parts = module.split(".")[1:]
    return parts[0] if parts else "baichuan"


def layer_of_import(module: str) -> str:
    """As `unit`, except that the data package's shared file and text helpers are layers of their own."""
    parts = module.split(".")[1:]
    return ".".join(parts[:2]) if parts[:2] in (["data", "writers"], ["data", "text"]) else unit(module)


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "baichuan":
            if node.module == "baichuan":
                yield from (f"baichuan.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "baichuan")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_every_layer_is_declared():
    layers = {unit(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert layers - {"baichuan"} <= set(ALLOWED), f"add these to ALLOWED and docs/architecture.md: " \
                                                   f"{sorted(layers - {'baichuan'} - set(ALLOWED))}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path):
    here = unit(module_name(path))
    if here == "baichuan":
        return
    wrong = sorted({m for m in imports(path)
                    if unit(m) not in (here, "baichuan") and layer_of_import(m) not in ALLOWED[here]})
    assert not wrong, f"{path.relative_to(PACKAGE.parent)} ({here}) imports {wrong}; allowed: {sorted(ALLOWED[here])}"

"""The Hugging Face remote-code files shipped inside every model directory we write.

`AutoConfig/AutoModelForCausalLM/AutoTokenizer.from_pretrained(dir, trust_remote_code=True)` opens
a released Baichuan checkpoint through the Python files and `auto_map` entries it carries; ours
carry the same three files (written by this project, in this folder) so they open the same way.

The files are copied, not imported: HF loads them from the model directory on its own, so they
import only torch, transformers, sentencepiece and each other. This module must stay as light
(stdlib only): `baichuan.checkpoint` and `baichuan.tokenizer` import it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

CONFIG_FILE = "configuration_baichuan.py"
MODELING_FILE = "modeling_baichuan.py"
TOKENIZER_FILE = "tokenization_baichuan.py"
MODEL_FILES = (CONFIG_FILE, MODELING_FILE, TOKENIZER_FILE)

# the entries the released config.json / tokenizer_config.json carry (spec §1, §4)
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_baichuan.BaichuanConfig",
    "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM",
}
TOKENIZER_AUTO_MAP = {"AutoTokenizer": ["tokenization_baichuan.BaichuanTokenizer", None]}


def copy_code(out_dir: str | Path, files: tuple[str, ...] = MODEL_FILES) -> None:
    """Copy remote-code files (default: all three) into `out_dir`."""
    for name in files:
        shutil.copyfile(HERE / name, Path(out_dir) / name)

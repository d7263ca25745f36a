import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("BAICHUAN_ASSETS", REPO.parent / "shared" / "baichuan-assets"))

torch.set_num_threads(min(2, torch.get_num_threads()))


def assets(*parts) -> Path:
    """A path inside ../shared/baichuan-assets; skip the test when the fixtures are absent."""
    path = ASSETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"Baichuan fixture {path} is absent (set BAICHUAN_ASSETS to its folder)")
    return path

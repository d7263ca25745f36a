"""The HF remote code (baichuan/hf/) under several transformers releases: the oldest this project
declares (the floor of `transformers>=` in pyproject.toml), a middle one and the newest on the
package index today. A model directory written here is opened by whatever transformers its user
has, so tests/test_hf_remote.py runs once per release, in a subprocess whose transformers (and
the tokenizers / huggingface_hub it needs) come from a folder of their own put first on the path;
torch, sentencepiece and this package are the test environment's own.

Each release is installed once into .venv/hf-versions/transformers-X (about 200 MB, 25 s);
later runs reuse it. The main test run pins transformers (constraints.txt); this is the test that
tells us when a new release breaks the remote code, and its failure names the release.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(sys.prefix) / "hf-versions"
MIDDLE = "4.57.6"  # the last 4.x release, still the one most installations have


def declared_floor() -> str:
    """The lowest transformers pyproject.toml admits, e.g. "4.46.0" for "transformers>=4.46"."""
    m = re.search(r'"transformers>=([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert m, "pyproject.toml declares no transformers>= floor"
    parts = m.group(1).split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def pip(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=timeout)


def newest() -> str:
    r = pip("index", "versions", "transformers", timeout=120)
    m = re.match(r"transformers \(([^)]+)\)", r.stdout)
    if r.returncode or not m:
        pytest.skip(f"cannot ask the package index for the newest transformers: {(r.stderr or r.stdout).strip()[-300:]}")
    return m.group(1)


def installed(version: str) -> Path:
    """A folder holding transformers==version and its dependencies (installed once)."""
    target = CACHE / f"transformers-{version}"
    if (target / f"transformers-{version}.dist-info").is_dir():
        return target
    partial = CACHE / f".partial-{version}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    r = pip("install", "--quiet", "--no-compile", "--target", str(partial), f"transformers=={version}")
    if r.returncode:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.fail(f"transformers {version}: pip install failed:\n{r.stderr[-2000:]}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("which", ["oldest", "middle", "newest"])
def test_remote_code_under_transformers(which):
    version = {"oldest": declared_floor, "middle": lambda: MIDDLE, "newest": newest}[which]()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed(version)), str(ROOT)])}
    probe = subprocess.run([sys.executable, "-c", "import transformers; print(transformers.__version__)"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert probe.stdout.strip() == version, f"transformers {version}: the subprocess imports {probe.stdout}{probe.stderr}"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                        str(ROOT / "tests" / "test_hf_remote.py")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    summary = "\n".join(line for line in r.stdout.splitlines() if line.startswith(("FAILED", "ERROR")))
    assert r.returncode == 0, f"transformers {version}: the HF remote-code tests fail\n{summary}\n{r.stdout[-3000:]}"

#!/usr/bin/env bash
# Create .venv and install baichuan into it (editable). `bash runs/setup.sh test` adds the test extras.
#
# torch: a CPU machine gets torch==2.13.0 (the CPU build). GPU users install the CUDA build that
# matches their driver into .venv first, e.g.
#   python3 -m venv .venv && .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu128
# and this script keeps whatever torch is already there.
#
# Everything else installs at the versions in constraints.txt (known good, resolved on Python 3.11)
# when .venv runs Python 3.11; BAICHUAN_CONSTRAINTS= (empty) installs the newest releases instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "torch==${TORCH_VERSION:-2.13.0}"
fi
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
# llama-cpp-python (test extra) compiles llama.cpp (about 7 minutes on 2 cores). For the AVX2 baseline,
# not -march=native: these VMs advertise AMX, which ggml then uses and the kernel refuses (SIGILL).
export CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF"}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
constraints=${BAICHUAN_CONSTRAINTS-constraints.txt}
if [ -n "$constraints" ] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "note: $constraints was resolved for Python 3.11; installing the newest releases for this Python"
  constraints=""
fi
"${PIP[@]}" ${constraints:+-c "$constraints"} -e ".${extras}"

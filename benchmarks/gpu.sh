#!/usr/bin/env bash
# The GPU runs of the issues' benchmarks, in stages that each end well inside 10 minutes, on a
# machine that has its own CUDA build of torch and no network (a rented H100, a CI runner, the
# device machines of this project's workplace).
#
#   bash benchmarks/gpu.sh prepare      # HERE, with network: wheels for the server (Python 3.12)
#                                       # into .whl/, evaldata + Baichuan-7B tokenizer into out/gpu-carry/
#   bash benchmarks/gpu.sh check        # THERE: tests/test_gpu.py (CUDA engine, kernels, train step)
#   bash benchmarks/gpu.sh train        # THERE: train_throughput.py, 1.5B shape, ours vs HF eager/compiled
#   bash benchmarks/gpu.sh infer        # THERE: decode.py (7B, batch 1, bf16/int8/int4) + serve.py (64 streams)
#   bash benchmarks/gpu.sh eval         # THERE: eval_speed.py, 7B shape, MMLU 5-shot (+ 2,000-question peer row)
#   bash benchmarks/gpu.sh eval-zh      # THERE: the same for CMMLU and C-Eval val (500-question peer rows)
#   bash benchmarks/gpu.sh lora         # THERE: lora_sft.py, 7B shape, ours vs HF + PEFT; quant_memory.py
#
# Each stage is one device call of 4 to 9 minutes; 30 minutes of GPU time hold about four, so
# take them in the order the open issues need them: infer, train, eval, lora, check, eval-zh.
#
# THERE needs .whl/ and out/gpu-carry/ beside the repo (carry them). Results land in $OUT (or
# out/bench), one JSON per benchmark plus a log per stage. Each benchmark has its own time limit,
# so one that hangs cannot take the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: bash benchmarks/gpu.sh prepare|check|train|infer|eval|eval-zh|lora}
out=${OUT:-out/bench}
mkdir -p "$out"

if [ "$stage" = prepare ]; then
    set -e
    shared=${BAICHUAN_SHARED:-../shared}
    rm -rf .whl && mkdir -p .whl out/gpu-carry
    # the server's packages (the GPU image has torch, transformers, peft, httpx, uvloop, not these)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.3 pydantic_core==2.50.4 \
        annotated-types==0.8.0 typing-inspection==0.4.5 uvicorn==0.54.0
    rm -rf out/gpu-carry/evaldata out/gpu-carry/baichuan1
    cp -r "${BAICHUAN_EVALDATA:-$shared/evaldata}" out/gpu-carry/evaldata
    cp -r "${BAICHUAN_ASSETS:-$shared/baichuan-assets}/baichuan1" out/gpu-carry/baichuan1
    du -sh .whl out/gpu-carry
    echo "carry: [\".whl\", \"out/gpu-carry\"]"
    exit 0
fi

python=${PYTHON:-python3}
if [ -d .whl ] && ! $python -c "import fastapi, uvicorn" 2>/dev/null; then
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$python -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"

run() {  # run LIMIT_S NAME CMD...: one benchmark, its own log, its own time limit
    local limit=$1 name=$2; shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | grep -v "^W[0-9]\{4\} "
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

carry=out/gpu-carry
case $stage in
    check) run 420 gpu-tests $python -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider ;;
    train) run 560 train_throughput $python benchmarks/train_throughput.py --shape 1.5b --out "$out/train_throughput.json" ;;
    infer)
        run 400 decode $python benchmarks/decode.py --shape baichuan-7b --out "$out/decode.json"
        run 170 serve $python benchmarks/serve.py --shape baichuan-7b --streams 64 --prompt 128 --new 256 --hf-batch 32 \
            --out "$out/serve.json" ;;
    eval) run 560 eval_speed $python benchmarks/eval_speed.py --tasks mmlu --data "$carry/evaldata" \
            --tokenizer "$carry/baichuan1/tokenizer.model" --out "$out/eval_speed.json" ;;
    eval-zh) run 560 eval_speed_zh $python benchmarks/eval_speed.py --tasks cmmlu,ceval --compare 500 \
            --data "$carry/evaldata" --tokenizer "$carry/baichuan1/tokenizer.model" --out "$out/eval_speed_zh.json" ;;
    lora)
        run 300 lora_sft $python benchmarks/lora_sft.py --shape baichuan-7b --out "$out/lora_sft.json"
        run 200 quant_memory $python benchmarks/quant_memory.py --ppl-tokens 0 --out "$out/quant_memory.json" ;;
    *) echo "unknown stage $stage"; exit 2 ;;
esac

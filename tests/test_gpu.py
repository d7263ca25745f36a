"""On a CUDA device (skipped elsewhere, so in CI): the paths only a GPU runs. The decode step under
CUDA graphs equals eager decoding and never syncs with the host, torch's CUDA int8/int4 kernels
equal the reference math, a compiled bf16 training run learns, LoRA merges exactly, and batched
5-shot scoring equals the CPU's. `bash benchmarks/gpu.sh check` runs these on a GPU machine."""

import json

import pytest
import torch

from baichuan.eval.scoring import Request, score
from baichuan.generate import generate_ids
from baichuan.infer.engine import Engine
from baichuan.infer.sampling import SamplingParams
from test_model import small_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
NO_EOS = dict(eos_token_ids=(-1,))


def prompts_and_params():
    torch.manual_seed(3)
    prompts = [torch.randint(3, 300, (n,)).tolist() for n in (5, 17, 9, 30, 2, 11)]
    params = [SamplingParams(max_new_tokens=n, **NO_EOS) for n in (12, 4, 20, 7, 15, 9)]
    params[2] = SamplingParams(max_new_tokens=20, do_sample=True, temperature=0.9, top_p=0.8, seed=5,
                               repetition_penalty=1.2, **NO_EOS)
    return prompts, params


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-13b"])
def test_cuda_graph_decode_equals_eager_and_generate(arch):
    """Spans 64 and 128 (a 60-token prompt passes 64): each a CUDA graph, recorded in warm_up."""
    model = small_model(arch).cuda()
    prompts, params = prompts_and_params()
    prompts[3] = prompts[3] * 2
    alone = [list(generate_ids(model, p, q)) for p, q in zip(prompts, params)]
    results = {}
    for compiled in (False, True):
        engine = Engine(model, max_batch=3, max_len=256, compile=compiled)
        engine.warm_up()
        reqs = [engine.submit(p, q) for p, q in zip(prompts, params)]
        with torch._dynamo.config.patch(error_on_recompile=compiled):
            while not all(r.done for r in reqs):
                engine.step()
        results[compiled] = [r.tokens for r in reqs]
        assert engine.cache.lengths.tolist() == [0, 0, 0]
    assert results[False] == alone
    assert results[True] == alone


def test_cuda_graph_decode_step_never_syncs():
    model = small_model("baichuan2-7b").cuda()
    engine = Engine(model, max_batch=4, max_len=32, compile=True)
    engine.warm_up()
    engine.cache.lengths.fill_(3)
    uniform = torch.rand(4, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for draws, penalty in ((None, False), (None, True), (uniform, True)):
            for _ in range(3):
                tokens, _ = engine._decode(engine.last, engine.cache.k, engine.cache.v, engine.cache.lengths, 4,
                                           draws, penalty, engine._span_carrier(64))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert tokens.shape == (4,) and tokens.is_cuda
    assert engine.cache.lengths.tolist() == [12, 12, 12, 12]


@pytest.mark.parametrize("mode,group_size", [("int8", 0), ("int4", 32), ("int4", 64), ("int4", 128)])
def test_cuda_kernels_equal_the_reference_path(mode, group_size):
    from baichuan.quant import quantize, use_kernels
    model = small_model("baichuan2-7b", hidden_size=256, intermediate_size=512, num_heads=4)
    model = quantize(model.to("cuda", torch.bfloat16), mode, group_size or 128)
    ids = torch.randint(3, 300, (2, 24), device="cuda")
    with torch.no_grad():
        ref = model(ids).float()
        if mode == "int8":  # torch's CUDA int8 kernel is slow: the layers keep the reference path
            with pytest.warns(UserWarning, match="CUDA int8 kernel is slower"):
                assert use_kernels(model) == 0
        else:
            assert use_kernels(model) == 5 * model.cfg.num_layers  # every layer on the kernel: no fallback
        got = model(ids).float()
    assert (got - ref).norm() / ref.norm() < 0.02


def test_compiled_bf16_training_learns_on_cuda(tiny_tokens, tmp_path):
    from baichuan.train.pretrain import TrainConfig, train
    tiny = {"num_layers": 2, "hidden_size": 128, "num_heads": 4, "intermediate_size": 256}
    result = train(TrainConfig(data=str(tiny_tokens / "train"), out=str(tmp_path), preset="tiny", model=tiny,
                               seq_len=64, batch_size=8, steps=60, lr=3e-3, warmup=5, log_every=10, eval_every=60,
                               eval_batches=2, ckpt_every=60, compile=True, activation_checkpointing=True,
                               val_data={"heldout": str(tiny_tokens / "heldout")}))
    assert result["val"]["heldout"]["loss"] < result["baseline"]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    mfu = [r["mfu"] for r in records if r["kind"] == "train"]
    assert mfu and all(m is not None and 0 < m < 1 for m in mfu), mfu  # a GPU in the peak table has MFU


def test_lora_merge_is_exact_on_cuda():
    from baichuan.train.lora import add_lora, merge_lora
    model = small_model("baichuan-7b").cuda()
    add_lora(model, r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
        ids = torch.randint(3, 300, (2, 16), device="cuda")
        adapted = model(ids)
        merged = merge_lora(model)(ids)
    assert (merged - adapted).abs().max() < 1e-3 * adapted.abs().max()


def test_batched_scoring_on_cuda_equals_cpu():
    model = small_model("baichuan2-7b")
    torch.manual_seed(1)
    shots = torch.randint(3, 300, (40,)).tolist()
    requests = [Request(shots + torch.randint(3, 300, (n,)).tolist(), [(39 + n, t) for t in (10, 11, 12, 13)],
                        prefix_key="s") for n in (3, 8, 15, 4)]
    cpu = score(model, requests, {"s": shots}, progress=False)
    gpu = score(model.cuda(), requests, {"s": shots}, progress=False)
    assert torch.allclose(torch.tensor(gpu), torch.tensor(cpu), atol=1e-3)

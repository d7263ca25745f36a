"""The engine: requests decoded together equal requests decoded alone; joining, leaving, cancelling."""

import threading

import pytest
import torch

from baichuan.errors import BaichuanError
from baichuan.generate import generate_ids
from baichuan.infer.engine import Engine
from baichuan.infer.sampling import SamplingParams
from test_model import small_model

NO_EOS = dict(eos_token_ids=(-1,))


@pytest.mark.parametrize("arch,compile", [("baichuan-7b", False), ("baichuan2-13b", False), ("baichuan2-7b", True)])
def test_concurrent_requests_equal_each_alone(arch, compile):
    model = small_model(arch)
    torch.manual_seed(3)
    prompts = [torch.randint(3, 300, (n,)).tolist() for n in (5, 17, 9, 30, 2, 11)]
    params = [SamplingParams(max_new_tokens=n, **NO_EOS) for n in (12, 4, 20, 7, 15, 9)]
    alone = [list(generate_ids(model, p, q)) for p, q in zip(prompts, params)]
    # fewer rows than requests: some wait, then join; compiled, the decode step runs over 1, 2 or 3 rows
    engine = Engine(model, max_batch=3, max_len=64, compile=compile)
    engine.warm_up()
    reqs = [engine.submit(p, q) for p, q in zip(prompts, params)]
    steps = 0
    # warm_up compiled every variant: serving must not compile again (baichuan2's NormHead once did, every call)
    with torch._dynamo.config.patch(error_on_recompile=True):
        while not all(r.done for r in reqs):
            engine.step()
            steps += 1
    assert [r.tokens for r in reqs] == alone
    assert all(r.finish_reason == "length" for r in reqs)
    assert steps < sum(q.max_new_tokens for q in params)  # really batched
    assert engine.cache.lengths.tolist() == [0, 0, 0] and engine.busy == 0


@pytest.mark.parametrize("arch,compile", [("baichuan-7b", False), ("baichuan2-13b", False),
                                          ("baichuan-7b", True), ("baichuan2-13b", True)])
def test_decode_attends_over_the_filled_span_only(arch, compile, monkeypatch):
    """Rows hold 10 and 50 prompt tokens in a 256-slot cache: the step attends over 64 slots, then
    128 once the longer row passes 64; the tokens equal greedy decoding by full forwards without a
    cache (RoPE and ALiBi). Compiled, one graph serves both spans: no recompile after warm_up."""
    model = small_model(arch)
    torch.manual_seed(5)
    prompts = [torch.randint(3, 300, (n,)).tolist() for n in (10, 50)]
    params = SamplingParams(max_new_tokens=30, **NO_EOS)
    alone = []
    with torch.no_grad():
        for p in prompts:
            ids = list(p)
            for _ in range(30):
                ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
            alone.append(ids[len(p):])
    engine = Engine(model, max_batch=2, max_len=256, compile=compile)
    engine.warm_up(greedy_only=True)
    spans = []
    real = engine._span
    monkeypatch.setattr(engine, "_span", lambda rows: spans.append(real(rows)) or spans[-1])
    reqs = [engine.submit(p, params) for p in prompts]
    with torch._dynamo.config.patch(error_on_recompile=compile):
        while not all(r.done for r in reqs):
            engine.step()
    assert [r.tokens for r in reqs] == alone
    assert sorted(set(spans)) == [64, 128]


def test_decode_rows_and_spans_per_decode_path():
    from baichuan.infer.fastpath import DecodePath
    model = small_model("baichuan-7b")
    eager, compiled = Engine(model, max_batch=8, max_len=32), Engine(model, max_batch=8, max_len=32, compile=True)
    assert [eager._row_count(n) for n in (1, 3, 5, 8)] == [1, 3, 5, 8]          # the active rows only
    assert [compiled._row_count(n) for n in (1, 3, 5, 8)] == [1, 4, 8, 8]       # CPU: powers of two
    assert compiled.path.spans(32) == [64] and compiled.cache.k[0].shape[2] == 65 and eager.cache.k[0].shape[2] == 32
    # CUDA graphs (cuda.py's path, its policy checked here without a GPU): all rows, a graph per
    # span, multiples of 64, the last one past the context
    graphs = DecodePath(compiled=True, all_rows=True, graph_spans=True)
    assert [graphs.rows(n, 8) for n in (1, 3, 8)] == [8, 8, 8]
    assert graphs.spans(392) == [64, 128, 256, 448] and graphs.span(129, 392) == 256 and graphs.span(400, 392) == 448
    assert [compiled.path.span(n, 32) for n in (1, 64, 65)] == [64, 64, 128] and eager.path.span(40, 32) == 32


def test_an_engine_compiling_one_row_steps_decodes_batches_eager_with_equal_tokens():
    """serve's CPU default (compiled_rows=1): a lone stream's steps run the compiled graph (warmed
    once, no recompile while serving), steps over more rows run eager; the tokens are the
    eager engine's either way. A stream left alone in a later row moves to row 0 (a step runs rows
    0 to the last busy one) and runs compiled from there."""
    model = small_model("baichuan-7b")
    torch.manual_seed(4)
    prompts = [torch.randint(3, 300, (n,)).tolist() for n in (5, 12, 8)]
    params = [SamplingParams(max_new_tokens=n, **NO_EOS) for n in (6, 14, 3)]
    alone = [list(generate_ids(model, p, q)) for p, q in zip(prompts, params)]
    engine = Engine(model, max_batch=3, max_len=64, compile=True, compiled_rows=1)
    assert [engine._row_count(n) for n in (1, 2, 3)] == [1, 2, 3] and engine.path.compiles(1)
    assert not engine.path.compiles(2) and "up to 1 row, eager above" in engine.describe()
    engine.warm_up(greedy_only=True)
    compiled_steps = []
    real = engine.path.compiles
    engine.path.compiles = lambda rows: compiled_steps.append(rows) or real(rows)
    reqs = [engine.submit(p, q) for p, q in zip(prompts, params)]
    with torch._dynamo.config.patch(error_on_recompile=True):
        while not all(r.done for r in reqs):
            engine.step()
    assert [r.tokens for r in reqs] == alone
    assert 1 in compiled_steps and 3 in compiled_steps  # the second request ended alone, compiled
    assert reqs[1].slot == 0 and engine.cache.lengths.tolist() == [0, 0, 0]


def test_a_sampled_stream_moved_to_row_0_keeps_its_draws_and_penalties():
    """The move takes the sampler's state along (settings, penalty history, counts, bias): a seeded,
    penalized request that ends alone in row 1 draws what it draws alone."""
    model = small_model("baichuan-7b")
    sampled = SamplingParams(max_new_tokens=12, do_sample=True, temperature=1.1, top_k=30, seed=3,
                             repetition_penalty=1.3, frequency_penalty=0.5, logit_bias={7: 5.0}, **NO_EOS)
    alone = list(generate_ids(model, [4, 5, 6], sampled))
    engine = Engine(model, max_batch=2, max_len=32, compile=True)
    short = engine.submit([9, 9, 9], SamplingParams(max_new_tokens=2, **NO_EOS))
    mine = engine.submit([4, 5, 6], sampled)
    while not mine.done:
        engine.step()
    assert short.done and mine.slot == 0 and mine.tokens == alone


def test_an_engine_leaves_torchs_process_wide_settings_as_they_were():
    """The decode path gives its compiled step a recompile limit of its own (fastpath.py): 10
    graphs (2 row counts, 5 sampling kinds) compile under a process-wide limit of 8 that dynamo is
    told to enforce, and that limit is unchanged."""
    with torch._dynamo.config.patch(recompile_limit=8, fail_on_recompile_limit_hit=True):
        engine = Engine(small_model("baichuan-7b"), max_batch=2, max_len=32, compile=True)
        engine.warm_up()
        assert torch._dynamo.config.recompile_limit == 8


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-7b"])
def test_cpu_engine_stores_fp32_weights_column_major_with_equal_logits(arch, tmp_path):
    from baichuan.checkpoint import load_pretrained, save_pretrained
    model = small_model(arch).eval()
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        before = model(ids)
    Engine(model, max_batch=2, max_len=32)
    linears = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)] + [model.lm_head.weight]
    assert all(w.stride() == (1, w.shape[0]) for w in linears)        # [out, in] tensors, transposed in memory
    with torch.no_grad():
        torch.testing.assert_close(model(ids), before, rtol=1e-5, atol=1e-5)
    save_pretrained(model, tmp_path / "m")                                # saved contiguous, loaded back equal
    with torch.no_grad():
        torch.testing.assert_close(load_pretrained(tmp_path / "m").eval()(ids), before, rtol=1e-5, atol=1e-5)
    bf16 = small_model(arch).to(torch.bfloat16)                        # bf16 is slower column-major: untouched
    Engine(bf16, max_batch=2, max_len=32)
    assert all(m.weight.is_contiguous() for m in bf16.modules() if isinstance(m, torch.nn.Linear))
    compiled = small_model(arch)                                       # so is a compiled engine's (cpu.py)
    Engine(compiled, max_batch=2, max_len=32, compile=True)
    assert all(m.weight.is_contiguous() for m in compiled.modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("ours", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_decode_backend_computes_few_row_products_as_reductions(dtype, ours, monkeypatch):
    """Up to FEW_ROWS rows, a weight product compiles to baichuan.kernels' product where this CPU
    runs it (called directly, not through the dispatcher), else to inductor's own reduction, which
    reads its input from a buffer rather than recomputing it for each output row; past that it
    stays a BLAS product. Either way the result is the product's."""
    from torch._inductor.utils import run_and_get_code
    from baichuan import kernels
    from baichuan.infer.cpu import FEW_ROWS, decode_backend
    if ours and not kernels.available():
        pytest.skip(f"baichuan.kernels: {kernels.why_not()}")
    if not ours:
        monkeypatch.setattr(kernels, "fits", lambda *a: False)

    def norm_then_linear(x, w):  # a pointwise producer, which inductor would otherwise inline
        return torch.nn.functional.linear(x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True)).to(x.dtype), w)
    w = torch.randn(96, 64, dtype=dtype)
    for rows in (1, 3, FEW_ROWS, FEW_ROWS + 1):
        x = torch.randn(rows, 64, dtype=dtype)
        torch._dynamo.reset()
        with torch.inference_mode():
            out, code = run_and_get_code(torch.compile(norm_then_linear, dynamic=False, backend=decode_backend), x, w)
            want = norm_then_linear(x.float(), w.float()).to(dtype)
        code = "\n".join(code)
        assert ("extern_kernels.mm" in code) == (rows > FEW_ROWS), rows
        assert ("extern_kernels.baichuan_gemv_" in code) == (ours and rows <= FEW_ROWS), rows
        if rows <= FEW_ROWS and not ours:  # the norm is computed before the loop over the 96 outputs, not inside it
            loop = code[code.index("<static_cast<int64_t>(96L)"):]
            assert "sqrt" not in loop[:loop.index("''')")]
        torch.testing.assert_close(out, want, **({} if dtype == torch.float32 else dict(rtol=2e-2, atol=8e-2)))
    ints = torch.randint(-9, 9, (2, 8), dtype=torch.int32)                # integer products stay exact, as int32
    torch._dynamo.reset()
    got = torch.compile(torch.mm, dynamic=False, backend=decode_backend)(ints, ints.t().contiguous())
    assert got.dtype == torch.int32 and torch.equal(got, ints @ ints.t())


def test_few_row_reductions_stop_where_the_cpus_blas_is_faster():
    from baichuan.infer.cpu import few_rows_limit
    assert few_rows_limit("AVX2") == 16 and few_rows_limit("AVX512") == 2 and few_rows_limit("DEFAULT") == 16


@pytest.mark.parametrize("missing", ["torch._inductor.compile_fx"])
def test_cpu_engine_decodes_eager_when_torch_lacks_the_backend_internals(monkeypatch, missing):
    """A torch without an internal that decode_backend is built from: one warning, then every
    compile=True engine on a CPU decodes eager (column-major weights) and generates the same."""
    import sys
    from baichuan.infer import cpu
    model = small_model("baichuan-7b")
    want = list(generate_ids(model, [5, 17, 99], SamplingParams(max_new_tokens=6)))
    monkeypatch.setitem(sys.modules, missing, None)  # `import` of it now raises ImportError
    cpu._internals.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="decoding eager") as warned:
            engines = [Engine(small_model("baichuan-7b"), max_batch=2, max_len=64, compile=True) for _ in range(2)]
        assert len(warned) == 1
        for engine in engines:
            assert not engine.compiled
            assert all(m.weight.stride() == (1, m.weight.shape[0])
                       for m in engine.model.modules() if isinstance(m, torch.nn.Linear))
            assert list(engine.generate([5, 17, 99], SamplingParams(max_new_tokens=6))) == want
    finally:
        monkeypatch.undo()
        cpu._internals.cache_clear()
    assert cpu.decode_backend_available()


def test_a_compiled_decode_step_is_served_from_inductors_cache_the_second_time():
    """The CPU backend rewrites the graph instead of inductor's decomposition table (which has no
    stable cache key), so a process that compiles a decode step compiled before reads it from
    inductor's on-disk cache: about 15 s instead of 60 s for the 168M shape."""
    from torch._dynamo.utils import counters
    model = small_model("baichuan-7b")
    for _ in range(2):
        torch._dynamo.reset()
        counters.clear()
        engine = Engine(model, max_batch=1, max_len=64, compile=True)
        engine.warm_up(greedy_only=True)
    assert counters["inductor"]["fxgraph_cache_hit"] >= 1 and not counters["inductor"]["fxgraph_cache_bypass"]


def test_a_compiled_step_reads_the_models_weights_without_guarding_them():
    """The compiled step does not guard the model's modules and weights (0.6 ms a step at 32
    layers): a weight replaced by one of the same shape is read, not recompiled for."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    model = small_model("baichuan-7b")
    engine = Engine(model, max_batch=1, max_len=64, compile=True)
    engine.warm_up(greedy_only=True)
    graphs = counters["stats"]["unique_graphs"]
    prompt = [5, 6, 7]
    before = list(engine.generate(prompt, SamplingParams(max_new_tokens=6, **NO_EOS)))
    head = model.lm_head.weight
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(head[torch.randperm(head.shape[0])].contiguous())
    after = list(engine.generate(prompt, SamplingParams(max_new_tokens=6, **NO_EOS)))
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    assert counters["stats"]["unique_graphs"] == graphs
    assert after == ids[len(prompt):] and after != before


def _compiled_code(fn, *args) -> str:
    from torch._inductor.utils import run_and_get_code
    from baichuan.infer.cpu import decode_backend  # the engine's backend on a CPU
    torch._dynamo.reset()
    with torch.inference_mode():
        return "\n".join(run_and_get_code(torch.compile(fn, dynamic=False, backend=decode_backend), *args)[1])


def test_compiled_decode_writes_the_cache_in_place():
    """A compiled step must not copy the KV cache: one layer of it has a size (here 3*4*65*16 =
    12,480 elements: 37 slots rounded up to 64, and a spare) that appears in the generated code
    only if a kernel loops over all of it."""
    model = small_model("baichuan-7b")
    engine = Engine(model, max_batch=3, max_len=37, compile=True)
    layer = engine.cache.k[0]
    numel = str(layer.numel())
    assert layer.numel() == 12480 and model.cfg.head_dim == 16
    # the detector works: writing into one layer selected from a stacked cache copies that layer
    stacked = torch.zeros(2, *layer.shape)

    def write_selected(cache, new):
        cache[0, :, :, 5] = new
        return cache[0].sum()
    assert numel in _compiled_code(write_selected, stacked, torch.ones(3, 4, 16))
    engine.cache.lengths.fill_(4)
    for rows in (1, 2, 3):  # fewer rows than the cache has, too (the CPU's row buckets)
        code = _compiled_code(engine._decode_rows, engine.last, engine.cache.k, engine.cache.v,
                              engine.cache.lengths, rows, None, False, engine._span_carrier(64))
        assert numel not in code, f"the compiled decode step over {rows} rows copies a whole cache layer"


@pytest.mark.parametrize("compile", [False, True])
def test_seeded_sampling_does_not_depend_on_the_batch(compile):
    model = small_model("baichuan-7b")
    sampled = SamplingParams(max_new_tokens=10, do_sample=True, temperature=1.2, top_k=20, seed=7,
                             repetition_penalty=1.3, **NO_EOS)
    alone = list(generate_ids(model, [4, 5, 6], sampled))
    engine = Engine(model, max_batch=4, max_len=32, compile=compile)
    others = [engine.submit([9, 9, 9, i], SamplingParams(max_new_tokens=10, do_sample=True, **NO_EOS)) for i in range(3)]
    mine = engine.submit([4, 5, 6], sampled)
    while not mine.done:
        engine.step()
    assert mine.tokens == alone and len(set(tuple(o.tokens) for o in others)) > 1


@pytest.mark.parametrize("compile", [False, True])
def test_presence_frequency_penalties_and_logit_bias_follow_openais_formula(compile):
    """Greedy decoding with OpenAI's penalties and a logit bias equals the formula applied by hand
    to the full forward's logits at every step: logit - presence * [count > 0] - frequency * count
    + bias, counts over the generated tokens only; alone and beside other requests."""
    model = small_model("baichuan-7b")
    prompt = [5, 17, 99, 5]
    params = SamplingParams(max_new_tokens=12, presence_penalty=0.7, frequency_penalty=1.3,
                            logit_bias={7: 4.0, 17: -100.0}, **NO_EOS)
    ids, counts = list(prompt), torch.zeros(model.cfg.vocab_size)
    with torch.no_grad():
        for _ in range(params.max_new_tokens):
            logits = model(torch.tensor([ids]))[0, -1].float()
            logits = logits - 0.7 * (counts > 0) - 1.3 * counts
            logits[7] += 4.0
            logits[17] -= 100.0
            token = int(logits.argmax())
            ids.append(token)
            counts[token] += 1
    want = ids[len(prompt):]
    plain = list(generate_ids(model, prompt, SamplingParams(max_new_tokens=12, **NO_EOS)))
    assert want != plain and 17 not in want  # the adjustments change this output
    engine = Engine(model, max_batch=3, max_len=32, compile=compile)
    other = engine.submit([9, 9, 9], SamplingParams(max_new_tokens=12, **NO_EOS))
    mine = engine.submit(prompt, params)
    while not (mine.done and other.done):
        engine.step()
    assert mine.tokens == want and other.tokens == list(generate_ids(model, [9, 9, 9], other.params))


def test_eos_cancel_and_row_end():
    model = small_model("baichuan-7b")
    free = list(generate_ids(model, [3, 4], SamplingParams(max_new_tokens=10, **NO_EOS)))
    engine = Engine(model, max_batch=2, max_len=16)
    stop = engine.submit([3, 4], SamplingParams(max_new_tokens=10, eos_token_ids=(free[2],)))
    cut = engine.submit([3, 4] * 6, SamplingParams(max_new_tokens=50, **NO_EOS))  # 12 + 4 = row end
    gone = engine.submit([5, 6], SamplingParams(max_new_tokens=50, **NO_EOS))
    engine.step()
    engine.cancel(gone)
    while not (stop.done and cut.done and gone.done):
        engine.step()
    assert stop.tokens == free[:2] and stop.finish_reason == "stop"
    assert len(cut.tokens) == 4 and cut.finish_reason == "length"
    assert gone.finish_reason == "cancelled" and len(gone.tokens) <= 2


def test_bad_requests():
    engine = Engine(small_model("baichuan-7b"), max_batch=1, max_len=16)
    with pytest.raises(BaichuanError, match="empty"):
        engine.submit([], SamplingParams())
    with pytest.raises(BaichuanError, match="context is 16"):
        engine.submit(list(range(16)), SamplingParams())
    with pytest.raises(BaichuanError, match=r"token ids must be in \[0, 300\)"):
        engine.submit([5, 300], SamplingParams())


def test_background_thread_delivers_events_to_sinks():
    model = small_model("baichuan-13b")
    engine = Engine(model, max_batch=4, max_len=64)
    engine.start()
    try:
        tokens, finished, done = {i: [] for i in range(6)}, [], threading.Event()

        def sink_for(i):
            def sink(tok):
                if tok is not None:
                    tokens[i].append(tok)
                    return
                finished.append(i)
                if len(finished) == 6:
                    done.set()
            return sink
        reqs = [engine.submit([i + 3] * (i + 2), SamplingParams(max_new_tokens=8, **NO_EOS), sink=sink_for(i))
                for i in range(6)]
        assert done.wait(timeout=60)
        assert [tokens[i] for i in range(6)] == [r.tokens for r in reqs]
        assert all(len(r.tokens) == 8 for r in reqs)
    finally:
        engine.stop()


def test_a_step_that_fails_part_way_still_delivers_what_it_did():
    """Two prompts prefilled in separate batches: the first request ends there (one token), then
    the second batch fails. The first must still hear that it finished; the second gets an error."""
    model = small_model("baichuan-7b")
    engine = Engine(model, max_batch=2, max_len=64, prefill_tokens=4)
    prefill, calls = engine._prefill, []

    def second_fails(reqs, events):
        calls.append(reqs)
        if len(calls) == 2:
            raise RuntimeError("out of memory (injected)")
        return prefill(reqs, events)
    engine._prefill = second_fails
    heard = {0: [], 1: []}
    done = threading.Event()
    reqs = [engine.submit([5, 6, 7], SamplingParams(max_new_tokens=n, eos_token_ids=(-1,)),
                          sink=lambda tok, i=i: (heard[i].append(tok), tok is None and heard[1 - i][-1:] == [None]
                                                 and done.set()))
            for i, n in enumerate((1, 5))]
    engine.start()
    try:
        assert done.wait(10), heard
    finally:
        engine.stop()
    assert len(calls) == 2 and heard[0][-1] is None and heard[1] == [None]
    assert [r.finish_reason for r in reqs] == ["length", "error"] and len(reqs[0].tokens) == 1


def test_prefix_cache_reuses_prefixes_and_changes_no_output():
    """Requests that share a long prefix (a system prompt, few-shot examples) reuse its keys and
    values: the same greedy tokens and first-token logits as without the cache, fewer tokens
    computed, and memory held within the bound."""
    from baichuan.infer.prefix import BLOCK
    model = small_model("baichuan2-7b")
    torch.manual_seed(1)
    shared = torch.randint(3, 300, (3 * BLOCK + 10,)).tolist()
    prompts = [shared + torch.randint(3, 300, (k,)).tolist() for k in (1, 7, 30, 64, 5)] + [shared[:BLOCK + 3]]
    params = SamplingParams(max_new_tokens=8, repetition_penalty=1.2, logprobs=3, **NO_EOS)
    plain = Engine(model, max_batch=2, max_len=512)
    cached = Engine(model, max_batch=2, max_len=512, prefix_cache_bytes=1 << 30)
    for prompt in prompts:
        a, b = plain.submit(prompt, params), cached.submit(prompt, params)
        while not (a.done and b.done):
            plain.step()
            cached.step()
        assert a.tokens == b.tokens
        assert [lp for _, lp, _ in a.logprobs] == pytest.approx([lp for _, lp, _ in b.logprobs], abs=1e-5)
    stats = cached.prefix.stats
    assert stats["prefix_cache_hits"] == 5 and stats["prefix_cache_misses"] == 1
    assert stats["prefix_cache_tokens_reused"] == 4 * 3 * BLOCK + BLOCK  # the last prompt reuses one block
    per_token = 2 * model.cfg.num_layers * model.cfg.hidden_size * 4  # fp32 keys and values
    assert stats["prefix_cache_bytes"] == sum(e.nbytes for e in cached.prefix.entries.values())
    assert all(e.nbytes == len(e.tokens) * per_token for e in cached.prefix.entries.values())
    # a bound of two blocks' worth keeps at most that much, dropping the least recently used
    small = Engine(model, max_batch=2, max_len=512, prefix_cache_bytes=2 * BLOCK * per_token)
    for prompt in (shared[:BLOCK + 1], shared[:2 * BLOCK + 1], list(range(3, 3 + BLOCK + 1))):
        list(small.generate(prompt, SamplingParams(max_new_tokens=1, **NO_EOS)))
    assert small.prefix.stats["prefix_cache_bytes"] <= 2 * BLOCK * per_token
    assert [len(e.tokens) for e in small.prefix.entries.values()] == [BLOCK]


def test_a_prefill_writes_scattered_rows_in_place_or_through_a_scratch_cache():
    """Prompts admitted together into rows 1 and 3 are prefilled into those rows of the engine's
    cache itself; where a reused prefix plus the padded rest would pass the cache's slots, through
    a scratch cache. Either way each request's tokens are its tokens decoded alone."""
    from baichuan.infer.prefix import BLOCK
    model = small_model("baichuan-7b")
    torch.manual_seed(4)
    first = [torch.randint(3, 300, (n,)).tolist() for n in (6, 9, 4, 12)]
    engine = Engine(model, max_batch=4, max_len=BLOCK + 48, prefix_cache_bytes=1 << 30)
    running = [engine.submit(p, SamplingParams(max_new_tokens=n, **NO_EOS)) for p, n in zip(first, (30, 2, 30, 2))]
    while not (running[1].done and running[3].done):
        engine.step()
    later = [torch.randint(3, 300, (n,)).tolist() for n in (7, 15)]
    params = SamplingParams(max_new_tokens=6, **NO_EOS)
    reqs = [engine.submit(p, params) for p in later]
    engine.step()
    assert [r.slot for r in reqs] == [1, 3]
    cache, rows = engine._prefill_cache(reqs, [0, 0], 15)
    assert cache.k is engine.cache.k and rows == [1, 3]  # in place
    # a prompt whose first block is cached, with one of BLOCK + 40 new tokens: 64 + 40 > the 112 slots
    shared = first[0] * BLOCK
    list(engine.generate(shared[:BLOCK + 1], SamplingParams(max_new_tokens=1, **NO_EOS)))
    while not all(r.done for r in running + reqs):
        engine.step()
    pair = [shared[:BLOCK + 5], torch.randint(3, 300, (BLOCK + 40,)).tolist()]
    both = [engine.submit(p, params) for p in pair]
    scratch, rows = engine._prefill_cache(both, [BLOCK, 0], BLOCK + 40)
    assert scratch.k is not engine.cache.k and rows == [0, 1]
    while not all(r.done for r in both):
        engine.step()
    assert engine.prefix.stats["prefix_cache_hits"] >= 1
    for r, p in zip(reqs + both, later + pair):
        assert r.tokens == list(generate_ids(model, p, params))


@pytest.mark.parametrize("settings, kind", [(dict(top_k=5), "topk"), (dict(), "none"), (dict(top_p=0.9), True)])
def test_compiled_sampling_kinds_draw_what_eager_draws(settings, kind, monkeypatch):
    """A compiled step samples without sorting the vocabulary where it can (a top-k within
    TOPK_CAP, or no filter): the same seeded tokens as with the sort, and as the eager engine."""
    from baichuan.infer import engine as engine_module
    model = small_model("baichuan-7b")
    params = SamplingParams(max_new_tokens=8, do_sample=True, temperature=1.3, seed=5, **settings, **NO_EOS)
    runs = []
    for chosen in (engine_module.compiled_kind, lambda plan, sampled: True):  # the kind, then always the sort
        monkeypatch.setattr(engine_module, "compiled_kind", chosen)
        engine = Engine(model, max_batch=2, max_len=32, compile=True)
        engine.submit([4, 5, 6], params)
        engine.step()  # admitted: its plan is the compiled kind
        runs.append((engine._draws(0, 1, compiled=True)[1], list(engine.generate([4, 5, 6], params))))
    assert runs[0][0] == kind and runs[1][0] is True
    assert runs[0][1] == runs[1][1]
    assert runs[0][1] == list(generate_ids(model, [4, 5, 6], params))  # and what the eager engine draws


def test_eager_decoding_never_imports_the_compiler(tiny_model_dir):
    """Loading a model and decoding eager leave dynamo, inductor and sympy unimported: 137 MB of
    RSS (meta-device init and the span's dynamic mark once imported them), and a second of load."""
    import subprocess
    import sys
    code = ("import sys; from baichuan.runtime import load_model_and_tokenizer; "
            "from baichuan.infer.engine import Engine; from baichuan.infer.sampling import SamplingParams; "
            f"model, tok = load_model_and_tokenizer({str(tiny_model_dir)!r}); "
            "out = list(Engine(model, max_batch=2).generate([5, 6, 7], SamplingParams(max_new_tokens=4, temperature=0))); "
            "print(len(out), sorted(m for m in ('torch._dynamo', 'torch._inductor', 'sympy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "4 []"

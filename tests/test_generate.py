"""Generation: HF's logits pipeline, greedy equal to HF generate, seeded sampling, stops, streaming."""

import pytest
import torch

from baichuan.errors import BaichuanError
from baichuan.generate import SamplingParams, generate_ids, stream_text
from baichuan.infer.sampling import SamplerState, process, sample
from test_model import hf_llama_from, small_model

transformers = pytest.importorskip("transformers")
from transformers.generation import logits_process as hf_lp  # noqa: E402


def _state(rows, settings, seen):
    state = SamplerState(rows, seen.shape[1], "cpu")
    for r, (t, k, p, rep) in enumerate(settings):
        state.assign(r, SamplingParams(do_sample=True, temperature=t, top_k=k, top_p=p, repetition_penalty=rep),
                     seen[r].nonzero()[:, 0])
    return state


def test_batched_pipeline_equals_hf_processors_row_by_row():
    """Each row with its own temperature / top-k / top-p / penalty gives what HF's processors give."""
    torch.manual_seed(0)
    logits = torch.randn(4, 50) * 3
    seen_ids = torch.randint(0, 50, (4, 12))
    seen = torch.zeros(4, 50, dtype=torch.bool).scatter(1, seen_ids, True)
    settings = [(0.3, 5, 0.85, 1.05), (1.0, 0, 0.9, 1.1), (0.7, 10, 1.0, 1.0), (2.0, 3, 0.5, 1.3)]
    penalized, filtered = process(logits, _state(4, settings, seen))
    for r, (t, k, p, rep) in enumerate(settings):
        ids, row = seen_ids[r:r + 1], logits[r:r + 1].clone()
        ref = hf_lp.RepetitionPenaltyLogitsProcessor(rep)(ids, row) if rep != 1.0 else row
        assert torch.allclose(penalized[r], ref[0])
        ref = hf_lp.TemperatureLogitsWarper(t)(ids, ref)
        if k:
            ref = hf_lp.TopKLogitsWarper(k)(ids, ref)
        if p < 1:
            ref = hf_lp.TopPLogitsWarper(p)(ids, ref)
        assert torch.equal(torch.isinf(filtered[r]), torch.isinf(ref[0])), r
        keep = ~torch.isinf(ref[0])
        assert torch.allclose(filtered[r][keep], ref[0][keep])


@pytest.mark.parametrize("settings, kind", [
    ([(0.3, 5, 0.85, 1.05), (2.0, 3, 0.5, 1.0), (1.0, 40, 1.0, 1.0)], "topk"),   # every row has a top-k
    ([(0.7, 0, 1.0, 1.0), (1.3, 0, 1.0, 1.2)], "none"),                         # no row filters
    ([(0.7, 0, 0.9, 1.0), (1.0, 4, 1.0, 1.0)], "sort"),                         # top-p without top-k
])
def test_every_plan_keeps_what_the_full_sort_keeps(settings, kind):
    """The sampler skips the sort over the vocabulary where no row needs it (a top-k over all
    rows, or no filter at all): the same ids kept, the same logits, the same seeded draws."""
    from baichuan.infer.sampling import Plan
    torch.manual_seed(3)
    rows = len(settings)
    logits = torch.randn(rows, 500) * 3
    seen = torch.zeros(rows, 500, dtype=torch.bool).scatter(1, torch.randint(0, 500, (rows, 20)), True)
    state = _state(rows, settings, seen)
    plan = Plan.of([SamplingParams(do_sample=True, temperature=t, top_k=k, top_p=p, repetition_penalty=rep)
                    for t, k, p, rep in settings])
    assert plan.filter == kind and plan.repetition == any(rep != 1.0 for *_, rep in settings)
    assert not (plan.mask or plan.openai or plan.bias)
    full, ours = process(logits, state, True), process(logits, state, plan)
    assert torch.equal(full[0], ours[0]) and torch.equal(full[1], ours[1])
    uniform = torch.rand(rows)
    assert torch.equal(sample(logits, state, uniform, True), sample(logits, state, uniform, plan))


def test_draws_follow_the_filtered_distribution():
    torch.manual_seed(1)
    logits = torch.randn(2, 30)
    seen = torch.zeros(2, 30, dtype=torch.bool)
    state = _state(2, [(1.0, 4, 1.0, 1.0), (0.5, 0, 0.7, 1.0)], seen)
    _, filtered = process(logits, state)
    counts = torch.zeros(2, 30)
    n = 20000
    for _ in range(n // 500):
        toks = torch.stack([sample(logits, state, torch.rand(2)) for _ in range(500)])
        counts += torch.nn.functional.one_hot(toks, 30).sum(0)
    assert torch.allclose(counts / n, filtered.softmax(-1), atol=0.015)
    assert (counts[torch.isinf(filtered)] == 0).all()


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-7b"])
def test_greedy_with_repetition_penalty_equals_hf_generate(arch):
    model = small_model(arch)
    hf = hf_llama_from(model)
    prompt = [5, 17, 99, 42, 7]
    params = SamplingParams(max_new_tokens=20, repetition_penalty=1.3, eos_token_ids=(-1,))
    ours = list(generate_ids(model, prompt, params))
    ref = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, repetition_penalty=1.3,
                      eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    assert ours == ref


def test_sampling_is_seeded_and_respects_top_k():
    model = small_model("baichuan-13b")
    params = SamplingParams(max_new_tokens=15, do_sample=True, temperature=1.5, top_k=3, seed=123, eos_token_ids=(-1,))
    a = list(generate_ids(model, [1, 2, 3], params))
    b = list(generate_ids(model, [1, 2, 3], params))
    assert a == b and len(a) == 15
    c = list(generate_ids(model, [1, 2, 3], SamplingParams(**{**params.__dict__, "seed": 7})))
    assert a != c
    # every sampled token is among the top 3 of its step
    logits = torch.randn(4, 300)
    state = SamplerState(4, 300, "cpu")
    for r in range(4):
        state.assign(r, params, torch.tensor([0]))
    top3 = logits.topk(3).indices
    for _ in range(50):
        tok = sample(logits, state, torch.rand(4))
        assert all(tok[i] in top3[i] for i in range(4))


def test_stops_at_eos_and_respects_context():
    model = small_model("baichuan-7b")
    free = list(generate_ids(model, [3, 4], SamplingParams(max_new_tokens=10, eos_token_ids=(-1,))))
    stopped = list(generate_ids(model, [3, 4], SamplingParams(max_new_tokens=10, eos_token_ids=(free[3],))))
    assert stopped == free[: free.index(free[3])]
    with pytest.raises(BaichuanError, match="context is 128"):
        list(generate_ids(model, list(range(128)), SamplingParams()))
    near_end = list(generate_ids(model, [3] * 120, SamplingParams(max_new_tokens=50, eos_token_ids=(-1,))))
    assert len(near_end) == 8


class CharTokenizer:
    """Decodes id i to chr(ord('a') + i % 26), with id 0 decoding to a partial UTF-8 character."""

    def decode(self, ids):
        text = "".join("\ufffd" if i == 0 else chr(ord("a") + i % 26) for i in ids)
        return text


def test_stream_text_holds_back_stop_strings_and_partial_chars():
    model = small_model("baichuan-7b")
    tok = CharTokenizer()
    params = SamplingParams(max_new_tokens=30, eos_token_ids=(-1,))
    ids = list(generate_ids(model, [3, 4, 5], params))
    full = tok.decode(ids)
    chunks = list(stream_text(model, tok, [3, 4, 5], params))
    assert "".join(chunks) == full and len(chunks) > 1
    stop = full[10:12]
    cut = full.find(stop)
    stopped = list(stream_text(model, tok, [3, 4, 5], SamplingParams(**{**params.__dict__, "stop": [stop]})))
    assert "".join(stopped) == full[:cut]
    assert all(stop not in c for c in stopped)

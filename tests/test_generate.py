"""Generation: HF's logits pipeline, greedy equal to HF generate, seeded sampling, stops, streaming."""

import pytest
import torch

from baichuan.errors import BaichuanError
from baichuan.generate import (SamplingParams, apply_repetition_penalty, apply_top_k, apply_top_p, generate_ids,
                               next_token, stream_text)
from test_model import hf_llama_from, small_model

transformers = pytest.importorskip("transformers")
from transformers.generation import logits_process as hf_lp  # noqa: E402


def test_logits_pipeline_equals_hf_processors():
    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    seen = torch.randint(0, 50, (3, 12))
    ours = apply_repetition_penalty(logits, seen, 1.1)
    ref = hf_lp.RepetitionPenaltyLogitsProcessor(1.1)(seen, logits.clone())
    assert torch.equal(ours, ref)
    ours = apply_top_p(apply_top_k(ours / 0.3, 5), 0.85)
    ref = hf_lp.TemperatureLogitsWarper(0.3)(seen, ref)
    ref = hf_lp.TopKLogitsWarper(5)(seen, ref)
    ref = hf_lp.TopPLogitsWarper(0.85)(seen, ref)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    assert torch.allclose(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)])
    # top-p removes something here and keeps at least one token per row
    assert torch.isinf(ours).any() and (~torch.isinf(ours)).sum(-1).min() >= 1


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
    for _ in range(50):
        tok = next_token(logits, torch.zeros(4, 1, dtype=torch.long), params)
        top3 = logits.topk(3).indices
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

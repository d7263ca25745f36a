"""Streaming detokenization: the deltas add up to the full decode, stop strings cut it exactly."""

import random

import pytest

from baichuan import corpus
from baichuan.infer.textstream import TextStream


def stream(tok, ids, stop=()):
    ts = TextStream(tok, stop)
    parts = [ts.add(i) for i in ids]
    return parts, "".join(parts) + ts.finish(), ts


@pytest.fixture(scope="module")
def samples(small_tokenizer):
    texts = [t[:400] for _, t in zip(range(30), corpus.iter_texts(split="heldout"))]
    texts += ["emoji 😀🎉 and rare 𠀀 characters", "a  b   c\n\nd\tend", "全角ＡＢＣ，半角abc"]
    rng = random.Random(0)
    random_ids = [[rng.randrange(3, small_tokenizer.vocab_size) for _ in range(rng.randrange(1, 50))]
                  for _ in range(100)]                            # byte pieces that form no character too
    return [small_tokenizer.encode(t) for t in texts] + random_ids


def test_deltas_add_up_to_the_full_decode(small_tokenizer, samples):
    for ids in samples:
        parts, out, _ = stream(small_tokenizer, ids)
        assert out == small_tokenizer.decode(ids)
        assert all("\ufffd" not in p for p in parts) or "\ufffd" in small_tokenizer.decode(ids)


def test_stop_strings_cut_exactly_and_hold_back_only_what_they_must(small_tokenizer, samples):
    for ids in samples[:33]:
        full = small_tokenizer.decode(ids)
        if len(full) < 12:
            continue
        stop = full[6:9]
        parts, out, ts = stream(small_tokenizer, ids, [stop, "never-there"])
        assert out == full[:full.find(stop)] and ts.stopped
        assert "".join(parts) == out                               # all of it before the stop arrived
        parts, out, ts = stream(small_tokenizer, ids, ["never-there"])
        assert out == full and not ts.stopped
        assert len("".join(parts)) >= len(full) - len("never-there")


def test_decoding_work_is_linear(small_tokenizer):
    calls = []

    class Counting:
        def decode(self, ids):
            calls.append(len(ids))
            return small_tokenizer.decode(ids)
    ids = small_tokenizer.encode("床前明月光，疑是地上霜。Hello world. " * 80)
    stream(Counting(), ids)
    assert sum(calls) < 8 * len(ids)                              # not ~len(ids)^2 / 2

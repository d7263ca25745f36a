"""The pretraining loader: packing, seeded order, rank splits that equal one rank, exact resume."""

import numpy as np
import pytest
import torch

from baichuan.data.loader import TokenLoader, iter_eval_batches
from baichuan.data.shards import open_shards, write_manifest, write_shard
from baichuan.errors import BaichuanError


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for i, n_docs in enumerate([30, 7, 55]):
        docs = [rng.integers(3, 1000, rng.integers(5, 40)).tolist() for _ in range(n_docs)]
        entries.append(write_shard(tmp_path / f"{i:05d}.bin", docs, np.dtype(np.uint16), eos_id=2))
    write_manifest(tmp_path, entries, np.dtype(np.uint16), eos_id=2, vocab_size=1000)
    return open_shards(tmp_path)


def test_windows_pack_documents_and_shift_targets(shards):
    loader = TokenLoader(shards, seq_len=16, batch_size=4)
    x, y = loader.next_batch()
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert (x == 2).any()  # EOS separators are packed in


def test_an_epoch_visits_every_window_once(shards):
    loader = TokenLoader(shards, seq_len=16, batch_size=1)
    seen = {tuple(loader.window(i).tolist()) for i in range(loader.total)}
    everything = set()
    for k in range(len(shards.files)):
        data = shards.memmap(k)
        for w in range((len(data) - 1) // 16):
            everything.add(tuple(np.asarray(data[w * 16:w * 16 + 17]).tolist()))
    assert seen == everything and len(seen) == loader.total
    # the next epoch is another order of the same windows
    assert [tuple(loader.window(loader.total + i).tolist()) for i in range(5)] != \
           [tuple(loader.window(i).tolist()) for i in range(5)]


def test_seeded(shards):
    a, b, c = (TokenLoader(shards, 16, 4, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.next_batch()[0], b.next_batch()[0])
    assert not torch.equal(a.next_batch()[0], c.next_batch()[0])


def test_two_ranks_see_what_one_rank_sees(shards):
    one = TokenLoader(shards, 16, batch_size=8)
    ranks = [TokenLoader(shards, 16, batch_size=4, rank=r, world_size=2) for r in range(2)]
    for _ in range(30):  # crosses an epoch boundary
        x1, _ = one.next_batch()
        x2 = torch.cat([r.next_batch()[0] for r in ranks])
        assert torch.equal(x1, x2)
    assert one.epoch > 1


def test_state_restores_the_exact_position(shards):
    a = TokenLoader(shards, 16, 4, seed=3)
    for _ in range(7):
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch()[0] for _ in range(5)]
    b = TokenLoader(shards, 16, 4, seed=3)
    b.load_state_dict(state)
    assert all(torch.equal(e, b.next_batch()[0]) for e in expected)
    with pytest.raises(BaichuanError, match="other token shards, seed or sequence length"):
        TokenLoader(shards, 32, 4, seed=3).load_state_dict(state)


def test_errors(shards):
    with pytest.raises(BaichuanError, match="rank 2"):
        TokenLoader(shards, 16, 4, rank=2, world_size=2)
    with pytest.raises(BaichuanError, match="one global batch needs"):
        TokenLoader(shards, 4096, 4)


def test_eval_batches_cover_the_shards_in_order(shards):
    batches = list(iter_eval_batches(shards, 16, batch_size=3))
    first = shards.memmap(0)
    assert batches[0][0][0].tolist() == np.asarray(first[:16]).tolist()
    total = sum(x.shape[0] for x, _ in batches)
    assert total == sum((len(shards.memmap(i)) - 1) // 16 for i in range(3))


def test_permute_is_a_bijection():
    from baichuan.data.loader import permute
    for n in (1, 2, 3, 7, 64, 1000, 4097):
        out = [permute(i, n, (5, 1)) for i in range(n)]
        assert sorted(out) == list(range(n))
    assert [permute(i, 1000, (5, 1)) for i in range(20)] != [permute(i, 1000, (5, 2)) for i in range(20)]


def test_sources_are_mixed_from_the_first_batch(shards):
    """Every shard shows up early in proportion to its size (not one shard after another)."""
    loader = TokenLoader(shards, 8, 1, seed=0)
    first = [loader.window(i).tolist() for i in range(loader.total // 5)]
    owner = {}
    for k in range(len(shards.files)):
        data = np.asarray(shards.memmap(k))
        for w in range((len(data) - 1) // 8):
            owner[tuple(data[w * 8:w * 8 + 9].tolist())] = k
    share = np.bincount([owner[tuple(w)] for w in first], minlength=3) / len(first)
    assert np.allclose(share, loader.counts / loader.total, atol=0.1), share

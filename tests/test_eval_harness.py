"""The multiple-choice harness end to end: accuracy exact on models whose answers are known,
averages computed independently from the CSVs, the batched scorer against plain forwards, data
errors, outputs, and bits per byte."""

import csv
import gzip
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

from baichuan.config import preset
from baichuan.errors import BaichuanError
from baichuan.eval.bpb import bits_per_byte, bits_per_byte_files, read_texts
from baichuan.eval.data import load_benchmark, resolve_data_dir
from baichuan.eval import harness
from baichuan.eval.harness import plan_benchmark, run_eval
from baichuan.eval.protocols import ContinuationEncoder, letter_ids, template
from baichuan.eval.report import format_table, write_results
from baichuan.eval.scoring import Request, score
from baichuan.eval.settings import EvalSettings
from baichuan.model import build

EVALDATA = Path(os.environ.get("BAICHUAN_EVALDATA", REPO.parent / "shared" / "evaldata"))
SUBJECTS = {"ceval": ["computer_network", "law", "physician"], "cmmlu": ["agronomy", "ancient_chinese"],
            "mmlu": ["abstract_algebra", "anatomy", "virology"]}
LIMIT = 7


@pytest.fixture(scope="module")
def data():
    if not (EVALDATA / "ceval").is_dir():
        pytest.skip(f"evaluation data {EVALDATA} is absent (set BAICHUAN_EVALDATA to its folder)")
    return EVALDATA


# ------------------------------------------------------------------------------ crafted models

class Letters(torch.nn.Module):
    """A model with the Baichuan split: `model.model(ids)` gives a 4-dim "hidden state" per
    position (which letter it prefers), `lm_head` turns letter k into +10 on every token id that
    spells it under any protocol ("A", "▁A", the continuation " A")."""

    def __init__(self, tokenizer, prefer):
        super().__init__()
        self.prefer = prefer                      # ids [T] -> letter index (or None) at each position
        self.model = _Body(self)
        self.lm_head = torch.nn.Linear(4, tokenizer.vocab_size, bias=False)
        ids = {k: {tokenizer.encode(L)[-1], tokenizer.id(L), tokenizer.encode("答案： " + L)[-1],
                   tokenizer.encode("Answer: " + L)[-1]} for k, L in enumerate("ABCD")}
        with torch.no_grad():
            self.lm_head.weight.zero_()
            for k, tids in ids.items():
                self.lm_head.weight[list(tids), k] = 10.0


class _Body(torch.nn.Module):
    def __init__(self, owner):
        super().__init__()
        self.owner = [owner]

    def forward(self, input_ids, position_ids=None, key_mask=None, cache=None):
        B, T = input_ids.shape
        h = torch.zeros(B, T, 4)
        for b in range(B):
            row = input_ids[b].tolist()
            for t in range(T):
                k = self.owner[0].prefer(row, t)
                if k is not None:
                    h[b, t, k] = 1.0
        return h


def fixed_letter(letter):
    k = "ABCD".index(letter)
    return lambda row, t: k


def lookup(table):
    """Predicts table[tokens up to and including t]: an oracle keyed on the prompt's own tokens."""
    lengths = {len(k) for k in table}
    return lambda row, t: table.get(tuple(row[:t + 1])) if t + 1 in lengths else None


def csv_golds(data, bench, subject, limit):
    """Gold letters read straight from the CSV with the csv module (independent of the harness)."""
    folder = {"ceval": ("val", f"{subject}_val.csv", 1), "cmmlu": ("test", f"{subject}.csv", 1),
              "mmlu": ("test", f"{subject}_test.csv", 0)}[bench]
    with open(data / bench / folder[0] / folder[1], newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[folder[2]:]
    return [r[-1] for r in rows[:limit]]


def expected_categories(data, bench, protocol):
    if bench == "ceval":
        m = json.loads((data / "ceval" / "subject_mapping.json").read_text())
        return {s: [v[2]] for s, v in m.items()}
    c = json.loads((data / bench / "categories.json").read_text())
    cats = {s: [k for sub in subs for k, members in c["categories"].items() if sub in members]
            for s, subs in c["subcategories"].items()}
    if bench == "mmlu" and protocol == "lm-eval":
        names = {"STEM": "stem", "humanities": "humanities", "social sciences": "social_sciences",
                 "other (business, health, misc.)": "other"}
        cats = {s: ["stem" if s == "anatomy" else names[v[0]]] for s, v in cats.items()}
    return cats


@pytest.mark.parametrize("protocol", ["lm-eval", "baichuan"])
def test_fixed_letter_model_scores_the_share_of_that_gold_letter(data, small_tokenizer, protocol):
    model = Letters(small_tokenizer, fixed_letter("C"))
    res = run_eval(model, small_tokenizer, list(SUBJECTS), data_dir=data,
                   settings=EvalSettings(protocol=protocol, limit_per_subject=LIMIT, subjects=SUBJECTS, progress=False))
    for bench, subjects in SUBJECTS.items():
        r = res["tasks"][bench]
        share = {s: (sum(g == "C" for g in csv_golds(data, bench, s, LIMIT)), LIMIT) for s in subjects}
        for s, (c, n) in share.items():
            assert (r["subjects"][s]["correct"], r["subjects"][s]["n"]) == (c, n)
        micro = sum(c for c, _ in share.values()) / sum(n for _, n in share.values())
        macro = sum(c / n for c, n in share.values()) / len(share)
        assert r["acc_micro"] == pytest.approx(micro) and r["acc_macro"] == pytest.approx(macro)
        headline = "micro" if protocol == "lm-eval" or bench == "mmlu" else "macro"
        assert r["headline"] == headline and r["acc"] == pytest.approx(micro if headline == "micro" else macro)
        cats = expected_categories(data, bench, protocol)
        for cat, got in r["categories"].items():
            members = [s for s in subjects if cat in cats[s]]
            assert got["subjects"] == len(members)
            assert got["acc_micro"] == pytest.approx(sum(share[s][0] for s in members) / (LIMIT * len(members)))
            assert got["acc_macro"] == pytest.approx(sum(share[s][0] / LIMIT for s in members) / len(members))
        assert set(r["categories"]) == {c for s in subjects for c in cats[s]}
    # ancient_chinese is in two CMMLU categories and counts in both
    assert set(res["tasks"]["cmmlu"]["subjects"]["ancient_chinese"]["categories"]) == {"Social Science", "China specific"}
    assert "stem" in res["tasks"]["mmlu"]["categories"] if protocol == "lm-eval" else "STEM" in res["tasks"]["mmlu"]["categories"]


def test_oracle_model_is_exactly_right_where_told(data, small_tokenizer):
    """Keyed on each prompt's last tokens: gold on even questions, the next letter on odd ones."""
    bench = load_benchmark("mmlu", data, SUBJECTS["mmlu"], LIMIT)
    t = template("baichuan", "mmlu")
    plan = plan_benchmark(bench, t, small_tokenizer, 5, 4096)
    table = {}
    for item, req in zip(plan.items, plan.requests):
        gold = "ABCD".index(item.gold)
        key = tuple(req.tokens)
        assert key not in table
        table[key] = gold if item.index % 2 == 0 else (gold + 1) % 4
    res = run_eval(Letters(small_tokenizer, lookup(table)), small_tokenizer, ["mmlu"], data_dir=data,
                   settings=EvalSettings(protocol="baichuan", limit_per_subject=LIMIT, subjects=SUBJECTS["mmlu"],
                                         progress=False, keep_predictions=True))
    r = res["tasks"]["mmlu"]
    even = (LIMIT + 1) // 2
    assert all(v["correct"] == even for v in r["subjects"].values())
    assert r["acc"] == pytest.approx(even / LIMIT)
    for p in r["predictions"]:
        assert (p["pred"] == p["gold"]) == (p["index"] % 2 == 0)


# ------------------------------------------------------------------------- the real forward pass

def tiny(vocab, seed=0, **kw):
    torch.manual_seed(seed)
    return build(preset("tiny", vocab_size=vocab, max_len=4096, **kw)).eval()


def naive_logprobs(model, req: Request):
    with torch.no_grad():
        logits = model(torch.tensor([req.tokens]))[0].float()
    return [torch.log_softmax(logits[p], -1)[tid].item() for p, tid in req.picks]


@pytest.mark.parametrize("arch", [{}, {"position": "alibi"}, {"norm_head": True}])
def test_batched_and_prefix_shared_scores_equal_one_prompt_at_a_time(data, small_tokenizer, arch):
    model = tiny(small_tokenizer.vocab_size, **arch)
    bench = load_benchmark("ceval", data, ["computer_network", "law"], 4)
    plan = plan_benchmark(bench, template("lm-eval", "ceval"), small_tokenizer, 5, 4096)
    assert len(plan.prefixes) == 2 and len(plan.requests) == 8   # one forward per question
    want = [naive_logprobs(model, r) for r in plan.requests]
    for share in (False, True):
        got = score(model, plan.requests, plan.prefixes, batch_tokens=3000, share_prefix=share, progress=False)
        for g, w in zip(got, want):
            assert g == pytest.approx(w, abs=2e-5)


class CharTokenizer:
    """Characters as tokens (ids from a table), so " A" is two tokens: "▁"-less space, then "A"."""
    eos_id = 1

    def __init__(self, texts):
        chars = sorted(set("".join(texts)) | set(" ABCD"))
        self.ids = {c: i + 3 for i, c in enumerate(chars)}
        self.vocab_size = len(chars) + 3

    def encode(self, text):
        return [self.ids[c] for c in text]

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def id(self, piece):
        return self.ids[piece]


def test_multi_token_continuations_sum_log_probs_and_left_truncate_like_lm_eval(data):
    bench = load_benchmark("mmlu", data, ["abstract_algebra"], 4)
    texts = [q.question + "".join(q.options) for qs in list(bench.shots.values()) + list(bench.questions.values())
             for q in qs] + ["The following are multiple choice questions (with answers) about abstract algebra.\nAnswer:"]
    tok = CharTokenizer(texts)
    assert ContinuationEncoder(tok)("x\nAnswer:") == [[tok.ids[" "], tok.ids[L]] for L in "ABCD"]
    model = tiny(tok.vocab_size)
    for context in (4096, 200):            # whole prompts, then lm-eval's left truncation
        plan = plan_benchmark(bench, template("lm-eval", "mmlu"), tok, 1, context)
        assert len(plan.requests) == 4      # the continuations share " ": still one forward per question
        logps = score(model, plan.requests, plan.prefixes, progress=False)
        for item in plan.items:
            ctx = _full_context(bench, tok, item)
            for k, L in enumerate("ABCD"):
                cont = [tok.ids[" "], tok.ids[L]]
                whole = (ctx + cont)[-(context + 1):]
                with torch.no_grad():
                    lp = torch.log_softmax(model(torch.tensor([whole[:-1]]))[0].float(), -1)
                want = lp[-2, cont[0]].item() + lp[-1, cont[1]].item()
                got = sum(logps[r][i] for r, i in item.refs[k])
                assert got == pytest.approx(want, abs=2e-5)
            assert (item.cut > 0) == (context == 200)


def _full_context(bench, tok, item):
    from baichuan.eval.protocols import build_prompt, subject_name
    t = template("lm-eval", "mmlu")
    s = item.subject
    return tok.encode(build_prompt(t, subject_name(t, s, ""), bench.shots[s][:1], bench.questions[s][item.index])[1])


# ------------------------------------------------------------------------------- data and output

def test_checksums_match_the_data_folders_sha256sums(data):
    sums = {line.split()[1].removeprefix("./"): line.split()[0]
            for line in (data / "SHA256SUMS").read_text().splitlines() if line.strip()}
    b = load_benchmark("cmmlu", data, ["agronomy"])
    assert b.files == {p: sums[p] for p in ("cmmlu/categories.json", "cmmlu/dev/agronomy.csv", "cmmlu/test/agronomy.csv")}
    lines = "".join(f"{sums[p]}  {p}\n" for p in sorted(b.files))
    assert b.checksum == hashlib.sha256(lines.encode()).hexdigest()


def copy_subset(data, tmp_path, bench, files):
    root = tmp_path / "evaldata"
    for rel in files:
        (root / bench / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data / bench / rel, root / bench / rel)
    return root


def test_missing_and_malformed_files_are_clear_errors(data, tmp_path, monkeypatch):
    root = copy_subset(data, tmp_path, "mmlu", ["categories.json", "dev/anatomy_dev.csv", "test/anatomy_test.csv"])
    with pytest.raises(BaichuanError, match=r"abstract_algebra_dev\.csv: missing subject file"):
        load_benchmark("mmlu", root, ["abstract_algebra"])
    bad = root / "mmlu" / "test" / "anatomy_test.csv"
    lines = bad.read_bytes().split(b"\n")
    bad.write_bytes(b"\n".join(lines[:3] + [b"What?,1,2,3,E"] + lines[3:]))
    with pytest.raises(BaichuanError, match=r"anatomy_test\.csv: row 4 \(line 4\): 5 columns, expected 6"):
        load_benchmark("mmlu", root, ["anatomy"])
    bad.write_bytes(b"\n".join(lines[:3] + [b"What?,1,2,3,4,E"] + lines[3:]))
    with pytest.raises(BaichuanError, match=r"row 4 \(line 4\): answer 'E' is not one of A, B, C, D"):
        load_benchmark("mmlu", root, ["anatomy"])
    root = copy_subset(data, tmp_path, "cmmlu", ["categories.json", "dev/agronomy.csv", "test/agronomy.csv"])
    f = root / "cmmlu" / "dev" / "agronomy.csv"
    f.write_bytes(f.read_bytes().replace(b",Question,", b",Q,", 1))
    with pytest.raises(BaichuanError, match=r"agronomy\.csv: header is"):
        load_benchmark("cmmlu", root, ["agronomy"])
    with pytest.raises(BaichuanError, match="no subject 'nope'"):
        load_benchmark("mmlu", data, ["nope"])
    tables = root / "cmmlu" / "categories.json"                      # a mapping of the wrong shape names its field
    good = json.loads(tables.read_text(encoding="utf-8"))
    for broken, field in (([1, 2], "subcategories"), ({**good, "categories": {"STEM": "x"}}, "categories"),
                          ({k: v for k, v in good.items() if k != "name_en2zh"}, "name_en2zh")):
        tables.write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(BaichuanError, match=rf"categories\.json: field '{field}' must map"):
            load_benchmark("cmmlu", root, ["agronomy"])
    tables.write_text(json.dumps({**good, "name_en2zh": {}}), encoding="utf-8")
    with pytest.raises(BaichuanError, match="subject 'agronomy' has no entry in 'name_en2zh'"):
        load_benchmark("cmmlu", root, ["agronomy"])
    monkeypatch.delenv("BAICHUAN_EVALDATA", raising=False)
    with pytest.raises(BaichuanError, match="pass --data DIR or set BAICHUAN_EVALDATA"):
        resolve_data_dir(None)
    monkeypatch.setenv("BAICHUAN_EVALDATA", str(data))
    assert resolve_data_dir(None) == data


def test_results_record_the_run_and_write_json_markdown_png(data, small_tokenizer, tmp_path):
    model = tiny(small_tokenizer.vocab_size)
    res = run_eval(model, small_tokenizer, ["ceval", "mmlu"], data_dir=data, model_name="tiny",
                   settings=EvalSettings(protocol="baichuan", limit_per_subject=3, progress=False,
                                         subjects=["computer_network", "abstract_algebra"], keep_predictions=True))
    assert res["protocol"] == "baichuan" and res["model"] == "tiny" and res["dtype"] == "float32"
    assert res["seed"] == 1234 and res["questions"] == 6 and res["questions_per_s"] > 0
    assert set(res["tasks"]["ceval"]["data"]["files"]) == {"ceval/subject_mapping.json",
                                                            "ceval/dev/computer_network_dev.csv",
                                                            "ceval/val/computer_network_val.csv"}
    assert res["tasks"]["mmlu"]["answer_tokens"]["ids"] == dict(zip("ABCD", letter_ids(template("baichuan", "mmlu"),
                                                                                          small_tokenizer)))
    paths = write_results(res, tmp_path / "out")
    saved = json.loads(paths["json"].read_text())
    assert saved["tasks"]["mmlu"]["data"]["sha256"] == res["tasks"]["mmlu"]["data"]["sha256"]
    assert "predictions" not in saved["tasks"]["mmlu"]
    assert len(paths["predictions"].read_text().splitlines()) == 6
    md = paths["markdown"].read_text()
    assert "| **C-Eval val** | **all** (macro) | 1 | 3 |" in md and "| abstract_algebra | STEM | 3 |" in md
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(res)
    assert "protocol `baichuan`, 5-shot" in table and "| MMLU test | STEM |" in table
    only = run_eval(model, small_tokenizer, ["ceval", "cmmlu"], data_dir=data,
                    settings=EvalSettings(subjects=["computer_network"], limit_per_subject=1, progress=False))
    assert list(only["tasks"]) == ["ceval"]          # a task with none of the listed subjects is left out
    with pytest.raises(BaichuanError, match="is in none of the tasks"):
        run_eval(model, small_tokenizer, ["mmlu"], data_dir=data,
                 settings=EvalSettings(subjects=["abstract_algebra", "nope"], progress=False))
    with pytest.raises(BaichuanError, match="unknown protocol"):
        run_eval(model, small_tokenizer, ["mmlu"], data_dir=data,
                 settings=EvalSettings(protocol="helm", progress=False))
    root = copy_subset(data, tmp_path, "ceval", ["subject_mapping.json", "dev/computer_network_dev.csv",
                                                 "val/computer_network_val.csv"])
    copy_subset(data, tmp_path, "mmlu", ["categories.json", "dev/anatomy_dev.csv", "test/anatomy_test.csv"])
    dev = root / "mmlu" / "dev" / "anatomy_dev.csv"
    dev.write_bytes(b"\n".join(dev.read_bytes().split(b"\n")[:3]) + b"\n")
    scored = []                                       # every task's data is checked before any scoring
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness, "evaluate_benchmark", lambda *a, **k: scored.append(a) or {})
        with pytest.raises(BaichuanError, match=r"MMLU anatomy: 5 shots asked for, but "
                                                r"mmlu/dev/anatomy_dev\.csv has 3 questions"):
            run_eval(model, small_tokenizer, ["ceval", "mmlu"], data_dir=root,
                     settings=EvalSettings(subjects=["computer_network", "anatomy"], progress=False))
    assert not scored
    res["tasks"] = {k: {f: v for f, v in r.items() if f != "predictions"} for k, r in res["tasks"].items()}
    write_results({**res, "tasks": {}, "bpb": {}}, tmp_path / "out")  # a run without predictions or chart
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.json", "results.md"}  # none stale


# ------------------------------------------------------------------------------------ bits per byte

def test_bits_per_byte_equals_a_plain_computation(small_tokenizer, tmp_path):
    tok = small_tokenizer
    model = tiny(tok.vocab_size)
    texts = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。" * 3, "To be, or not to be, that is the question.", "x"]
    nll = tokens = 0.0
    for text in texts:
        ids = [tok.eos_id] + tok.encode(text)
        for start in range(0, len(ids) - 1, 40):   # windows of 40 tokens, each from scratch
            chunk = ids[start:start + 41]
            with torch.no_grad():
                logits = model(torch.tensor([chunk[:-1]]))[0].float()
            nll += F.cross_entropy(logits, torch.tensor(chunk[1:]), reduction="sum").item()
            tokens += len(chunk) - 1
    nbytes = sum(len(t.encode()) for t in texts)
    got = bits_per_byte(model, tok, texts, context=40, batch_tokens=100)
    assert got["tokens"] == tokens and got["bytes"] == nbytes and got["docs"] == 3
    assert got["bpb"] == pytest.approx(nll / math.log(2) / nbytes, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)

    (tmp_path / "a.txt").write_text(texts[0], encoding="utf-8")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": texts[1]}) + "\n\n" + json.dumps({"text": texts[2], "id": 7}) + "\n")
    files = bits_per_byte_files(model, tok, [tmp_path], context=40)
    assert set(files) == {str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl.gz"), "all"}
    assert files["all"]["bpb"] == pytest.approx(got["bpb"], rel=1e-5) and files["all"]["docs"] == 3
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n', encoding="utf-8")
    with pytest.raises(BaichuanError, match=r"bad\.jsonl:2: expected an object with a string field"):
        read_texts(tmp_path / "bad.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n["a list"]\n{"text": \n', encoding="utf-8")
    with pytest.raises(BaichuanError, match=r"bad\.jsonl:2: expected a JSON object, got list"):
        read_texts(tmp_path / "bad.jsonl")


# ------------------------------------------------------------------------------ the command

def test_eval_command_mc_bpb_and_tokenizer(data, tiny_model_dir, tmp_path, capsys):
    import argparse

    from baichuan.eval import command
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    text = tmp_path / "t.txt"
    text.write_text("床前明月光，疑是地上霜。", encoding="utf-8")
    args = parser.parse_args([str(tiny_model_dir), "--tasks", "ceval,mmlu,bpb", "--data", str(data), "--limit", "2",
                              "--subjects", "computer_network,abstract_algebra", "--text", str(text),
                              "--protocol", "baichuan", "--out", str(tmp_path / "out"), "--predictions"])
    res = command.run(args)
    assert res["tasks"]["ceval"]["n"] == 2 and res["tasks"]["mmlu"]["n"] == 2 and res["protocol"] == "baichuan"
    assert res["bpb"][str(text)]["bytes"] == len("床前明月光，疑是地上霜。".encode())
    out = capsys.readouterr().out
    assert "| **MMLU test** | **all** (micro) |" in out and "bits/byte" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.json", "results.md", "results.png",
                                                              "predictions.jsonl"}
    with pytest.MonkeyPatch.context() as mp:  # the model's own tokenizer only
        mp.delenv("BAICHUAN_ASSETS", raising=False)
        res = command.run(parser.parse_args([str(tiny_model_dir), "--tasks", "tokenizer"]))
    assert {r["lang"] for r in res["tokenizer"]} >= {"zh", "en"}
    with pytest.raises(BaichuanError, match="--baichuan-assets /nonexistent: no baichuan1/tokenizer.model"):
        command.run(parser.parse_args([str(tiny_model_dir), "--tasks", "tokenizer", "--baichuan-assets", "/nonexistent"]))
    with pytest.raises(BaichuanError, match="unknown task 'mmmlu'"):
        command.run(parser.parse_args([str(tiny_model_dir), "--tasks", "mmmlu"]))
    (tmp_path / "afile").write_text("x")
    for argv, message in ((["--out", str(tmp_path / "afile" / "sub")], "--out .*cannot be a folder"),
                          (["--predictions"], "--predictions needs --out"),
                          (["--subjects", ","], "--subjects: no subject given")):
        with pytest.raises(BaichuanError, match=message):  # refused before the model loads or anything is scored
            command.run(parser.parse_args([str(tiny_model_dir), "--tasks", "mmlu", "--data", str(data), *argv]))
    for option in ("--context", "--max-tokens"):
        with pytest.raises(SystemExit):
            parser.parse_args([str(tiny_model_dir), option, "0"])


def test_speedrun_style_evaluate_skips_multiple_choice_without_data(tiny_model_dir, monkeypatch):
    from baichuan.checkpoint import load_pretrained
    from baichuan.eval.command import SPEEDRUN_SUBJECTS, evaluate
    from baichuan.tokenizer import Tokenizer
    monkeypatch.delenv("BAICHUAN_EVALDATA", raising=False)
    model, tok = load_pretrained(tiny_model_dir), Tokenizer.load(tiny_model_dir)
    res = evaluate(model, tok, ["bpb", "ceval", "mmlu"], texts={"t": ["To be, or not to be."]}, skip_missing_data=True,
                   settings=EvalSettings(subjects=SPEEDRUN_SUBJECTS, limit_per_subject=2, progress=False))
    assert res["skipped"]["tasks"] == ["ceval", "mmlu"] and res["bpb"]["t"]["bpb"] > 0
    assert "bits/byte" in format_table(res)


def test_bits_per_byte_max_tokens_takes_whole_documents_in_order(small_tokenizer):
    model = tiny(small_tokenizer.vocab_size)
    texts = ["一二三四五六七八九十" * 4, "To be, or not to be.", "x" * 50]
    first = len(small_tokenizer.encode(texts[0]))
    got = bits_per_byte(model, small_tokenizer, texts, max_tokens=first + 1)
    assert got["docs"] == 2 and got["bytes"] == len(texts[0].encode()) + len(texts[1].encode())
    assert bits_per_byte(model, small_tokenizer, texts, max_tokens=first)["docs"] == 1

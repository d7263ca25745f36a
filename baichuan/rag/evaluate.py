"""The bundled corpus as a folder of documents, the bundled QA set, and the two measures:

  - retrieval recall@k: the question's evidence (an exact substring of the corpus) is inside one
    of the top-k passages;
  - citation accuracy: the answer cites at least one passage and the first passage it cites
    contains the evidence (measured with a real model, and with an "oracle generator" that always
    cites [1], which shows what retrieval plus the context budget allow).

The QA set is baichuan/corpus/qa/questions.jsonl (written for this project; see the README there).
Questions without an answer in the corpus (unanswerable.jsonl) measure how often a question is
refused without calling the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from baichuan.errors import BaichuanError, json_objects

QA_DIR = Path(__file__).resolve().parent.parent / "corpus" / "qa"
QUESTIONS = QA_DIR / "questions.jsonl"
UNANSWERABLE = QA_DIR / "unanswerable.jsonl"
QUESTION_FIELDS = ("id", "lang", "question", "answer", "doc_id", "file_hint", "evidence")


def load_questions(path: str | Path = QUESTIONS, required=QUESTION_FIELDS) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, item in json_objects(f, path):
            missing = [k for k in required if not isinstance(item.get(k), str) or not item[k]]
            if missing:
                raise BaichuanError(f"{path}:{n}: field {missing[0]!r} must be a non-empty string")
            out.append(item)
    return out


def corpus_file(source: str, lang: str) -> str:
    """Where `export_corpus` writes a source: Chinese as JSON lines, English as plain text."""
    return f"{lang}/{source.replace('/', '-')}.{'jsonl' if lang == 'zh' else 'txt'}"


def export_corpus(out_dir: str | Path, doc_ids: set[str] | None = None, limit_per_source: int | None = None) -> Path:
    """Write the bundled corpus (both splits) under out_dir, one file per source: zh/*.jsonl with
    {"id", "text"} records and en/*.txt with documents separated by a blank line. `doc_ids` keeps
    only those documents, `limit_per_source` the first N of each source (both: their union)."""
    from baichuan.corpus import iter_documents
    out = Path(out_dir)
    groups: dict[str, list[dict]] = {}
    for split in ("train", "heldout"):
        for doc in iter_documents(split=split):
            group = groups.setdefault(corpus_file(doc["source"], doc["lang"]), [])
            keep_all = doc_ids is None and limit_per_source is None
            if keep_all or (doc_ids and doc["id"] in doc_ids) or (limit_per_source and len(group) < limit_per_source):
                group.append(doc)
    for rel, docs in groups.items():
        if not docs:
            continue
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for i, doc in enumerate(docs):
                if rel.endswith(".jsonl"):
                    f.write(json.dumps({"id": doc["id"], "text": doc["text"]}, ensure_ascii=False) + "\n")
                else:
                    f.write(("\n\n" if i else "") + doc["text"])
    return out


def retrieval_recall(index, questions: list[dict], ks=(1, 5, 10)) -> dict:
    """{"all"|lang: {"recall@k": share, "n": count}, "misses": [question ids missed at max k]}."""
    kmax = max(ks)
    found_at: list[tuple[str, int | None]] = []
    for q in questions:
        hits = index.search(q["question"], k=kmax)
        rank = next((h.rank for h in hits if q["evidence"] in h.passage.text), None)
        found_at.append((q["lang"], rank))
    out: dict = {}
    for lang in ("all", "zh", "en"):
        ranks = [r for lg, r in found_at if lang in ("all", lg)]
        if ranks:
            out[lang] = {f"recall@{k}": sum(r is not None and r <= k for r in ranks) / len(ranks) for k in ks}
            out[lang]["n"] = len(ranks)
    out["misses"] = [q["id"] for q, (_, r) in zip(questions, found_at) if r is None]
    return out


def citation_accuracy(index, questions: list[dict], generate_fn, tokenizer, **answer_kwargs) -> dict:
    """Share of questions whose answer cites a passage containing the evidence (the first valid
    citation), per language; also how many were refused and how many cited nothing."""
    from baichuan.rag.answer import answer
    rows = []
    for q in questions:
        a = answer(q["question"], index, generate_fn, tokenizer, **answer_kwargs)
        first = a.citations[0] if a.citations else None
        ok = first is not None and q["evidence"] in first.passage.text
        rows.append((q["lang"], ok, a.refused, not a.citations))
    out = {}
    for lang in ("all", "zh", "en"):
        sel = [r for r in rows if lang in ("all", r[0])]
        if sel:
            out[lang] = {"accuracy": sum(r[1] for r in sel) / len(sel), "refused": sum(r[2] for r in sel),
                         "no_citation": sum(r[3] for r in sel), "n": len(sel)}
    return out


def refusal_rate(index, questions: list[dict], **answer_kwargs) -> dict:
    """How many questions are refused before generation (nothing relevant retrieved)."""
    from baichuan.rag.answer import is_unanswerable
    refused = [q["id"] for q in questions if is_unanswerable(index, q["question"], **answer_kwargs)]
    return {"refused": len(refused), "n": len(questions), "ids": refused}

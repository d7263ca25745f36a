"""The C-Eval, CMMLU and MMLU question files: where they live, how they are read, what they hold.

The layout is the one the benchmarks ship (see ../shared/evaldata/README.md):

    ceval/{dev,val}/<subject>_{dev,val}.csv    header id,question,A,B,C,D,answer[,explanation]
    ceval/subject_mapping.json                 subject -> [English name, Chinese name, category]
    cmmlu/{dev,test}/<subject>.csv             header ,Question,A,B,C,D,Answer (unnamed row index)
    cmmlu/categories.json                      name_en2zh, subcategories, categories
    mmlu/{dev,test}/<subject>_{dev,test}.csv   no header: question,A,B,C,D,answer
    mmlu/categories.json                       subcategories, categories

Cells are kept exactly as the CSV reader returns them (CRLF inside quoted fields included):
every reference implementation reads these files with pandas or HF `datasets`, which keep them
too. The data's licenses are not ours, so nothing here copies it: it is read from a directory the
user points at (`--data DIR` or BAICHUAN_EVALDATA).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from baichuan.errors import BaichuanError

LETTERS = ("A", "B", "C", "D")
ENV_VAR = "BAICHUAN_EVALDATA"


@dataclass(frozen=True)
class Question:
    question: str
    options: tuple[str, str, str, str]
    answer: str                  # "A".."D"
    where: str                   # "file:row N" for messages


@dataclass(frozen=True)
class Layout:
    """One benchmark's files. `file` is formatted with split and subject."""
    name: str
    title: str
    eval_split: str
    shot_split: str
    file: str
    headers: dict[str, tuple[str, ...] | None]   # split -> expected header (None: no header line)
    columns: tuple[int, int]                    # (question column, answer column); options follow the question


LAYOUTS: dict[str, Layout] = {
    "ceval": Layout("ceval", "C-Eval", "val", "dev", "ceval/{split}/{subject}_{split}.csv",
                    {"dev": ("id", "question", "A", "B", "C", "D", "answer", "explanation"),
                     "val": ("id", "question", "A", "B", "C", "D", "answer")}, (1, 6)),
    "cmmlu": Layout("cmmlu", "CMMLU", "test", "dev", "cmmlu/{split}/{subject}.csv",
                    {"dev": ("", "Question", "A", "B", "C", "D", "Answer"),
                     "test": ("", "Question", "A", "B", "C", "D", "Answer")}, (1, 6)),
    "mmlu": Layout("mmlu", "MMLU", "test", "dev", "mmlu/{split}/{subject}_{split}.csv",
                   {"dev": None, "test": None}, (0, 5)),
}


@dataclass
class Benchmark:
    """What a run needs from one benchmark: subjects in order, their questions, names, categories."""
    layout: Layout
    subjects: list[str]
    shots: dict[str, list[Question]]             # subject -> few-shot pool (dev split, file order)
    questions: dict[str, list[Question]]         # subject -> scored questions (file order)
    names: dict[str, str]                        # subject -> Chinese name (C-Eval, CMMLU); "" for MMLU
    categories: dict[str, list[str]]             # subject -> categories (official mapping)
    files: dict[str, str] = field(default_factory=dict)   # relative path -> sha256 of every file read

    @property
    def checksum(self) -> str:
        """sha256 of the set: of the lines "<sha256>  <path>" in path order, as `sha256sum` prints them."""
        lines = "".join(f"{h}  {p}\n" for p, h in sorted(self.files.items()))
        return hashlib.sha256(lines.encode()).hexdigest()


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data DIR, else $BAICHUAN_EVALDATA; a clear error when neither names a directory."""
    chosen = data_dir or os.environ.get(ENV_VAR)
    if not chosen:
        raise BaichuanError(f"no evaluation data: pass --data DIR or set {ENV_VAR} to a folder holding "
                            "ceval/, cmmlu/ and mmlu/ (the layout of the official CSV releases)")
    path = Path(chosen)
    if not path.is_dir():
        raise BaichuanError(f"{path}: evaluation data directory not found")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(root: Path, rel: str, files: dict) -> dict:
    path = root / rel
    if not path.is_file():
        raise BaichuanError(f"{path}: missing (the benchmark's subject/category mapping)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BaichuanError(f"{path}: not valid JSON ({e})") from None
    files[rel] = _sha256(path)
    return data


def read_questions(path: Path, header: tuple[str, ...] | None, columns: tuple[int, int],
                   limit: int | None = None) -> list[Question]:
    """Every row of one subject file, checked: column count, a non-empty question, a gold letter."""
    if not path.is_file():
        raise BaichuanError(f"{path}: missing subject file")
    q_col, a_col = columns
    width = len(header) if header else a_col + 1
    out: list[Question] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, strict=True)
            if header is not None:
                first = next(reader, None)
                if first is None or tuple(first) != header:
                    raise BaichuanError(f"{path}: header is {first!r}, expected {list(header)!r}")
            for row in reader:
                where = f"{path}: row {len(out) + 1} (line {reader.line_num})"
                if len(row) != width:
                    raise BaichuanError(f"{where}: {len(row)} columns, expected {width}")
                answer = row[a_col]
                if answer not in LETTERS:
                    raise BaichuanError(f"{where}: answer {answer!r} is not one of A, B, C, D")
                if not row[q_col].strip():
                    raise BaichuanError(f"{where}: empty question")
                out.append(Question(row[q_col], tuple(row[q_col + 1:q_col + 5]), answer, where))
                if limit is not None and len(out) >= limit:
                    break
    except UnicodeDecodeError as e:
        raise BaichuanError(f"{path}: not UTF-8 (byte {e.start}: {e.reason})") from None
    except csv.Error as e:
        raise BaichuanError(f"{path}: line {reader.line_num}: malformed CSV ({e})") from None
    if not out:
        raise BaichuanError(f"{path}: no questions")
    return out


def _subject_tables(name: str, root: Path, files: dict) -> tuple[list[str], dict, dict]:
    """(subjects, Chinese names, categories) from the benchmark's official mapping file, whose
    shape is checked: a wrong one is an error naming the file and the field."""
    def strings(v) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    if name == "ceval":
        rel = "ceval/subject_mapping.json"
        mapping = _read_json(root, rel, files)
        bad = next((s for s, v in mapping.items() if not strings(v) or len(v) < 3), None) \
            if isinstance(mapping, dict) else ""
        if bad is not None:
            raise BaichuanError(f"{root / rel}: expected {{subject: [English name, Chinese name, category]}}"
                                + (f"; entry {bad!r} is not" if bad else ""))
        return sorted(mapping), {s: v[1] for s, v in mapping.items()}, {s: [v[2]] for s, v in mapping.items()}
    rel = f"{name}/categories.json"
    tables = _read_json(root, rel, files)
    fields = ("subcategories", "categories") + (("name_en2zh",) if name == "cmmlu" else ())
    for f in fields:
        table = tables.get(f) if isinstance(tables, dict) else None
        if not isinstance(table, dict) or not all(strings(v) or (f == "name_en2zh" and isinstance(v, str))
                                                  for v in table.values()):
            raise BaichuanError(f"{root / rel}: field {f!r} must map names to "
                                + ("Chinese names" if f == "name_en2zh" else "lists of names"))
    subcats, cats = tables["subcategories"], tables["categories"]
    categories = {s: [c for sub in subs for c, members in cats.items() if sub in members]
                  for s, subs in subcats.items()}
    names = tables.get("name_en2zh", {}) if name == "cmmlu" else {s: "" for s in subcats}
    for s in subcats:
        if not categories[s] or s not in names:
            raise BaichuanError(f"{root / rel}: subject {s!r} has " + ("no category" if not categories[s] else
                                                                        "no entry in 'name_en2zh'"))
    return sorted(subcats), names, categories


def list_subjects(name: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """A benchmark's subjects, from its mapping file alone."""
    if name not in LAYOUTS:
        raise BaichuanError(f"unknown benchmark {name!r}; choose from {', '.join(LAYOUTS)}")
    return _subject_tables(name, resolve_data_dir(data_dir), {})[0]


def load_benchmark(name: str, data_dir: str | os.PathLike | None = None, subjects=None,
                   limit_per_subject: int | None = None) -> Benchmark:
    """Read one benchmark (ceval, cmmlu, mmlu). `subjects` keeps only those (in the benchmark's
    order); `limit_per_subject` keeps the first N scored questions of each subject (file order)."""
    if name not in LAYOUTS:
        raise BaichuanError(f"unknown benchmark {name!r}; choose from {', '.join(LAYOUTS)}")
    layout = LAYOUTS[name]
    root = resolve_data_dir(data_dir)
    files: dict[str, str] = {}
    all_subjects, names, categories = _subject_tables(name, root, files)
    chosen = all_subjects
    if subjects is not None:
        wanted = set(subjects)
        unknown = sorted(wanted - set(all_subjects))
        if unknown or not wanted:
            raise BaichuanError(f"{layout.title} has no subject {unknown[0] if unknown else ''!r} "
                                f"(its subjects: {', '.join(all_subjects[:5])}, ...)")
        chosen = [s for s in all_subjects if s in wanted]
    shots, questions = {}, {}
    for subject in chosen:
        for split, store, limit in ((layout.shot_split, shots, None), (layout.eval_split, questions, limit_per_subject)):
            rel = layout.file.format(split=split, subject=subject)
            store[subject] = read_questions(root / rel, layout.headers[split], layout.columns, limit)
            files[rel] = _sha256(root / rel)
    return Benchmark(layout, chosen, shots, questions, {s: names.get(s, "") for s in chosen},
                     {s: categories[s] for s in chosen}, files)

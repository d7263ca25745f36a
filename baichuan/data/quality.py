"""A trainable quality scorer (like fastText's supervised mode, linear and dependency-free) and the
step that applies it to documents, paragraphs or sentences (step "quality").

Features, hashed into 2**bits buckets (default 2**20) with a fixed hash (crc32 + a 64-bit mix, so
a model scores the same in every process):
  - English: lower-cased ASCII words and ASCII punctuation marks, as unigrams and bigrams;
  - Chinese (any text with a Han character): character 1-, 2- and 3-grams over the text without
    whitespace, with each ASCII word collapsed to one marker character (the words themselves are
    already word features).
Both sequences get start and end markers, so "ends with 。", "starts with ，" are features: on
short units (sentences, verse lines) they are what tells real text from shuffled words, and they
raised held-out accuracy on such units from 0.88 to 0.92 in our tests.
Each occurrence weighs 1/sqrt(number of features), so long and short units score on one scale.

The model is logistic regression, p(good | text) = sigmoid(w . x + b), trained with mini-batch
AdaGrad on the log loss plus L2, classes re-weighted to equal total weight, batches shuffled with a
seeded generator: the same data and seed give bit-identical weights.

Files are .npz without pickle: a UTF-8 JSON header (format, version, feature settings, training
summary) and the non-zero buckets (uint32 index, float32 weight) plus the float32 bias.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from baichuan.data.document import Document
from baichuan.data.ngrams import MIX, codepoints, iter_ngram_hashes
from baichuan.data.text import CJK_IDEOGRAPHS, join_kept, split_paragraphs, split_sentences
from baichuan.errors import BaichuanError

FORMAT = "baichuan-quality-model"
VERSION = 1

_EN_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)*|[!-/:-@\[-`{-~]")
_HAS_CJK = re.compile(f"[{CJK_IDEOGRAPHS}]")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_SPACE = re.compile(r"\s+")
# Different salts keep a word unigram, a word bigram and a character n-gram from sharing buckets
# by construction (they still collide at random, as in any hashed model).
_SALT = {("w", 1): 0x51ED270B7A3C1F3D, ("w", 2): 0x2545F4914F6CDD1D,
         ("c", 1): 0x6A09E667F3BCC908, ("c", 2): 0xBB67AE8584CAA73B, ("c", 3): 0x3C6EF372FE94F82B}


def _crc(token: str) -> int:
    return zlib.crc32(token.encode())


_START, _END = _crc("\x02"), _crc("\x03")


def _word_hashes(lows: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Word unigram and bigram hashes of all texts at once, with the row each belongs to."""
    token_lists = [_EN_TOKEN.findall(t) for t in lows]
    n_tokens = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(lows))
    lengths = np.where(n_tokens > 0, n_tokens + 2, 0)          # + start and end markers
    total = int(lengths.sum())
    if total == 0:
        return [], []
    starts = np.cumsum(lengths) - lengths
    has = n_tokens > 0
    seq = np.empty(total, dtype=np.uint64)
    inner = np.ones(total, dtype=bool)
    inner[starts[has]] = inner[starts[has] + lengths[has] - 1] = False
    seq[starts[has]] = _START
    seq[starts[has] + lengths[has] - 1] = _END
    flat = [t for tokens in token_lists for t in tokens]
    seq[inner] = np.fromiter(map(_crc, flat), dtype=np.uint64, count=len(flat))
    row = np.repeat(np.arange(len(lows)), lengths)
    return _ngrams(seq, row, (1, 2), "w")


def _char_hashes(lows: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Character 1-3-gram hashes of the texts that contain Han characters, with their rows."""
    rows = [i for i, t in enumerate(lows) if _HAS_CJK.search(t)]
    if not rows:
        return [], []
    strings = ["\x02" + _SPACE.sub("", _ASCII_WORD.sub("\x01", lows[i])) + "\x03" for i in rows]
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    seq = codepoints("".join(strings)).astype(np.uint64)
    return _ngrams(seq, np.repeat(np.asarray(rows), lengths), (1, 2, 3), "c")


def _ngrams(seq: np.ndarray, row: np.ndarray, ns, kind: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n-gram hashes of a concatenation of sequences, dropping the n-grams that cross two rows."""
    hashes, rows = [], []
    for n, h in iter_ngram_hashes(seq, ns):
        r = row[:len(h)]
        inside = r == row[n - 1:n - 1 + len(h)]
        hashes.append(h[inside] ^ np.uint64(_SALT[kind, n]))
        rows.append(r[inside])
    return hashes, rows


def featurize(texts: Sequence[str], bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sparse batch (CSR): bucket per entry, value per entry, row offsets (len(texts) + 1).

    All texts are hashed together (one numpy pass per n-gram order over their concatenation), so
    scoring hundreds of sentences costs a few array operations, not hundreds.
    """
    lows = [t.lower() for t in texts]
    wh, wr = _word_hashes(lows)
    ch, cr = _char_hashes(lows)
    hashes, rows = wh + ch, wr + cr
    if not hashes:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(len(texts) + 1, dtype=np.int64)
    h = np.concatenate(hashes) * MIX            # multiplicative hashing: keep the top bits
    row = np.concatenate(rows)
    order = np.argsort(row, kind="stable")       # group by text, keeping the feature order
    index = (h[order] >> np.uint64(64 - bits)).astype(np.int64)
    counts = np.bincount(row, minlength=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    values = np.repeat(1.0 / np.sqrt(np.maximum(counts, 1)), counts)
    return index, values, offsets


def _rows(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))     # overflow-free logistic


class QualityModel:
    """Hashed-feature logistic regression: `train`, `score`, `save`, `load`."""

    def __init__(self, weights: np.ndarray, bias: float, bits: int, info: dict | None = None):
        if weights.shape != (1 << bits,):
            raise BaichuanError(f"quality model: {weights.shape[0]} weights for 2**{bits} buckets")
        self.weights = weights.astype(np.float32, copy=False)
        self.bias = np.float32(bias)
        self.bits = bits
        self.info = dict(info or {})

    # -- training --------------------------------------------------------------------------------
    @classmethod
    def train(cls, positives: Sequence[str], negatives: Sequence[str], *, bits: int = 20, epochs: int = 8,
              lr: float = 0.5, l2: float = 1e-6, batch_size: int = 64, seed: int = 0) -> QualityModel:
        """Fit on good (`positives`) and bad (`negatives`) examples; deterministic for a seed.

        AdaGrad (per-bucket step sizes suit hashed features: rare n-grams keep learning fast);
        the L2 penalty is applied to the buckets a batch touches, as sparse SGD usually does."""
        if not positives or not negatives:
            raise BaichuanError(f"quality model needs positive and negative examples "
                                f"(got {len(positives)} and {len(negatives)})")
        if not 16 <= bits <= 24:
            raise BaichuanError(f"quality model: bits must be 16..24, not {bits}")
        texts = list(positives) + list(negatives)
        y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
        # each class carries half the total weight, whatever the imbalance
        sample_w = np.where(y == 1, len(texts) / (2 * len(positives)), len(texts) / (2 * len(negatives)))
        index, values, offsets = featurize(texts, bits)
        lengths = np.diff(offsets)
        w = np.zeros(1 << bits)
        g2 = np.zeros(1 << bits)               # AdaGrad accumulators
        b, gb2 = 0.0, 0.0
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            order = rng.permutation(len(texts))
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                # gather the batch's entries without a Python loop over rows
                ln = lengths[rows]
                first = np.repeat(offsets[rows] - np.r_[0, np.cumsum(ln)[:-1]], ln)
                pos = first + np.arange(ln.sum())
                idx, val, row = index[pos], values[pos], np.repeat(np.arange(len(rows)), ln)
                z = np.bincount(row, weights=w[idx] * val, minlength=len(rows)) + b
                err = (_sigmoid(z) - y[rows]) * sample_w[rows] / len(rows)
                uniq, inv = np.unique(idx, return_inverse=True)
                grad = np.bincount(inv, weights=val * err[row], minlength=len(uniq)) + l2 * w[uniq]
                g2[uniq] += grad * grad
                w[uniq] -= lr * grad / (np.sqrt(g2[uniq]) + 1e-8)
                gbias = float(err.sum())
                gb2 += gbias * gbias
                b -= lr * gbias / (np.sqrt(gb2) + 1e-8)
        info = {"positives": len(positives), "negatives": len(negatives), "epochs": epochs, "lr": lr,
                "l2": l2, "batch_size": batch_size, "seed": seed}
        return cls(w.astype(np.float32), b, bits, info)

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, texts: Sequence[str] | str) -> np.ndarray:
        """Probability that each text is good (float64 array; a single string gives one element)."""
        if isinstance(texts, str):
            texts = [texts]
        index, values, offsets = featurize(texts, self.bits)
        z = np.bincount(_rows(offsets), weights=self.weights[index].astype(np.float64) * values,
                        minlength=len(texts)) + float(self.bias)
        return _sigmoid(z)

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write an .npz (no pickle): JSON header + non-zero buckets + bias."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT, "version": VERSION, "bits": self.bits,
                  "features": {"en": "ascii word 1-2-grams", "zh": "char 1-3-grams"}, "train": self.info}
        nz = np.flatnonzero(self.weights).astype(np.uint32)
        with open(path, "wb") as f:   # a file object: np.savez would append .npz to a str path
            np.savez_compressed(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                                index=nz, weight=self.weights[nz], bias=np.array([self.bias], dtype=np.float32))
        return path

    @classmethod
    def load(cls, path: str | Path) -> QualityModel:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(z["header"].tobytes().decode())
                index, weight, bias = z["index"], z["weight"], z["bias"]
            if header.get("format") != FORMAT or header.get("version") != VERSION:
                raise BaichuanError(f"{path}: not a {FORMAT} version {VERSION} file")
            bits = int(header["bits"])
            if not 16 <= bits <= 24 or (len(index) and int(index.max()) >= 1 << bits):
                raise ValueError(f"bad bucket count or index (bits={bits})")
            weights = np.zeros(1 << bits, dtype=np.float32)
            weights[index] = weight
            return cls(weights, float(bias[0]), bits, header.get("train"))
        except FileNotFoundError:
            raise BaichuanError(f"{path}: no such quality model file") from None
        except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, UnicodeDecodeError) as e:
            raise BaichuanError(f"{path}: not a quality model ({e})") from None


# -- training from files -------------------------------------------------------------------------
def read_examples(path: str | Path) -> list[str]:
    """Examples from a text file (one per non-empty line) or JSON lines (.jsonl/.json, the "text"
    field); either may be gzip'd (.gz)."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    is_json = name.endswith((".jsonl", ".json"))
    opener = gzip.open if path.name.endswith(".gz") else open
    out = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if not is_json:
                    out.append(line.rstrip("\n"))
                    continue
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise BaichuanError(f"{path}:{n}: expected a JSON object with a \"text\" field") from None
                if not isinstance(text, str):
                    raise BaichuanError(f"{path}:{n}: \"text\" is not a string")
                out.append(text)
    except FileNotFoundError:
        raise BaichuanError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise BaichuanError(f"{path}: not UTF-8 text") from None
    return out


def train_quality_model(pos_files: Iterable[str | Path], neg_files: Iterable[str | Path],
                        out_path: str | Path, **train_options) -> QualityModel:
    """Train on the examples of `pos_files` (good) and `neg_files` (bad), save to `out_path`."""
    positives = [t for p in pos_files for t in read_examples(p)]
    negatives = [t for p in neg_files for t in read_examples(p)]
    model = QualityModel.train(positives, negatives, **train_options)
    model.save(out_path)
    return model


# -- the step ------------------------------------------------------------------------------------
LEVELS = ("document", "paragraph", "sentence")


class QualityFilter:
    """Step: score with a QualityModel and keep what scores >= `threshold`.

    level="document": drop the document ("quality_low") or keep it, with doc.meta["quality_score"].
    level="paragraph" / "sentence": score each unit (text.split_paragraphs / split_sentences),
    remove the low ones and rejoin the rest (text.join_kept keeps the line structure); drop the
    document with "quality_empty" if no unit is left.
    `model` is a QualityModel or the path of a saved one (loaded once per worker process).
    """

    name = "quality"

    def __init__(self, model: QualityModel | str | Path, level: str = "document", threshold: float = 0.5):
        if level not in LEVELS:
            raise BaichuanError(f"quality level must be one of {', '.join(LEVELS)}, not {level!r}")
        self.level, self.threshold = level, threshold
        if isinstance(model, QualityModel):
            self.model_path, self._model = None, model
        else:
            self.model_path, self._model = str(model), QualityModel.load(model)

    def __getstate__(self):   # ship the path, not 4 MB of weights, when there is one
        state = dict(self.__dict__)
        if self.model_path is not None:
            state["_model"] = None
        return state

    @property
    def model(self) -> QualityModel:
        if self._model is None:
            self._model = QualityModel.load(self.model_path)
        return self._model

    def __call__(self, doc: Document):
        if self.level == "document":
            p = float(self.model.score([doc.text])[0])
            doc.meta["quality_score"] = round(p, 4)
            return doc if p >= self.threshold else "quality_low"
        parts = split_paragraphs(doc.text) if self.level == "paragraph" else split_sentences(doc.text)
        units = [i for i, part in enumerate(parts) if part.strip()]
        if not units:
            return "quality_empty"
        scores = self.model.score([parts[i].strip() for i in units])
        keep = [True] * len(parts)
        for i, s in zip(units, scores):
            keep[i] = bool(s >= self.threshold)
        if not any(keep[i] for i in units):
            return "quality_empty"
        if all(keep):
            return doc
        return replace(doc, text=join_kept(parts, keep))

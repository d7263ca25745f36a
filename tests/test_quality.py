"""The trainable quality scorer: held-out accuracy on real vs synthetic text, files, the step."""

import gzip
import json
import pickle
import random

import numpy as np
import pytest

from baichuan.corpus import iter_documents
from baichuan.data.document import Document
from baichuan.data.filters import ZH_SPAM
from baichuan.data.quality import QualityFilter, QualityModel, read_examples, train_quality_model
from baichuan.errors import BaichuanError

EN_SPAM = ("casino poker viagra cheap pills bitcoin giveaway free download crack keygen bet slots jackpot "
           "payday loan replica watches").split()
BOILERPLATE_ZH = ["点击这里查看更多精彩内容", "版权所有 © 2023 某某网络科技有限公司 保留所有权利",
                  "扫码关注公众号，获取最新资讯", "上一篇：{} 下一篇：{}",
                  "免责声明：本站部分内容来源于网络，如有侵权请联系删除",
                  "联系我们 | 关于我们 | 网站地图 | 友情链接", "责任编辑：{}", "分享到：微信 微博 QQ空间"]
BOILERPLATE_EN = ["Click here to subscribe to our newsletter", "Copyright © 2023 Example Inc. All rights reserved.",
                  "Home | About | Contact | Privacy Policy", "Share on Facebook Twitter Pinterest",
                  "This website uses cookies to improve your experience.", "Read more >>",
                  "Posted by admin at {} | {} comments", "Sign up for free today and get {} off"]
HAN = [chr(c) for c in range(0x4E00, 0x9FA5)]


def paragraphs(lang, split, n, seed):
    """Paragraph-sized units of real text: consecutive lines joined up to 40 (zh) / 100 (en) chars."""
    size, sep = (40, "") if lang == "zh" else (100, " ")
    out = []
    for d in iter_documents(lang, split):
        cur = ""
        for line in d["text"].split("\n"):
            cur = cur + sep + line if cur else line
            if len(cur) >= size:
                out.append(cur)
                cur = ""
    random.Random(seed).shuffle(out)
    return out[:n]


def corrupt(text, lang, rng):
    """One synthetic negative from a real unit: shuffled words, keyword spam, boilerplate, random chars."""
    kind = rng.randrange(4)
    if kind == 0:
        tokens = list(text) if lang == "zh" else text.split()
        rng.shuffle(tokens)
        return ("" if lang == "zh" else " ").join(tokens)
    if kind == 1:
        vocab = ZH_SPAM if lang == "zh" else EN_SPAM
        return rng.choice((" ", "", "！")).join(rng.choice(vocab) for _ in range(rng.randint(3, 12)))
    if kind == 2:
        template = rng.choice(BOILERPLATE_ZH if lang == "zh" else BOILERPLATE_EN)
        return template.format(*(rng.choice(text.split() or [text])[:8] for _ in range(2)))
    if lang == "zh":
        return "".join(rng.choice(HAN) for _ in range(rng.randint(10, 60)))
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(rng.randint(4, 20)))


def dataset(split, n, seed):
    rng = random.Random(seed)
    pos, neg = [], []
    for lang in ("zh", "en"):
        units = paragraphs(lang, split, n, seed)
        pos += units
        neg += [corrupt(u, lang, rng) for u in units]
    return pos, neg


@pytest.fixture(scope="module")
def model():
    pos, neg = dataset("train", 3000, seed=1)
    return QualityModel.train(pos, neg, seed=0)


def test_heldout_accuracy(model):
    pos, neg = dataset("heldout", 600, seed=2)        # other works, other poets, other seeds
    sp, sn = model.score(pos), model.score(neg)
    accuracy = ((sp >= 0.5).sum() + (sn < 0.5).sum()) / (len(sp) + len(sn))
    assert accuracy >= 0.9
    assert (sp >= 0.5).mean() >= 0.95                 # real text is rarely thrown away


def test_training_is_deterministic():
    pos, neg = dataset("train", 300, seed=3)
    a = QualityModel.train(pos, neg, bits=18, epochs=2, seed=7)
    b = QualityModel.train(pos, neg, bits=18, epochs=2, seed=7)
    c = QualityModel.train(pos, neg, bits=18, epochs=2, seed=8)
    assert np.array_equal(a.weights, b.weights) and a.bias == b.bias
    assert not np.array_equal(a.weights, c.weights)


def test_save_load_round_trip(model, tmp_path):
    path = model.save(tmp_path / "q.npz")
    with np.load(path, allow_pickle=False) as z:       # a plain npz, no pickled objects
        header = json.loads(z["header"].tobytes().decode())
        assert header["format"] == "baichuan-quality-model" and header["bits"] == 20
        assert z["index"].dtype == np.uint32 and len(z["index"]) < 1 << 20
    loaded = QualityModel.load(path)
    texts = paragraphs("zh", "heldout", 50, 5) + paragraphs("en", "heldout", 50, 5) + ["", "。", "a"]
    assert np.array_equal(model.score(texts), loaded.score(texts))


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BaichuanError):
        QualityModel.load(bad)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(BaichuanError):
        QualityModel.load(tmp_path / "other.npz")
    with pytest.raises(BaichuanError):
        QualityModel.load(tmp_path / "missing.npz")


SPAM_ZH = "澳门博彩娱乐城，真人娱乐百家乐，六合彩开奖结果，时时彩代理，网上赌博首选平台，注册即送彩金！"
SPAM_EN = "casino bonus free spins jackpot slots poker bet now cheap viagra pills bitcoin giveaway click here"


def test_paragraph_level_removes_the_spam_paragraph(model):
    good_zh = paragraphs("zh", "heldout", 3, 11)
    good_en = paragraphs("en", "heldout", 3, 11)
    text = "\n".join(good_zh[:2] + [SPAM_ZH] + good_zh[2:])
    out = QualityFilter(model, level="paragraph")(Document(text, "zh/0", {}))
    assert out.text == "\n".join(good_zh)
    text = "\n\n".join(good_en[:1] + [SPAM_EN] + good_en[1:])
    out = QualityFilter(model, level="paragraph")(Document(text, "en/0", {}))
    assert out.text == "\n\n".join(good_en)


def test_sentence_level_and_document_level(model):
    good = [p for p in paragraphs("zh", "heldout", 50, 13) if p.endswith("。")][:2]
    text = good[0] + SPAM_ZH + good[1]
    out = QualityFilter(model, level="sentence")(Document(text, "zh/1", {}))
    assert "博彩" not in out.text and "彩金" not in out.text
    assert len(out.text) >= 0.8 * len(good[0] + good[1])
    doc = Document(good[0], "zh/2", {})
    assert QualityFilter(model)(doc) is doc and doc.meta["quality_score"] >= 0.5
    assert QualityFilter(model)(Document(SPAM_ZH, "zh/3", {})) == "quality_low"
    assert QualityFilter(model, level="paragraph")(Document(SPAM_ZH + "\n" + SPAM_EN, "x", {})) == "quality_empty"
    with pytest.raises(BaichuanError):
        QualityFilter(model, level="word")


def test_filter_ships_the_path_not_the_weights(model, tmp_path):
    path = model.save(tmp_path / "q.npz")
    step = QualityFilter(path, level="paragraph", threshold=0.5)
    blob = pickle.dumps(step)
    assert len(blob) < 2000
    clone = pickle.loads(blob)
    text = "\n".join(paragraphs("zh", "heldout", 2, 17) + [SPAM_ZH])
    assert clone(Document(text, "d", {})).text == step(Document(text, "d", {})).text


def test_train_quality_model_from_files(tmp_path):
    pos, neg = dataset("train", 200, seed=4)
    (tmp_path / "pos.txt").write_text("\n".join(pos[:200]) + "\n\n", encoding="utf-8")
    with gzip.open(tmp_path / "pos.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t, "id": i}, ensure_ascii=False) + "\n" for i, t in enumerate(pos[200:]))
    (tmp_path / "neg.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in neg), encoding="utf-8")
    assert read_examples(tmp_path / "pos.txt") == pos[:200]
    assert read_examples(tmp_path / "pos.jsonl.gz") == pos[200:]
    out = tmp_path / "m" / "quality.npz"
    m = train_quality_model([tmp_path / "pos.txt", tmp_path / "pos.jsonl.gz"], [tmp_path / "neg.jsonl"], out,
                            bits=18, epochs=2)
    assert m.info["positives"] == 400 and m.info["negatives"] == 400 and out.exists()
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n', encoding="utf-8")
    with pytest.raises(BaichuanError, match="bad.jsonl:2"):
        read_examples(tmp_path / "bad.jsonl")
    with pytest.raises(BaichuanError):
        train_quality_model([tmp_path / "pos.txt"], [], out)

"""Cross-check against lm-evaluation-harness itself (skipped when `lm_eval` is not installed:
`pip install lm-eval==0.4.13 accelerate`). Its task YAMLs are loaded from the installed package and
fed our CSVs through `custom_dataset`, so nothing is downloaded: the prompt strings come from its
own Jinja templates and few-shot sampler, the continuations from its request builder, and the
log-likelihoods from its HF backend (HFLM) running an HF Llama that holds our tiny model's weights."""

import csv
import os
from pathlib import Path

import pytest
import torch
from conftest import ASSETS, REPO

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
lm_eval = pytest.importorskip("lm_eval")
datasets = pytest.importorskip("datasets")

from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from baichuan.eval.data import load_benchmark
from baichuan.eval.harness import run_eval
from baichuan.eval.settings import EvalSettings
from baichuan.eval.protocols import (
    LMEVAL_MMLU_GROUPS,
    LMEVAL_MMLU_MOVED,
    ContinuationEncoder,
    build_prompt,
    subject_name,
    template,
)

EVALDATA = Path(os.environ.get("BAICHUAN_EVALDATA", REPO.parent / "shared" / "evaldata"))
TASKS = Path(lm_eval.__file__).parent / "tasks"
YAML = {"ceval": "ceval/ceval-valid_{}.yaml", "cmmlu": "cmmlu/cmmlu_{}.yaml", "mmlu": "mmlu/default/mmlu_{}.yaml"}


@pytest.fixture(scope="module")
def data():
    if not (EVALDATA / "ceval").is_dir():
        pytest.skip(f"evaluation data {EVALDATA} is absent (set BAICHUAN_EVALDATA to its folder)")
    return EVALDATA


def _rows(path, header=True):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f)) if header else list(csv.reader(f))


def _hf_splits(data, bench, subject):
    """Our CSVs in the shape of the HF datasets lm-eval would download (ceval/ceval-exam,
    haonan-li/cmmlu: the CSV columns; cais/mmlu: question, subject, choices, answer index)."""
    if bench == "ceval":
        return {s: _rows(data / "ceval" / s / f"{subject}_{s}.csv") for s in ("dev", "val")}
    if bench == "cmmlu":
        return {s: _rows(data / "cmmlu" / s / f"{subject}.csv") for s in ("dev", "test")}
    return {s: [{"question": r[0], "subject": subject, "choices": r[1:5], "answer": "ABCD".index(r[5])}
                for r in _rows(data / "mmlu" / s / f"{subject}_{s}.csv", header=False)] for s in ("dev", "test")}


def lmeval_task(data, bench, subject, limit=None):
    cfg = load_yaml(TASKS / YAML[bench].format(subject))
    splits = _hf_splits(data, bench, subject)
    eval_split = "val" if bench == "ceval" else "test"
    splits[eval_split] = splits[eval_split][:limit]
    cfg["custom_dataset"] = lambda **_: datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})
    task = ConfigurableTask(config=cfg)
    return task, list(task.validation_docs() if bench == "ceval" else task.test_docs())


CASES = [("ceval", "computer_network"), ("ceval", "mao_zedong_thought"), ("cmmlu", "agronomy"),
         ("cmmlu", "chinese_food_culture"), ("mmlu", "abstract_algebra"), ("mmlu", "college_computer_science")]


@pytest.mark.parametrize("bench,subject", CASES)
def test_prompts_continuations_and_targets_equal_lm_eval(data, bench, subject):
    task, docs = lmeval_task(data, bench, subject)
    b = load_benchmark(bench, data, [subject])
    t = template("lm-eval", bench)
    name = subject_name(t, subject, b.names[subject])
    assert len(docs) == len(b.questions[subject])
    for doc, q in zip(docs, b.questions[subject]):
        ctx = task.fewshot_context(doc, 5)
        assert ctx == build_prompt(t, name, b.shots[subject], q)[1]
        assert [r.arguments[1] for r in task.construct_requests(doc, ctx)] == [" A", " B", " C", " D"]
        assert task.doc_to_target(doc) == "ABCD".index(q.answer)


class _PairEncoder:
    """The `self` lm-eval's TemplateLM._encode_pair needs: a causal backend and tok_encode."""
    backend = "causal"

    def __init__(self, tok):
        self.tok_encode = tok.encode


def test_continuation_tokens_equal_lm_eval_encode_pair(data, small_tokenizer):
    from lm_eval.api.model import TemplateLM

    from baichuan.tokenizer import Tokenizer
    toks = [small_tokenizer]
    for name in ("baichuan1", "baichuan2"):
        path = ASSETS / name / "tokenizer.model"
        if path.exists():
            toks.append(Tokenizer.load(path))
    contexts = []
    for bench, subject in CASES:
        task, docs = lmeval_task(data, bench, subject, limit=3)
        contexts += [task.fewshot_context(d, 5) for d in docs] + ["答案： ", "Answer:"]
    for tok in toks:
        ours = ContinuationEncoder(tok)
        for ctx in contexts:
            theirs = [TemplateLM._encode_pair(_PairEncoder(tok), ctx, " " + L) for L in "ABCD"]
            assert ours(ctx) == [cont for _, cont in theirs]
            assert ours.context_ids(ctx) == theirs[0][0]


def test_lmeval_mmlu_groups_are_our_lm_eval_categories(data):
    import yaml
    cats = load_benchmark("mmlu", data, limit_per_subject=1).categories
    for path in sorted((TASKS / "mmlu" / "default").glob("mmlu_*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        if "dataset_name" not in cfg:
            continue
        s = cfg["dataset_name"]
        ours = LMEVAL_MMLU_MOVED.get(s) or LMEVAL_MMLU_GROUPS[cats[s][0]]
        assert cfg["tag"] == f"mmlu_{ours}_tasks", s


def _hf_llama(model):
    import transformers
    cfg, H = model.cfg, model.cfg.hidden_size
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=H, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_len, rms_norm_eps=cfg.rms_norm_eps, rope_theta=cfg.rope_theta,
        tie_word_embeddings=False)).eval()
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("W_pack.weight"):
            base = k[:-len("W_pack.weight")]
            sd[base + "q_proj.weight"], sd[base + "k_proj.weight"], sd[base + "v_proj.weight"] = v[:H], v[H:2 * H], v[2 * H:]
        else:
            sd[k] = v
    hf.load_state_dict(sd, strict=False)
    return hf


@pytest.mark.parametrize("bench,subject", [("ceval", "computer_network"), ("mmlu", "anatomy")])
def test_log_likelihoods_equal_lm_eval_hf_backend(data, small_tokenizer, bench, subject):
    """The same weights through lm-eval's HFLM (its batching, right padding, left truncation to
    max_length=512, which cuts every 5-shot prompt here) and through our harness."""
    pytest.importorskip("accelerate")
    from lm_eval.models.huggingface import HFLM
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    from baichuan.config import preset
    from baichuan.model import build
    torch.manual_seed(0)
    model = build(preset("tiny", vocab_size=small_tokenizer.vocab_size, max_len=512)).eval()
    hf_tok = SentencePieceBackend(vocab_file=small_tokenizer.source, unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", pad_token="<unk>", add_bos_token=False)
    lm = HFLM(pretrained=_hf_llama(model), tokenizer=hf_tok, backend="causal", batch_size=4, device="cpu",
              max_length=512)
    task, docs = lmeval_task(data, bench, subject, limit=6)
    requests = [r for d in docs for r in task.construct_requests(d, task.fewshot_context(d, 5))]
    theirs = [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]
    res = run_eval(model, small_tokenizer, [bench], data_dir=data,
                   settings=EvalSettings(protocol="lm-eval", limit_per_subject=6, subjects=[subject], progress=False,
                                         keep_predictions=True))
    r = res["tasks"][bench]
    ours = [lp for p in r["predictions"] for lp in p["logprobs"]]
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert r["prompts"]["left_truncated"] == 6
    preds = ["ABCD"[max(range(4), key=lambda k: theirs[4 * i + k])] for i in range(len(docs))]
    assert [p["pred"] for p in r["predictions"]] == preds

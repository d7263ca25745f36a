"""Domain adaptation: continue pretraining a model on a domain corpus, replaying general text to
limit forgetting, and report the change on domain and general exam subjects. One command:

    baichuan adapt --init-from Baichuan2-7B-Base --domain raw/medical --general raw/web \\
                   --replay 0.2 --steps 2000 --evaldata ../evaldata --out out/medical

What it runs: the data pipeline over both corpora (sources "domain" and "general", mixed so
that `replay` of each language's characters are general text), continued pretraining from
--init-from with its tokenizer, and C-Eval (5-shot) on the domain's subjects and on a spread of
general subjects before and after. The recipe and its knobs are in docs/training.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from baichuan.errors import BaichuanError

# C-Eval subjects of Baichuan's announced verticals, and a spread of general ones to watch forgetting
DOMAIN_SUBJECTS = {
    "medicine": ["basic_medicine", "clinical_medicine", "physician", "veterinary_medicine"],
    "education": ["education_science", "teacher_qualification"],
    "law": ["law", "legal_professional"],
}
GENERAL_SUBJECTS = ["computer_network", "college_economics", "high_school_history", "logic",
                    "middle_school_mathematics", "chinese_language_and_literature"]


def _exam(model_dir, subjects, evaldata, limit) -> dict:
    from baichuan.eval.command import evaluate
    from baichuan.eval.settings import EvalSettings
    from baichuan.runtime import load_model_and_tokenizer
    model, tok = load_model_and_tokenizer(model_dir)
    res = evaluate(model, tok, ["ceval"], data_dir=evaldata, model_name="adapt",
                   settings=EvalSettings(subjects={"ceval": subjects}, limit_per_subject=limit, progress=False))
    return {s: r["acc"] for s, r in res["tasks"]["ceval"]["subjects"].items()}


def adapt(init_from: str, domain: list[str], general: list[str], out: str, replay: float = 0.2,
          vertical: str = "medicine", evaldata: str | None = None, eval_limit: int | None = None,
          workers: int = 2, **train_options) -> dict:
    from baichuan.data import pipeline
    from baichuan.train.pretrain import TrainConfig, train

    if not 0 <= replay < 1:
        raise BaichuanError(f"replay must be in [0, 1), got {replay}")
    if vertical not in DOMAIN_SUBJECTS:
        raise BaichuanError(f"vertical must be one of {', '.join(DOMAIN_SUBJECTS)}, got {vertical!r}")
    out_dir = Path(out)
    inputs = [{"path": p, "source": "domain"} for p in domain] + [{"path": p, "source": "general"} for p in general]
    mixture = {"source": {"domain": 1 - replay, "general": replay}, "seed": train_options.get("seed", 0)}
    data = pipeline.config_from_dict({"inputs": inputs, "output": str(out_dir / "data"), "tokenizer": init_from,
                                      "mixture": mixture, "executor": "pool" if workers > 1 else "local",
                                      "workers": workers})
    report = pipeline.run(data)
    print(f"data      {report['mixture_rates']}")
    for lang, sources in sorted(report["composition"].items()):
        missing = [s for s in ("domain", "general") if not sources.get(s)]
        if missing and 0 < replay:  # the mixture is met per language: this one cannot mix
            print(f"warning   {lang} text comes from {' and '.join(s for s in sources if sources[s])} only: "
                  f"no {missing[0]} text in {lang}, so replay {replay} cannot hold for it")
    if not evaldata:
        print("note      no --evaldata: the before/after C-Eval comparison is skipped")

    subjects = DOMAIN_SUBJECTS[vertical] + GENERAL_SUBJECTS
    before = _exam(init_from, subjects, evaldata, eval_limit) if evaldata else None
    cfg = TrainConfig(task="pretrain", init_from=init_from, data=str(out_dir / "data" / "tokens"),
                      out=str(out_dir / "train"), tokenizer=init_from, **train_options)
    result = train(cfg)
    summary = {"train": {k: result.get(k) for k in ("steps", "final_loss", "model_dir")},
               "mixture_rates": report["mixture_rates"]}
    if before is not None:
        after = _exam(result["model_dir"], subjects, evaldata, eval_limit)
        groups = {vertical: DOMAIN_SUBJECTS[vertical], "general": GENERAL_SUBJECTS}
        rows = []
        for name, members in groups.items():
            b = sum(before[s] for s in members) / len(members)
            a = sum(after[s] for s in members) / len(members)
            rows.append({"group": name, "subjects": members, "before": b, "after": a, "change": a - b})
        summary["exam"] = {"rows": rows, "before": before, "after": after}
        print("| C-Eval subjects | before | after | change |\n|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['group']} ({len(r['subjects'])}) | {r['before']:.1%} | {r['after']:.1%} | {r['change']:+.1%} |")
    (out_dir / "adapt.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary

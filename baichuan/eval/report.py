"""Evaluation results out: a Markdown summary, per-subject tables, a per-category bar chart, JSON.

    write_results(results, "out/eval")   # results.json, results.md, results.png (+ predictions.jsonl)
    print(format_table(results))        # the summary alone (what speedrun prints)
"""

from __future__ import annotations

import io
import json
from pathlib import Path


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def format_table(results: dict) -> str:
    """Overall and per-category accuracy of every task (%), and bits per byte when present."""
    lines = []
    tasks = results.get("tasks") or {}
    if tasks:
        lines += [f"protocol `{results['protocol']}`, {results['shots']}-shot"
                  + (f", first {results['limit_per_subject']} questions per subject" if results.get("limit_per_subject")
                     else "") + (f", model {results['model']}" if results.get("model") else "")
                  + (f", {results['dtype']}" if results.get("dtype") else ""), "",
                  "| task | group | subjects | questions | acc | micro | macro |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in tasks.values():
            head = f"{r['benchmark']} {r['split']}"
            lines.append(f"| **{head}** | **all** ({r['headline']}) | {len(r['subjects'])} | {r['n']} | "
                         f"**{_pct(r['acc'])}** | {_pct(r['acc_micro'])} | {_pct(r['acc_macro'])} |")
            for cat, c in r["categories"].items():
                lines.append(f"| {head} | {cat} | {c['subjects']} | {c['n']} | {_pct(c['acc'])} | "
                             f"{_pct(c['acc_micro'])} | {_pct(c['acc_macro'])} |")
    bpb = results.get("bpb")
    if bpb:
        if lines:
            lines.append("")
        lines += ["| text | docs | bytes | tokens | loss (nats/token) | perplexity | bits/byte |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, b in bpb.items():
            lines.append(f"| {name} | {b['docs']} | {b['bytes']:,} | {b['tokens']:,} | {b['loss']:.4f} | "
                         f"{b['perplexity']:.2f} | {b['bpb']:.4f} |")
    return "\n".join(lines) + "\n"


def format_subjects(result: dict) -> str:
    """One task's per-subject table (%)."""
    lines = [f"### {result['benchmark']} {result['split']}: per subject", "",
             "| subject | category | questions | correct | acc |", "|---|---|---:|---:|---:|"]
    for s, v in result["subjects"].items():
        lines.append(f"| {s} | {', '.join(v['categories'])} | {v['n']} | {v['correct']} | {_pct(v['acc'])} |")
    return "\n".join(lines) + "\n"


def format_markdown(results: dict) -> str:
    """The whole report: summary, how it was run (data checksums included), per-subject tables."""
    parts = ["# Evaluation", "", format_table(results), "## How", ""]
    for r in results.get("tasks", {}).values():
        p = r["prompts"]
        parts.append(f"- **{r['benchmark']}** ({r['template']}): {r['headline']} average; answer tokens "
                     f"{json.dumps(r['answer_tokens']['ids'])}; prompts {p['mean_tokens']:.0f} tokens on average "
                     f"(max {p['max_tokens']}), {p['fewer_shots']} with fewer shots, {p['left_truncated']} "
                     f"left-truncated; data sha256 {r['data']['sha256']} over {len(r['data']['files'])} files")
    parts.append("")
    for r in results.get("tasks", {}).values():
        parts += [format_subjects(r), ""]
    return "\n".join(parts)


def plot_categories(results: dict) -> bytes | None:
    """A PNG of per-category bars for each task, the overall average as the last bar, chance (25%)
    dashed; None without multiple-choice tasks."""
    tasks = results.get("tasks") or {}
    if not tasks:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for ax, r in zip(axes[0], tasks.values()):
        names = list(r["categories"]) + ["all"]
        values = [100 * c["acc"] for c in r["categories"].values()] + [100 * r["acc"]]
        colors = ["tab:blue"] * (len(names) - 1) + ["tab:orange"]
        ax.bar(range(len(names)), values, color=colors)
        ax.axhline(25, color="gray", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{r['benchmark']} {r['split']} ({r['headline']})", fontsize=10)
        for x, v in enumerate(values):
            ax.text(x, v + 1, f"{v:.1f}", ha="center", fontsize=7)
    fig.suptitle(f"protocol {results['protocol']}, {results['shots']}-shot"
                 + (f", {results['model']}" if results.get("model") else ""), fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return png.getvalue()


def write_results(results: dict, out_dir) -> dict[str, Path]:
    """results.json (predictions, when kept, go to predictions.jsonl instead), results.md,
    results.png; each written whole or not at all, and a chart or predictions file left by an
    earlier run that this one has none of is removed (it would not match the new results)."""
    from baichuan.data.writers import atomic_write_bytes, atomic_write_text
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    slim = {**results, "tasks": {k: {f: v for f, v in r.items() if f != "predictions"}
                                 for k, r in results.get("tasks", {}).items()}}
    atomic_write_text(paths["json"], json.dumps(slim, indent=1, ensure_ascii=False))
    atomic_write_text(paths["markdown"], format_markdown(results))
    chart, predictions = out / "results.png", out / "predictions.jsonl"
    png = plot_categories(results)
    if png:
        atomic_write_bytes(chart, png)
        paths["chart"] = chart
    else:
        chart.unlink(missing_ok=True)
    if any("predictions" in r for r in results.get("tasks", {}).values()):
        lines = [json.dumps({"task": task, **p}, ensure_ascii=False)
                 for task, r in results["tasks"].items() for p in r.get("predictions", [])]
        atomic_write_text(predictions, "\n".join(lines))
        paths["predictions"] = predictions
    else:
        predictions.unlink(missing_ok=True)
    return paths

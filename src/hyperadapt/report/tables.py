"""Markdown tables from results dicts (see ``hyperadapt.evaluation.harness.evaluate``)."""

from __future__ import annotations


def task_table(result: dict) -> str:
    """Per-task Markdown table of one result."""
    lines = ["| task | type | n | ROUGE-L | EM |", "|---|---|---|---|---|"]
    for name, s in result["tasks"].items():
        lines.append(f"| {name} | {s.get('condition_type', '')} | {s['n']} | {s['rougeL']:.1f} | {s['em']:.1f} |")
    m = result["mean"]
    lines.append(f"| **mean** | | | **{m['rougeL']:.1f}** | **{m['em']:.1f}** |")
    return "\n".join(lines) + "\n"


def summary_table(results: list[dict]) -> str:
    """One row per (method, split): mean ROUGE-L and EM over tasks, tasks, instances and seconds."""
    lines = [
        "| method | data | split | setting | tasks | instances | ROUGE-L | EM | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = sum(t["n"] for t in r["tasks"].values())
        lines.append(
            f"| {r['method']} | {r.get('data', '')} | {r.get('split', '')} | {r['setting']} | {len(r['tasks'])} "
            f"| {n} | {r['mean']['rougeL']:.1f} | {r['mean']['em']:.1f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"

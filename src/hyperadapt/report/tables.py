"""Markdown tables from results dicts (see ``hyperadapt.evaluation.harness.evaluate``)."""

from __future__ import annotations


def task_table(result: dict) -> str:
    """Per-task Markdown table of one result."""
    lines = ["| task | type | n | ROUGE-L | EM |", "|---|---|---|---|---|"]
    for name, s in result["tasks"].items():
        lines.append(f"| {name} | {s.get('condition_type', '')} | {s['n']} | {s['rougeL']:.1f} | {s['em']:.1f} |")
    m = result["mean"]
    lines.append(f"| **instance mean** (official) | | {m.get('n', '')} | **{m['rougeL']:.1f}** | **{m['em']:.1f}** |")
    if "task_mean" in m:
        lines.append(f"| task mean | | | {m['task_mean']['rougeL']:.1f} | {m['task_mean']['em']:.1f} |")
    return "\n".join(lines) + "\n"


def summary_table(results: list[dict]) -> str:
    """One row per (method, split): instance-mean ROUGE-L and EM (official), the task-mean ROUGE-L beside them,
    tasks, instances and seconds."""
    lines = [
        "| method | data | split | setting | tasks | instances | ROUGE-L | EM | ROUGE-L task mean | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = sum(t["n"] for t in r["tasks"].values())
        m = r["mean"]
        tm = m.get("task_mean", m)
        lines.append(
            f"| {r['method']} | {r.get('data', '')} | {r.get('split', '')} | {r['setting']} | {len(r['tasks'])} "
            f"| {n} | {m['rougeL']:.1f} | {m['em']:.1f} | {tm['rougeL']:.1f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"

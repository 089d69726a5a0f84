"""Markdown tables: the one table writer (:func:`markdown_table`) and the tables of results dicts (see
``hyperadapt.evaluation.harness.evaluate``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table, its lines joined by newlines (no newline after the last): each cell
    is ``str(cell)`` with ``|`` escaped and line breaks made spaces.

    >>> print(markdown_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    |---|---|
    | 1 | x\\|y |
    """

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(_cell(c) for c in cells) + " |"

    return "\n".join([line(header), "|---" * len(header) + "|", *(line(row) for row in rows)])


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def task_table(result: Mapping[str, Any]) -> str:
    """Per-task Markdown table of one result."""
    rows: list[list[object]] = [
        [name, s.get("condition_type", ""), s["n"], f"{s['rougeL']:.1f}", f"{s['em']:.1f}"]
        for name, s in result["tasks"].items()
    ]
    m = result["mean"]
    rows.append(["**instance mean** (official)", "", m.get("n", ""), f"**{m['rougeL']:.1f}**", f"**{m['em']:.1f}**"])
    if "task_mean" in m:
        rows.append(["task mean", "", "", f"{m['task_mean']['rougeL']:.1f}", f"{m['task_mean']['em']:.1f}"])
    return markdown_table(["task", "type", "n", "ROUGE-L", "EM"], rows) + "\n"


def summary_table(results: Sequence[Mapping[str, Any]]) -> str:
    """One row per (method, split): instance-mean ROUGE-L and EM (official), the task-mean ROUGE-L beside them,
    tasks, instances and seconds."""
    header = [
        "method",
        "data",
        "split",
        "setting",
        "tasks",
        "instances",
        "ROUGE-L",
        "EM",
        "ROUGE-L task mean",
        "seconds",
    ]
    rows = []
    for r in results:
        m = r["mean"]
        tm = m.get("task_mean", m)
        rows.append(
            [
                r["method"],
                r.get("data", ""),
                r.get("split", ""),
                r["setting"],
                len(r["tasks"]),
                sum(t["n"] for t in r["tasks"].values()),
                f"{m['rougeL']:.1f}",
                f"{m['em']:.1f}",
                f"{tm['rougeL']:.1f}",
                f"{r['seconds']:.0f}",
            ]
        )
    return markdown_table(header, rows) + "\n"

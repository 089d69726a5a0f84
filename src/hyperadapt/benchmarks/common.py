"""Pieces the benchmarks share: scoring a method on several splits, writing the result JSON + table, and driving
an OpenAI-compatible server with concurrent clients (``drive_load``)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import httpx

from hyperadapt.benchmarks import Parser
from hyperadapt.data.schema import Task
from hyperadapt.evaluation.harness import EvalConfig, Method, evaluate
from hyperadapt.io import atomic_write_text, check_out_dir, check_out_file, save_json
from hyperadapt.report.tables import markdown_table


class SplitScore(TypedDict):
    """A method's score on one split, as ``score`` records it: the instance mean (``rougeL``, ``em``, ``n``) and
    each task's ``rougeL``, ``em`` and ``n``."""

    mean: dict[str, float]
    tasks: dict[str, dict[str, float]]


def add_set_option(parser: Parser, what: str) -> None:
    """``--set KEY=VALUE``, repeatable, as every ``hyperadapt`` command takes it (``Parser.add_set_option``)."""
    parser.add_set_option(what)


def check_outputs(out: str | Path, **folders: str | Path | None) -> None:
    """Check before any work that the result ``out`` (JSON, with its ``.md`` table beside it) and the
    ``folders`` (``--runs``, ``--plots``: option name without dashes -> path, None for none) can be written."""
    check_out_file(out, "--out")
    check_out_file(Path(out).with_suffix(".md"), "--out")
    for name, folder in folders.items():
        if folder is not None:
            check_out_dir(folder, f"--{name}")


def score(
    method: Method,
    splits: dict[str, list[Task]],
    ecfg: EvalConfig | dict[str, EvalConfig],
    model: str,
    data: str,
    answers_dir: str | Path | None = None,
) -> dict[str, SplitScore]:
    """Mean and per-task ROUGE-L / EM of ``method`` on every split (``ecfg`` may differ per split).

    With ``answers_dir``, answers are logged there as they come (``<method>.<split>.answers.jsonl``) and
    a rerun continues an interrupted evaluation.
    """
    out: dict[str, SplitScore] = {}
    for split, tasks in splits.items():
        cfg = ecfg[split] if isinstance(ecfg, dict) else ecfg
        answers = None if answers_dir is None else Path(answers_dir) / f"{method.name}.{split}.answers.jsonl"
        res = evaluate(method, tasks, cfg, model=model, data=data, split=split, answers_path=answers)
        out[split] = {
            "mean": res["mean"],
            "tasks": {k: {m: v[m] for m in ("rougeL", "em", "n")} for k, v in res["tasks"].items()},
        }
        print(
            f"  {method.name:<18} {split:<18} rougeL={res['mean']['rougeL']:.2f} em={res['mean']['em']:.2f}", flush=True
        )
    return out


def table_rows(result: Mapping[str, Any], label: str = "{name} ({kind} instruction)") -> dict[str, Any]:
    """``result["results"]`` and, after them, each of its ``sensitivity`` variants as a row named by ``label``."""
    rows = dict(result.get("results", {}))
    for name, variants in result.get("sensitivity", {}).items():
        rows.update({label.format(name=name, kind=kind): res for kind, res in variants.items()})
    return rows


def markdown(result: Mapping[str, Any]) -> str:
    """The means of ``result["results"]`` (and of its ``sensitivity`` variants) as a Markdown table."""
    rows = table_rows(result)
    splits = list(dict.fromkeys(s for res in rows.values() for s in res))
    # train_s: this process's wall time; train_steps_s (results since it was recorded): the optimiser steps'
    # seconds over every session that ran them, the column a resumed run needs
    timings = [("train s", result.get("train_s", {}))]
    if "train_steps_s" in result:
        timings.append(("steps s, all sessions", result["train_steps_s"]))
    table = [
        [
            name,
            *(_cell(res[s]["mean"]) if s in res else "" for s in splits),
            *("" if seconds.get(name) is None else f"{seconds[name]:.0f}" for _, seconds in timings),
        ]
        for name, res in rows.items()
    ]
    lines = [
        f"`{result.get('command', '')}`",
        "",
        markdown_table(["method", *(f"{s} ROUGE-L / EM" for s in splits), *(head for head, _ in timings)], table),
    ]
    eff = result.get("efficiency")
    if eff and "ratio" in eff:
        ratio = eff["ratio"]
        a, b = ratio["of"]
        lines += [
            "",
            f"Efficiency ({eff.get('instances')} answers over {eff.get('tasks', '?')} tasks): {a} / {b} "
            f"FLOPs {ratio['flops']:.3f}, wall time {ratio['wall']:.3f}.",
        ]
        for k, r in ratio.get("amortized", {}).items():
            lines.append(
                f"At {k} answers per task (set-up amortized): FLOPs {r['flops']:.3f}, wall time {r['wall']:.3f}."
            )
        if "answers_only" in ratio:
            lines.append(
                f"Answers alone (adapters cached): FLOPs {ratio['answers_only']['flops']:.3f}, wall time "
                f"{ratio['answers_only']['wall']:.3f}."
            )
    for key in ("comparisons", "budget_gains"):  # paired differences: from one reference row, or across budgets
        comp = result.get(key)
        if not comp or not comp.get("rows"):
            continue
        diffs = [
            [
                name if d.get("against", comp["reference"]) == comp["reference"] else f"{name} vs {d['against']}",
                split,
                _interval(d["rougeL"]),
                _interval(d["em"]),
                f"{d['rougeL']['wins']} / {d['rougeL']['losses']} / {d['rougeL']['ties']}",
            ]
            for name, splits_ in comp["rows"].items()
            for split, d in splits_.items()
        ]
        lines += [
            "",
            f"Paired differences from {comp['reference']} ({comp['method']}):",
            "",
            markdown_table(
                ["method", "split", "Δ ROUGE-L [CI]", "Δ EM [CI]", "tasks ahead / behind / equal (ROUGE-L)"], diffs
            ),
        ]
    if result.get("row_commands"):
        lines += ["", "Rows and the commands that produced them:", ""]
        lines += [f"- {name}: `{cmd}`" for name, cmd in result["row_commands"].items()]
    return "\n".join(lines) + "\n"


def _interval(d: Mapping[str, float]) -> str:
    """A paired difference and its interval: ``+1.23 [-0.50, +2.96]``."""
    return f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def _cell(mean: Mapping[str, float]) -> str:
    """``ROUGE-L / EM`` of an instance mean, with its number of answers when recorded."""
    n = f" ({mean['n']})" if "n" in mean else ""
    return f"{mean['rougeL']:.2f} / {mean['em']:.2f}{n}"


def save(result: Mapping[str, Any], out: str) -> None:
    """``out`` (JSON) and, beside it, ``out`` with suffix ``.md`` (the means table)."""
    save_json(result, out)
    atomic_write_text(Path(out).with_suffix(".md"), markdown(result))


async def drive_load(
    url: str, bodies: list[dict[str, Any]], clients: int, path: str = "/v1/completions", timeout: float = 600
) -> dict[str, Any]:
    """Send ``bodies`` to ``url + path`` from ``clients`` concurrent clients (each takes the next body when its
    last answer came back): requests, seconds, requests/s, answer tokens/s (the responses' ``usage``) and the
    p50/p99 latency in seconds. Raises ``httpx.HTTPStatusError`` for a request that failed."""
    latencies: list[float] = []
    queue = list(reversed(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:

        async def worker() -> int:
            tokens = 0
            while queue:
                body = queue.pop()
                start = time.perf_counter()
                r = await client.post(path, json=body)
                r.raise_for_status()
                latencies.append(time.perf_counter() - start)
                tokens += int(r.json()["usage"]["completion_tokens"])
            return tokens

        start = time.perf_counter()
        tokens = sum(await asyncio.gather(*(worker() for _ in range(clients))))
        wall = time.perf_counter() - start
    return load_summary(len(bodies), clients, wall, tokens, latencies)


def load_summary(requests: int, clients: int, wall: float, tokens: int, latencies: list[float]) -> dict[str, Any]:
    """Requests, clients, seconds, requests/s, tokens/s and the p50/p99 of ``latencies`` (seconds)."""
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "requests": requests,
        "clients": clients,
        "seconds": round(wall, 3),
        "requests_per_s": round(requests / wall, 3),
        "tokens_per_s": round(tokens / wall, 2),
        "p50_s": round(statistics.median(latencies), 4),
        "p99_s": round(q[98], 4),
    }

"""One harness that judges every method: build prompts, answer in batches, score, write JSON.

A method is anything with a ``name``, a ``setting`` (how it wants prompts built), ``model``,
``tokenizer`` and a ``conditioning(queries)`` context manager that conditions the model for a batch
(a no-op for prompt-only baselines; generated adapters, routed adapters or β for the methods).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from hyperadapt.data.prompts import build_prompt, check_setting
from hyperadapt.data.schema import Instance, Task
from hyperadapt.evaluation.generate import generate_batch, option_logprobs
from hyperadapt.evaluation.metrics import accuracy, aggregate, by_category, normalize_answer, score_predictions
from hyperadapt.io import save_json
from hyperadapt.report.tables import task_table


@dataclass(frozen=True)
class Query:
    """One instance to answer, with the task it belongs to and its rendered prompt."""

    task: Task
    instance: Instance
    prompt: str


class Method(Protocol):
    name: str
    setting: str
    model: Any
    tokenizer: Any

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager: ...


@dataclass
class PromptMethod:
    """A frozen (or PEFT-wrapped) model answering from its prompt alone: zero-shot, multi-task LoRA."""

    name: str
    model: Any
    tokenizer: Any
    setting: str = "def"
    info: dict = field(default_factory=dict)

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


@dataclass
class EvalConfig:
    setting: str | None = None  # None: the method's own setting
    limit: int | None = None  # first N instances per task
    batch_size: int = 32
    max_new_tokens: int = 32
    mode: str = "generate"  # or "rank": rank classification over Task.options

    def __post_init__(self) -> None:
        if self.setting is not None:
            check_setting(self.setting)
        if self.mode not in ("generate", "rank"):
            raise ValueError(f"unknown eval mode {self.mode!r}: use 'generate' or 'rank'")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be at least 1")


def make_queries(method: Method, tasks: list[Task], setting: str, limit: int | None) -> list[Query]:
    return [
        Query(task, inst, build_prompt(method.tokenizer, task, inst, setting))
        for task in tasks
        for inst in task.head(limit).instances
    ]


def _batches(queries: list[Query], size: int) -> Iterator[list[Query]]:
    """Batches of similar prompt length (less padding), in a fixed order."""
    ordered = sorted(queries, key=lambda q: len(q.prompt))
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


def answer(method: Method, queries: list[Query], cfg: EvalConfig, desc: str = "eval") -> dict[int, str]:
    """Answers keyed by ``id(query)``, with a progress bar."""
    answers: dict[int, str] = {}
    with tqdm(total=len(queries), desc=f"{desc} [{method.name}]", unit="ex", leave=False) as bar:
        for batch in _batches(queries, cfg.batch_size):
            prompts = [q.prompt for q in batch]
            with method.conditioning(batch):
                if cfg.mode == "rank":
                    options = [_options(q.task) for q in batch]
                    scores = option_logprobs(method.model, method.tokenizer, prompts, options)
                    outs = [o[max(range(len(s)), key=s.__getitem__)] for o, s in zip(options, scores, strict=True)]
                else:
                    outs = generate_batch(method.model, method.tokenizer, prompts, cfg.max_new_tokens)
            answers.update({id(q): o for q, o in zip(batch, outs, strict=True)})
            bar.update(len(batch))
    return answers


def _options(task: Task) -> list[str]:
    if not task.options:
        raise ValueError(f"task {task.name!r} has no options: rank classification needs Task.options")
    return task.options


def evaluate(
    method: Method, tasks: list[Task], cfg: EvalConfig, model: str = "", data: str = "", split: str = ""
) -> dict:
    """Score ``method`` on ``tasks``; returns the results dict (see ``write_results``).

    ``model``, ``data`` and ``split`` are recorded in the result to say what was evaluated.
    """
    if not tasks:
        raise ValueError("no tasks to evaluate")
    setting = cfg.setting or method.setting
    start = time.perf_counter()
    queries = make_queries(method, tasks, setting, cfg.limit)
    answers = answer(method, queries, cfg, desc=split or "eval")
    per_task, predictions = {}, []
    for task in tasks:
        qs = [q for q in queries if q.task is task]
        preds = [answers[id(q)] for q in qs]
        scores = score_predictions(preds, [list(q.instance.outputs) for q in qs])
        per_task[task.name] = {**scores, "category": task.category, "condition_type": task.condition_type}
        if task.options:  # classification: the share of answers that are exactly the label
            labels = [normalize_answer(q.instance.outputs[0]) for q in qs]
            per_task[task.name]["accuracy"] = accuracy([normalize_answer(p) for p in preds], labels)
        predictions += [
            {"task": task.name, "id": q.instance.id, "prediction": p, "references": list(q.instance.outputs)}
            for q, p in zip(qs, preds, strict=True)
        ]
    return {
        "method": method.name,
        "model": model,
        "data": data,
        "split": split,
        "setting": setting,
        "mode": cfg.mode,
        "tasks": per_task,
        "mean": aggregate(per_task),
        "by_category": by_category(per_task),
        "seconds": round(time.perf_counter() - start, 2),
        "config": {"eval": asdict(cfg), "method": getattr(method, "info", {})},
        "predictions": predictions,
    }


def write_results(result: dict, out: str | Path) -> Path:
    """Write ``result`` as JSON (predictions in a JSONL beside it) and a Markdown table; return the path."""
    out = Path(out)
    if out.suffix != ".json":
        out = out / f"{result['method']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    preds = result.get("predictions", [])
    body = {k: v for k, v in result.items() if k != "predictions"}
    save_json(body, out)
    with out.with_suffix(".predictions.jsonl").open("w") as fh:
        fh.writelines(json.dumps(p) + "\n" for p in preds)
    out.with_suffix(".md").write_text(task_table(body))
    return out


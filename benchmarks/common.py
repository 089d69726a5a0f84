"""Pieces the quality benchmarks share: scoring a method on several splits, writing the result JSON."""

from __future__ import annotations

from hyperadapt.data.schema import Task
from hyperadapt.evaluation.harness import EvalConfig, evaluate
from hyperadapt.io import save_json


def score(method, splits: dict[str, list[Task]], ecfg: EvalConfig | dict[str, EvalConfig], model: str,
          data: str) -> dict:
    """Mean and per-task ROUGE-L / EM of ``method`` on every split (``ecfg`` may differ per split)."""
    out = {}
    for split, tasks in splits.items():
        cfg = ecfg[split] if isinstance(ecfg, dict) else ecfg
        res = evaluate(method, tasks, cfg, model=model, data=data, split=split)
        out[split] = {"mean": res["mean"], "tasks": {k: {m: v[m] for m in ("rougeL", "em", "n")}
                                                     for k, v in res["tasks"].items()}}
        print(f"  {method.name:<18} {split:<18} rougeL={res['mean']['rougeL']:.2f} em={res['mean']['em']:.2f}",
              flush=True)
    return out


def save(result: dict, out: str) -> None:
    save_json(result, out)

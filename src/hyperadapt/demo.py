"""``hyperadapt demo``: the main job on the embedded defaults.

Evaluates the default model zero-shot and a multi-task LoRA (instruction in the prompt) trained on the
synthetic suite's seen tasks, on seen and unseen tasks, and prints one table. Training is resumable and
a finished run is reused, so a second ``make demo`` only evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hyperadapt.data import load_tasks
from hyperadapt.evaluation.harness import EvalConfig, evaluate, write_results
from hyperadapt.io import save_json
from hyperadapt.methods.baselines import MultiTaskLoraConfig, train_multitask_lora, zero_shot
from hyperadapt.models import load_base_model
from hyperadapt.report.tables import summary_table
from hyperadapt.training import TrainConfig


@dataclass
class DemoConfig:
    model: str = "default"
    data: str = "synthetic"
    splits: list[str] = field(default_factory=lambda: ["seen", "unseen"])
    limit: int = 10
    steps: int = 200
    batch_size: int = 8
    max_new_tokens: int = 16
    out: str = "results/demo"
    runs: str = "runs/demo"

    def __post_init__(self) -> None:
        for name in ("limit", "steps", "batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.splits:
            raise ValueError("splits is empty: give at least one split, e.g. splits=[seen]")


def run_demo(cfg: DemoConfig, console: Console | None = None) -> list[dict]:
    """Run the demo and return its results (also written under ``cfg.out``)."""
    console = console or Console(markup=False, highlight=False)
    console.print(f"hyperadapt demo: model={cfg.model} data={cfg.data} splits={cfg.splits}")
    model, tokenizer = load_base_model(cfg.model)
    eval_cfg = EvalConfig(limit=cfg.limit, max_new_tokens=cfg.max_new_tokens)
    results = []
    base = zero_shot(setting="def", model_and_tokenizer=(model, tokenizer))
    for split in cfg.splits:
        results.append(_evaluate(base, cfg, split, eval_cfg))
    lora_cfg = MultiTaskLoraConfig(
        model=cfg.model, data=cfg.data, train=TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=1e-3)
    )
    lora = train_multitask_lora(lora_cfg, Path(cfg.runs) / "multitask-lora", model_and_tokenizer=(model, tokenizer))
    for split in cfg.splits:
        results.append(_evaluate(lora, cfg, split, eval_cfg))
    _print(console, results)
    out = Path(cfg.out)
    (out / "summary.md").write_text(summary_table(results))
    save_json([{k: v for k, v in r.items() if k != "tasks"} for r in results], out / "summary.json")
    console.print(f"Results written to {out}/ (one JSON per method and split, summary.md)")
    return results


def _evaluate(method, cfg: DemoConfig, split: str, eval_cfg: EvalConfig) -> dict:
    result = evaluate(method, load_tasks(cfg.data, split), eval_cfg, model=cfg.model, data=cfg.data, split=split)
    write_results(result, Path(cfg.out) / f"{method.name}.{split}.json")
    return result


def _print(console: Console, results: list[dict]) -> None:
    table = Table(title="Synthetic suite: mean over tasks (first N instances per task)")
    for col in ("method", "split", "tasks", "ROUGE-L", "EM", "seconds"):
        table.add_column(col)
    for r in results:
        m = r["mean"]
        table.add_row(r["method"], r["split"], str(len(r["tasks"])), f"{m['rougeL']:.1f}", f"{m['em']:.1f}",
                      f"{r['seconds']:.0f}")
    console.print(table)

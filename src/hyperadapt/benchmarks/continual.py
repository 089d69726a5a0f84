r"""SwitchCIT against its continual baselines on one stream, same base model and per-task budget, in one JSON.

    hyperadapt bench continual --config configs/switch_synthetic.yaml --out results/continual/synthetic
    hyperadapt bench continual --config configs/switch_sni.yaml --methods switchcit sequential \
        --set train.steps=20 --out results/continual/sni-order1

Each method runs into ``OUT/<method>/`` with ``hyperadapt.methods.continual.run_stream`` (resumable: rerun the
same command after an interruption). Its ``seed_from`` keeps the cost down without changing any number: the
base model's (zero-shot) answers are computed once and shared, and the oracle reuses SwitchCIT's adapters
(the same config would train the very same ones) and their cached answers, so it differs only in routing.
``OUT/summary.json`` holds every method's continual metrics, switch statistics, storage and wall time;
``OUT/summary.md`` the table and ``OUT/ap_curves.png`` AP after each task, one line per method.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from hyperadapt.benchmarks import Parser
from hyperadapt.benchmarks.common import add_set_option
from hyperadapt.config import load_config
from hyperadapt.io import atomic_write_text, check_out_dir, save_json
from hyperadapt.methods.continual import LEARNERS, run_stream
from hyperadapt.methods.switch import SwitchConfig
from hyperadapt.models import load_base_model
from hyperadapt.report.tables import markdown_table

ORDER = ["switchcit", "oracle", "sequential", "replay", "olora", "multitask"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(
        prog="hyperadapt bench continual", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/switch_synthetic.yaml", help="stream config (configs/switch_*.yaml)")
    add_set_option(p, "For every method.")
    p.add_argument("--methods", nargs="+", default=ORDER, choices=list(LEARNERS))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="results/continual/synthetic", help="folder for the runs and the summary")
    return p.parse_args(argv)


def summary_row(result: dict) -> dict:
    """What the summary keeps of one method's ``results.json``."""
    rows = result["rows"]
    routing = [r["routing"] for r in rows if r.get("routing")]
    per_task = result.get("storage", {}).get("per_task_bytes", {})
    switch = result.get("switch", {})
    return {
        **result["metrics"],
        "ap_curve": result["ap_curve"],
        "final_row": dict(zip(result["tasks"], result["matrix"][-1], strict=True)),
        "switch_accuracy_final": routing[-1]["switch_accuracy"] if routing else None,
        "switch_accuracy_mean_final": routing[-1]["switch_accuracy_mean"] if routing else None,
        "reject_rate_seen_final": routing[-1]["reject_rate_seen"] if routing else None,
        "reject_rate_unseen": switch.get("unseen_reject_rate"),
        "reject_rate_seen_heldout": switch.get("reject_rate_seen"),
        "reject_auroc": switch.get("reject_auroc"),
        "reject_threshold": switch.get("threshold"),
        "calibrated_on": switch.get("calibrated_on"),
        "routing_ms_per_example": switch.get("routing_ms_per_example"),
        "storage_bytes_per_task": sum(per_task.values()) / max(1, len(per_task)) if per_task else None,
        "router_bytes": result.get("storage", {}).get("router_bytes"),
        "train_seconds": result["seconds"]["train"],
        "eval_seconds": result["seconds"]["eval"],
    }


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if pct else f"{value:.1f}"


def _auroc(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def summary_table(summary: dict) -> str:
    lines = [
        f"Stream `{summary['stream']}` ({summary['metric']}), {len(summary['tasks'])} tasks; "
        f"{summary['budget']}; base model zero-shot mean {summary['zero_shot_mean']:.1f}",
        "",
    ]
    rows = []
    for name, m in summary["methods"].items():
        kib = None if m["storage_bytes_per_task"] is None else m["storage_bytes_per_task"] / 1024
        rows.append(
            [
                name,
                _fmt(m["AP"]),
                _fmt(m["BWT"]),
                _fmt(m["Forgetting"]),
                _fmt(m["FWT"]),
                _fmt(m["switch_accuracy_mean_final"]),
                _fmt(m["reject_rate_seen_final"], True),
                _fmt(m["reject_rate_unseen"], True),
                _auroc(m.get("reject_auroc")),
                _fmt(m["routing_ms_per_example"]),
                _fmt(kib),
                _fmt(m["train_seconds"]),
                _fmt(m["eval_seconds"]),
            ]
        )
    header = [
        "method",
        "AP",
        "BWT",
        "Forgetting",
        "FWT",
        "switch acc. (final)",
        "reject seen",
        "reject unseen",
        "reject AUROC",
        "routing ms/ex",
        "KiB/task",
        "train s",
        "eval s",
    ]
    return "\n".join([*lines, markdown_table(header, rows)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(SwitchConfig, args.config, args.set)
    out = check_out_dir(args.out, "--out")
    model_and_tokenizer = load_base_model(cfg.model)
    summary: dict = {
        "config": args.config,
        "overrides": args.set,
        "stream": cfg.stream,
        "metric": cfg.eval.metric,
        "budget": f"{cfg.train.steps} steps × batch {cfg.train.batch_size} per task, "
        f"LoRA rank {cfg.lora.rank} on {', '.join(cfg.lora.target_modules)}, "
        f"first {cfg.eval.limit} test instances per task, prompts within "
        f"{cfg.eval.max_prompt_tokens or 'context'} tokens (training "
        f"{cfg.train.max_length}), at most {cfg.eval.max_new_tokens} new tokens",
        "unseen": cfg.unseen,
        "calibrate_on": cfg.router.calibrate_on,
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "methods": {},
    }
    first: Path | None = None  # the first run (SwitchCIT's, when it runs): every later run is seeded from it
    for method in [m for m in ORDER if m in args.methods]:
        run_dir = out / method
        result = run_stream(cfg, run_dir, method=method, model_and_tokenizer=model_and_tokenizer, seed_from=first)
        summary["tasks"] = result["tasks"]
        summary["zero_shot_mean"] = sum(result["zero_shot"]) / len(result["zero_shot"])
        summary["methods"][method] = summary_row(result)
        first = first or run_dir
        print(
            f"{method}: AP {_fmt(result['metrics']['AP'])}, forgetting {_fmt(result['metrics']['Forgetting'])}",
            flush=True,
        )
    save_json(summary, out / "summary.json")
    atomic_write_text(out / "summary.md", summary_table(summary))
    try:
        from hyperadapt.report.plots import plot_ap_curve

        plot_ap_curve({n: m["ap_curve"] for n, m in summary["methods"].items()}, out / "ap_curves.png")
    except ImportError:
        pass
    print(summary_table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

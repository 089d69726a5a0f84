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

With ``--storage-table`` it runs nothing: it puts SwitchCIT's AP, the oracle's AP, MiB per task, the switch's MiB,
reject AUROC and training time of finished runs (their ``summary.json``) beside a reference run, with each AP's
difference from the reference, in ``OUT/storage.json`` and ``OUT/storage.md``, and ΔAP against MiB per task
in ``OUT/storage.png`` (seconds):

    hyperadapt bench continual --storage-table qv-bf16=results/continual/sni-order1-storage/qv \
        --reference "all7-fp32 (SNI-CPU v1)=docs/results/continual/sni_v1_order1_summary.json" \
        --out results/continual/sni-order1-storage
"""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from hyperadapt.benchmarks import Parser, command, machine
from hyperadapt.benchmarks.common import add_set_option
from hyperadapt.config import load_config
from hyperadapt.errors import UserError
from hyperadapt.evaluation.metrics import paired_bootstrap
from hyperadapt.io import atomic_write_text, check_out_dir, check_out_file, is_finite_number, load_json, save_json
from hyperadapt.methods.continual import LEARNERS, run_stream
from hyperadapt.methods.switch import SwitchConfig
from hyperadapt.models import load_base_model
from hyperadapt.report.tables import markdown_table

ORDER = ["switchcit", "oracle", "sequential", "replay", "olora", "multitask"]
DEFAULT_OUT = "results/continual/synthetic"
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(
        prog="hyperadapt bench continual", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/switch_synthetic.yaml", help="stream config (configs/switch_*.yaml)")
    add_set_option(p, "For every method.")
    p.add_argument("--methods", nargs="+", default=ORDER, choices=list(LEARNERS))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--out",
        default=None,
        help=f"folder for the runs and the summary (default: {DEFAULT_OUT}); with --storage-table, required: the "
        "folder for storage.json and storage.md",
    )
    p.add_argument(
        "--storage-table",
        nargs="+",
        default=None,
        metavar="[LABEL=]RUN",
        help="run nothing: tabulate SwitchCIT's (and the oracle's) AP and storage in each RUN (an --out folder "
        "of this benchmark, or its summary.json) against --reference; LABEL names its row (default: the "
        "folder's name; a RUN that exists is never split at '='); a RUN without summary.json yet is skipped",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="[LABEL=]RUN",
        help="with --storage-table: the first row, which the AP differences are taken against",
    )
    return p.parse_args(argv)


def summary_row(result: dict[str, Any]) -> dict[str, Any]:
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


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if pct else f"{value:.1f}"


def _auroc(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def summary_table(summary: dict[str, Any]) -> str:
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


def labelled_run(spec: str) -> tuple[str, Path]:
    """``LABEL=RUN`` or ``RUN`` as ``(label, path of its summary.json)``: RUN is an --out folder of this benchmark
    or a summary JSON; a RUN that exists is never split at '='. Without a label: the folder's name (a summary
    JSON not named summary.json: its stem)."""
    label, sep, rest = spec.partition("=")
    if Path(spec).exists() or not (sep and label and rest):
        label, rest = "", spec
    run = Path(rest)
    summary = run if run.suffix == ".json" else run / "summary.json"
    return label or (summary.parent.name if summary.name == "summary.json" else summary.stem), summary


def _summary_number(method: dict[str, Any], key: str, where: str, high: float = math.inf) -> float | None:
    """``method[key]`` when it is a finite number from 0 to ``high``; None when it is absent or null. Raises
    ``UserError`` naming ``where`` (the summary and method) for any other value."""
    value = method.get(key)
    if value is None:
        return None
    if not is_finite_number(value) or value < 0:
        raise UserError(f"{where} has {key} {value!r}, not a number from 0 up: the summary is damaged")
    if value > high:
        raise UserError(f"{where} has {key} {value!r}, more than {high:g}: the summary is damaged")
    return value


def _required_number(method: dict[str, Any], key: str, where: str, high: float = math.inf) -> float:
    """:func:`_summary_number`, which must be there. Raises ``UserError`` naming ``where`` when it is not."""
    value = _summary_number(method, key, where, high)
    if value is None:
        raise UserError(f"{where} has no {key}: the summary is damaged")
    return value


def _final_row(method: dict[str, Any], ap: float, where: str) -> dict[str, float] | None:
    """``method``'s final row (task -> ROUGE-L after the last task; None when the summary kept none), checked to
    hold scores from 0 to 100 whose plain mean is ``ap``. Raises ``UserError`` naming ``where`` otherwise."""
    row = method.get("final_row")
    if row is None:
        return None
    if not isinstance(row, dict) or not row:
        raise UserError(
            f"{where}'s final_row is not an object of task scores (got {type(row).__name__}): the summary is damaged"
        )
    for task in row:
        _required_number(row, task, f"{where}'s final_row", high=100.0)
    if not math.isclose(sum(row.values()) / len(row), ap, rel_tol=1e-9, abs_tol=1e-6):
        raise UserError(f"{where} has AP {ap!r}, not the mean of its final_row: the summary is damaged")
    return row


def storage_row(summary: dict[str, Any], path: Path) -> dict[str, Any]:
    """SwitchCIT's AP, the oracle's AP (None without it), MiB per task (2**20 bytes, the mean over tasks), the
    switch's MiB, all of it per task (the adapter's MiB plus the switch's MiB over the stream's tasks: what the
    run keeps per task learnt, None without both), reject AUROC and training seconds in one summary of this
    benchmark (at ``path``, for the error). Raises ``UserError`` when the summary has no SwitchCIT run, or a
    value the table reads is not what a summary holds (an AP that is not a score from 0 to 100 or not the mean of
    its final row, bytes or seconds that are not numbers from 0 up, an AUROC outside 0 to 1)."""
    methods = summary.get("methods")
    if not isinstance(methods, dict):
        raise UserError(f"{path} is not a summary of hyperadapt bench continual (no 'methods'): give its --out folder")
    if "switchcit" not in methods:
        raise UserError(f"{path} has no switchcit run: give a run of `hyperadapt bench continual --methods switchcit`")
    s, oracle = methods["switchcit"], methods.get("oracle")
    for name, method in (("switchcit", s), ("oracle", oracle)):
        if not isinstance(method, dict) and (method is not None or name == "switchcit"):
            raise UserError(
                f"{path}: its {name} entry is not an object (got {type(method).__name__}): the summary is damaged"
            )
    where = f"{path}'s switchcit run"
    ap = _required_number(s, "AP", where, high=100.0)
    final_row = _final_row(s, ap, where)
    oracle_ap = None if oracle is None else _summary_number(oracle, "AP", f"{path}'s oracle run", high=100.0)
    oracle_final_row = (
        None if oracle is None or oracle_ap is None else _final_row(oracle, oracle_ap, f"{path}'s oracle run")
    )
    per_task = _summary_number(s, "storage_bytes_per_task", where)
    router = _summary_number(s, "router_bytes", where)
    auroc = _summary_number(s, "reject_auroc", where, high=1.0)
    train_seconds = _required_number(s, "train_seconds", where)
    tasks = summary.get("tasks") or []
    if not isinstance(tasks, list):
        raise UserError(f"{path}: its tasks is not a list (got {type(tasks).__name__}): the summary is damaged")
    n_tasks = len(tasks)
    return {
        "summary": str(path),
        "final_row": final_row,  # task -> ROUGE-L after the last task: AP is their plain mean
        "oracle_final_row": oracle_final_row,
        "AP": ap,
        "oracle_AP": oracle_ap,
        "mib_per_task": None if per_task is None else per_task / MIB,
        "router_mib": None if router is None else router / MIB,
        "all_mib_per_task": None
        if per_task is None or router is None or not n_tasks
        else (per_task + router / n_tasks) / MIB,
        "reject_auroc": auroc,
        "train_seconds": train_seconds,
    }


def storage_table(runs: list[str], reference: str) -> dict[str, Any]:
    """``reference`` and every finished run of ``runs`` (``[LABEL=]RUN``, see :func:`labelled_run`) as rows of
    :func:`storage_row` plus ``delta_AP`` and ``delta_oracle_AP`` (row minus reference, AP points; None where
    either has no oracle), in ``{"reference": label, "rows": {label: row}, "skipped": [paths]}``. A run without
    ``summary.json`` yet is skipped with a warning. Raises ``UserError`` when none has finished, when the
    reference has no summary or two rows share a label."""
    ref_label, ref_path = labelled_run(reference)
    ref = storage_row(load_json(ref_path, "--reference summary"), ref_path)
    labelled = [labelled_run(spec) for spec in runs]
    finished = [(label, path) for label, path in labelled if path.exists()]
    skipped = [(label, path) for label, path in labelled if not path.exists()]
    if not finished:
        names = ", ".join(str(path) for _, path in skipped)
        raise UserError(f"no run has finished yet: none of {names} exists; nothing written")
    for label, path in skipped:
        warnings.warn(f"no {path} yet (the run has not finished): row {label!r} left out", stacklevel=2)
    rows = {ref_label: ref}
    for label, path in finished:
        if label in rows:
            raise UserError(f"two rows are labelled {label!r}: name them apart with LABEL=RUN")
        rows[label] = storage_row(load_json(path, "summary"), path)
    for label, row in rows.items():
        row["delta_AP"] = row["AP"] - ref["AP"]
        both = row["oracle_AP"] is not None and ref["oracle_AP"] is not None
        row["delta_oracle_AP"] = row["oracle_AP"] - ref["oracle_AP"] if both else None
        other = label != ref_label  # the reference against itself has no interval
        row["delta_AP_ci"] = _task_interval(row["final_row"], ref["final_row"]) if other else None
        row["delta_oracle_AP_ci"] = (
            _task_interval(row["oracle_final_row"], ref["oracle_final_row"]) if other and both else None
        )
    for row in rows.values():
        del row["final_row"], row["oracle_final_row"]  # in the summaries; the table keeps what it shows
    return {"reference": ref_label, "rows": rows, "skipped": [str(path) for _, path in skipped]}


def _task_interval(row: dict[str, float] | None, ref: dict[str, float] | None) -> dict[str, Any] | None:
    """The paired bootstrap interval (95 %, over the stream's tasks, each weighing 1 as in AP) of the final-row
    difference ``row − ref`` (task → ROUGE-L), with the tasks ahead / behind / equal; None when either has no final
    row or they cover different tasks (a summary written before final rows were kept, another stream)."""
    if not row or not ref or set(row) != set(ref):
        return None

    def as_scores(final: dict[str, float]) -> dict[str, dict[str, float]]:
        return {task: {"rougeL": score, "n": 1} for task, score in final.items()}

    test = paired_bootstrap(as_scores(row), as_scores(ref))
    return {k: test[k] for k in ("low", "high", "confidence", "n_tasks", "wins", "losses", "ties")}


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _delta(value: float | None, ci: dict[str, Any] | None) -> str:
    """A difference to 0.1 with its interval over tasks when there is one: ``-6.8 [-9.9, -3.8]``."""
    if value is None or ci is None:
        return _num(value, "+.1f")
    return f"{value:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]"


def storage_markdown(result: dict[str, Any]) -> str:
    """The storage table of :func:`storage_table`'s result (with its ``command``): AP to 0.1, MiB to 0.01, each
    Δ with its 95 % paired bootstrap interval over the stream's tasks where both rows kept their final row."""
    header = ["row", "AP", "ΔAP", "oracle AP", "Δ oracle AP", "MiB per task", "switch MiB", "all MiB per task"]
    header += ["reject AUROC", "train s"]
    rows = [
        [
            label,
            _num(r["AP"], ".1f"),
            _delta(r["delta_AP"], r.get("delta_AP_ci")),
            _num(r["oracle_AP"], ".1f"),
            _delta(r["delta_oracle_AP"], r.get("delta_oracle_AP_ci")),
            _num(r["mib_per_task"], ".2f"),
            _num(r["router_mib"], ".2f"),
            _num(r.get("all_mib_per_task"), ".2f"),
            _num(r["reject_auroc"], ".3f"),
            _num(r["train_seconds"], ".0f"),
        ]
        for label, r in result["rows"].items()
    ]
    lines = [
        f"`{result['command']}`",
        "",
        f"SwitchCIT per run; Δ: minus **{result['reference']}**; the oracle routes by the true task id, so its AP "
        "separates the adapters' change from the reject rule's; [low, high]: the difference's 95 % paired bootstrap "
        "interval over the stream's tasks (each weighing 1, as in AP); all MiB per task: the adapter plus the switch "
        "(its weights, kept features and retained inputs) over the stream's tasks; MiB = 2^20 bytes.",
        "",
        markdown_table(header, rows),
    ]
    return "\n".join(lines) + "\n"


STORAGE_TARGET = (2.5, -0.5)  # issue 36: at most 2.5 MiB per task, AP within 0.5 of the reference


def storage_points(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each row of :func:`storage_table` with its MiB per task as a plot point: ``x`` MiB per task, ``mean`` ΔAP
    and, where the row has it, its interval over tasks (``low``, ``high``)."""
    points: dict[str, dict[str, float]] = {}
    for label, r in result["rows"].items():
        if r["mib_per_task"] is None:
            continue
        points[label] = {"x": r["mib_per_task"], "mean": r["delta_AP"]}
        if r.get("delta_AP_ci"):
            points[label] |= {"low": r["delta_AP_ci"]["low"], "high": r["delta_AP_ci"]["high"]}
    return points


def plot_storage(result: dict[str, Any], path: Path) -> Path | None:
    """:func:`storage_points` as ΔAP (with its interval over tasks) against MiB per task in ``path``, the target
    (:data:`STORAGE_TARGET`) shaded; ``None`` without matplotlib or without a row that has its MiB."""
    try:
        from hyperadapt.report.plots import plot_tradeoff
    except ImportError:
        return None
    points = storage_points(result)
    if not points:
        return None
    try:
        return plot_tradeoff(
            points,
            path,
            "MiB per task (the adapter as stored)",
            "ΔAP (95% CI over the stream's tasks)",
            target=STORAGE_TARGET,
            title=f"SwitchCIT: AP against {result['reference']}",
        )
    except ImportError:  # matplotlib itself missing (plot_tradeoff imports it when it draws)
        return None


def storage_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--storage-table``: check the outputs, build the table, write ``OUT/storage.{json,md}`` and the plot
    ``OUT/storage.png`` (with matplotlib), print the table."""
    if args.reference is None or args.out is None:
        raise UserError("--storage-table needs --reference [LABEL=]RUN and --out FOLDER (for storage.json and .md)")
    out = Path(args.out)
    for name in ("storage.json", "storage.md", "storage.png"):
        check_out_file(out / name, "--out")
    result = {"command": command("continual", argv), **storage_table(args.storage_table, args.reference)}
    save_json(result, out / "storage.json")
    table = storage_markdown(result)
    atomic_write_text(out / "storage.md", table)
    print(table, flush=True)
    plotted = plot_storage(result, out / "storage.png")
    print(f"-> {plotted}" if plotted else "(no storage.png: pip install 'hyperadapt[plots]' for the plot)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.storage_table is not None:
        return storage_main(args, argv)
    if args.reference is not None:
        raise UserError("--reference goes with --storage-table")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(SwitchConfig, args.config, args.set)
    out = check_out_dir(args.out or DEFAULT_OUT, "--out")
    model_and_tokenizer = load_base_model(cfg.model)
    summary: dict[str, Any] = {
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
        "machine": machine(),
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

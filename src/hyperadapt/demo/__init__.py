"""``hyperadapt demo``: TAGI, SwitchCIT and MeGan against their baselines on the embedded defaults, in one run.

Trains every method at a small budget (``DemoConfig``; ``--quick`` for a smoke run) in two parallel lanes,
caches each finished stage in the run folder (a rerun reuses them, an interrupted run resumes), and writes
``report.md``, a self-contained ``report.html``, the figures, ``results.json`` (every number, the versions,
model and seed), ``timings.json`` and one generated PEFT adapter folder::

    run_demo(demo_config([], quick=True))
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import time
from dataclasses import fields
from pathlib import Path

from rich.console import Console

from hyperadapt.config import to_dict
from hyperadapt.demo.config import QUICK, DemoConfig, demo_config
from hyperadapt.demo.runner import collect, pending, run_stages
from hyperadapt.demo.stages import LANES, STAGES
from hyperadapt.errors import UserError
from hyperadapt.io import save_json

__all__ = ["DemoConfig", "demo_config", "reproduce_command", "run_demo"]

PACKAGES = ("hyperadapt", "torch", "transformers", "peft", "numpy", "matplotlib")


def reproduce_command(cfg: DemoConfig) -> str:
    """The command line that gives ``cfg``: ``--quick``, then ``--set`` for every setting that differs from
    its preset."""
    preset = {f.name: f.default for f in fields(DemoConfig)} | (QUICK if cfg.quick else {})
    diff = [f"--set {k}={v}" for k, v in to_dict(cfg).items() if k not in ("out", "quick") and v != preset[k]]
    parts = ["hyperadapt demo", *(["--quick"] if cfg.quick else []), *diff]
    if cfg.out != preset["out"]:
        parts.append(f"--out {cfg.out}")
    return " ".join(parts)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def model_path(cfg: DemoConfig) -> str:
    from hyperadapt.models import default_model_dir

    return str(default_model_dir()) if cfg.model == "default" else cfg.model


def run_demo(cfg: DemoConfig, console: Console | None = None) -> int:
    """Run (or resume) the demo and write its report; returns 0, or 1 when a stage failed.

    Raises UserError before any training when matplotlib (the report's figures) is not installed."""
    from hyperadapt.report.demo_report import write_demo_report

    if importlib.util.find_spec("matplotlib") is None:  # else it fails after every stage trained, at the report
        raise UserError("the demo's report draws figures with matplotlib: pip install 'hyperadapt[plots]'")
    console = console or Console(markup=False, highlight=False)
    out = Path(cfg.out)
    start = time.perf_counter()
    todo = pending(cfg)
    console.print(
        f"hyperadapt demo -> {out}/: {sum(map(len, todo))} of {len(STAGES)} stages to run "
        f"({'; '.join(' → '.join(lane) for lane in todo if lane) or 'all cached'})"
    )
    if any(todo):
        from hyperadapt.models import load_base_model

        t0 = time.perf_counter()
        load_base_model(cfg.model)  # converts the default model once, before the two lanes need it
        console.print(f"✓ base model ready in {time.perf_counter() - t0:.0f} s")
        run_stages(cfg)
    results, failed, seconds = collect(cfg)
    meta = {
        "command": reproduce_command(cfg),
        "model": cfg.model,
        "model_path": model_path(cfg),
        "data": "synthetic",
        "seed": cfg.seed,
        "budget": to_dict(cfg),
        "out": str(out),
        "versions": versions(),
        "lanes": [list(lane) for lane in LANES],
    }
    save_json({"meta": meta, "stages": results, "failed": failed}, out / "results.json")
    md, page = write_demo_report({"meta": meta, "stages": results, "failed": failed}, out)
    total = time.perf_counter() - start
    lanes_cpu = [sum((seconds.get(n) or {}).get("cpu_s") or 0 for n in lane) for lane in LANES]
    save_json({"stages": seconds, "cpu_s_per_lane": lanes_cpu, "this_invocation_s": total}, out / "timings.json")
    console.print(f"report: {md} and {page} ({len(results)} of {len(STAGES)} stages; this run took {total:.0f} s)")
    if failed:
        console.print(
            f"failed stages: {', '.join(f'{n} ({e})' for n, e in failed.items())}; rerun the same command to retry them"
        )
        return 1
    return 0

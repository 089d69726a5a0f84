"""``hyperadapt bench NAME``: the benchmarks of ``hyperadapt.benchmarks``, one subcommand each.

Each benchmark parses its own options (``hyperadapt bench NAME --help``); this group only lists them and passes
the arguments on. Registering a benchmark is one line in ``hyperadapt.benchmarks.BENCHMARKS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import typer

from hyperadapt.benchmarks import BENCHMARKS

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

app = typer.Typer(
    help="Run a benchmark with its own options (`hyperadapt bench NAME --help` lists them). Each writes JSON "
    "(to results/ unless --out says otherwise) that records its command; NAME is the module "
    "hyperadapt.benchmarks.NAME (also `python -m hyperadapt.benchmarks.NAME`).\n\n"
    "Example: hyperadapt bench core --batch-sizes 1 8 32 --seq 128 --out results/bench_core.json",
    no_args_is_help=True,
)


def _runner(name: str) -> Callable[[typer.Context], None]:
    def run(ctx: typer.Context) -> None:
        status = importlib.import_module(f"hyperadapt.benchmarks.{name}").main(list(ctx.args))
        if isinstance(status, int) and status:
            raise typer.Exit(code=status)

    return run


for _name, _summary in BENCHMARKS.items():
    app.command(_name, help=_summary, add_help_option=False, context_settings=PASS_THROUGH)(_runner(_name))

"""``hyperadapt demo``: the three methods against their baselines, in one report."""

from __future__ import annotations

from typing import Annotated

import typer

from hyperadapt.cli._errors import console
from hyperadapt.cli._options import no_stray_overrides, set_option

DEMO_SET_HELP = (
    "budget override (repeatable), the demo's own keys: --set train_steps=120 --set limit=10 "
    "(teacher_steps, stream_steps, megan_steps, seen_limit, stream_limit, model, seed, ...)"
)


def demo(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option(help="a smoke-sized budget (about 5 minutes on 2 CPU cores)")] = False,
    out: Annotated[str | None, typer.Option(help="run folder (default results/demo, results/demo-quick)")] = None,
    set_: Annotated[list[str] | None, set_option(DEMO_SET_HELP)] = None,
) -> None:
    """Show TAGI, SwitchCIT and MeGan against their baselines on the default model and the synthetic suite.

    Writes OUT/report.md, a self-contained OUT/report.html, figures, results.json and a generated PEFT adapter.
    Finished stages are cached in OUT: a rerun reuses them and an interrupted run resumes. The budget is
    set with --set KEY=VALUE (e.g. --set train_steps=120).
    Example: hyperadapt demo --quick
    """
    from hyperadapt.demo import demo_config, run_demo
    from hyperadapt.io import check_out_dir

    no_stray_overrides(ctx)
    cfg = demo_config(set_ or [], quick=quick, out=out)
    check_out_dir(cfg.out, "--out")
    code = run_demo(cfg, console)
    if code:
        raise typer.Exit(code=code)

"""``hyperadapt continual``: run a task stream (SwitchCIT or a baseline); ``continual add``: one more task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hyperadapt.cli._errors import console, err_console, interrupted
from hyperadapt.cli._options import ConfigOption, RunModelOption, SetOption, StrayOverridesGroup, run_model

app = typer.Typer(cls=StrayOverridesGroup)


@app.callback(invoke_without_command=True)
def continual(
    ctx: typer.Context,
    config: ConfigOption = None,
    method: Annotated[
        str, typer.Option(help="switchcit or one of its baselines, e.g. sequential (an unknown name lists them all)")
    ] = "switchcit",
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/continual/METHOD)")] = None,
    set_: SetOption = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="continue after the last finished task; --no-resume deletes the run in --out and starts over"
        ),
    ] = True,
) -> None:
    """Continual instruction tuning: run a whole task stream with SwitchCIT or one of its baselines.

    Trains task 1, evaluates all tasks, trains task 2, ... and writes the accuracy matrix, AP, BWT and
    forgetting to OUT/results.json. Resumable after any task (Ctrl-C prints the command that resumes it).
    Settings come from --config, then each --set KEY=VALUE (`hyperadapt config switchcit` lists them).
    `hyperadapt continual add RUN --task ...` adds one more task to a finished run.

    Example: hyperadapt continual --config configs/switch_synthetic.yaml --method switchcit --out runs/cl/switchcit
    """
    if ctx.invoked_subcommand is not None:
        return
    from hyperadapt import distributed
    from hyperadapt.config import load_config
    from hyperadapt.io import check_out_dir
    from hyperadapt.methods.continual import learner_class, run_stream, stream_extent, stream_stopped_at
    from hyperadapt.methods.switch import SwitchConfig
    from hyperadapt.runs import continual_resume_command

    distributed.device()  # under accelerate launch: join the process group and take this process's GPU
    learner_class(method)  # an unknown method is refused before anything is loaded
    cfg = load_config(SwitchConfig, config, set_ or [])  # one config for SwitchCIT and its baselines
    run_dir = check_out_dir(out or Path("runs") / "continual" / method, "--out")
    extent = None if resume else stream_extent(run_dir, method)
    if extent:
        err_console.print(f"--no-resume: deleting the run in {run_dir} ({extent}) and starting over")
    try:
        result = run_stream(cfg, run_dir, resume=resume, method=method)
    except KeyboardInterrupt:
        raise interrupted(stream_stopped_at(run_dir, method), continual_resume_command(method, run_dir)) from None
    metrics = result["metrics"]
    console.print(
        f"{method}: AP {_fmt(metrics['AP'])}, BWT {_fmt(metrics['BWT'])}, "
        f"forgetting {_fmt(metrics['Forgetting'])} -> {run_dir}"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@app.command("add")
def add(
    run: Annotated[Path, typer.Argument(help="a finished switchcit (or oracle) run directory")],
    task: Annotated[
        str,
        typer.Option(
            help="a task folder (train.json, optional test.json), an SNI .json file, "
            "jsonl:PATH (one task: the format is above) or synthetic:NAME"
        ),
    ],
    model: RunModelOption = None,
) -> None:
    """Add one more task to a finished continual run without touching the earlier adapters.

    A jsonl:PATH task is one task's rows (task, instruction, input, output); an optional `split` field marks
    the rows that judge it (`test`); all other rows train it, and without test rows the last tenth of its
    instances is held out. An interrupted add is resumed with the command it prints
    (hyperadapt continual --config RUN/run.json --method METHOD --out RUN).

    Example: hyperadapt continual add runs/cl/switchcit --task synthetic:plural
    """
    from hyperadapt.methods.continual import stream_stopped_at
    from hyperadapt.methods.switch import add_task, load_task_spec
    from hyperadapt.runs import Run

    train_task, test_task = load_task_spec(task)
    if model is not None:  # a run without a fingerprint takes only its own model's name, before anything loads
        Run.open(run).check_model(model)
    try:
        add_task(run, train_task, test_task, run_model(model))
    except KeyboardInterrupt:
        opened = Run.open(run)
        raise interrupted(stream_stopped_at(run, opened.method), opened.resume_command()) from None
    console.print(f"added {train_task.name} to {run}")


@app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="a continual run directory")],
    task: Annotated[str, typer.Option(help="the task whose adapter to write (as the run names it)")],
    out: Annotated[Path, typer.Option(help="folder for the PEFT adapter (must not exist)")],
    dtype: Annotated[str, typer.Option(help="bfloat16 or float32")] = "bfloat16",
) -> None:
    """Write one task's adapter of a continual run as a plain PEFT folder (an int8 adapter dequantised).

    The folder loads with peft.PeftModel.from_pretrained(base_model, OUT) and in vLLM (--lora-modules).
    Example: hyperadapt continual export runs/cl/switchcit --task plural --out adapters/plural
    """
    from hyperadapt.methods.continual import export_task_adapter

    path = export_task_adapter(run, task, out, dtype)
    console.print(f"adapter of {task} written to {path}")

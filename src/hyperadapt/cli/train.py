"""``hyperadapt train METHOD``: train a registered method into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hyperadapt.cli._errors import console, interrupted
from hyperadapt.cli._options import ConfigOption, ResumeOption, SetOption, no_stray_overrides


def train(
    ctx: typer.Context,
    method: Annotated[
        str,
        typer.Argument(
            help="what to train: a method's name, e.g. tagi, megan, hypter, "
            "multitask-lora (an unknown name lists them all)"
        ),
    ],
    config: ConfigOption = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/METHOD)")] = None,
    resume: ResumeOption = True,
    set_: SetOption = None,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="every training stage runs this many steps (TAGI: teachers, pretraining and finetuning), "
            "after --config and --set; --set train.steps sets the last stage only",
        ),
    ] = None,
) -> None:
    """Train a method into a run directory (resumable; checkpoints are written atomically).

    Settings come from --config, then each --set KEY=VALUE (the override syntax of every command);
    `hyperadapt config METHOD` lists every setting with its default and meaning.
    Example: hyperadapt train multitask-lora --config configs/multitask_lora.yaml --set train.steps=100
    A quick try of any method: hyperadapt train tagi --config configs/tagi.yaml --steps 2
    """
    from hyperadapt import distributed
    from hyperadapt.config import load_config, with_steps
    from hyperadapt.errors import UserError
    from hyperadapt.io import check_out_dir
    from hyperadapt.registry import method_entry, method_names
    from hyperadapt.runs import RunDir, stopped_at, train_resume_command

    no_stray_overrides(ctx)
    distributed.device()  # under accelerate launch: join the process group and take this process's GPU
    trainable = method_names(kind="train")
    entry = method_entry(method) if method in trainable else None
    if entry is None or entry.config_cls is None or entry.train is None:  # a trainable method has both
        raise UserError(f"cannot train {method!r}: trainable methods are {', '.join(trainable)}")
    cfg = load_config(entry.config_cls, config, set_ or [])
    if steps is not None:
        cfg = with_steps(cfg, steps)
    run_dir = check_out_dir(out or Path("runs") / method, "--out")
    done_before = resume and RunDir(run_dir).is_finished()
    try:
        entry.train(cfg, run_dir, resume=resume)
    except KeyboardInterrupt:
        raise interrupted(stopped_at(run_dir), train_resume_command(method, run_dir)) from None
    if done_before:
        console.print(
            f"{run_dir} already holds this finished {method} run: nothing to train "
            "(--no-resume trains it again from the start)"
        )
    else:
        console.print(f"trained {method} -> {run_dir}")

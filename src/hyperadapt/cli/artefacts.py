"""``hyperadapt adapter`` and ``hyperadapt release``: what a trained run hands on (a PEFT folder, a checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hyperadapt.cli._errors import console
from hyperadapt.cli._options import RunModelOption, run_model


def adapter(
    run: Annotated[Path, typer.Argument(help="a trained TAGI (or Hypter) run directory or a released checkpoint")],
    instruction: Annotated[str, typer.Option(help="the task instruction to turn into an adapter")],
    out: Annotated[Path, typer.Option(help="folder for the PEFT adapter")],
    model: RunModelOption = None,
) -> None:
    """Generate a LoRA adapter from an instruction with a trained TAGI hypernetwork; write it as PEFT.

    The folder loads with peft.PeftModel.from_pretrained(base_model, OUT).
    Example: hyperadapt adapter runs/tagi --instruction "Reverse the list." --out adapters/reverse
    """
    from hyperadapt.errors import UserError
    from hyperadapt.methods.tagi.method import check_adapter_out, export_adapter
    from hyperadapt.runs import Run

    check_adapter_out(out)
    if not instruction.strip():  # before loading anything
        raise UserError("--instruction is empty: TAGI generates the adapter from the task's instruction")
    opened = Run.open(run)
    if model is not None:  # a run without a fingerprint takes only its own model's name, before anything loads
        opened.check_model(model)
    path = export_adapter(opened, instruction, out, run_model(model))
    console.print(f"adapter written to {path}")


def release(
    run: Annotated[Path, typer.Argument(help="a finished TAGI, Hypter or MeGan run directory")],
    out: Annotated[Path, typer.Option(help="checkpoint folder to write, e.g. checkpoints/NAME")],
    card: Annotated[Path | None, typer.Option(help="model card (Markdown) to ship as README.md")] = None,
    dtype: Annotated[str, typer.Option(help="bfloat16, float16 or float32")] = "bfloat16",
) -> None:
    """Write a trained hypernetwork as a small checkpoint (run.json, weights in bf16, model card).

    The checkpoint loads like the run: hyperadapt adapter CHECKPOINT --instruction ... --out DIR.
    Example: hyperadapt release runs/tagi --out checkpoints/tagi-demo --card card.md
    """
    from hyperadapt.errors import UserError
    from hyperadapt.release import check_release_out, checkpoint_bytes, release_checkpoint
    from hyperadapt.runs import Run

    check_release_out(run, out, card is not None)
    try:
        text = card.read_text(encoding="utf-8") if card is not None else None
    except UnicodeDecodeError as err:
        raise UserError(f"--card {card} is not UTF-8 text (byte {err.start}): give the model card as Markdown") from err
    path = release_checkpoint(Run.open(run), out, text, dtype)
    console.print(f"checkpoint written to {path} ({checkpoint_bytes(path) / 2**20:.1f} MiB)")

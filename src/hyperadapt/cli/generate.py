"""``hyperadapt generate RUN``: answer inputs with a trained run, in the prompt it was trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from hyperadapt.cli._errors import console
from hyperadapt.cli._options import MaxNewTokensOption, MaxPromptTokensOption, RunModelOption, run_model


def generate(
    run: Annotated[Path, typer.Argument(help="a trained run directory (switchcit, megan, tagi, ...)")],
    input_: Annotated[list[str], typer.Option("--input", help="an input text (repeatable)")],
    condition: Annotated[list[str] | None, typer.Option(help="condition/instruction: one, or one per input")] = None,
    max_new_tokens: MaxNewTokensOption = 64,
    max_prompt_tokens: MaxPromptTokensOption = None,
    model: RunModelOption = None,
) -> None:
    """Answer inputs with a trained run: SwitchCIT routes each input; other methods take --condition.

    Example: hyperadapt generate runs/megan --condition "Answer in upper case." --input "paris"
    """
    from hyperadapt.methods.inputs import answer_inputs
    from hyperadapt.runs import Run

    opened = Run.open(run)
    if model is not None:  # a run without a fingerprint takes only its own model's name, before anything loads
        opened.check_model(model)
    given = run_model(model)
    rows = answer_inputs(opened, input_, condition or [], max_new_tokens, max_prompt_tokens, model_and_tokenizer=given)
    for text, answer, route in rows:
        console.print(Text.assemble((text, "bold"), f"  [{route}]" if route else "", " -> ", answer))

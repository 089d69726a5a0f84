"""Options that several commands take, declared once (as huggingface_hub's ``cli/_cli_utils.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from hyperadapt.config import OVERRIDE_HELP, parse_override, refuse_stray_overrides


def _check_overrides(values: list[str] | None) -> list[str]:
    """Each ``--set`` item read by the one override parser now, so that a malformed one fails before any work."""
    for item in values or []:
        parse_override(item)
    return values or []


def set_option(help: str = OVERRIDE_HELP) -> Any:
    """``--set KEY=VALUE``, repeatable, one item per ``--set``: the override option of every command with a config
    (``help``: the demo names its own keys)."""
    return typer.Option("--set", metavar="KEY=VALUE", help=help, callback=_check_overrides)


SetOption = Annotated[list[str] | None, set_option()]
ConfigOption = Annotated[Path | None, typer.Option(help="YAML config (see configs/), or a run's run.json to resume it")]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="default, a HF id, a folder or a .gguf file (with a run: its own, or a path to the same weights)"
    ),
]
MaxNewTokensOption = Annotated[int, typer.Option(min=1, help="longest answer in tokens")]
MaxPromptTokensOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="prompt budget in tokens; longer prompts lose their input's tail, then examples, then the "
        "definition's tail (default: the model's context minus --max-new-tokens)",
    ),
]
ResumeOption = Annotated[bool, typer.Option(help="continue from where the run stopped (its last checkpoint)")]

# Commands with a config take extra arguments only to refuse bare KEY=VALUE ones, saying how overrides are written.
TAKES_STRAY = {"allow_extra_args": True}


def no_stray_overrides(ctx: typer.Context) -> None:
    """Refuse the extra arguments of a ``TAKES_STRAY`` command (``config.refuse_stray_overrides``)."""
    refuse_stray_overrides(ctx.args)


class StrayOverridesGroup(TyperGroup):
    """A command group with a config of its own (``continual``): a bare ``key=value`` where a subcommand's name
    would go is refused as a stray override, not as an unknown command."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and "=" in args[0] and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            stray = []
            for arg in args:
                if "=" not in arg or arg.startswith("-"):
                    break
                stray.append(arg)
            refuse_stray_overrides(stray)
        return super().resolve_command(ctx, args)


RunModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="the run's base model by another path or id (its weights are checked against the run's fingerprint)",
    ),
]


def run_model(model: str | None) -> Any:
    """The base model and tokenizer that ``--model`` names for a run (``None``: the run loads its own)."""
    if model is None:
        return None
    from hyperadapt.models import load_base_model

    return load_base_model(model)

"""``hyperadapt config METHOD``: every setting of a method's config, with its default and meaning."""

from __future__ import annotations

from typing import Annotated

import typer


def config(
    method: Annotated[str, typer.Argument(help="a method's name, e.g. tagi, megan, multitask-lora, switchcit")],
) -> None:
    """List a method's settings with their types, defaults and meanings.

    Each KEY is written as --set KEY=VALUE and YAML configs write it (nested keys as sections).

    Example: hyperadapt config tagi
    """
    from hyperadapt.config import settings_help
    from hyperadapt.errors import UserError
    from hyperadapt.registry import method_entry, method_names

    entry = method_entry(method)
    if entry.config_cls is None:
        configurable = [n for n in method_names() if method_entry(n).config_cls is not None]
        raise UserError(f"{method!r} has no config: methods with one are {', '.join(configurable)}")
    typer.echo(settings_help(entry.config_cls))

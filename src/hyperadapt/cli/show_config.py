"""``hyperadapt config METHOD``: every setting of a method's config, with its default and meaning."""

from __future__ import annotations

from typing import Annotated

import typer

from hyperadapt.cli._errors import console


def config(
    method: Annotated[str, typer.Argument(help="a method's name, e.g. tagi, megan, multitask-lora, switchcit")],
) -> None:
    """List a method's settings with their types, defaults and meanings.

    Each KEY is written as --set KEY=VALUE and YAML configs write it (nested keys as sections).

    Example: hyperadapt config tagi
    """
    from hyperadapt.config import describe_fields
    from hyperadapt.errors import UserError
    from hyperadapt.registry import method_entry, method_names

    entry = method_entry(method)
    if entry.config_cls is None:
        configurable = [n for n in method_names() if method_entry(n).config_cls is not None]
        raise UserError(f"{method!r} has no config: methods with one are {', '.join(configurable)}")
    for key, kind, default, text in describe_fields(entry.config_cls):
        console.print(f"{key} ({kind}, default {default!r})" + (f": {text}" if text else ""))

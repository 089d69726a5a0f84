"""MkDocs hooks for `make docs`: put src/ on the path, so that the CLI reference (mkdocs-click, in docs/cli.md)
is generated from the typer app itself at every build and follows every change to the commands."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def on_config(config: Any) -> Any:
    """src/ and scripts/ on the path for the build (MkDocs restores the path after loading a hook)."""
    for path in (ROOT / "src", ROOT / "scripts"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return config


def __getattr__(name: str) -> Any:
    """``cli``: the click command behind ``hyperadapt`` (docs/cli.md reads it as ``:module: mkdocs_hooks``)."""
    if name == "cli":
        from typer.main import get_command

        from hyperadapt.cli import app

        return get_command(app)
    raise AttributeError(name)


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """On the CLI reference, set each command's "Example: hyperadapt ..." line as code."""
    if page.file.src_uri != "cli.md":
        return html
    if "--max-new-tokens" not in html:  # mkdocs-click 0.9's table style rendered no option of a typer command
        raise ValueError("docs/cli.md rendered no options (eval's --max-new-tokens is missing): check its :style:")
    return re.sub(r"Example: (hyperadapt [^<]*?)(?=</p>|<br|$)", r"Example: <code>\1</code>", html)

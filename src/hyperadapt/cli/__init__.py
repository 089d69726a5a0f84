"""The ``hyperadapt`` command line: an index of its commands (as huggingface_hub's ``cli/hf.py``).

Each command lives in its own small module and only parses, then calls the library; options several commands
share are declared once in ``_options.py``; what the user sees when something goes wrong is decided in one
place, ``_errors.py`` (a user's mistake: one ``error:`` line, exit code 2; a bug: one line saying so, and its
traceback with ``HYPERADAPT_DEBUG=1``). The console script ``hyperadapt`` and ``python -m hyperadapt`` run ``app``.
"""

from __future__ import annotations

import typer

from hyperadapt.cli import artefacts, bench, continual, demo, evaluate, generate, info, serve, show_config, train
from hyperadapt.cli._errors import ErrorGroup
from hyperadapt.cli._options import TAKES_STRAY

app = typer.Typer(
    cls=ErrorGroup,
    help="Condition a frozen LLM on a textual instruction, domain, persona or style.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command()(info.info)
app.command(context_settings=TAKES_STRAY)(train.train)
app.command("config")(show_config.config)
app.command("eval")(evaluate.eval_cmd)
app.command()(generate.generate)
app.command()(artefacts.adapter)
app.command()(artefacts.release)
app.command()(serve.serve)
app.command(context_settings=TAKES_STRAY)(demo.demo)
app.add_typer(continual.app, name="continual")
app.add_typer(bench.app, name="bench")


def main() -> None:  # pragma: no cover
    app()

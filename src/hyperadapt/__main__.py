"""``python -m hyperadapt`` (and ``accelerate launch -m hyperadapt train ...``) runs the command line."""

from hyperadapt.cli import app

app()

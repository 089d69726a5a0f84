"""Speed, memory and quality benchmarks that write JSON: ``hyperadapt bench NAME [options]``, or
``python -m hyperadapt.benchmarks.NAME [options]``; module ``NAME`` runs with its ``main(argv)``.

A top layer, like the CLI: a benchmark may import any method; nothing in ``hyperadapt`` but the CLI imports
this package. This file imports nothing heavy, so that ``hyperadapt bench --help`` can list the benchmarks. A new
benchmark is a module ``NAME.py`` with ``main(argv)`` (an argparse ``Parser``) and one line in ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from hyperadapt.config import OVERRIDE_HELP, expand_set_args, parse_override, refuse_stray_overrides
from hyperadapt.errors import UserError

BENCHMARKS = {
    "core": "speed and memory of the conditioning core vs PEFT",
    "tagi": "TAGI vs its baselines and ablations, instruction sensitivity and cost",
    "megan": "MeGan vs its baselines, and what beta costs and looks like",
    "continual": "SwitchCIT vs its continual baselines on one stream",
    "serve": "load benchmark of `hyperadapt serve` over loopback",
    "vllm": "vLLM alone vs `hyperadapt serve --engine vllm` vs the own engine vs PEFT, K conditions",
    "truncation": "how many training prompts lose part of their definition",
    "spread": "how much TAGI's adapters or MeGan's beta depend on the condition",
    "scale": "cost of each method's training step and generation at 135M, 360M and 1B parameters",
    "compare": "score saved answers again and compare each with the first (paired bootstrap)",
    "reject": "SwitchCIT's reject option: every reject rule (score, features, calibration) on one stream",
}


def command(name: str, argv: Sequence[str] | None = None) -> str:
    """The command that reruns benchmark ``name`` with ``argv`` (default ``sys.argv[1:]``), for its results."""
    return shlex.join(["hyperadapt", "bench", name, *(sys.argv[1:] if argv is None else argv)])


class Parser(argparse.ArgumentParser):
    """``argparse`` with the CLI's error style: a bad option is one ``error: ...`` line, exit code 2 (argparse's
    own prints the whole usage block first); ``--set`` is read as by every command (``add_set_option``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (`{self.prog} --help` lists the options)\n")

    def add_set_option(self, what: str = "") -> None:
        """``--set KEY=VALUE``, repeatable, several after one ``--set``: read as every ``hyperadapt`` command reads
        it (``config.expand_set_args``, then ``config.parse_override``; ``what``: which config it overrides)."""
        self.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help=f"{OVERRIDE_HELP}. {what}".strip()
        )

    def parse_args(  # type: ignore[override]  # argparse's overloads also return a caller's Namespace subclass
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, with ``--set`` read as by every command: a malformed item or a bare ``KEY=VALUE`` fails
        with the command line's message."""
        args = expand_set_args(sys.argv[1:] if args is None else args)
        parsed, extra = self.parse_known_args(args, namespace)
        try:
            if any("=" in a and not a.startswith("-") for a in extra):
                refuse_stray_overrides(extra)
            for item in getattr(parsed, "set", None) or []:
                parse_override(item)
        except UserError as err:
            self.error(str(err))
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed

"""Speed, memory and quality benchmarks that write JSON: ``hyperadapt bench NAME [options]``, or
``python -m hyperadapt.benchmarks.NAME [options]``; module ``NAME`` runs with its ``main(argv)``.

A top layer, like the CLI: a benchmark may import any method; nothing in ``hyperadapt`` but the CLI imports
this package. This file imports nothing heavy, so that ``hyperadapt bench --help`` can list the benchmarks.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

BENCHMARKS = {
    "core": "speed and memory of the conditioning core vs PEFT",
    "tagi": "TAGI vs its baselines and ablations, instruction sensitivity and cost",
    "megan": "MeGan vs its baselines, and what beta costs and looks like",
    "continual": "SwitchCIT vs its continual baselines on one stream",
    "serve": "load benchmark of `hyperadapt serve` over loopback",
    "vllm": "vLLM alone vs `hyperadapt serve --engine vllm` vs the own engine vs PEFT, K conditions",
    "truncation": "how many training prompts lose part of their definition",
    "spread": "how much TAGI's adapters or MeGan's beta depend on the condition",
    "compare": "score saved answers again and compare each with the first (paired bootstrap)",
}


def command(name: str, argv: Sequence[str] | None = None) -> str:
    """The command that reruns benchmark ``name`` with ``argv`` (default ``sys.argv[1:]``), for its results."""
    return shlex.join(["hyperadapt", "bench", name, *(sys.argv[1:] if argv is None else argv)])


class Parser(argparse.ArgumentParser):
    """``argparse`` with the CLI's error style: a bad option is one ``error: ...`` line, exit code 2 (argparse's
    own prints the whole usage block first)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (`{self.prog} --help` lists the options)\n")


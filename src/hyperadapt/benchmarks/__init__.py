"""Speed, memory and quality benchmarks that write JSON: ``hyperadapt bench NAME [options]``, or
``python -m hyperadapt.benchmarks.NAME [options]``; module ``NAME`` runs with its ``main(argv)``.

A top layer, like the CLI: a benchmark may import any method; nothing in ``hyperadapt`` but the CLI imports
this package. This file imports nothing heavy, so that ``hyperadapt bench --help`` can list the benchmarks. A new
benchmark is a module ``NAME.py`` with ``main(argv)`` (an argparse ``Parser``) and one line in ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

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


def source_commit() -> str | None:
    """The git commit of the running ``hyperadapt`` source (short hash, ``+dirty`` with uncommitted changes), or
    None when it is not a git checkout (an installed wheel) or git is missing."""
    here = Path(__file__).resolve().parent
    try:

        def git(*args: str) -> str:
            done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
            if done.returncode != 0:
                raise OSError(done.stderr.strip())
            return done.stdout.strip()

        git("ls-files", "--error-unmatch", "__init__.py")  # tracked: a checkout of this source, not a venv in a repo
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(here.parent))
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran, for its JSON: the source commit, versions, torch threads, CPUs, the load
    average (1, 5, 15 min) when it started (other jobs on the machine slow every timing), the UTC start time, the
    platform, the processor and the host name. Every benchmark's JSON keeps these under ``"machine"`` only."""
    import torch
    import transformers

    from hyperadapt import __version__

    return {
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": source_commit(),
        "hyperadapt": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "host": platform.node(),
    }


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

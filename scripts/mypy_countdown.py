"""Count mypy's errors over the whole package, per top-level module, against a committed baseline.

``[tool.mypy]`` in pyproject.toml checks all of ``src/hyperadapt`` strictly; this script runs it and counts the
errors of each top-level module or package (``runs``, ``serve``, ``methods``, ...). The counts were brought down
to 0 everywhere on 2026-12-06 and may only go down: exit code 1 when any module has more errors than
``scripts/mypy_countdown.json`` records (a module the baseline does not name is held at 0), so new code adds no
type errors; ``--update`` records lower counts. Exit code 2 when mypy itself fails. The baseline also records the
versions of mypy and of the typed libraries the package uses: a fresh environment with other versions (a new
transformers release changes what mypy sees) prints the growth as a warning and passes, until the counts are
recorded again under the new versions. `make lint` and the pre-commit hook run mypy only through this script.

Usage: python scripts/mypy_countdown.py [--update]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "src/hyperadapt"
BASELINE = ROOT / "scripts" / "mypy_countdown.json"
TYPED = ("mypy", "torch", "transformers", "peft", "numpy", "safetensors", "fastapi", "pydantic", "typer", "httpx")
ERROR = re.compile(rf"^{re.escape(PACKAGE)}/(?P<path>[^:]+):\d+(?::\d+)?: error: ", re.MULTILINE)


def count_errors(output: str) -> dict[str, int]:
    """mypy's error lines (``src/hyperadapt/serve/app.py:12: error: ...``) counted per top-level module or
    package of ``src/hyperadapt`` (``serve``; ``runs`` for ``runs.py``); notes are not counted."""
    counts: dict[str, int] = {}
    for match in ERROR.finditer(output):
        module = match["path"].split("/")[0].removesuffix(".py")
        counts[module] = counts.get(module, 0) + 1
    return dict(sorted(counts.items()))


def run_mypy() -> dict[str, int]:
    """The error counts of a strict mypy run over the whole package (pyproject.toml's configuration; its cache
    makes a second run take seconds). ``RuntimeError`` when mypy fails rather than reporting errors."""
    cmd = [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--no-pretty", "--no-color-output", PACKAGE]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: errors found; 2: a crash, a bad option, a syntax error
        raise RuntimeError(f"mypy failed (exit code {done.returncode}):\n{done.stdout}{done.stderr}")
    return count_errors(done.stdout)


def typed_versions() -> dict[str, str | None]:
    """The installed versions of mypy and the typed libraries (None for one not installed)."""
    found: dict[str, str | None] = {}
    for name in TYPED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


@dataclass(frozen=True)
class Comparison:
    """Counts per module before (the baseline) and now; ``grown``: the modules with more errors than before.
    ``other_versions``: the libraries whose installed version differs from the baseline's (name: (then, now))."""

    before: dict[str, int]
    now: dict[str, int]
    other_versions: dict[str, tuple[str | None, str | None]] | None = None

    @property
    def modules(self) -> list[str]:
        return sorted(set(self.before) | set(self.now))

    @property
    def grown(self) -> list[str]:
        return [m for m in self.modules if self.now.get(m, 0) > self.before.get(m, 0)]

    @property
    def went_down(self) -> bool:
        return any(self.now.get(m, 0) < self.before.get(m, 0) for m in self.modules)

    def table(self) -> str:
        rows = [(m, self.before.get(m, 0), self.now.get(m, 0)) for m in self.modules]
        rows.append(("total", sum(self.before.values()), sum(self.now.values())))
        lines = [f"{'module':<14} {'baseline':>8} {'now':>5} {'change':>6}"]
        lines += [f"{m:<14} {b:>8} {n:>5} {n - b:>+6}" for m, b, n in rows]
        return "\n".join(lines)


def read_baseline(path: Path = BASELINE) -> dict[str, int]:
    """The per-module counts recorded in ``path`` (``{"total": N, "modules": {"serve": 112, ...}, ...}``)."""
    modules: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))["modules"]
    return modules


def version_changes(path: Path = BASELINE) -> dict[str, tuple[str | None, str | None]]:
    """The typed libraries whose installed version is not the one ``path`` recorded (all of them for a baseline
    that recorded none)."""
    then = json.loads(path.read_text(encoding="utf-8")).get("versions", {})
    now = typed_versions()
    return {name: (then.get(name), now[name]) for name in TYPED if then.get(name) != now[name]}


def write_baseline(counts: dict[str, int], path: Path = BASELINE) -> None:
    record = {"total": sum(counts.values()), "modules": dict(sorted(counts.items())), "versions": typed_versions()}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def check(comparison: Comparison, update: bool, path: Path = BASELINE) -> int:
    """Print the table; 1 when a module's count grew (nothing is written then), else 0, recording the new counts
    in ``path`` with ``update``."""
    print(comparison.table())
    if comparison.grown and comparison.other_versions:
        changed = ", ".join(f"{n} {a} -> {b}" for n, (a, b) in comparison.other_versions.items())
        print(
            f"warning: mypy errors grew in {', '.join(comparison.grown)}, but the baseline was recorded with other "
            f"versions ({changed}): not counted as a failure; fix them and record the counts with --update"
        )
        return 0
    if comparison.grown:
        print(
            f"mypy errors grew in {', '.join(comparison.grown)}: fix the new type errors "
            "(`.venv/bin/mypy src/hyperadapt` lists them); the counts may only go down"
        )
        return 1
    if update and (comparison.before != comparison.now or comparison.other_versions):
        write_baseline(comparison.now, path)
        print(f"recorded {sum(comparison.now.values())} errors in {path}")
    elif comparison.went_down:
        print("counts went down: record them with `python scripts/mypy_countdown.py --update`")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="record the counts when none grew")
    args = parser.parse_args(argv)
    try:
        now = run_mypy()
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 2
    return check(Comparison(read_baseline(), now, version_changes()), args.update)


if __name__ == "__main__":
    sys.exit(main())

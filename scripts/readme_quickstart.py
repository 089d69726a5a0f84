"""Run the README's Python quickstart as written (the default model, its own budgets) and record what it printed.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/readme_quickstart.py --workdir /tmp/quickstart \
        --out docs/results/quickstart.json

The code is the first ```python block under the README's "## Python quickstart", run unchanged in WORKDIR (its
``runs/`` and ``adapters/`` go there; a second run resumes the trained runs, so use a fresh WORKDIR to time it).
The JSON holds the code, every line it printed, the wall and CPU seconds of this process, the torch threads, the
load average before and after (the machine is shared: CPU seconds are the comparable number) and the commit.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_python(name: str = "Python quickstart") -> str:
    """The first ```python block under the README's heading ``## {name}``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


class Tee(io.TextIOBase):
    """Writes to the console and keeps a copy."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        return self.copy.write(s)

    def flush(self) -> None:
        self.stream.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="where the snippet runs (runs/, adapters/)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    args = parser.parse_args()
    import torch

    code = readme_python()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    args.out = args.out.resolve()  # before the snippet's chdir
    args.workdir.mkdir(parents=True, exist_ok=True)
    fresh = not any(args.workdir.iterdir())
    load_before = os.getloadavg()
    tee = Tee(sys.stdout)  # type: ignore[arg-type]  # sys.stdout is a TextIO
    os.chdir(args.workdir)
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(tee):
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python {shlex.join(sys.argv)}",
        "commit": commit,
        "code": code,
        "printed": tee.copy.getvalue().splitlines(),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "torch_threads": torch.get_num_threads(),
        "fresh_workdir": fresh,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {wall:.0f} s wall, {cpu:.0f} s CPU", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

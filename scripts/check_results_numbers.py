"""Check that splitting docs/RESULTS.md into pages lost no number.

Every number of the single-page RESULTS.md (as of git revision REV, default the last one before the split) must
still appear in docs/RESULTS.md or in a page of docs/results/ (the lab notes included). Exit code 1 lists the
missing numbers with their context.

Usage: python scripts/check_results_numbers.py [REV]
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE_SPLIT = "16aa7dc"
NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:e[+-]?\d+)?")


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def main(rev: str = BEFORE_SPLIT) -> int:
    old = subprocess.run(
        ["git", "show", f"{rev}:docs/RESULTS.md"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    pages = [ROOT / "docs" / "RESULTS.md", *sorted((ROOT / "docs" / "results").glob("*.md"))]
    new = numbers("\n".join(p.read_text(encoding="utf-8") for p in pages))
    missing = sorted(numbers(old) - new)
    for number in missing:
        at = old.index(number)
        print(f"missing {number!r}: ...{old[max(0, at - 60) : at + 40]!r}...")
    print(
        f"{len(numbers(old))} distinct numbers in RESULTS.md at {rev}; {len(missing)} missing from {len(pages)} pages"
    )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

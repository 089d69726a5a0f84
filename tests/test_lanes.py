"""benchmarks/lanes_common.sh: how a lane reads a step's log (step_state) and waits for another lane's step
(wait_done): a finished step lets the waiting lane go on, a failed one that nothing runs again stops it."""

import shutil
import subprocess
from pathlib import Path

import pytest

COMMON = Path(__file__).resolve().parents[1] / "benchmarks" / "lanes_common.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("flock") is None, reason="bash, flock")


def bash(script: str, logs: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under ``set -euo pipefail`` (as the lane scripts do) with lanes_common.sh sourced."""
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{COMMON}"; work="{logs.parent}"; {script}'],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_step_state_is_the_last_step_line_and_empty_without_one(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("STEP FAILED exit 1 2026-12-07T01:00:00Z\nresumed\nSTEP DONE 2026-12-07T02:00:00Z\n")
    (logs / "b.log").write_text("loss 1.2\r 50%|#####\n")
    done = bash(f'step_state "{logs}/a.log"; echo "[$(step_state "{logs}/b.log")]"; step_state "{logs}/none.log"', logs)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["STEP DONE 2026-12-07T02:00:00Z", "[]"]


def test_wait_done_returns_on_done_and_fails_on_a_failed_step_that_nothing_runs(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ok.log").write_text("STEP DONE 2026-12-07T02:00:00Z\n")
    (logs / "bad.log").write_text("Traceback ...\nSTEP FAILED exit 2 2026-12-07T03:00:00Z\n")
    assert bash("wait_done ok", logs).returncode == 0
    failed = bash("wait_done bad; echo not reached", logs)
    assert failed.returncode == 1 and "not reached" not in failed.stdout
    assert "error: step bad failed" in failed.stderr and "STEP FAILED exit 2" in failed.stderr

"""scripts/mypy_countdown.py: mypy's errors per module may only go down (`make lint`)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mypy_countdown.py"


@pytest.fixture(scope="module")
def countdown():
    spec = importlib.util.spec_from_file_location("mypy_countdown", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


MYPY_OUTPUT = """\
src/hyperadapt/serve/app.py:12: error: Function is missing a type annotation  [no-untyped-def]
src/hyperadapt/serve/endpoints/chat.py:3:5: error: Missing type arguments for generic type "dict"  [type-arg]
src/hyperadapt/serve/app.py:40: note: Use "-> None" if function does not return a value
src/hyperadapt/runs.py:7: error: Returning Any from function declared to return "str"  [no-any-return]
Found 3 errors in 3 files (checked 129 source files)
"""


def test_errors_are_counted_per_top_level_module_and_notes_are_not(countdown):
    assert countdown.count_errors(MYPY_OUTPUT) == {"runs": 1, "serve": 2}
    assert countdown.count_errors("Success: no issues found in 129 source files\n") == {}


def write(path: Path, modules: dict[str, int]) -> Path:
    path.write_text(json.dumps({"total": sum(modules.values()), "modules": modules}))
    return path


def test_a_module_that_grew_fails_even_when_the_total_fell_and_is_not_recorded(countdown, tmp_path):
    baseline = write(tmp_path / "baseline.json", {"serve": 10, "runs": 0, "methods": 5})
    before = baseline.read_text()
    comparison = countdown.Comparison(countdown.read_baseline(baseline), {"serve": 2, "runs": 1, "methods": 5})
    assert comparison.grown == ["runs"]
    assert countdown.check(comparison, update=True, path=baseline) == 1
    assert baseline.read_text() == before


def test_a_module_the_baseline_does_not_name_is_held_at_zero(countdown):
    assert countdown.Comparison({"serve": 3}, {"serve": 3, "cli": 1}).grown == ["cli"]


def test_counts_that_went_down_are_recorded_only_with_update(countdown, tmp_path):
    baseline = write(tmp_path / "baseline.json", {"serve": 10, "cli": 2})
    comparison = countdown.Comparison(countdown.read_baseline(baseline), {"serve": 7})
    assert comparison.went_down and not comparison.grown
    before = baseline.read_text()
    assert countdown.check(comparison, update=False, path=baseline) == 0
    assert baseline.read_text() == before
    assert countdown.check(comparison, update=True, path=baseline) == 0
    recorded = json.loads(baseline.read_text())
    assert recorded["total"] == 7 and recorded["modules"] == {"serve": 7}
    assert recorded["versions"] == countdown.typed_versions()  # counts are comparable under these versions only


def test_growth_under_other_library_versions_warns_and_passes(countdown, tmp_path, capsys):
    baseline = write(tmp_path / "baseline.json", {"serve": 1})
    changed = {"transformers": ("5.0.0", "6.0.0")}
    assert countdown.check(countdown.Comparison({"serve": 1}, {"serve": 3}, changed), update=False, path=baseline) == 0
    assert "transformers 5.0.0 -> 6.0.0" in capsys.readouterr().out
    assert countdown.check(countdown.Comparison({"serve": 1}, {"serve": 3}, {}), update=False, path=baseline) == 1


def test_a_mypy_crash_is_not_read_as_zero_errors(countdown, monkeypatch):
    def crashed(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 2, "", "mypy: error: invalid syntax\n")

    monkeypatch.setattr(countdown.subprocess, "run", crashed)
    with pytest.raises(RuntimeError, match="exit code 2"):
        countdown.run_mypy()

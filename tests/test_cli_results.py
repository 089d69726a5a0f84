"""Where ``hyperadapt eval`` writes: a file that names everything that tells two evaluations apart, and never
a silent replacement of another evaluation's results."""

from __future__ import annotations

import json

import pytest
from tests.cli_helpers import runner
from tests.conftest import write_jsonl

from hyperadapt.cli import app
from hyperadapt.evaluation.destination import result_name, source_tag

FAST = ["--split", "test", "--limit", "1", "--max-new-tokens", "2"]


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def two_folders(tmp_path):
    """The same task file in two folders of the same name: ``a/data/tasks.jsonl``, ``b/data/tasks.jsonl``."""
    folders = [tmp_path / side / "data" for side in ("a", "b")]
    for folder in folders:
        folder.mkdir(parents=True)
        write_jsonl(folder / "tasks.jsonl")
    return folders


def _results(folder) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in folder.rglob("*.json")}


def test_zero_shot_results_of_two_data_folders_and_two_settings_do_not_replace_each_other(
    tiny_dir, two_folders, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    a, b = (f"jsonl:{folder}" for folder in two_folders)
    for data, setting in ((a, "def"), (b, "def"), (a, "none")):
        _ok(["eval", "--model", str(tiny_dir), "--data", data, "--setting", setting, *FAST])
    written = _results(tmp_path / "results")
    assert len(written) == 3
    assert {(r["data"], r["setting"]) for r in written.values()} == {(a, "def"), (b, "def"), (a, "none")}
    model = source_tag(str(tiny_dir))
    assert f"zero-shot.{model}.{result_name(b, 'test', 'def', 1)}" in written
    assert source_tag(a) != source_tag(b) and source_tag(a).startswith("jsonl-data-")
    assert source_tag(a) == source_tag(f"jsonl:{two_folders[0]}/../data")  # one folder, however it is written


def test_a_runs_results_of_two_data_folders_do_not_collide(tiny_dir, two_folders, tmp_path):
    run = tmp_path / "run"
    a, b = (f"jsonl:{folder}" for folder in two_folders)
    _ok(
        [
            "train",
            "multitask-lora",
            "--set",
            f"model={tiny_dir}",
            f"data={a}",
            "train.steps=1",
            "train.batch_size=2",
            "--out",
            str(run),
        ]
    )
    for data in (a, b):
        _ok(["eval", "--run", str(run), "--data", data, *FAST])
    written = _results(run / "eval")
    assert sorted(r["data"] for r in written.values()) == [a, b]


def test_results_of_another_evaluation_are_refused_unless_overwrite(tiny_dir, jsonl_data, tmp_path):
    out = tmp_path / "r.json"
    first = ["eval", "--model", str(tiny_dir), "--data", f"jsonl:{jsonl_data}", "--out", str(out), *FAST]
    _ok(first)
    _ok(first)  # the same evaluation again replaces its own results
    other = [*first, "--setting", "none"]
    refused = runner.invoke(app, other)
    assert refused.exit_code == 2 and "holds the results of another evaluation (setting 'def')" in refused.output
    assert "--overwrite" in refused.output
    assert json.loads(out.read_text())["setting"] == "def"
    _ok([*other, "--overwrite"])
    assert json.loads(out.read_text())["setting"] == "none"
    for damaged, words in (("{not json", "not valid JSON"), ('{"config": [1]}', "config is not a JSON object")):
        out.write_text(damaged)
        refused = runner.invoke(app, other)
        assert refused.exit_code == 2 and words in refused.output and "--overwrite" in refused.output
        assert "Traceback" not in refused.output and out.read_text() == damaged


def test_the_same_evaluation_from_another_folder_is_the_same(tiny_dir, jsonl_data, tmp_path, monkeypatch):
    """Results record their data and model as identified where they ran: a relative --data given in one folder
    and the same file's absolute path given in another are one evaluation (it was refused as another)."""
    import shutil

    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(jsonl_data, here / "tasks.jsonl")
    out = tmp_path / "r.json"
    monkeypatch.chdir(here)
    _ok(["eval", "--model", str(tiny_dir), "--data", "jsonl:tasks.jsonl", "--out", str(out), *FAST])
    monkeypatch.chdir(tmp_path)
    _ok(["eval", "--model", str(tiny_dir), "--data", f"jsonl:{here / 'tasks.jsonl'}", "--out", str(out), *FAST])
    other = tmp_path / "other.jsonl"
    shutil.copy(jsonl_data, other)
    refused = runner.invoke(
        app, ["eval", "--model", str(tiny_dir), "--data", f"jsonl:{other}", "--out", str(out), *FAST]
    )
    assert refused.exit_code == 2 and "holds the results of another evaluation (data" in refused.output

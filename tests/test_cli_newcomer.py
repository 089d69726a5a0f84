"""What a newcomer met (issue 38): settings explained by the CLI, `continual add` with plain JSONL rows and a
resume command when it is interrupted, an example in `continual --help`, `bench compare` like the others."""

from __future__ import annotations

import json

from tests.cli_helpers import runner

from hyperadapt.cli import app
from hyperadapt.config import settings
from hyperadapt.registry import method_entry


def test_config_lists_every_setting_with_its_default_and_help():
    result = runner.invoke(app, ["config", "tagi"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    rows = settings(method_entry("tagi").config_cls)
    assert len(result.output.splitlines()) == len(rows)
    assert any(line.startswith("train.steps = 300 ") for line in result.output.splitlines())  # --set's dotted keys
    helped = [s.help for s in rows if s.help]
    assert helped and all(text in result.output for text in helped)


def test_config_of_every_registered_method_with_a_config_and_a_clear_error_otherwise():
    from hyperadapt.registry import method_names

    for name in method_names():
        result = runner.invoke(app, ["config", name])
        if method_entry(name).config_cls is None:
            assert result.exit_code == 2 and "has no config" in result.output
        else:
            assert result.exit_code == 0 and result.output.strip(), name
    unknown = runner.invoke(app, ["config", "nope"])
    assert unknown.exit_code == 2 and "unknown method 'nope'" in unknown.output


def test_continual_help_has_an_example_and_add_documents_split_and_resume():
    group = runner.invoke(app, ["continual", "--help"], env={"COLUMNS": "400"})
    assert group.exit_code == 0 and "Example: hyperadapt continual --config" in group.output
    add = runner.invoke(app, ["continual", "add", "--help"], env={"COLUMNS": "400"})
    assert add.exit_code == 0 and "split" in add.output and "hyperadapt continual --config RUN/run.json" in add.output


def _rows(path, split_of):
    rows = [
        {
            "task": "echo",
            "instruction": "Repeat the input.",
            "input": f"w{i}",
            "output": f"w{i}",
            **({"split": split_of(i)} if split_of(i) else {}),
        }
        for i in range(10)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"jsonl:{path}"


def test_a_jsonl_task_to_add_needs_no_split_field(tmp_path):
    from hyperadapt.methods.switch import load_task_spec

    train, test = load_task_spec(_rows(tmp_path / "plain.jsonl", lambda i: None))
    assert len(train.instances) == 10 and test is None  # add_task holds out the last tenth
    train, test = load_task_spec(_rows(tmp_path / "marked.jsonl", lambda i: "test" if i >= 8 else None))
    assert [x.input for x in train.instances] == [f"w{i}" for i in range(8)]
    assert [x.input for x in test.instances] == ["w8", "w9"]
    train, test = load_task_spec(_rows(tmp_path / "old.jsonl", lambda i: "test" if i >= 8 else "train"))
    assert len(train.instances) == 8 and len(test.instances) == 2  # the old form still reads the same


def test_an_interrupted_add_says_how_to_resume(tmp_path, monkeypatch):
    import hyperadapt.methods.switch as switch

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps({"kind": "continual", "method": "switchcit", "config": {}, "status": "finished", "tasks": ["a"]})
    )

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(switch, "add_task", interrupted)
    result = runner.invoke(app, ["continual", "add", str(run), "--task", _rows(tmp_path / "t.jsonl", lambda i: None)])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert (
        f"resume with `hyperadapt continual --config {run / 'run.json'} --method switchcit --out {run}`"
        in result.output
    )

"""Loaders on small fixture files written in tmp_path (no dependency on the shared data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hyperadapt.data import load_tasks
from hyperadapt.data.loaders import (
    ContinualStream,
    load_cl_stream,
    load_hf,
    load_jsonl,
    load_sni,
    load_task_file,
    tasks_from_rows,
)
from hyperadapt.data.schema import Task, TaskDataError


def sni_record(tag: str = "a", n: int = 2, **overrides: Any) -> dict[str, Any]:
    """A task object in the official Super-NaturalInstructions schema."""
    record: dict[str, Any] = {
        "Contributors": ["x"],
        "Source": ["src"],
        "Categories": ["Question Answering"],
        "Definition": [f"Answer question {tag}. "],
        "Positive Examples": [
            {"input": "q1", "output": "a1", "explanation": "because"},
            {"input": "q2", "output": "a2"},
        ],
        "Negative Examples": [],
        "Instances": [{"id": f"{tag}-{i}", "input": f"in {i}", "output": [f"out {i}", f"alt {i}"]} for i in range(n)],
        "Instance License": ["MIT"],
    }
    record.update(overrides)
    return record


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
    return path


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def sni_dir(root: Path, official: bool = False) -> Path:
    for name in ("task001_a", "task002_b", "task003_c"):
        write_json(root / "tasks" / f"{name}.json", sni_record(name))
    (root / "tasks" / "README.md").write_text("not a task")
    splits = root / "splits" / ("default" if official else "")
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "train_tasks.txt").write_text("task002_b\ntask001_a\n\n")
    (splits / "test_tasks.txt").write_text("task003_c\n")
    return root


# ---------------------------------------------------------------- task files


def test_load_task_file_maps_every_field(tmp_path: Path) -> None:
    path = write_json(tmp_path / "task042_demo.json", sni_record("demo", n=3))
    task = load_task_file(path)
    assert isinstance(task, Task)
    assert task.name == "task042_demo"
    assert task.instruction == "Answer question demo."
    assert task.categories == ["Question Answering"] and task.category == "Question Answering"
    assert task.condition_type == "task"
    assert task.source == str(path)
    assert [i.id for i in task.instances] == ["demo-0", "demo-1", "demo-2"]
    assert task.instances[1].input == "in 1"
    assert task.instances[1].outputs == ("out 1", "alt 1")
    assert [(e.input, e.output, e.explanation) for e in task.positive_examples] == [
        ("q1", "a1", "because"),
        ("q2", "a2", ""),
    ]


def test_task_file_variants_seen_in_real_data(tmp_path: Path) -> None:
    """String Definition/Categories/output (the CL stream has these), extra definitions, missing ids."""
    record = sni_record(
        Categories="Sentiment",
        Definition=["First wording.", "Second wording."],
        Instances=[{"input": "x", "output": "POS"}, {"id": 7, "input": "y", "output": ["NEG"]}],
    )
    del record["Positive Examples"]
    task = load_task_file(write_json(tmp_path / "t.json", record), name="renamed")
    assert task.name == "renamed"
    assert task.instruction == "First wording." and task.paraphrases == ["Second wording."]
    assert task.categories == ["Sentiment"]
    assert [(i.id, i.outputs) for i in task.instances] == [("renamed-0", ("POS",)), ("7", ("NEG",))]
    assert task.positive_examples == []
    single = load_task_file(write_json(tmp_path / "s.json", sni_record(Definition="Plain string.")))
    assert single.instruction == "Plain string." and single.paraphrases == []


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda r: r.pop("Definition"), "'Definition' is missing"),
        (lambda r: r.update(Definition=[]), "'Definition' is an empty list"),
        (lambda r: r.update(Definition=["  "]), "'Definition' is empty"),
        (lambda r: r.update(Definition=3), "'Definition' must be a string or a list of strings, got int"),
        (lambda r: r.pop("Instances"), "'Instances' is missing"),
        (lambda r: r.update(Instances=[]), "'Instances' is empty"),
        (lambda r: r.update(Instances={"input": "x"}), "'Instances' must be a list, got dict"),
        (lambda r: r["Instances"][1].pop("output"), "'Instances[1].output' is missing"),
        (lambda r: r["Instances"][0].update(output=[]), "'Instances[0].output' is an empty list"),
        (lambda r: r["Instances"][0].update(output=[1]), "'Instances[0].output' must be a string or a list"),
        (lambda r: r["Instances"][0].pop("input"), "'Instances[0].input' is missing"),
        (lambda r: r["Instances"][0].update(input=["x"]), "'Instances[0].input' must be a string, got list"),
        (lambda r: r["Instances"].__setitem__(0, "x"), "'Instances[0]' must be an object, got str"),
        (lambda r: r["Instances"][1].update(id="a-0"), "instance id 'a-0' appears more than once"),
        (lambda r: r.update(Categories=[1]), "'Categories' must be a string or a list of strings"),
        (lambda r: r["Positive Examples"][0].pop("output"), "'Positive Examples[0].output' is missing"),
    ],
)
def test_bad_task_file_names_file_and_field(tmp_path: Path, change: Any, needle: str) -> None:
    record = sni_record()
    change(record)
    path = write_json(tmp_path / "bad.json", record)
    with pytest.raises(TaskDataError) as err:
        load_task_file(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "Definition": ["x"],\n  "Instances": [,]\n}\n')
    with pytest.raises(TaskDataError, match=r"broken\.json: not valid JSON \(line 3"):
        load_task_file(path)


def test_task_file_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="expected a JSON object"):
        load_task_file(write_json(tmp_path / "list.json", [1, 2]))


def test_missing_task_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_task_file(tmp_path / "nope.json")


# ---------------------------------------------------------------- SNI directories


@pytest.mark.parametrize("official", [False, True])
def test_load_sni_both_layouts(tmp_path: Path, official: bool) -> None:
    root = sni_dir(tmp_path, official)
    train = load_sni(root, "train")
    assert [t.name for t in train] == ["task002_b", "task001_a"]
    assert [t.name for t in load_sni(root, "test")] == ["task003_c"]
    assert [t.name for t in load_sni(root, "all")] == ["task001_a", "task002_b", "task003_c"]
    assert train[0].instruction == "Answer question task002_b."


def test_load_sni_task_filter(tmp_path: Path) -> None:
    root = sni_dir(tmp_path)
    assert [t.name for t in load_sni(root, "train", tasks=["task001_a"])] == ["task001_a"]
    with pytest.raises(ValueError, match="task003_c"):
        load_sni(root, "train", tasks=["task003_c"])


def test_load_sni_missing_split_file(tmp_path: Path) -> None:
    root = sni_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"split 'dev'.*dev_tasks\.txt"):
        load_sni(root, "dev")


def test_load_sni_missing_task_named_in_split(tmp_path: Path) -> None:
    root = sni_dir(tmp_path)
    (root / "splits" / "train_tasks.txt").write_text("task001_a\ntask999_gone\n")
    with pytest.raises(FileNotFoundError) as err:
        load_sni(root, "train")
    message = str(err.value)
    assert "task999_gone" in message and "train_tasks.txt" in message and "task999_gone.json" in message


def test_load_sni_bad_split_files(tmp_path: Path) -> None:
    root = sni_dir(tmp_path)
    (root / "splits" / "train_tasks.txt").write_text("task001_a\ntask001_a\n")
    with pytest.raises(TaskDataError, match="line 2.*listed twice"):
        load_sni(root, "train")
    (root / "splits" / "train_tasks.txt").write_text("\n# nothing\n")
    with pytest.raises(TaskDataError, match="lists no tasks"):
        load_sni(root, "train")


def test_load_sni_missing_directories(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_sni(tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="tasks"):
        load_sni(tmp_path / "empty", "train")


# ---------------------------------------------------------------- continual stream


def cl_dir(root: Path) -> Path:
    names = ["task010_x", "task020_y", "task030_z"]
    write_json(root / "orders.json", {"order1": names, "order2": names[::-1]})
    sizes = {"train": 4, "dev": 2, "test": 2}
    for name in names:
        for split, n in sizes.items():
            write_json(root / name / f"{split}.json", sni_record(f"{name}-{split}", n=n))
    return root


def test_load_cl_stream(tmp_path: Path) -> None:
    stream = load_cl_stream(cl_dir(tmp_path))
    assert isinstance(stream, ContinualStream)
    assert stream.names == ["task010_x", "task020_y", "task030_z"] and len(stream) == 3
    assert stream.order == "order1"
    train = stream.split("train")
    assert [t.name for t in train] == stream.names
    assert [len(t.instances) for t in train] == [4, 4, 4]
    assert [len(t.instances) for t in stream.split("test")] == [2, 2, 2]
    assert stream.dev["task020_y"].instruction == "Answer question task020_y-dev."
    assert stream.test["task030_z"].source.endswith("test.json")
    reverse = load_cl_stream(tmp_path, order=2)
    assert reverse.names == stream.names[::-1] and reverse.order == "order2"
    assert load_cl_stream(tmp_path, order="order2").names == reverse.names
    with pytest.raises(ValueError, match="no split 'valid'"):
        stream.split("valid")


def test_load_cl_stream_errors(tmp_path: Path) -> None:
    root = cl_dir(tmp_path)
    with pytest.raises(ValueError, match="no order 'order3'.*order1, order2"):
        load_cl_stream(root, order=3)
    write_json(root / "orders.json", {"order1": ["task010_x", "task099_missing"]})
    with pytest.raises(FileNotFoundError, match="task099_missing"):
        load_cl_stream(root)
    write_json(root / "orders.json", {"order1": ["task010_x", "task010_x"]})
    with pytest.raises(TaskDataError, match="more than once"):
        load_cl_stream(root)
    write_json(root / "orders.json", {"order1": ["task010_x"]})
    (root / "task010_x" / "dev.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"task010_x.dev\.json"):
        load_cl_stream(root)
    (root / "orders.json").write_text("{oops")
    with pytest.raises(TaskDataError, match=r"orders\.json: not valid JSON \(line 1"):
        load_cl_stream(root)


# ---------------------------------------------------------------- JSONL


def jrow(task: str, i: int, **extra: Any) -> dict[str, Any]:
    return {"task": task, "instruction": f"Do {task}.", "input": f"x{i}", "output": f"y{i}", **extra}


def test_load_jsonl_groups_by_task(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "data.jsonl",
        [
            jrow("sent", 0, categories=["Sentiment"], options=["pos", "neg"], condition_type="sentiment"),
            jrow("style", 0, output=["Y0", "y0!"], id="s-zero"),
            "",
            jrow("sent", 1),
        ],
    )
    sent, style = load_jsonl(path)
    assert sent.name == "sent" and style.name == "style"
    assert sent.instruction == "Do sent."
    assert [(i.id, i.input, i.outputs) for i in sent.instances] == [
        ("sent-0", "x0", ("y0",)),
        ("sent-1", "x1", ("y1",)),
    ]
    assert sent.categories == ["Sentiment"] and sent.options == ["pos", "neg"]
    assert sent.condition_type == "sentiment"
    assert style.condition_type == "task" and style.options is None and style.categories == []
    assert style.instances[0].id == "s-zero" and style.instances[0].outputs == ("Y0", "y0!")
    assert sent.source == str(path)


def test_load_jsonl_split_filter(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl",
        [jrow("a", 0, split="train"), jrow("a", 1, split="test"), jrow("b", 0, split="train")],
    )
    assert [t.name for t in load_jsonl(path)] == ["a", "b"]
    test = load_jsonl(path, split="test")
    assert [t.name for t in test] == ["a"]
    assert [i.id for i in test[0].instances] == ["a-1"]  # ids count all lines of a task, so they are stable
    assert [len(t.instances) for t in load_jsonl(path, split="train")] == [1, 1]
    with pytest.raises(TaskDataError, match=r"no instance has field 'split' equal to 'dev' \(found: test, train\)"):
        load_jsonl(path, split="dev")


def test_load_jsonl_without_split_fields_says_to_keep_all(tmp_path: Path) -> None:
    # training configs default to split 'train': a file without split fields must say how to keep every line
    path = write_lines(tmp_path / "d.jsonl", [jrow("a", 0), jrow("b", 0)])
    with pytest.raises(TaskDataError, match="no instance has a 'split' field.*use split 'all'"):
        load_jsonl(path, split="train")
    assert [t.name for t in load_tasks(f"jsonl:{path}", "all")] == ["a", "b"]
    assert [t.name for t in load_jsonl(path, split="all")] == ["a", "b"]  # the name the message gives works here too


def test_load_jsonl_directory(tmp_path: Path) -> None:
    write_lines(tmp_path / "d" / "b.jsonl", [jrow("t2", 0), jrow("t1", 5)])
    write_lines(tmp_path / "d" / "a.jsonl", [jrow("t1", 0)])
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    tasks = load_jsonl(tmp_path / "d")
    assert [t.name for t in tasks] == ["t1", "t2"]
    assert [i.input for i in tasks[0].instances] == ["x0", "x5"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .jsonl files"):
        load_jsonl(tmp_path / "empty")


def test_jsonl_inconsistent_instruction_names_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", [jrow("a", 0), jrow("b", 0), jrow("a", 1, instruction="Other.")])
    with pytest.raises(TaskDataError) as err:
        load_jsonl(path)
    message = str(err.value)
    assert "'instruction'" in message and "line 1" in message and "line 3" in message and str(path) in message


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        (json.dumps({"task": "a", "instruction": "i", "input": "x"}), "line 2: field 'output' is missing"),
        (json.dumps({"task": "a", "input": "x", "output": "y"}), "line 2: field 'instruction' is missing"),
        (json.dumps(jrow("a", 1, output=[])), "line 2: field 'output' is an empty list"),
        (json.dumps(jrow("a", 1, input=3)), "line 2: field 'input' must be a string, got int"),
        (json.dumps(jrow("", 1)), "line 2: field 'task' is empty"),
        (json.dumps(jrow("a", 1, instruction=" ")), "line 2: field 'instruction' is empty"),
        (json.dumps(jrow("a", 1, categories=5)), "line 2: field 'categories' must be a string or a list"),
        (json.dumps(jrow("a", 1, id=[1])), "line 2: field 'id' must be a string or an integer"),
        (json.dumps(jrow("a", 1, id="a-0")), "instance id 'a-0' appears more than once"),
    ],
)
def test_bad_jsonl_lines(tmp_path: Path, line: str, needle: str) -> None:
    path = write_lines(tmp_path / "d.jsonl", [jrow("a", 0), line])
    with pytest.raises(TaskDataError) as err:
        load_jsonl(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_jsonl_task_fields_must_agree(tmp_path: Path) -> None:
    lines = [jrow("a", 0, options=["yes", "no"]), jrow("a", 1), jrow("a", 2, options="yes")]
    with pytest.raises(TaskDataError, match=r"'options' differs between .*line 1 and .*line 3"):
        load_jsonl(write_lines(tmp_path / "d.jsonl", lines))
    lines = [jrow("a", 0, categories=["QA"]), jrow("a", 1, categories="QA"), jrow("a", 2)]
    assert load_jsonl(write_lines(tmp_path / "e.jsonl", lines))[0].categories == ["QA"]


def test_jsonl_bad_condition_type_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="condition_type 'mood'"):
        load_jsonl(write_lines(tmp_path / "d.jsonl", [jrow("a", 0, condition_type="mood")]))
    with pytest.raises(TaskDataError, match="no instances"):
        load_jsonl(write_lines(tmp_path / "blank.jsonl", ["", "  "]))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_jsonl(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------- table rows and the HF hub


def test_rows_in_sni_mirror_schema() -> None:
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict(
        {
            "task_name": ["t1", "t1", "t2"],
            "id": ["t1-a", "t1-b", None],
            "definition": ["Define one.", "Define one.", "Define two."],
            "inputs": ["i1", "i2", "i3"],
            "targets": ["o1", "o2", "o3"],
        }
    )
    t1, t2 = tasks_from_rows(table, source="mirror")
    assert (t1.name, t1.instruction, t2.name, t2.instruction) == ("t1", "Define one.", "t2", "Define two.")
    assert [(i.id, i.input, i.outputs) for i in t1.instances] == [
        ("t1-a", "i1", ("o1",)),
        ("t1-b", "i2", ("o2",)),
    ]
    assert t2.instances[0].id == "t2-0"
    assert t1.source == "mirror"


def test_rows_in_jsonl_schema_with_list_outputs() -> None:
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict(
        {
            "task": ["p", "p"],
            "instruction": ["Talk like a pirate.", "Talk like a pirate."],
            "input": ["hello", "bye"],
            "output": [["ahoy", "arr"], ["farewell"]],
            "condition_type": ["persona", "persona"],
        }
    )
    (task,) = tasks_from_rows(table)
    assert task.condition_type == "persona"
    assert task.instances[0].outputs == ("ahoy", "arr")


def test_rows_errors_name_columns_and_rows() -> None:
    with pytest.raises(TaskDataError) as err:
        tasks_from_rows([{"question": "q", "answer": "a"}], source="hub")
    message = str(err.value)
    assert "['answer', 'question']" in message and "task_name" in message and "instruction" in message
    rows = [{"task_name": "t", "definition": "d", "inputs": "x", "targets": "y"}] * 2
    rows[1] = {**rows[1], "definition": "changed"}
    with pytest.raises(TaskDataError, match="'instruction' differs between hub row 0 and hub row 1"):
        tasks_from_rows(rows, source="hub")
    with pytest.raises(TaskDataError, match="hub row 0: field 'targets' is missing"):
        tasks_from_rows([{"task_name": "t", "definition": "d", "inputs": "x", "targets": None}], source="hub")
    with pytest.raises(TaskDataError, match="no instances"):
        tasks_from_rows([], source="hub")


def test_load_hf_uses_datasets_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    columns = {"task_name": ["t"], "definition": ["d"], "inputs": ["x"], "targets": ["y"]}
    table = datasets.Dataset.from_dict(columns)
    calls = []

    def fake_load(name: str, config: str | None = None, split: str | None = None) -> Any:
        calls.append((name, config, split))
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    (task,) = load_hf("someone/sni", "test", config="en")
    assert calls == [("someone/sni", "en", "test")]
    assert task.name == "t" and "someone/sni" in task.source

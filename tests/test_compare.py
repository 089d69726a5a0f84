"""`hyperadapt bench compare`: answer logs scored again without a model, each paired against the first."""

import json
from pathlib import Path

import pytest
from tests.cli_helpers import runner

from hyperadapt.cli import app
from hyperadapt.data import load_tasks


def write_log(path, tasks, answer, skip=()):
    """An answer log as evaluations write it: a fingerprint line, then one answer per (task, instance)."""
    lines = [json.dumps({"fingerprint": "test"})]
    for task in tasks:
        for x in task.instances:
            if (task.name, x.id) not in skip:
                lines.append(json.dumps({"key": f"{task.name}\t{x.id}\tdeadbeef", "answer": answer(task, x)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compare_scores_logs_and_pairs_them_with_the_first(jsonl_data, tmp_path):
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    right = write_log(tmp_path / "right.answers.jsonl", tasks, lambda t, x: x.outputs[0])
    wrong = write_log(tmp_path / "wrong.answers.jsonl", tasks, lambda t, x: "zzz")
    half = write_log(
        tmp_path / "half.answers.jsonl",
        tasks,  # right on copy, wrong on yesno
        lambda t, x: x.outputs[0] if t.name == "copy" else "zzz",
    )
    out = tmp_path / "cmp" / "c.json"
    result = runner.invoke(
        app,
        [
            "bench",
            "compare",
            f"good={right}",
            f"bad={wrong}",
            str(half),
            "--data",
            f"jsonl:{jsonl_data}",
            "--split",
            "test",
            "--limit",
            "4",
            "--resamples",
            "1000",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "bad: ROUGE-L 0.00, EM 0.00 (8 answers, 2 tasks); minus good: ROUGE-L -100.00 [-100.00, -100.00]"
        in result.output
    )
    saved = json.loads(out.read_text())
    assert saved["reference"] == "good" and saved["limit"] == 4
    rows = saved["logs"]
    assert rows["good"]["rougeL"] == 100.0 and rows["good"]["n"] == 8 and "minus_reference" not in rows["good"]
    assert rows["bad"]["minus_reference"]["identical_answers"] == 0  # "zzz" never equals a right answer
    assert rows[str(half)]["minus_reference"]["identical_answers"] == 4  # right on copy's 4, "zzz" on yesno's
    assert "; 4 of 8 answers identical" in result.output
    mixed = rows[str(half)]["minus_reference"]["em"]
    assert mixed["diff"] == -50.0 and (mixed["wins"], mixed["losses"], mixed["ties"]) == (0, 1, 1)
    assert -100.0 <= mixed["low"] <= mixed["diff"] <= mixed["high"] <= 0.0
    assert saved["command"].startswith("hyperadapt bench compare good=")
    assert "| bad | 8 | 0.00 | 0.00 | -100.00 [-100.00, -100.00]" in out.with_suffix(".md").read_text()


def test_compare_reads_the_predictions_an_evaluation_writes(jsonl_data, tmp_path):
    """`hyperadapt eval --out R.json` keeps R.predictions.jsonl (its answer log is removed when it finishes)."""
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    log = write_log(tmp_path / "a.answers.jsonl", tasks, lambda t, x: x.outputs[0] if x.id[-1] in "02468" else "no")
    predictions = tmp_path / "a.predictions.jsonl"
    predictions.write_text(
        "".join(
            json.dumps({"task": t.name, "id": x.id, "prediction": ans, "references": []}) + "\n"
            for t in tasks
            for x in t.instances
            for ans in [x.outputs[0] if x.id[-1] in "02468" else "no"]
        )
    )
    result = runner.invoke(
        app,
        [
            "bench",
            "compare",
            f"log={log}",
            f"predictions={predictions}",
            "--data",
            f"jsonl:{jsonl_data}",
            "--split",
            "test",
            "--out",
            str(tmp_path / "c.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "c.json").read_text())["logs"]
    assert rows["log"]["tasks"] == rows["predictions"]["tasks"] and 0 < rows["log"]["rougeL"] < 100
    assert rows["predictions"]["minus_reference"]["rougeL"]["diff"] == 0.0


def test_compare_takes_data_and_split_from_the_results_beside_the_predictions(jsonl_data, tmp_path):
    """Without --data and --split, the evaluations' own results (R.json beside R.predictions.jsonl) say them;
    an answer log has none, and evaluations of different data are refused."""
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    for name in ("a", "b"):
        rows = [
            {"task": t.name, "id": x.id, "prediction": x.outputs[0], "references": []}
            for t in tasks
            for x in t.instances
        ]
        (tmp_path / f"{name}.predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / f"{name}.json").write_text(json.dumps({"data": f"jsonl:{jsonl_data}", "split": "test"}))
    args = ["bench", "compare", str(tmp_path / "a.predictions.jsonl"), str(tmp_path / "b.predictions.jsonl")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c.json").read_text())["data"] == f"jsonl:{jsonl_data}"
    for name in ("a", "b"):  # evaluations at --limit 1: scored on the first instance of each task
        record = {"data": f"jsonl:{jsonl_data}", "split": "test", "config": {"eval": {"limit": 1}}}
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    limited = runner.invoke(app, [*args, "--out", str(tmp_path / "c.json")])
    assert limited.exit_code == 0, limited.output
    assert json.loads((tmp_path / "c.json").read_text())["limit"] == 1
    log = write_log(tmp_path / "l.answers.jsonl", tasks, lambda t, x: x.outputs[0])
    alone = runner.invoke(app, [*args, str(log), "--out", str(tmp_path / "d.json")])
    assert alone.exit_code == 2 and "give --data" in alone.output
    (tmp_path / "b.json").write_text(json.dumps({"data": "synthetic", "split": "test"}))
    mixed = runner.invoke(app, [*args, "--out", str(tmp_path / "e.json")])
    assert mixed.exit_code == 2 and "different data" in mixed.output


def test_compare_tells_data_apart_by_the_tag_recorded_where_each_evaluation_ran(jsonl_data, tmp_path, monkeypatch):
    """One file given relatively in one evaluation and absolutely in another is one data; a relative path that
    names other data from the current folder is refused, not scored against it."""
    from hyperadapt.evaluation.destination import source_tag

    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    rows = [
        {"task": t.name, "id": x.id, "prediction": x.outputs[0], "references": []} for t in tasks for x in t.instances
    ]
    tag = source_tag(f"jsonl:{jsonl_data}")
    for name, spec in (("a", f"jsonl:{jsonl_data.name}"), ("b", f"jsonl:{jsonl_data}")):  # a: relative, elsewhere
        (tmp_path / f"{name}.predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        record = {"data": spec, "split": "test", "sources": {"data": tag, "model": ""}}
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    args = ["bench", "compare", str(tmp_path / "a.predictions.jsonl"), str(tmp_path / "b.predictions.jsonl")]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    both = runner.invoke(app, [*args, "--out", str(tmp_path / "c.json")])
    assert both.exit_code == 0, both.output
    assert json.loads((tmp_path / "c.json").read_text())["data"] == f"jsonl:{jsonl_data}"
    (tmp_path / "b.json").write_text((tmp_path / "a.json").read_text())  # both relative
    (elsewhere / jsonl_data.name).write_text("")  # other data at the relative path
    lost = runner.invoke(app, [*args, "--out", str(tmp_path / "d.json")])
    assert lost.exit_code == 2 and "names other data" in lost.output


def empty(folder):
    path = folder / "empty.jsonl"
    path.write_text("")
    return path


def test_compare_refuses_what_it_cannot_pair(jsonl_data, tmp_path, monkeypatch):
    """Errors as every command's: one ``error:`` line, exit code 2; without --out, results/compare.json."""
    monkeypatch.chdir(tmp_path)
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    full = write_log(tmp_path / "a.answers.jsonl", tasks, lambda t, x: "x")
    gap = write_log(tmp_path / "b.answers.jsonl", tasks, lambda t, x: "x", skip={("yesno", tasks[1].instances[2].id)})
    data = ["--data", f"jsonl:{jsonl_data}", "--split", "test"]

    def fails(*args):
        result = runner.invoke(app, ["bench", "compare", *args, *data])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert [line.startswith("error: ") for line in result.output.splitlines()] == [True], result.output
        return result.output

    assert "has no answer for yesno instance" in fails(str(full), str(gap))
    ok = runner.invoke(app, ["bench", "compare", str(full), str(gap), "--limit", "2", *data])  # the gap is the 3rd
    assert ok.exit_code == 0, ok.output
    assert "at least two inputs" in fails(str(full))
    assert "'x' is given twice" in fails(f"x={full}", f"x={gap}")
    assert "are --data jsonl:" in fails(str(full), str(gap))  # the hint when an answer is missing
    own = tmp_path / "r.predictions.jsonl"
    own.write_text(
        "".join(json.dumps({"task": t.name, "id": x.id, "prediction": "x"}) + "\n" for t in tasks for x in t.instances)
    )
    assert "would overwrite an input or the results" in fails(str(full), str(own), "--out", str(tmp_path / "r.json"))
    assert "must end in .json" in fails(str(full), str(gap), "--limit", "2", "--out", str(tmp_path / "c.md"))
    assert "from 1000" in fails(str(full), str(gap), "--resamples", "10")
    assert "1,000,000" in fails(str(full), str(gap), "--resamples", "1000000000000")
    twice = tmp_path / "twice.predictions.jsonl"
    twice.write_text(2 * (json.dumps({"task": "copy", "id": tasks[0].instances[0].id, "prediction": "x"}) + "\n"))
    assert "a second time" in fails(str(full), str(twice))
    odd = tmp_path / "a=b.answers.jsonl"  # an existing path is never split at '='
    odd.write_text(full.read_text())
    same = runner.invoke(app, ["bench", "compare", str(full), str(odd), *data])
    assert same.exit_code == 0 and f"{odd}: ROUGE-L" in same.output, same.output
    assert json.loads((tmp_path / "results" / "compare.json").read_text())["logs"].keys() == {str(full), str(odd)}
    broken = tmp_path / "broken.predictions.jsonl"  # a prediction without its instance id
    broken.write_text(json.dumps({"task": "copy", "prediction": "x"}) + "\n")
    assert "line 1 is not a prediction" in fails(str(full), str(broken))
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"method": "zero-shot"}, indent=2))
    assert "or give the answers to score (R.predictions.jsonl" in fails(str(full), str(results))
    assert "is empty" in fails(str(full), str(empty(tmp_path)))
    assert "is a folder" in fails(str(full), str(tmp_path))
    assert "no answer log at" in fails(str(full), str(tmp_path / "missing.jsonl"))
    assert "'--limit': Input should be greater than or equal to 1" in fails(str(full), str(gap), "--limit", "0")
    typo = runner.invoke(app, ["bench", "compare", str(full), str(gap), "--limit", "two", *data])
    assert typo.exit_code == 2 and "usage:" not in typo.output.lower()
    assert typo.output.startswith("error: Invalid value for '--limit': Input should be a valid integer")
    assert typo.output.count("\n") == 1 and "hyperadapt bench compare --help" in typo.output


def scores(**per_task):
    """Per-task scores as results record them: task -> (ROUGE-L, EM), 10 instances each."""
    return {t: {"rougeL": r, "em": e, "n": 10} for t, (r, e) in per_task.items()}


def test_compare_takes_recorded_scores_from_result_jsons_without_data(tmp_path):
    """An evaluation's R.json and one row of a benchmark's JSON (R.json#KEY/KEY) are paired as recorded: no
    answers, no task data (the default --data does not exist here)."""
    ev = tmp_path / "zero_shot.json"
    ev.write_text(json.dumps({"method": "zero-shot", "tasks": scores(a=(10.0, 0.0), b=(20.0, 10.0), c=(30.0, 0.0))}))
    bench = tmp_path / "tagi.json"
    rows = {"tagi": {"test": {"mean": {}, "tasks": scores(a=(30.0, 10.0), b=(20.0, 10.0), c=(40.0, 20.0))}}}
    bench.write_text(json.dumps({"results": rows, "sensitivity": {}}))
    out = tmp_path / "c.json"
    result = runner.invoke(
        app, ["bench", "compare", f"zero-shot={ev}", f"TAGI={bench}#results/tagi/test", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["logs"]["TAGI"]
    assert row["scored"] == "recorded" and row["rougeL"] == 30.0 and row["by_category"] is None
    d = row["minus_reference"]["rougeL"]
    assert d["diff"] == 10.0 and (d["wins"], d["losses"], d["ties"]) == (2, 0, 1)
    assert "recorded per-task scores, not scored again" in out.with_suffix(".md").read_text()


def test_compare_names_what_a_result_json_holds_when_the_row_is_wrong(tmp_path):
    bench = tmp_path / "tagi.json"
    bench.write_text(json.dumps({"results": {"tagi": {"test": {"tasks": scores(a=(1.0, 0.0))}}}}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"tasks": {"a": {"rougeL": 1.0, "em": 0.0, "n": 5}}}))

    def run(*specs):
        return runner.invoke(app, ["bench", "compare", *specs, "--out", str(tmp_path / "c.json")])

    typo = run(f"{bench}#results/tagi/test", f"{bench}#results/tagy/test")
    assert typo.exit_code != 0 and "no 'tagy' at results (there: tagi)" in typo.output
    no_row = run(f"{bench}#results/tagi/test", str(bench))
    assert no_row.exit_code != 0 and "holds no per-task scores ('tasks'; there: results)" in no_row.output
    uneven = run(f"{bench}#results/tagi/test", str(other))
    assert uneven.exit_code != 0 and f"{other} has 5 instances of 'a' and {bench}#results/tagi/test 10" in uneven.output
    assert not (tmp_path / "c.json").exists()


def test_an_existing_file_is_never_split_at_its_equals_or_hash(tmp_path, monkeypatch):
    """`lr=1e-3.json#ROW` beside a `1e-3.json` reads the file named `lr=1e-3.json`, and --out cannot replace it."""
    monkeypatch.chdir(tmp_path)
    row = {"results": {"m": {"test": {"tasks": scores(a=(30.0, 10.0), b=(20.0, 0.0))}}}}
    Path("lr=1e-3.json").write_text(json.dumps(row))
    zero = {"results": {"m": {"test": {"tasks": scores(a=(0.0, 0.0), b=(0.0, 0.0))}}}}
    Path("1e-3.json").write_text(json.dumps(zero))
    Path("a#b.json").write_text(json.dumps({"tasks": scores(a=(10.0, 0.0), b=(20.0, 0.0))}))
    Path("ref=x.json").write_text(json.dumps({"tasks": scores(a=(10.0, 0.0), b=(20.0, 0.0))}))

    def run(*specs, out="c.json"):
        return runner.invoke(app, ["bench", "compare", *specs, "--out", out])

    result = run("a#b.json", "lr=1e-3.json#results/m/test", "L=ref=x.json")
    assert result.exit_code == 0, result.output
    rows = json.loads(Path("c.json").read_text())["logs"]
    assert rows["lr=1e-3.json#results/m/test"]["rougeL"] == 25.0  # not 1e-3.json's 0.0 under the label "lr"
    assert rows["L"]["path"] == "ref=x.json" and rows["a#b.json"]["scored"] == "recorded"
    before = Path("lr=1e-3.json").read_text()
    refused = run("a#b.json", "lr=1e-3.json#results/m/test", out="lr=1e-3.json")
    assert refused.exit_code != 0 and "would overwrite an input" in refused.output
    assert Path("lr=1e-3.json").read_text() == before


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ({"rougeL": None, "em": 0.0, "n": 10}, "has rougeL None, not a finite number"),
        ({"rougeL": float("nan"), "em": 0.0, "n": 10}, "has rougeL nan, not a finite number"),
        ({"rougeL": 1e308, "em": 0.0, "n": 10}, "has rougeL 1e+308, not a score in points (0 to 100)"),
        ({"rougeL": 1.0, "em": -5, "n": 10}, "has em -5, not a score in points (0 to 100)"),
        ({"rougeL": 1.0, "em": 0.0, "n": 0}, "has n 0, not a positive instance count"),
        ({"rougeL": 1.0, "em": 0.0, "n": "abc"}, "has n 'abc', not a positive instance count"),
    ],
)
def test_recorded_scores_that_are_not_numbers_are_one_line_errors(task, expected, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"tasks": scores(a=(1.0, 0.0))}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tasks": {"a": task}}))
    result = runner.invoke(app, ["bench", "compare", str(good), str(bad), "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 2 and expected in result.output and result.output.count("\n") == 1, result.output


def test_recorded_inputs_refuse_limit_and_name_the_counts_they_cannot_pair(tmp_path):
    ten = tmp_path / "ten.json"
    ten.write_text(json.dumps({"tasks": scores(a=(1.0, 0.0), b=(2.0, 0.0))}))
    twenty = tmp_path / "twenty.json"
    twenty.write_text(json.dumps({"tasks": {t: {**s, "n": 20} for t, s in scores(a=(1.0, 0.0), b=(2.0, 0.0)).items()}}))
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"tasks": "é"}'.encode("latin-1"))

    def run(*args):
        return runner.invoke(app, ["bench", "compare", *args, "--out", str(tmp_path / "c.json")])

    assert "drop it" in run(str(ten), str(twenty), "--limit", "5").output
    uneven = run(str(ten), str(twenty))
    assert uneven.exit_code == 2 and f"{twenty} has 20 instances of 'a' and {ten} 10" in uneven.output
    assert "is not UTF-8 text" in run(str(ten), str(latin1)).output
    assert "empty label before '='" in run(str(ten), f"={tmp_path}/nothing.json").output
    assert "compare needs at least two inputs" in run(str(ten)).output
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"task": "copy", "id": "0", "prediction": None}, "line 1: prediction null is not a text"),
        ({"task": "copy", "id": "0", "prediction": ["a", "b"]}, 'line 1: prediction ["a", "b"] is not a text'),
        ({"task": "copy", "id": "0", "prediction": 3}, "line 1: prediction 3 is not a text"),
        ({"fingerprint": "test"}, "line 2: answer null is not a text"),
        ({"task": ["copy"], "id": "0", "prediction": "x"}, 'line 1: task ["copy"] / id "0" are not a task name'),
        ({"task": "copy", "id": 0.5, "prediction": "x"}, 'line 1: task "copy" / id 0.5 are not a task name'),
    ],
)
def test_answers_that_are_not_texts_are_one_line_errors(line, expected, jsonl_data, tmp_path):
    """A prediction or logged answer that is not a JSON string is refused, not scored as its str() ("None")."""
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    good = write_log(tmp_path / "good.answers.jsonl", tasks, lambda t, x: "x")
    bad = tmp_path / "bad.jsonl"
    rows = [line] + ([{"key": "copy\t0\tdeadbeef", "answer": None}] if "fingerprint" in line else [])
    bad.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = ["bench", "compare", str(good), str(bad), "--data", f"jsonl:{jsonl_data}", "--out", str(tmp_path / "c.json")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and expected in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "c.json").exists()


def test_answers_that_are_not_utf8_are_one_line_errors(jsonl_data, tmp_path):
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    good = write_log(tmp_path / "good.answers.jsonl", tasks, lambda t, x: "x")
    for name, data in [("latin1.jsonl", b'{"task": "\xe9"}\n'), ("log.jsonl", b'{"fingerprint": "t"}\n\xff\xfe\n')]:
        (tmp_path / name).write_bytes(data)
        args = ["bench", "compare", str(good), str(tmp_path / name), "--data", f"jsonl:{jsonl_data}"]
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "c.json")])
        assert result.exit_code == 2 and "is not UTF-8 text (byte" in result.output, result.output
        assert result.output.count("\n") == 1


def test_the_table_beside_out_is_checked_before_any_work(jsonl_data, tmp_path):
    """--out's .md is checked with --out: a folder there, or an input there, stops the command before it writes."""
    tasks = load_tasks(f"jsonl:{jsonl_data}", "test")
    work = tmp_path / "work"  # apart from the task data
    work.mkdir()
    one = write_log(work / "one.answers.jsonl", tasks, lambda t, x: "x")
    other = write_log(work / "other.md", tasks, lambda t, x: "y")  # answers, whatever the file's name
    (work / "c.md").mkdir()

    def run(out):
        args = ["bench", "compare", str(one), str(other), "--data", f"jsonl:{jsonl_data}", "--out", str(out)]
        return runner.invoke(app, args)

    result = run(work / "c.json")
    assert result.exit_code == 2 and "c.md is a folder" in result.output, result.output
    assert sorted(p.name for p in work.iterdir()) == ["c.md", "one.answers.jsonl", "other.md"]  # nothing written
    before = other.read_text()
    result = run(work / "other.json")
    assert result.exit_code == 2 and "(or its table, other.md) would overwrite an input" in result.output
    assert other.read_text() == before and not (work / "other.json").exists()

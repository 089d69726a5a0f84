"""`hyperadapt bench continual --storage-table`: SwitchCIT's AP and storage of finished runs against a reference,
from their summary.json alone (fake summaries here: no model, no data)."""

import json

import pytest
from tests.cli_helpers import runner

from hyperadapt.benchmarks import continual
from hyperadapt.cli import app

MIB = 2**20


def summary(folder, ap, oracle_ap=None, per_task=3 * MIB, router=MIB // 2, auroc=0.9, train=100.0, final=None):
    """A `bench continual` summary.json in ``folder`` with SwitchCIT (and the oracle when ``oracle_ap``); ``final``:
    SwitchCIT's final row (task -> ROUGE-L), the oracle's too (older summaries have none)."""
    methods = {
        "switchcit": {
            "AP": ap,
            **({"final_row": final} if final is not None else {}),
            "storage_bytes_per_task": per_task,
            "router_bytes": router,
            "reject_auroc": auroc,
            "train_seconds": train,
        }
    }
    if oracle_ap is not None:
        methods["oracle"] = {"AP": oracle_ap, "storage_bytes_per_task": per_task, "router_bytes": None}
        if final is not None:
            methods["oracle"]["final_row"] = final
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [{"name": f"t{i}"} for i in range(10)]  # the stream's tasks: the switch's bytes are shared by them
    (folder / "summary.json").write_text(json.dumps({"methods": methods, "tasks": tasks}))
    return folder


def test_storage_table_rows_against_the_reference(tmp_path):
    ref = summary(tmp_path / "v1", 39.25, oracle_ap=39.5, per_task=9824917.5, router=1664685, auroc=0.9149, train=6242)
    qv = summary(tmp_path / "runs" / "qv", 38.8, oracle_ap=39.875, per_task=943718.4, router=1700000, train=5000.4)
    attn = summary(tmp_path / "runs" / "attn", 40.125, per_task=1887436.8, router=1700001, auroc=None, train=5400.6)
    out = tmp_path / "table"
    argv = [
        "--storage-table",
        f"qv-bf16={qv}",
        str(attn),
        f"mlp-bf16={tmp_path / 'runs' / 'mlp'}",  # not finished: skipped
        "--reference",
        f"v1 fp32={ref / 'summary.json'}",
        "--out",
        str(out),
    ]
    with pytest.warns(UserWarning, match=r"mlp/summary.json yet .* row 'mlp-bf16' left out"):
        assert continual.main(argv) == 0
    saved = json.loads((out / "storage.json").read_text())
    assert saved["reference"] == "v1 fp32" and saved["skipped"] == [str(tmp_path / "runs" / "mlp" / "summary.json")]
    assert saved["command"].startswith("hyperadapt bench continual --storage-table qv-bf16=")
    rows = saved["rows"]
    assert list(rows) == ["v1 fp32", "qv-bf16", "attn"]  # the reference first, then the given order
    assert rows["qv-bf16"]["delta_AP"] == pytest.approx(38.8 - 39.25)
    assert rows["qv-bf16"]["delta_oracle_AP"] == pytest.approx(39.875 - 39.5)
    assert rows["qv-bf16"]["mib_per_task"] == pytest.approx(0.9)  # bytes / 2**20, unrounded
    assert rows["v1 fp32"]["mib_per_task"] == pytest.approx(9824917.5 / MIB)
    assert rows["v1 fp32"]["router_mib"] == pytest.approx(1664685 / MIB)
    assert rows["v1 fp32"]["delta_AP"] == 0.0 and rows["v1 fp32"]["train_seconds"] == 6242
    assert rows["attn"]["delta_AP"] == pytest.approx(40.125 - 39.25)
    assert rows["attn"]["oracle_AP"] is None and rows["attn"]["delta_oracle_AP"] is None
    table = (out / "storage.md").read_text()
    assert "| row | AP | ΔAP | oracle AP | Δ oracle AP | MiB per task | switch MiB | all MiB per task |" in table
    # all MiB per task: the adapter plus the switch over the stream's 10 tasks
    assert rows["qv-bf16"]["all_mib_per_task"] == pytest.approx((943718.4 + 1700000 / 10) / MIB)
    assert "| v1 fp32 | 39.2 | +0.0 | 39.5 | +0.0 | 9.37 | 1.59 | 9.53 | 0.915 | 6242 |" in table
    assert "| qv-bf16 | 38.8 | -0.5 | 39.9 | +0.4 | 0.90 | 1.62 | 1.06 | 0.900 | 5000 |" in table
    assert "| attn | 40.1 | +0.9 | – | – | 1.80 | 1.62 | 1.96 | – | 5401 |" in table
    assert "minus **v1 fp32**" in table and "mlp" not in table.split("\n\n", 1)[1]


def test_storage_table_gives_each_difference_its_interval_over_the_tasks(tmp_path):
    ref_final = {"a": 50.0, "b": 40.0, "c": 30.0, "d": 20.0}
    ref = summary(tmp_path / "ref", 35.0, oracle_ap=35.0, final=ref_final)
    # every task 5 points lower: the difference is -5 with an interval of width 0, behind on all four tasks
    lower = summary(tmp_path / "lower", 30.0, oracle_ap=30.0, final={t: v - 5 for t, v in ref_final.items()})
    # mixed: +10, -10, +2, -2: mean 0, an interval that holds 0, two tasks ahead and two behind
    mixed = summary(tmp_path / "mixed", 35.0, final={"a": 60.0, "b": 30.0, "c": 32.0, "d": 18.0})
    other = summary(tmp_path / "other", 35.0, final={"x": 35.0})  # another stream: no interval, no error
    old = summary(tmp_path / "old", 34.0)  # a summary without final rows: the plain difference
    result = continual.storage_table([str(lower), str(mixed), str(other), str(old)], str(ref))
    rows = result["rows"]
    assert rows["ref"]["delta_AP_ci"] is None  # the reference against itself
    ci = rows["lower"]["delta_AP_ci"]
    assert (ci["low"], ci["high"]) == pytest.approx((-5.0, -5.0)) and (ci["wins"], ci["losses"]) == (0, 4)
    assert rows["lower"]["delta_oracle_AP_ci"]["high"] == pytest.approx(-5.0)
    ci = rows["mixed"]["delta_AP_ci"]
    assert ci["low"] < 0 < ci["high"] and (ci["wins"], ci["losses"], ci["ties"], ci["n_tasks"]) == (2, 2, 0, 4)
    assert rows["mixed"]["delta_oracle_AP_ci"] is None  # no oracle in this run
    assert rows["other"]["delta_AP_ci"] is None and rows["old"]["delta_AP_ci"] is None
    assert "final_row" not in rows["lower"]  # the summaries keep them; the table keeps what it shows
    result["command"] = "cmd"
    table = continual.storage_markdown(result)
    assert "| lower | 30.0 | -5.0 [-5.0, -5.0] | 30.0 | -5.0 [-5.0, -5.0] |" in table
    assert "| old | 34.0 | -1.0 | – | – |" in table and "| ref | 35.0 | +0.0 | 35.0 | +0.0 |" in table
    # a summary that lists no tasks cannot share out the switch's bytes
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text(json.dumps({"methods": {"switchcit": {"AP": 1.0, "train_seconds": 1.0}}}))
    assert continual.storage_table([str(bare)], str(ref))["rows"]["bare"]["all_mib_per_task"] is None


def test_storage_table_labels_and_oracle_only_in_the_reference(tmp_path):
    odd = summary(tmp_path / "a=b", 30.0, oracle_ap=31.0)  # an existing path is never split at '='
    ref = summary(tmp_path / "ref", 31.0)  # no oracle in the reference: no Δ oracle anywhere
    result = continual.storage_table([str(odd)], str(ref))
    assert result["reference"] == "ref" and list(result["rows"]) == ["ref", "a=b"]
    assert result["rows"]["a=b"]["oracle_AP"] == 31.0 and result["rows"]["a=b"]["delta_oracle_AP"] is None
    assert continual.labelled_run(f"x={odd}") == ("x", odd / "summary.json")
    assert continual.labelled_run("docs/v1_summary.json")[0] == "v1_summary"


def test_storage_table_refuses_what_it_cannot_tabulate(tmp_path):
    """One ``error:`` line, exit code 2, nothing written."""
    ref = summary(tmp_path / "ref", 39.0, oracle_ap=39.0)
    out = tmp_path / "out"

    def fails(*args):
        result = runner.invoke(app, ["bench", "continual", *args])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert [line.startswith("error: ") for line in result.output.splitlines()] == [True], result.output
        assert not out.exists()
        return result.output

    pending = [str(tmp_path / "qv"), str(tmp_path / "attn")]
    no_row = fails("--storage-table", *pending, "--reference", str(ref), "--out", str(out))
    assert "no run has finished yet" in no_row and str(tmp_path / "attn" / "summary.json") in no_row
    assert "needs --reference" in fails("--storage-table", str(ref), "--out", str(out))
    assert "needs --reference" in fails("--storage-table", str(ref), "--reference", str(ref))
    assert "--reference summary not found" in fails(
        "--storage-table", str(ref), "--reference", str(tmp_path / "none"), "--out", str(out)
    )
    twice = fails("--storage-table", str(ref), "--reference", str(ref), "--out", str(out))
    assert "two rows are labelled 'ref'" in twice
    results = tmp_path / "switchcit_results.json"  # one method's results.json, not a summary
    results.write_text(json.dumps({"metrics": {"AP": 1.0}}))
    assert "not a summary of hyperadapt bench continual" in fails(
        "--storage-table", str(results), "--reference", str(ref), "--out", str(out)
    )
    (tmp_path / "seq" / "summary.json").parent.mkdir()
    (tmp_path / "seq" / "summary.json").write_text(json.dumps({"methods": {"sequential": {"AP": 1.0}}}))
    assert "has no switchcit run" in fails(
        "--storage-table", str(tmp_path / "seq"), "--reference", str(ref), "--out", str(out)
    )
    assert "--reference goes with --storage-table" in fails("--reference", str(ref))


def test_storage_plot_draws_each_row_with_its_interval_and_refuses_a_bad_one(tmp_path):
    pytest.importorskip("matplotlib")
    from hyperadapt.report.plots import plot_tradeoff

    final = {"a": 50.0, "b": 40.0, "c": 30.0}
    ref = summary(tmp_path / "ref", 40.0, final=final)
    qv = summary(tmp_path / "qv", 30.0, per_task=MIB, final={"a": 40.0, "b": 25.0, "c": 25.0})
    out = tmp_path / "table"
    assert continual.main(["--storage-table", str(qv), "--reference", str(ref), "--out", str(out)]) == 0
    assert (out / "storage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = continual.storage_points(json.loads((out / "storage.json").read_text()))
    assert points["ref"] == {"x": 3.0, "mean": 0.0}  # rows are labelled by their folders; no interval for the ref
    assert points["qv"]["x"] == 1.0 and points["qv"]["low"] <= -10.0 == points["qv"]["mean"]
    assert points["qv"]["high"] < 0  # behind on every task
    with pytest.raises(ValueError, match="needs low <= mean <= high"):
        plot_tradeoff({"bad": {"x": 1.0, "mean": 0.0, "low": 1.0, "high": 2.0}}, tmp_path / "bad.png", "x", "y")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_tradeoff({}, tmp_path / "none.png", "x", "y")


@pytest.mark.parametrize(
    ("switchcit", "expected"),
    [
        ({"train_seconds": 1.0}, "switchcit run has no AP: the summary is damaged"),
        ({"AP": "high", "train_seconds": 1.0}, "has AP 'high', not a number from 0 up"),
        ({"AP": float("nan"), "train_seconds": 1.0}, "has AP nan, not a number from 0 up"),
        ({"AP": 1e308, "train_seconds": 1.0}, "has AP 1e+308, more than 100"),
        ({"AP": 30.0}, "switchcit run has no train_seconds"),
        ({"AP": 30.0, "train_seconds": 1.0, "router_bytes": "big"}, "has router_bytes 'big', not a number from 0 up"),
        ({"AP": 30.0, "train_seconds": 1.0, "reject_auroc": 2.0}, "has reject_auroc 2.0, more than 1"),
        ({"AP": 30.0, "train_seconds": 1.0, "final_row": [1, 2]}, "final_row is not an object of task scores"),
        ({"AP": 30.0, "train_seconds": 1.0, "final_row": {"a": "x"}}, "final_row has a 'x', not a number from 0 up"),
        ({"AP": 90.0, "train_seconds": 1.0, "final_row": {"a": 30.0}}, "has AP 90.0, not the mean of its final_row"),
        ([1], "its switchcit entry is not an object (got list)"),
    ],
)
def test_storage_table_refuses_a_damaged_summary_in_one_line(switchcit, expected, tmp_path):
    """A summary whose numbers are not a summary's (edited, cut, another tool's) is one ``error:`` line, exit code 2,
    nothing written: not a crash, not NaN or Infinity in storage.json, not a plot that fails after the JSON."""
    ref = summary(tmp_path / "ref", 30.0, final={"a": 30.0})
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text(json.dumps({"methods": {"switchcit": switchcit}, "tasks": [{"name": "a"}]}))
    out = tmp_path / "out"
    argv = ["bench", "continual", "--storage-table", str(bad), "--reference", str(ref), "--out", str(out)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and expected in result.output and result.output.count("\n") == 1, result.output
    assert not out.exists()

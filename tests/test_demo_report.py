"""The demo's report writer, stage cache and config on tiny made-up results (no model)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from hyperadapt.demo import demo_config, reproduce_command
from hyperadapt.demo import runner as demo_runner
from hyperadapt.demo.config import DemoConfig
from hyperadapt.evaluation.harness import EvalConfig
from hyperadapt.report.demo_report import write_demo_report
from hyperadapt.report.document import Code, Figure, Heading, Para, Table, to_html, to_markdown
from hyperadapt.training import TrainConfig

pytest.importorskip("matplotlib")

TRAINED = {"tagi", "hypter", "multitask-lora", "switchcit", "sequential", "megan"}  # stages that train
SCORED = {"zero-shot", "tagi", "hypter", "multitask-lora", "megan"}  # stages scored by the shared harness


def score(rouge: float, em: float, tasks=("title_case", "min_number")) -> dict:
    return {
        "mean": {"rougeL": rouge, "em": em},
        "n": 2 * len(tasks),
        "setting": "def",
        "tasks": {t: {"rougeL": rouge + i, "em": em, "n": 2} for i, t in enumerate(tasks)},
        "examples": [],
    }


def stream(matrix, forgetting: float) -> dict:
    return {
        "tasks": ["upper_case", "add"],
        "matrix": matrix,
        "zero_shot": [10.0, 0.0],
        "after": [0, 1],
        "metric": "rougeL",
        "ap_curve": [matrix[0][0], sum(matrix[1]) / 2],
        "metrics": {"AP": sum(matrix[1]) / 2, "BWT": -forgetting, "Forgetting": forgetting, "FWT": 0.0},
    }


def tiny_results(out: str) -> dict:
    cfg = DemoConfig(out=out)
    adapter = {
        "folder": "adapter-title_case",
        "task": "title_case",
        "instruction": "Capitalize.",
        "base": "/m",
        "input": "red fox",
        "reference": "Red Fox",
        "tagi_answer": "Red Fox",
        "peft_answer": "Red Fox",
        "files": ["adapter_config.json", "adapter_model.safetensors"],
    }
    switch = stream([[90.0, 5.0], [90.0, 40.0]], 0.0)
    switch.update(
        switch_accuracy={"upper_case": 100.0, "add": 100.0},
        reject_rate_seen=0.05,
        reject_rate_unseen=0.8,
        mixed_batch=[
            {"task": "add", "in_stream": True, "input": "1, 2", "reference": "3", "routed_to": "add", "answer": "3"},
            {
                "task": "title_case",
                "in_stream": False,
                "input": "a b",
                "reference": "A B",
                "routed_to": None,
                "answer": "a b",
            },
        ],
    )
    beta = {
        "Convert to upper case.": [{"p1": 0.6, "q1": 0.9, "med": 1.0, "q3": 1.1, "p99": 1.4}] * 3,
        "Start with 'BEEP:'": [{"p1": 0.7, "q1": 0.95, "med": 1.0, "q3": 1.05, "p99": 1.3}] * 3,
    }
    stages = {
        "zero-shot": {"seen": score(10.0, 1.0), "unseen": score(20.0, 2.0)},
        "tagi": {
            "unseen": score(50.0, 30.0),
            "shuffled": score(15.0, 5.0),
            "adapter": adapter,
            "hypernet_parameters": 1000,
        },
        "hypter": {"unseen": score(40.0, 20.0)},
        "multitask-lora": {"seen": score(70.0, 60.0), "unseen": score(60.0, 35.0)},
        "switchcit": switch,
        "sequential": stream([[90.0, 5.0], [30.0, 45.0]], 60.0),
        "megan": {
            "seen": score(25.0, 10.0),
            "unseen": score(30.0, 10.0),
            "hypernetwork_parameters": 12345,
            "beta": beta,
            "beta_mean_abs_dev": {k: 0.1 for k in beta},
            "steering": {"input": "rough, cheap", "rows": [{"condition": "Upper.", "answer": "ROUGH, CHEAP"}]},
        },
        "checkpoint": {"available": False, "path": "checkpoints/tagi"},
    }
    meta = {
        "command": reproduce_command(cfg),
        "model": "default",
        "model_path": "/m",
        "data": "synthetic",
        "seed": 0,
        "budget": json.loads(json.dumps(cfg.__dict__)),
        "out": out,
        "versions": {"python": "3.11", "torch": "2"},
    }
    return {"meta": meta, "stages": stages, "failed": {}}


FIGURES = (
    "tagi_unseen.png",
    "switchcit_matrix.png",
    "sequential_matrix.png",
    "stream_ap.png",
    "megan_splits.png",
    "megan_beta.png",
)


def test_full_report_has_every_table_figure_and_inline_image(tmp_path):
    md, page = write_demo_report(tiny_results(str(tmp_path)), tmp_path)
    text = md.read_text()
    for name in FIGURES:
        assert (tmp_path / "figures" / name).stat().st_size > 1000, name
        assert f"figures/{name}" in text
    assert "| TAGI, shuffled instructions | 15.0 / 5.0 |" in text
    assert "| switchcit | 65.0 | 0.0 | 0.0 | 90.0 | 40.0 |" in text
    assert "**Where TAGI loses:**" in text and "**Where MeGan loses:**" in text and "**Where it loses:**" in text
    assert "rejected (base model)" in text
    assert "PeftModel.from_pretrained(base," in text
    assert "No released checkpoint" in text
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    assert 'src="figures/' not in html and "<table>" in html


def test_report_is_the_same_twice(tmp_path):
    results = tiny_results(str(tmp_path))
    first = [p.read_bytes() for p in write_demo_report(results, tmp_path)]
    second = [p.read_bytes() for p in write_demo_report(copy.deepcopy(results), tmp_path)]
    assert first == second


def test_partial_report_names_the_failed_stage(tmp_path):
    results = tiny_results(str(tmp_path))
    for name in ("tagi", "megan", "sequential"):
        del results["stages"][name]
    results["failed"] = {"tagi": "RuntimeError: out of memory"}
    md, page = write_demo_report(results, tmp_path)
    text = md.read_text()
    assert "Stage `tagi` failed: `RuntimeError: out of memory`" in text
    assert "Stage `megan` has not run" in text
    assert "| Hypter-style (CE only, no fusion) | 40.0 / 20.0 |" in text
    assert "MeGan (condition through β only)" not in text
    assert "RuntimeError: out of memory" in page.read_text()


def test_document_renders_markdown_and_escaped_html(tmp_path):
    (tmp_path / "f.png").write_bytes(b"\x89PNG")
    blocks = [
        Heading(2, "A <b>"),
        Para("use `x|y` and **bold**"),
        Table(["a", "b"], [["1|2", "<i>"]]),
        Code("print(1)", "python"),
        Figure("f.png", "cap"),
        Figure("gone.png", "missing"),
    ]
    md = to_markdown(blocks)
    assert "## A <b>" in md and "| 1\\|2 | <i> |" in md and "```python\nprint(1)\n```" in md
    html = to_html(blocks, tmp_path, "t")
    assert "<h2>A &lt;b&gt;</h2>" in html and "<code>x|y</code>" in html and "<strong>bold</strong>" in html
    assert "<td>&lt;i&gt;</td>" in html and "data:image/png;base64," in html and "figure missing: gone.png" in html


def test_quick_preset_overrides_and_command():
    cfg = demo_config(["train_steps=12"], quick=True)
    assert cfg.quick and cfg.out == "results/demo-quick" and cfg.train_steps == 12 and cfg.teacher_steps == 6
    assert reproduce_command(cfg) == "hyperadapt demo --quick --set train_steps=12"
    assert reproduce_command(demo_config([], out="x")) == "hyperadapt demo --out x"
    with pytest.raises(ValueError, match="limit"):
        demo_config(["limit=0"])
    with pytest.raises(ValueError, match="nope"):
        demo_config(["nope=1"])


def test_stage_cache_failure_and_rerun(tmp_path, monkeypatch):
    calls = []

    def ok(cfg, run_dir):
        calls.append(run_dir)
        return {"value": cfg.limit}

    def broken(cfg, run_dir):
        raise RuntimeError("boom")

    monkeypatch.setitem(demo_runner.STAGES, "ok", ok)
    monkeypatch.setitem(demo_runner.STAGES, "broken", broken)
    cfg = DemoConfig(out=str(tmp_path))
    assert demo_runner.run_stage(cfg, "ok", log=lambda s: None)
    assert demo_runner.run_stage(cfg, "ok", log=lambda s: None) and len(calls) == 1  # cached
    assert not demo_runner.run_stage(cfg, "broken", log=lambda s: None)
    results, failed, _ = demo_runner.collect(cfg)
    assert results["ok"] == {"value": 5} and failed == {"broken": "RuntimeError: boom"}
    other = DemoConfig(out=str(tmp_path), limit=7)  # another budget: the stage runs again
    assert demo_runner.run_stage(other, "ok", log=lambda s: None) and len(calls) == 2
    assert demo_runner.collect(other)[0]["ok"] == {"value": 7}


def test_a_released_checkpoint_that_appears_reruns_the_checkpoint_stage(tmp_path):
    cfg = DemoConfig(out=str(tmp_path / "out"), checkpoint=str(tmp_path / "ck"))
    before, tagi = demo_runner.stage_key(cfg, "checkpoint"), demo_runner.stage_key(cfg, "tagi")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "run.json").write_text("{}")
    assert demo_runner.stage_key(cfg, "checkpoint") != before
    assert demo_runner.stage_key(cfg, "tagi") == tagi
    moved = DemoConfig(out=str(tmp_path / "out"), checkpoint=str(tmp_path / "elsewhere"))
    assert demo_runner.stage_key(moved, "tagi") == demo_runner.stage_key(cfg, "tagi")


@pytest.mark.parametrize(
    ("where", "base", "name", "value", "reached"),
    [
        ("hyperadapt.demo.config.TrainConfig", TrainConfig, "weight_decay", 0.5, TRAINED),
        ("hyperadapt.demo.stages.EvalConfig", EvalConfig, "max_prompt_tokens", 100, SCORED),
    ],
)
def test_a_changed_library_default_reruns_the_stages_it_reaches(monkeypatch, where, base, name, value, reached):
    cfg = DemoConfig()
    before = {stage: demo_runner.stage_key(cfg, stage) for stage in demo_runner.STAGES}
    assert before == {s: demo_runner.stage_key(DemoConfig(save_every=3), s) for s in demo_runner.STAGES}
    new_default = dataclasses.make_dataclass(
        base.__name__, [(name, object, dataclasses.field(default=value))], bases=(base,)
    )
    monkeypatch.setattr(where, new_default)
    after = {stage: demo_runner.stage_key(cfg, stage) for stage in demo_runner.STAGES}
    assert {stage for stage in before if after[stage] != before[stage]} == reached

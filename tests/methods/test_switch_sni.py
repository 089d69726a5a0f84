"""The continual SNI protocol on a tiny model and a tiny ``cl:`` stream: the prompt budget reaches the stream's
evaluation prompts and its answer cache, the reject threshold is calibrated on the dev split, and the reject
option's AUROC and rates reach the results and the benchmark summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hyperadapt.benchmarks import continual as bench
from hyperadapt.config import load_config
from hyperadapt.data.prompts import CUT_MARKER
from hyperadapt.evaluation.metrics import auroc
from hyperadapt.methods.continual import LoraSpec, StreamEval, run_stream
from hyperadapt.methods.continual.runner import seed_run
from hyperadapt.methods.continual.stream import AnswerCache, load_stream, make_context
from hyperadapt.methods.continual.stream import test_queries as stream_queries
from hyperadapt.methods.switch import RetentionBuffer, RouterConfig, SwitchConfig
from hyperadapt.methods.switch.learner import calibration_source
from hyperadapt.testing import tiny_model
from hyperadapt.training import TrainConfig

NAMES = ["task010_first", "task020_second"]
LONG = " ".join(f"word{i}" for i in range(120))  # far past a 96-token prompt budget


def _task(name: str, split: str, n: int) -> dict:
    return {
        "Definition": [f"Answer the {name} question."],
        "Categories": ["Question Answering"],
        "Positive Examples": [],
        "Instances": [
            {
                "id": f"{name}-{split}-{i}",
                "input": LONG if (split, i) == ("test", 0) else f"{split} {i}",
                "output": [f"out {i}"],
            }
            for i in range(n)
        ],
    }


@pytest.fixture
def cl_root(tmp_path) -> Path:
    root = tmp_path / "cl"
    root.mkdir()
    (root / "orders.json").write_text(json.dumps({"order1": NAMES}))
    for name in NAMES:
        for split, n in (("train", 12), ("dev", 5), ("test", 3)):
            (root / name).mkdir(exist_ok=True)
            (root / name / f"{split}.json").write_text(json.dumps(_task(name, split, n)))
    return root


def cl_config(root: Path, unseen: str = "", budget: int | None = None, **router) -> SwitchConfig:
    return SwitchConfig(
        model="tiny",
        stream=f"cl:{root}#1",
        unseen=unseen,
        unseen_limit=3,
        lora=LoraSpec(rank=2, alpha=4, target_modules=["q_proj", "v_proj"]),
        train=TrainConfig(steps=2, batch_size=2, lr=1e-2, max_length=96, save_every=0, log_every=0),
        router=RouterConfig(
            **{
                "encoder": "base",
                "hidden": 8,
                "epochs": 3,
                "retention": 3,
                "retention_min": 3,
                "calibration": 4,
                **router,
            }
        ),
        eval=StreamEval(limit=3, batch_size=4, max_new_tokens=3, max_prompt_tokens=budget),
    )


def test_prompt_budget_reaches_the_stream_evaluation_prompts_and_the_cache_key(cl_root):
    model = tiny_model()
    tok = model[1]
    free = stream_queries(make_context(cl_config(cl_root), "/tmp/unused", model))
    cut = stream_queries(make_context(cl_config(cl_root, budget=96), "/tmp/unused", model))
    assert [q.instance.id for q in free] == [q.instance.id for q in cut]
    sizes = [len(tok(q.prompt, add_special_tokens=False).input_ids) for q in cut]
    assert max(sizes) <= 96
    long = [i for i, q in enumerate(cut) if q.instance.input == LONG]
    assert len(long) == 2
    for i in long:  # the long input is cut by the one rule: definition kept, input tail marked
        assert CUT_MARKER in cut[i].prompt and "Answer the" in cut[i].prompt
        assert CUT_MARKER not in free[i].prompt
        assert AnswerCache.key(cut[i], "base") != AnswerCache.key(free[i], "base")
        assert AnswerCache.key(cut[i], "base").endswith("\tbase")
    short = next(i for i, q in enumerate(cut) if q.instance.input != LONG)
    assert cut[short].prompt == free[short].prompt
    assert AnswerCache.key(cut[short], "adapter:x") == AnswerCache.key(free[short], "adapter:x")
    with pytest.raises(ValueError, match="exceed the model's context"):  # the tiny model's context is 512
        stream_queries(make_context(cl_config(cl_root, budget=510), "/tmp/unused", model))


def test_seeding_and_resuming_refuse_another_prompt_budget(cl_root, tmp_path):
    a, b = cl_config(cl_root, budget=96), cl_config(cl_root, budget=128)
    from hyperadapt.config import to_dict

    source = tmp_path / "source"
    source.mkdir()
    (source / "run.json").write_text(json.dumps({"kind": "continual", "method": "switchcit", "config": to_dict(a)}))
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ValueError, match="differs in eval"):
        seed_run(source, target, {"method": "oracle", "config": to_dict(b)}, ())
    model = tiny_model()
    run_stream(a, tmp_path / "run", method="multitask", model_and_tokenizer=model)
    with pytest.raises(ValueError, match=r"another config \(it differs in eval.max_prompt_tokens\)"):
        run_stream(b, tmp_path / "run", method="multitask", model_and_tokenizer=model)


def test_calibration_source_follows_the_config(cl_root):
    tasks = load_stream(cl_config(cl_root))
    assert [t.dev is not None and len(t.dev.instances) for t in tasks] == [5, 5]
    assert calibration_source(cl_config(cl_root), tasks[0]) == "dev"  # auto, with a dev split
    assert calibration_source(cl_config(cl_root, calibrate_on="train"), tasks[0]) == "train"
    tasks[0].dev = None
    assert calibration_source(cl_config(cl_root), tasks[0]) == "train"  # auto, without one
    with pytest.raises(ValueError, match="has no dev split"):
        calibration_source(cl_config(cl_root, calibrate_on="dev"), tasks[0])
    with pytest.raises(ValueError, match="calibrate_on"):
        RouterConfig(calibrate_on="test")
    with pytest.raises(ValueError, match="synthetic stream has none"):
        SwitchConfig(router=RouterConfig(calibrate_on="dev"))
    assert load_config(SwitchConfig, None, ["unseen="]).unseen == ""  # `--set unseen=` on the command line


def test_retention_buffer_takes_calibration_inputs_from_the_given_split():
    cfg = RouterConfig(retention=3, retention_min=3, calibration=4)
    buffer = RetentionBuffer()
    train, dev = [f"train {i}" for i in range(10)], [f"dev {i}" for i in range(6)]
    buffer.add("a", train, cfg, seed=0, calibration=dev)
    assert len(buffer.calib_texts) == 4 and set(buffer.calib_texts) <= set(dev)
    assert set(buffer.texts) <= set(train)
    with pytest.raises(ValueError, match="no calibration inputs"):
        buffer.add("b", train, cfg, seed=0, calibration=[])


@pytest.mark.parametrize("calibrate_on", ["dev", "train"])
def test_switch_calibrates_on_dev_inputs_and_reports_the_reject_option(cl_root, jsonl_data, tmp_path, calibrate_on):
    cfg = cl_config(cl_root, unseen=f"jsonl:{jsonl_data}@test", budget=96, calibrate_on=calibrate_on)
    results = run_stream(cfg, tmp_path / "run", "switchcit", model_and_tokenizer=tiny_model())
    buffer = RetentionBuffer.load(tmp_path / "run" / "router" / "retention.json")
    assert buffer.tasks == NAMES and len(buffer.calib_texts) == 8
    assert all(f"{calibrate_on} " in text for text in buffer.calib_texts)
    assert all("train " in text for text in buffer.texts)
    assert [row["train"]["router"]["calibrated_on"] for row in results["rows"]] == [calibrate_on] * 2
    switch = results["switch"]
    assert switch["calibrated_on"] == calibrate_on
    assert switch["n_seen"] == 6 and switch["n_unseen"] == 6 and switch["n_unseen_tasks"] == 2
    assert 0 <= switch["reject_auroc"] <= 1 and 0 <= switch["reject_rate_seen"] <= 1
    assert 0 <= switch["unseen_reject_rate"] <= 1
    assert "Reject option" in (tmp_path / "run" / "results.md").read_text()
    row = bench.summary_row(results)
    assert row["reject_auroc"] == switch["reject_auroc"] and row["calibrated_on"] == calibrate_on
    assert row["reject_rate_seen_heldout"] == switch["reject_rate_seen"]


def test_auroc_of_a_hand_computed_case():
    # pairs (positive > negative counts 1, a tie 1/2): 0.9 and 0.8 beat all three negatives (6); 0.4 beats
    # 0.1 and ties 0.4 (1.5); 7.5 of 9 pairs
    assert auroc([0.9, 0.8, 0.4], [0.7, 0.4, 0.1]) == pytest.approx(7.5 / 9)
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0 and auroc([0.0], [1.0, 2.0]) == 0.0
    assert auroc([0.5, 0.5], [0.5]) == 0.5
    with pytest.raises(ValueError, match="both sides"):
        auroc([], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        auroc([float("nan")], [0.1])


def test_benchmark_summary_carries_the_reject_option():
    result = {
        "metrics": {"AP": 50.0, "BWT": 0.0, "Forgetting": 0.0, "FWT": 1.0},
        "ap_curve": [40.0, 50.0],
        "tasks": ["a", "b"],
        "matrix": [[40.0, None], [45.0, 55.0]],
        "rows": [
            {
                "routing": {
                    "switch_accuracy": {"a": 100.0},
                    "switch_accuracy_mean": 100.0,
                    "reject_rate_seen": 0.05,
                    "reject_rate_future": 0.5,
                }
            }
        ],
        "switch": {
            "unseen_reject_rate": 0.75,
            "reject_rate_seen": 0.04,
            "reject_auroc": 0.8125,
            "threshold": 0.3,
            "calibrated_on": "dev",
            "routing_ms_per_example": 2.0,
        },
        "storage": {"per_task_bytes": {"a": 2048, "b": 2048}, "router_bytes": 100},
        "seconds": {"train": 10.0, "eval": 5.0},
    }
    row = bench.summary_row(result)
    assert row["reject_auroc"] == 0.8125 and row["reject_rate_unseen"] == 0.75
    assert row["reject_rate_seen_heldout"] == 0.04 and row["calibrated_on"] == "dev"
    table = bench.summary_table(
        {
            "stream": "cl:x#1",
            "metric": "rougeL",
            "tasks": ["a", "b"],
            "budget": "tiny",
            "zero_shot_mean": 10.0,
            "methods": {"switchcit": row},
        }
    )
    assert "reject AUROC" in table and "| 0.812 |" in table and "75.0 %" in table


def test_adding_a_task_from_another_folder_changes_nothing_and_says_why(cl_root, tmp_path, monkeypatch):
    """A stream named by a relative path is read from the current folder: from elsewhere, `continual add` fails
    before it records the task (it used to leave the run unfinished, and a retry refused the task as present)."""
    import dataclasses

    from hyperadapt.data.loaders import load_task_file
    from hyperadapt.methods.switch import add_task

    monkeypatch.chdir(tmp_path)
    cfg = dataclasses.replace(cl_config(cl_root), stream="cl:cl#1")
    model = tiny_model()
    run_stream(cfg, tmp_path / "run", "switchcit", model_and_tokenizer=model)
    before = (tmp_path / "run" / "run.json").read_text()
    extra = tmp_path / "task030_third.json"
    extra.write_text(json.dumps(_task("task030_third", "train", 12)))
    task = load_task_file(extra, "task030_third")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(FileNotFoundError, match="relative to the folder it was trained from"):
        add_task(tmp_path / "run", task, model_and_tokenizer=model)
    shutil.copytree(cl_root, elsewhere / "cl")  # another stream at the same relative path
    orders = json.loads((elsewhere / "cl" / "orders.json").read_text())
    (elsewhere / "cl" / "orders.json").write_text(json.dumps({"order1": orders["order1"][::-1]}))
    with pytest.raises(ValueError, match="not the 2 tasks"):
        add_task(tmp_path / "run", task, model_and_tokenizer=model)
    assert (tmp_path / "run" / "run.json").read_text() == before
    assert not (tmp_path / "run" / "added").exists()
    monkeypatch.chdir(tmp_path)
    results = add_task(tmp_path / "run", task, model_and_tokenizer=model)
    assert [row["task"] for row in results["rows"]][-1] == "task030_third"

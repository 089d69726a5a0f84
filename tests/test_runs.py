"""The run directory owns its run.json and its integrity: one method and one config per run, one writer at a
time, unfinished runs never passed off as finished, and a checkpoint pointer that survives a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from hyperadapt.cli import app
from hyperadapt.methods import load_run
from hyperadapt.methods.baselines.multitask_lora import MultiTaskLoraConfig, train_multitask_lora
from hyperadapt.runs import RunDir, RunLocked, changed_keys
from hyperadapt.testing import tiny_model
from hyperadapt.training import TrainConfig, latest_checkpoint


def cfg(jsonl_data, tiny_dir, **train) -> MultiTaskLoraConfig:
    t = {"steps": 3, "batch_size": 2, "max_length": 64, "save_every": 1, **train}
    return MultiTaskLoraConfig(model=str(tiny_dir), data=f"jsonl:{jsonl_data}", rank=2, train=TrainConfig(**t))


def test_one_schema_status_and_an_unfinished_run_says_how_to_resume(jsonl_data, tiny_dir, tmp_path):
    run = tmp_path / "run"
    train_multitask_lora(cfg(jsonl_data, tiny_dir), run, model_and_tokenizer=tiny_model(), stop_at=2)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "running" and record["schema"] == 1 and record["kind"] == "train"
    assert {"hyperadapt", "torch", "transformers", "peft"} <= set(record["versions"])
    assert len(record["base_model"]["fingerprint"]) == 16
    assert not (run / ".lock").exists()
    with pytest.raises(ValueError, match="has not finished training .* `hyperadapt train multitask-lora"):
        load_run(run)
    train_multitask_lora(cfg(jsonl_data, tiny_dir), run, model_and_tokenizer=tiny_model())
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert load_run(run, tiny_model()).name == "multitask-lora"


def test_a_different_config_or_method_is_refused_before_anything_is_written(jsonl_data, tiny_dir, tmp_path):
    run = tmp_path / "run"
    train_multitask_lora(cfg(jsonl_data, tiny_dir), run, model_and_tokenizer=tiny_model())
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"changed: rank, train\.lr"):
        train_multitask_lora(MultiTaskLoraConfig(**{**vars(cfg(jsonl_data, tiny_dir, lr=5e-4)), "rank": 4}), run,
                             model_and_tokenizer=tiny_model())
    result = CliRunner().invoke(app, ["train", "megan", "--set", f"model={tiny_dir}", "--set",
                                      f"data=jsonl:{jsonl_data}", "--set", "bottleneck=8", "--set", "train.steps=1",
                                      "--out", str(run)])
    assert result.exit_code == 2 and "holds a 'multitask-lora' run" in result.output
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before
    # options that do not change what is trained may differ on resume
    train_multitask_lora(cfg(jsonl_data, tiny_dir, save_every=2), run, model_and_tokenizer=tiny_model())


def test_two_writers_cannot_interleave(tmp_path):
    run = RunDir(tmp_path / "run")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / ".lock").write_text(str(other.pid))
        with pytest.raises(RunLocked, match=f"another process \\(pid {other.pid}\\)"):
            run.begin("tagi", {"rank": 2})
        assert not (tmp_path / "run" / "run.json").exists()
    finally:
        other.kill()
        other.wait()
    with run.begin("tagi", {"rank": 2}):  # its owner is gone: a stale lock is taken over
        assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / "run" / ".lock").exists()


def test_latest_survives_a_crash_between_removing_and_renaming(jsonl_data, tiny_dir, tmp_path):
    run = tmp_path / "run"
    train_multitask_lora(cfg(jsonl_data, tiny_dir, steps=4), run, model_and_tokenizer=tiny_model(), stop_at=3)
    root = run / "checkpoints"
    assert (root / "latest").read_text() == "step-0000003"
    os.replace(root / "step-0000003", root / ".old-step-0000003")  # the crash: moved aside, new one not in place
    assert latest_checkpoint(run).name == "step-0000002"
    (root / "step-0000002").rename(root / ".gone")
    assert latest_checkpoint(run).name == ".old-step-0000003"


def test_changed_keys_names_nested_keys_and_ignores_keys_only_one_side_has():
    old = {"rank": 2, "train": {"lr": 1e-3, "save_every": 1}, "gone": 1}
    new = {"rank": 2, "train": {"lr": 5e-4, "save_every": 9, "precision": "auto"}}
    assert changed_keys(old, new) == ["train.lr"]

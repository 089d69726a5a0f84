"""A real 2-process data-parallel job (torch.distributed over gloo, started by accelerate launch) on the tiny model.

Tolerance: the 2-process run sums the same per-token gradients in another order, so its weights match the
1-process run with the same global batch to float32 rounding; we allow 1e-5 absolute (weights are ~0.2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from hyperadapt import distributed
from hyperadapt.cli import app

TOLERANCE = 1e-5


def args(tiny_dir: Path, data: Path) -> list[str]:
    overrides = [f"model={tiny_dir}", f"data=jsonl:{data}", "rank=2", "train.steps=4", "train.batch_size=4",
                 "train.grad_accum=2", "train.lr=0.01", "train.save_every=2", "train.max_length=64"]
    return ["train", "multitask-lora", *(arg for o in overrides for arg in ("--set", o))]


def params(run: Path, step: int) -> dict:
    return load_file(run / "checkpoints" / f"step-{step:07d}" / "params.safetensors")


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_process_ddp_equals_one_process_and_resumes_under_another_count(tiny_dir, jsonl_data, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed next to this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "hyperadapt"]
    cmd = [*launch, *args(tiny_dir, jsonl_data), "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = CliRunner().invoke(app, [*args(tiny_dir, jsonl_data), "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    assert max_diff(params(tmp_path / "one", 4), params(tmp_path / "two", 4)) < TOLERANCE
    assert (tmp_path / "two" / "adapter" / "adapter_config.json").exists()
    # resume the 2-process run's step-2 checkpoint in one process: the same final weights
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "two", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-0000004")
    (resumed / "checkpoints" / "latest").write_text("step-0000002")
    record = json.loads((resumed / "run.json").read_text())  # as a run interrupted after step 2 left it
    (resumed / "run.json").write_text(json.dumps({**record, "status": "running"}))
    again = CliRunner().invoke(app, [*args(tiny_dir, jsonl_data), "--out", str(resumed)])
    assert again.exit_code == 0, again.output
    assert max_diff(params(tmp_path / "one", 4), params(resumed, 4)) < TOLERANCE


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main() and distributed.shard([3, 1, 2]) == [3, 1, 2]
    assert distributed.all_sum(2.5) == 2.5 and distributed.main_writes(lambda: 7) == 7

"""Real 2-process jobs (torch.distributed over gloo, started by accelerate launch) on the tiny model: DDP (each
process holds the whole base) and FSDP2 (the frozen decoder layers sharded), for the multi-task LoRA, TAGI
(teachers, then stage 2 with its full loss: CE + KL + alignment with λ2 = sigmoid) and MeGan.

Tolerance: the 2-process run sums the same per-token gradients in another order, so its weights match the
1-process run with the same global batch to float32 rounding; we allow 1e-5 absolute (weights are ~0.2;
measured at most 4.3e-7, TAGI). Checkpoints hold only the trainable parameters, so a run resumes under another
process count and strategy: each 2-process run's step-2 checkpoint is resumed by one process, and one
process's by a 2-process FSDP job, reaching the same final weights.
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
from tests.cli_helpers import runner

from hyperadapt import distributed
from hyperadapt.cli import app

TOLERANCE = 1e-5
TRAIN = [
    "train.steps=4",
    "train.batch_size=4",
    "train.grad_accum=2",
    "train.lr=0.01",
    "train.save_every=2",
    "train.max_length=64",
]
METHODS = {  # overrides, the folder of the last stage's checkpoints, the final artefacts
    "multitask-lora": (["rank=2"], ".", ["adapter"]),
    "tagi": (
        [
            "rank=2",
            "hypernet.hidden=16",
            "hypernet.blocks=1",
            "teachers.rank=2",
            "teachers.train.steps=2",
            "teachers.train.batch_size=4",
            "teachers.train.max_length=64",
            "pretrain.enabled=false",
            "losses.align_weight=sigmoid",
        ],
        "finetune",
        ["hypernet", "finetune/hypernet"],
    ),
    "megan": (["bottleneck=4"], ".", ["hypernetwork"]),
}
LAUNCH = {
    "ddp": ["--multi_gpu"],
    "fsdp": ["--use_fsdp", "--fsdp_version", "2"],
}


def args(method: str, tiny_dir: Path, data: Path, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    overrides = [f"model={tiny_dir}", f"data=jsonl:{data}", *METHODS[method][0], *TRAIN, *extra]
    return ["train", method, "--out", str(out), *(arg for o in overrides for arg in ("--set", o))]


def launch(strategy: str, cli_args: list[str]) -> None:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed next to this Python")
    cmd = [
        accelerate,
        "launch",
        *LAUNCH[strategy],
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "hyperadapt",
        *cli_args,
    ]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]


def one_process(cli_args: list[str]) -> None:
    result = runner.invoke(app, cli_args)
    assert result.exit_code == 0, result.output


def checkpoint(run: Path, method: str, step: int) -> Path:
    return run / METHODS[method][1] / "checkpoints" / f"step-{step:07d}"


def params(run: Path, method: str, step: int) -> dict:
    return load_file(checkpoint(run, method, step) / "params.safetensors")


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def interrupted_copy(run: Path, method: str, to: Path) -> Path:
    """``run`` as an interruption after step 2 of its last stage leaves it: no final artefacts, not finished."""
    shutil.copytree(run, to)
    shutil.rmtree(checkpoint(to, method, 4))
    (checkpoint(to, method, 2).parent / "latest").write_text("step-0000002")
    for artefact in METHODS[method][2]:
        shutil.rmtree(to / artefact, ignore_errors=True)
    record = json.loads((to / "run.json").read_text())
    (to / "run.json").write_text(json.dumps({**record, "status": "running"}))
    return to


CHECKPOINTED = ("train.gradient_checkpointing=true", "teachers.train.gradient_checkpointing=true")


@pytest.mark.parametrize(
    ("method", "strategy", "extra"),
    [
        ("multitask-lora", "ddp", ()),
        ("multitask-lora", "fsdp", ()),
        ("tagi", "ddp", ()),
        ("tagi", "fsdp", ()),
        ("megan", "fsdp", ()),
        ("tagi", "fsdp", CHECKPOINTED),
    ],
)
def test_two_processes_equal_one_process_and_resume_under_one(
    method, strategy, extra, tiny_dir, jsonl_data, tmp_path, record_property
):
    """(the last case: FSDP with activation checkpointing against one process without it)"""
    launch(strategy, args(method, tiny_dir, jsonl_data, tmp_path / "two", extra))
    state = json.loads((checkpoint(tmp_path / "two", method, 4) / "state.json").read_text())
    assert (state["processes"], state["strategy"]) == (2, strategy)
    one_process(args(method, tiny_dir, jsonl_data, tmp_path / "one"))
    want = params(tmp_path / "one", method, 4)
    two = max_diff(want, params(tmp_path / "two", method, 4))
    record_property("two_processes_max_abs_weight_difference", two)  # --junitxml keeps it (docs/results)
    assert two < TOLERANCE
    resumed = interrupted_copy(tmp_path / "two", method, tmp_path / "resumed")
    one_process(args(method, tiny_dir, jsonl_data, resumed, extra))
    again = max_diff(want, params(resumed, method, 4))
    record_property("resumed_by_one_max_abs_weight_difference", again)
    assert again < TOLERANCE
    assert all((resumed / artefact).exists() for artefact in METHODS[method][2])


def test_a_one_process_checkpoint_resumes_under_fsdp(tiny_dir, jsonl_data, tmp_path, record_property):
    one_process(args("megan", tiny_dir, jsonl_data, tmp_path / "one"))
    resumed = interrupted_copy(tmp_path / "one", "megan", tmp_path / "resumed")
    launch("fsdp", args("megan", tiny_dir, jsonl_data, resumed))
    assert json.loads((checkpoint(resumed, "megan", 4) / "state.json").read_text())["strategy"] == "fsdp"
    gap = max_diff(params(tmp_path / "one", "megan", 4), params(resumed, "megan", 4))
    record_property("resumed_under_fsdp_max_abs_weight_difference", gap)  # --junitxml keeps it
    assert gap < TOLERANCE


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main() and distributed.shard([3, 1, 2]) == [3, 1, 2]
    assert distributed.all_sum(2.5) == 2.5 and distributed.main_writes(lambda: 7) == 7
    assert distributed.strategy() == "single" and not distributed.fsdp()


def test_fsdp1_is_refused_with_the_flag_to_use(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ValueError, match="--fsdp_version 2"):
        distributed.fsdp()

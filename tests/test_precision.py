"""The memory switches on every method, on the CPU: ``train.precision=bf16`` (autocast) gives losses close
to fp32's, and ``train.gradient_checkpointing=true`` the same losses as without (to float rounding, 1e-6).

Tolerance: 1e-3 relative on every logged loss of the first steps. Measured on the tiny model (whose random
logits keep every loss near log V, so rounding moves it little): at most 1.2e-4 (Reptile), 2.7e-5 (TAGI),
3.5e-5 (multi-task LoRA). The losses must also differ from fp32's somewhere: autocast really ran in bf16.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli_helpers import TINY_STREAM, TINY_TAGI, runner, sets

from hyperadapt.cli import app

TOLERANCE = 1e-3  # relative, per logged loss
TRAIN = ["train.steps=3", "train.batch_size=2", "train.max_length=64", "train.log_every=1"]
TAGI = [*TINY_TAGI, "teachers.train.log_every=1", "pretrain.train.log_every=1"]
METHODS = {
    "multitask-lora": ["rank=2"],
    "tagi": TAGI,
    "hypter": ["rank=2", "hypernet.hidden=16", "hypernet.blocks=1"],
    "megan": ["bottleneck=4"],
    "metaicl": ["rank=2"],
    "reptile": ["rank=2", "inner_steps=1", "support_size=2", "query_size=2"],
}
CONTINUAL = [*TINY_STREAM, "eval.limit=1", "eval.max_new_tokens=1"]


def _run(command: list[str], overrides: list[str], out: Path) -> dict[str, list[float]]:
    args = [*command, "--out", str(out), *sets(*overrides)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return {
        log.relative_to(out).as_posix(): [json.loads(line)["loss"] for line in log.read_text().splitlines()]
        for log in sorted(out.rglob("train_log.jsonl"))
    }


@pytest.mark.parametrize("method", [*METHODS, "switchcit"])
def test_bf16_and_gradient_checkpointing_train_every_method(method, tiny_dir, jsonl_data, tmp_path, record_property):
    if method == "switchcit":
        command, overrides = ["continual", "--method", "switchcit"], [f"model={tiny_dir}", *CONTINUAL, *TRAIN]
    else:
        command = ["train", method]
        overrides = [f"model={tiny_dir}", f"data=jsonl:{jsonl_data}", *METHODS[method], *TRAIN]
    fp32 = _run(command, [*overrides, "train.precision='no'"], tmp_path / "fp32")
    bf16 = _run(command, [*overrides, "train.precision=bf16"], tmp_path / "bf16")
    assert fp32.keys() == bf16.keys() and fp32
    for log, losses in fp32.items():
        assert len(bf16[log]) == len(losses) > 0, log
        for want, got in zip(losses, bf16[log], strict=True):
            assert abs(got - want) <= TOLERANCE * abs(want), (log, want, got)
    assert any(fp32[log] != bf16[log] for log in fp32), "bf16 gave fp32's losses bit for bit: autocast did not run"
    gaps = [abs(got - want) / abs(want) for log in fp32 for want, got in zip(fp32[log], bf16[log], strict=True)]
    record_property("bf16_max_relative_loss_difference", max(gaps))  # --junitxml keeps it (docs/results)
    recomputed = _run(
        command, [*overrides, "train.precision='no'", "train.gradient_checkpointing=true"], tmp_path / "checkpointed"
    )
    assert recomputed.keys() == fp32.keys()
    for log, losses in fp32.items():
        assert recomputed[log] == pytest.approx(losses, rel=1e-6, abs=1e-7), log
    record_property(
        "checkpointing_max_abs_loss_difference",
        max(abs(a - b) for log in fp32 for a, b in zip(fp32[log], recomputed[log], strict=True)),
    )

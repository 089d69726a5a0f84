"""What the CLI tests share: one ``CliRunner``, ``--set`` options, the `train` and `eval` command lines on the
tiny model and the JSONL tasks (conftest.py's ``tiny_dir`` and ``jsonl_data``), and the overrides that size TAGI
and SwitchCIT for the tiny model."""

from __future__ import annotations

from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

runner = CliRunner()
# TAGI at the tiny model's size, with two steps per stage before stage 2 (``train.*`` is the caller's)
TINY_TAGI = (
    "rank=2",
    "hypernet.hidden=16",
    "hypernet.blocks=1",
    "teachers.rank=2",
    "teachers.train.steps=2",
    "teachers.train.batch_size=2",
    "pretrain.train.steps=2",
    "pretrain.a_tokens=8",
    "pretrain.b_tokens=4",
    "pretrain.c_tokens=4",
    "pretrain.train.batch_size=2",
)
# a two-task synthetic stream for SwitchCIT at the tiny model's size (``train.*`` and ``eval.*`` are the caller's)
TINY_STREAM = (
    "n_tasks=2",
    "limit_train=8",
    "unseen=''",
    "lora.rank=2",
    "lora.alpha=4",
    "router.encoder=base",
    "router.hidden=8",
    "router.epochs=2",
    "router.retention=2",
    "router.retention_min=2",
    "router.calibration=2",
)


def sets(*overrides: str) -> list[str]:
    """``--set`` before each override, as every command takes them."""
    return [arg for o in overrides for arg in ("--set", o)]


def ok(result: Result) -> Result:
    """``result`` of a command that must succeed; its output is the assertion's message."""
    assert result.exit_code == 0, result.output
    return result


def train_args(method: str, tiny_dir: Path, jsonl_data: Path, out: Path, *overrides: str) -> list[str]:
    """`train METHOD` on the tiny model and the JSONL tasks into ``out``, with ``overrides`` (``key=value``)."""
    return ["train", method, *sets(f"model={tiny_dir}", f"data=jsonl:{jsonl_data}", *overrides), "--out", str(out)]


def eval_args(
    jsonl_data: Path,
    *options: str,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    out: Path | str | None = None,
) -> list[str]:
    """`eval OPTIONS` on the test split of the JSONL tasks, with ``--limit``, ``--max-new-tokens`` and ``--out``
    where given."""
    args = ["eval", *options, "--data", f"jsonl:{jsonl_data}", "--split", "test"]
    for flag, value in (("--limit", limit), ("--max-new-tokens", max_new_tokens), ("--out", out)):
        if value is not None:
            args += [flag, str(value)]
    return args

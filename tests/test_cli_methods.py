"""The method commands of the CLI, end to end on the tiny model: train, adapter, continual, generate."""

import json
import logging
import os
import re
import shutil

import pytest
import torch
from safetensors.torch import save_file
from tests.cli_helpers import TINY_STREAM, TINY_TAGI, eval_args, ok, runner, sets, train_args

from hyperadapt.cli import app

TRAIN = ["train.steps=2", "train.batch_size=2", "train.max_length=64"]


def test_train_steps_sets_every_stage(tiny_dir, jsonl_data, tmp_path):
    """`--set train.steps=N` is TAGI's last stage only; `--steps N` is every stage (the CLI's with_steps)."""
    run = tmp_path / "tagi"
    ok(runner.invoke(app, [*train_args("tagi", tiny_dir, jsonl_data, run, *TINY_TAGI, *TRAIN), "--steps", "1"]))
    cfg = json.loads((run / "run.json").read_text())["config"]
    assert cfg["train"]["steps"] == cfg["teachers"]["train"]["steps"] == cfg["pretrain"]["train"]["steps"] == 1
    bad = runner.invoke(app, [*train_args("tagi", tiny_dir, jsonl_data, run, *TINY_TAGI, *TRAIN), "--steps", "0"])
    assert bad.exit_code == 2 and "--steps" in bad.output


def test_tagi_train_adapter_generate(tiny_dir, jsonl_data, tmp_path):
    run = tmp_path / "tagi"
    ok(runner.invoke(app, train_args("tagi", tiny_dir, jsonl_data, run, *TINY_TAGI, *TRAIN)))
    out = tmp_path / "adapter"
    ok(runner.invoke(app, ["adapter", str(run), "--instruction", "Repeat the input.", "--out", str(out)]))
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in out.iterdir())  # not safetensors' 0600
    bad = runner.invoke(app, ["adapter", str(run), "--instruction", "  ", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "instruction" in bad.output
    gen = ok(
        runner.invoke(
            app, ["generate", str(run), "--condition", "Repeat the input.", "--input", "a b", "--max-new-tokens", "3"]
        )
    )
    assert "a b  [condition: Repeat the input.] ->" in gen.output
    blank = runner.invoke(app, ["generate", str(run), "--condition", " ", "--input", "a b"])
    assert blank.exit_code == 2 and "--condition is empty (for input 1)" in blank.output
    _refuses_damaged_weights(run, tmp_path)
    spread = ok(
        runner.invoke(
            app,
            [
                "bench",
                "spread",
                f"mine={run}",
                "--data",
                f"jsonl:{jsonl_data}",
                "--splits",
                "train",
                "test",
                "--out",
                str(tmp_path / "spread.json"),
            ],
        )
    )
    assert "mine [test, 2 tasks]: |ΔW| shared" in spread.output
    measured = json.loads((tmp_path / "spread.json").read_text())["runs"]["mine"]
    assert set(measured) == {"path", "method", "train", "test"} and measured["test"]["n_tasks"] == 2
    assert 0 <= measured["test"]["instruction"] <= measured["test"]["generated"] + 1e-9
    _eval_run(run, jsonl_data, "tagi")
    with pytest.warns(UserWarning, match="trained on prompts of setting 'def'; --setting none"):
        args = eval_args(jsonl_data, "--run", str(run), "--setting", "none", limit=1, max_new_tokens=2)
        ok(runner.invoke(app, args))  # allowed, but said


def _refuses_damaged_weights(run, tmp_path):
    """A checkpoint whose weights file was cut short or holds another network's tensors: one error line."""
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    weights = damaged / "hypernet" / "hypernet.safetensors"  # the final hypernetwork
    weights.write_bytes(weights.read_bytes()[:40])  # as an interrupted copy leaves it
    adapter = ["adapter", str(damaged), "--instruction", "Repeat the input.", "--out", str(tmp_path / "never")]
    cut = runner.invoke(app, adapter)
    assert cut.exit_code == 2 and f"{weights} is not a readable safetensors file" in cut.output, cut.output
    save_file({"other.weight": torch.zeros(2)}, weights)  # e.g. MeGan's weights copied into a TAGI folder
    other = runner.invoke(app, adapter)
    assert other.exit_code == 2 and f"{weights} do not fit this TagiHypernetwork" in other.output, other.output
    assert not (tmp_path / "never").exists()


def _cut_long_inputs(run, caplog, *condition: str):
    """generate fits a prompt longer than the model's context (512 tokens) to its budget, with one warning."""
    long = " ".join(["word"] * 700)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hyperadapt.data.prompts"):
        ok(runner.invoke(app, ["generate", str(run), *condition, "--input", long, "--max-new-tokens", "2"]))
        ok(
            runner.invoke(
                app,
                [
                    "generate",
                    str(run),
                    *condition,
                    "--input",
                    long,
                    "--max-new-tokens",
                    "2",
                    "--max-prompt-tokens",
                    "40",
                ],
            )
        )
    cut = [r.getMessage() for r in caplog.records if "did not fit" in r.getMessage()]
    assert [m.split(" and were cut")[0] for m in cut] == [
        "1 of 1 inputs did not fit in 510 tokens",
        "1 of 1 inputs did not fit in 40 tokens",
    ]
    over = runner.invoke(
        app, ["generate", str(run), *condition, "--input", "x", "--max-prompt-tokens", "500", "--max-new-tokens", "64"]
    )
    assert over.exit_code == 2 and "exceed the model's context of 512 tokens" in over.output


def test_megan_train_generate_switching_conditions(tiny_dir, jsonl_data, tmp_path, caplog):
    run = tmp_path / "megan"
    ok(runner.invoke(app, train_args("megan", tiny_dir, jsonl_data, run, "bottleneck=8", *TRAIN)))
    gen = ok(
        runner.invoke(
            app,
            [
                "generate",
                str(run),
                "--condition",
                "Repeat the input.",
                "--condition",
                "Answer yes or no.",
                "--input",
                "x",
                "--input",
                "y",
                "--max-new-tokens",
                "2",
            ],
        )
    )
    assert "x  [condition: " in gen.output and "y  [condition: " in gen.output
    bad = runner.invoke(app, ["generate", str(run), "--input", "x"])
    assert bad.exit_code == 2 and "--condition" in bad.output
    _cut_long_inputs(run, caplog, "--condition", "Repeat the input.")
    spread = ok(
        runner.invoke(
            app,
            [
                "bench",
                "spread",
                str(run),
                "--data",
                f"jsonl:{jsonl_data}",
                "--splits",
                "test",
                "--prompts",
                "1",
                "--out",
                str(tmp_path / "spread.json"),
            ],
        )
    )
    assert "megan [test, 2 conditions × 1 prompts]: β − 1" in spread.output
    measured = json.loads((tmp_path / "spread.json").read_text())["runs"][str(run)]  # labelled by its path
    assert measured["method"] == "megan" and 0 <= measured["test"]["condition"] <= measured["test"]["deviation"]
    _eval_run(run, jsonl_data, "megan")
    wrong = runner.invoke(app, ["eval", "--method", "tagi", "--run", str(run), "--data", f"jsonl:{jsonl_data}"])
    assert wrong.exit_code == 2 and "holds a 'megan' run" in wrong.output


def test_continual_run_add_generate(tiny_dir, tmp_path, caplog):
    run = tmp_path / "cl"
    overrides = [f"model={tiny_dir}", *TINY_STREAM, *TRAIN, "eval.limit=2", "eval.max_new_tokens=2"]
    args = ["continual", "--method", "switchcit", "--out", str(run), *sets(*overrides)]
    result = ok(runner.invoke(app, args))
    assert re.search(r"AP \d+\.\d\d, BWT -?\d+\.\d\d", result.output) and (run / "run.json").exists()
    ok(runner.invoke(app, ["continual", "add", str(run), "--task", "synthetic:plural"]))
    again = runner.invoke(app, ["continual", "add", str(run), "--task", "synthetic:plural"])
    assert again.exit_code == 2 and "plural" in again.output
    gen = ok(runner.invoke(app, ["generate", str(run), "--input", "box", "--max-new-tokens", "2"]))
    assert "box" in gen.output
    routed = runner.invoke(app, ["generate", str(run), "--input", "box", "--condition", "Pluralise."])
    assert routed.exit_code == 2 and "routes each input" in routed.output  # not silently ignored
    _cut_long_inputs(run, caplog)
    ok(
        runner.invoke(
            app,
            [
                "eval",
                "--run",
                str(run),
                "--data",
                "synthetic",
                "--split",
                "seen",
                "--limit",
                "1",
                "--max-new-tokens",
                "2",
            ],
        )
    )
    assert json.loads(_own_result(run, "synthetic", "seen", 1).read_text())["method"] == "switchcit"
    bad = runner.invoke(app, ["continual", "--method", "magic"])
    assert bad.exit_code == 2 and "unknown continual method" in bad.output


def _own_result(run, data: str, split: str, limit: int):
    """Where ``eval --run RUN`` writes: RUN/eval/DATA.SPLIT.SETTING.limitN.json, in the run's own setting."""
    from hyperadapt.evaluation.destination import result_name
    from hyperadapt.runs import Run

    opened = Run.open(run)
    return opened.eval_dir / result_name(data, split, opened.prompt_style.setting, limit)


def _eval_run(run, jsonl_data, method: str) -> dict:
    """``eval --run RUN`` with no --method: the run says what it is; results go to RUN/eval/."""
    ok(runner.invoke(app, eval_args(jsonl_data, "--run", str(run), limit=2, max_new_tokens=2)))
    result = json.loads(_own_result(run, f"jsonl:{jsonl_data}", "test", 2).read_text())
    assert result["method"] == method and result["mean"]["n"] == 4
    return result


def test_multitask_lora_train_and_eval_run(tiny_dir, jsonl_data, tmp_path):
    run = tmp_path / "mtl"
    ok(runner.invoke(app, train_args("multitask-lora", tiny_dir, jsonl_data, run, "rank=2", *TRAIN)))
    stray = runner.invoke(app, ["train", "multitask-lora", "rank=2", "--out", str(tmp_path / "x")])
    assert stray.exit_code == 2 and "written --set KEY=VALUE (--set rank=2)" in stray.output  # the old syntax
    assert json.loads((run / "run.json").read_text())["config"]["rank"] == 2
    _eval_run(run, jsonl_data, "multitask-lora")
    other = tmp_path / "res.json"
    ok(runner.invoke(app, eval_args(jsonl_data, "--run", str(run), limit=1, max_new_tokens=2, out=other)))
    assert json.loads(other.read_text())["method"] == "multitask-lora"

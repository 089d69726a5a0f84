"""Released checkpoints: a trimmed bf16 run folder that the run loaders, `adapter` and `eval` use directly."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from tests.cli_helpers import runner
from tests.methods.test_tagi_pipeline import train_servable_tagi

from hyperadapt.cli import app
from hyperadapt.methods.megan import MeganConfig, load_megan, train_megan
from hyperadapt.methods.tagi import load_tagi
from hyperadapt.release import checkpoint_bytes, release_checkpoint
from hyperadapt.testing import tiny_model
from hyperadapt.training import TrainConfig


@pytest.fixture
def tagi_run(jsonl_data, tiny_dir, tmp_path):
    return train_servable_tagi(jsonl_data, tiny_dir, tmp_path / "run")


def test_a_released_tagi_checkpoint_makes_adapters_and_evaluates(tagi_run, jsonl_data, tiny_dir, tmp_path):
    ckpt = tmp_path / "checkpoints" / "tagi-tiny"
    result = runner.invoke(app, ["release", str(tagi_run), "--out", str(ckpt)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ckpt.iterdir()) == ["README.md", "hypernet", "run.json"]
    weights = load_file(ckpt / "hypernet" / "hypernet.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.bfloat16}
    assert checkpoint_bytes(ckpt) < checkpoint_bytes(tagi_run)
    run = load_tagi(tagi_run, model_and_tokenizer=tiny_model())
    released = load_tagi(ckpt, model_and_tokenizer=tiny_model())
    for k, v in run.hypernet.state_dict().items():  # the same weights, up to bf16 rounding
        torch.testing.assert_close(released.hypernet.state_dict()[k], v.to(torch.bfloat16).float())
    out = tmp_path / "adapter"
    result = runner.invoke(app, ["adapter", str(ckpt), "--instruction", "Repeat the input.", "--out", str(out)])
    assert result.exit_code == 0, result.output
    PeftModel.from_pretrained(tiny_model()[0], out)
    res = tmp_path / "res.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "--method",
            "tagi",
            "--run",
            str(ckpt),
            "--data",
            f"jsonl:{jsonl_data}",
            "--split",
            "test",
            "--limit",
            "2",
            "--max-new-tokens",
            "2",
            "--out",
            str(res),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(res.read_text())["mean"]["n"] == 4


def test_a_released_megan_checkpoint_loads(jsonl_data, tiny_dir, tmp_path):
    cfg = MeganConfig(
        model=str(tiny_dir),
        data=f"jsonl:{jsonl_data}",
        split="train",
        bottleneck=8,
        train=TrainConfig(steps=2, batch_size=2, max_length=64, save_every=0),
    )
    train_megan(cfg, tmp_path / "run", model_and_tokenizer=tiny_model())
    ckpt = release_checkpoint(tmp_path / "run", tmp_path / "ckpt", card="# card\n")
    assert (ckpt / "README.md").read_text() == "# card\n"
    assert load_megan(ckpt, model_and_tokenizer=tiny_model()).hypernet is not None


def test_release_refuses_what_it_cannot_release(tmp_path, tagi_run):
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "run.json").write_text(json.dumps({"method": "multitask-lora", "config": {}}))
    with pytest.raises(ValueError, match="only hypter, megan, tagi runs can be released"):
        release_checkpoint(tmp_path / "lora", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown dtype"):
        release_checkpoint(tagi_run, tmp_path / "out", dtype="int8")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "run.json").write_text(json.dumps({"method": "tagi", "config": {}}))
    with pytest.raises(FileNotFoundError, match="no final hypernetwork"):
        release_checkpoint(tmp_path / "unfinished", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_release_refuses_nan_inf_weights_and_float16_overflow(tagi_run, tmp_path):
    from safetensors.torch import save_file

    weights = tagi_run / "hypernet" / "hypernet.safetensors"
    tensors = load_file(weights)
    key = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[key].view(-1)[0] = 1e6  # fine in bf16 and fp32, infinite in fp16
    save_file(tensors, weights)
    with pytest.raises(ValueError, match=f"{key} holds NaN or infinite values as float16"):
        release_checkpoint(tagi_run, tmp_path / "out", dtype="float16")
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, weights)
    result = runner.invoke(app, ["release", str(tagi_run), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and f"{key} holds NaN or infinite values" in result.output, result.output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # no half-written checkpoint


def test_the_default_card_records_budget_and_the_runs_scores_and_old_keys_are_renamed(tagi_run, tmp_path):
    run = json.loads((tagi_run / "run.json").read_text())
    cfg = run["config"]
    cfg["targets"] = cfg.pop("target_modules")  # as a run saved before the rename
    (tagi_run / "run.json").write_text(json.dumps(run))
    (tagi_run / "eval").mkdir()
    (tagi_run / "eval" / "sni-test-def.json").write_text(
        json.dumps({"data": "sni:x", "split": "test", "setting": "def", "mean": {"rougeL": 41.25, "em": 12.5, "n": 8}})
    )
    ckpt = release_checkpoint(tagi_run, tmp_path / "ckpt")
    card = (ckpt / "README.md").read_text()
    teachers = cfg["teachers"]["train"]["steps"] * cfg["teachers"]["train"]["batch_size"]
    stage2 = cfg["train"]["steps"] * cfg["train"]["batch_size"]
    assert f"= {teachers:,} examples" in card and f"= {stage2:,} examples" in card
    assert f"total: {teachers + stage2:,} training examples" in card and "stage 1" not in card  # pretrain off
    assert "| `sni:x` | test | def | 8 | 41.25 | 12.50 |" in card
    released = json.loads((ckpt / "run.json").read_text())["config"]
    assert "targets" not in released and released["target_modules"] == cfg["targets"]
    assert load_tagi(ckpt, model_and_tokenizer=tiny_model()).hypernet is not None


def test_release_replaces_only_a_previous_checkpoint(tagi_run, tmp_path):
    ckpt = tmp_path / "ckpt"
    assert runner.invoke(app, ["release", str(tagi_run), "--out", str(ckpt)]).exit_code == 0
    assert runner.invoke(app, ["release", str(tagi_run), "--out", str(ckpt)]).exit_code == 0  # generated: replaced
    generated = (ckpt / "README.md").read_text()
    (ckpt / "README.md").write_text(generated.replace("## Budget", "Known weakness: none found.\n\n## Budget"))
    edited = runner.invoke(app, ["release", str(tagi_run), "--out", str(ckpt)])
    assert edited.exit_code == 2 and "edited by hand" in edited.output
    card = ["--card", str(tagi_run / "run.json")]
    result = runner.invoke(app, ["release", str(tagi_run), "--out", str(ckpt), *card])
    assert result.exit_code == 0, result.output  # released again: the old checkpoint is replaced
    assert (ckpt / "README.md").read_text() == (tagi_run / "run.json").read_text()
    again = runner.invoke(app, ["release", str(tagi_run), "--out", str(ckpt)])  # would lose the card given
    assert again.exit_code == 2 and "by hand" in again.output
    assert (ckpt / "README.md").read_text() == (tagi_run / "run.json").read_text()
    kept = runner.invoke(app, ["release", str(tagi_run), "--out", str(ckpt), "--card", str(ckpt / "README.md")])
    assert kept.exit_code == 0 and (ckpt / "README.md").read_text() == (tagi_run / "run.json").read_text()
    with pytest.MonkeyPatch.context() as patch:  # released again from inside the checkpoint: --out .
        patch.chdir(ckpt)
        here = runner.invoke(app, ["release", str(tagi_run), "--out", ".", "--card", "README.md"])
    assert here.exit_code == 0, here.output
    assert (ckpt / "README.md").read_text() == (tagi_run / "run.json").read_text()
    run_files = sorted(p.relative_to(tagi_run) for p in tagi_run.rglob("*"))
    for out in (tagi_run, tmp_path, tagi_run / "ckpt"):  # the run itself, its parent, a folder inside it
        result = runner.invoke(app, ["release", str(tagi_run), "--out", str(out)])
        assert result.exit_code == 2 and "would overwrite" in result.output, result.output
        assert sorted(p.relative_to(tagi_run) for p in tagi_run.rglob("*")) == run_files
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="other files"):  # the library refuses too
        release_checkpoint(tagi_run, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"

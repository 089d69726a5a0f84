"""The run directory owns its run.json and its integrity: one method and one config per run, one writer at a
time, unfinished runs never passed off as finished, and a checkpoint pointer that survives a crash."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli_helpers import runner, sets, train_args

from hyperadapt.cli import app
from hyperadapt.config import load_config
from hyperadapt.methods import load_run
from hyperadapt.methods.baselines.multitask_lora import MultiTaskLoraConfig, train_multitask_lora
from hyperadapt.methods.continual import runner as runner_module
from hyperadapt.runs import RunDir, RunLocked, changed_keys, resumable
from hyperadapt.testing import tiny_model
from hyperadapt.training import TrainConfig, latest_checkpoint

sys.path.insert(0, str(Path(__file__).parent / "methods"))


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
        train_multitask_lora(
            MultiTaskLoraConfig(**{**vars(cfg(jsonl_data, tiny_dir, lr=5e-4)), "rank": 4}),
            run,
            model_and_tokenizer=tiny_model(),
        )
    result = runner.invoke(app, train_args("megan", tiny_dir, jsonl_data, run, "bottleneck=8", "train.steps=1"))
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


@pytest.fixture
def live_pid():
    """The pid of a live process (that holds no lock of its own)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield other.pid
    other.kill()
    other.wait()


def _cli_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_a_locked_run_is_one_error_line_for_train_and_continual(jsonl_data, tiny_dir, tmp_path, live_pid):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(str(live_pid))
    line = _cli_error(runner.invoke(app, train_args("multitask-lora", tiny_dir, jsonl_data, run)))
    assert f"another process (pid {live_pid})" in line
    line = _cli_error(runner.invoke(app, ["continual", "--set", f"model={tiny_dir}", "--out", str(run)]))
    assert f"another process (pid {live_pid})" in line
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written, the owner's lock kept


def test_continual_runs_take_the_run_lock(tiny_dir, tmp_path, live_pid):
    from test_switch_helpers import tiny_config

    from hyperadapt.methods.continual import run_stream

    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(str(live_pid))
    with pytest.raises(RunLocked, match=f"another process \\(pid {live_pid}\\)"):
        run_stream(tiny_config(str(tiny_dir)), run, "sequential", model_and_tokenizer=tiny_model())
    assert not (run / "run.json").exists()
    seen = []
    real_start = runner_module.start_run

    def start_run(ctx, *args, **kwargs):
        seen.append((ctx.run_dir / ".lock").read_text())
        return real_start(ctx, *args, **kwargs)

    (run / ".lock").write_text("999999999")  # a stale lock (no such process) is taken over
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner_module, "start_run", start_run)
        state = run_stream(
            tiny_config(str(tiny_dir)), run, "sequential", model_and_tokenizer=tiny_model(), stop_after=1
        )
    assert seen == [str(os.getpid())] and state["completed"] == 1 and not (run / ".lock").exists()
    # logging and checkpointing settings may change on resume, as for train
    cfg = tiny_config(str(tiny_dir))
    cfg.train.save_every, cfg.train.log_every = 1, 5
    results = run_stream(cfg, run, "sequential", model_and_tokenizer=tiny_model())
    assert len(results["matrix"]) == 2
    cfg.train.lr = 0.5
    with pytest.raises(
        ValueError,
        match=r"differs in train\.lr\): resume it with its own config "
        r"\(`hyperadapt continual --config .*run\.json --method sequential --out "
        r".*\), or start over with --no-resume",
    ):
        run_stream(cfg, run, "sequential", model_and_tokenizer=tiny_model())
    assert not (run / ".lock").exists()


def test_resumable_keys_are_those_of_every_train_section():
    assert resumable("train.save_every") and resumable("teachers.train.keep_checkpoints")
    assert resumable("pretrain.train.log_every") and not resumable("save_every")
    assert not resumable("train.lr") and not resumable("teachers.train.steps")
    old = {"teachers": {"train": {"keep_checkpoints": 2, "lr": 1}}, "pretrain": {"train": {"save_every": 1}}}
    new = {"teachers": {"train": {"keep_checkpoints": 5, "lr": 1}}, "pretrain": {"train": {"save_every": 7}}}
    assert changed_keys(old, new) == []


def test_the_resume_hint_of_an_unfinished_run_works_as_written(jsonl_data, tiny_dir, tmp_path, live_pid):
    run = tmp_path / "run"
    overrides = ("rank=2", "train.steps=3", "train.batch_size=2", "train.max_length=64", "train.save_every=1")
    args = train_args("multitask-lora", tiny_dir, jsonl_data, run, *overrides)
    started = load_config(MultiTaskLoraConfig, None, args[3:-2:2])  # the --set values
    train_multitask_lora(started, run, model_and_tokenizer=tiny_model(), stop_at=2)
    with pytest.raises(ValueError) as err:
        load_run(run)
    hint = re.search(r"`(hyperadapt [^`]+)`", str(err.value)).group(1)
    assert hint == f"hyperadapt train multitask-lora --config {run / 'run.json'} --out {run}"
    assert load_config(MultiTaskLoraConfig, run / "run.json") == started
    assert load_config(MultiTaskLoraConfig, run) == started  # the run folder also names its config
    (run / ".lock").write_text(str(live_pid))
    with pytest.raises(ValueError, match=f"being trained now by another process \\(pid {live_pid}\\)"):
        load_run(run)
    (run / ".lock").unlink()
    result = runner.invoke(app, shlex.split(hint)[1:])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_ctrl_c_says_where_the_last_checkpoint_is_and_how_to_resume(jsonl_data, tiny_dir, tmp_path, monkeypatch):
    from dataclasses import replace

    from hyperadapt import registry

    run = tmp_path / "run"

    def interrupted(cfg, run_dir, resume=True):
        train_multitask_lora(cfg, run_dir, resume=resume, stop_at=2)
        raise KeyboardInterrupt

    entry = registry.method_entry("multitask-lora")
    monkeypatch.setitem(registry._ENTRIES, "multitask-lora", replace(entry, train=interrupted))
    args = train_args("multitask-lora", tiny_dir, jsonl_data, run, "rank=2", "train.steps=3", "train.save_every=1")
    result = runner.invoke(app, args)
    assert result.exit_code == 130 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1
    line = lines[0]
    assert f"last checkpoint is {run / 'checkpoints' / 'step-0000002'}" in line
    assert f"resume with `hyperadapt train multitask-lora --config {run / 'run.json'} --out {run}`" in line
    assert not (run / ".lock").exists()


def test_ctrl_c_during_continual_says_how_to_resume(tmp_path, monkeypatch):
    import hyperadapt.methods.continual as continual

    run = tmp_path / "run"

    def interrupted(cfg, run_dir, resume=True, method="switchcit"):
        run_dir.mkdir()
        (run_dir / "run.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(continual, "run_stream", interrupted)
    result = runner.invoke(app, ["continual", "--method", "sequential", "--out", str(run)])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"interrupted: no checkpoint had been written yet; resume with `hyperadapt "
        f"continual --config {run / 'run.json'} --method sequential --out {run}`"
    )


def test_a_finished_run_without_its_checkpoints_loads_its_weights_instead_of_training_again(
    jsonl_data, tiny_dir, tmp_path, monkeypatch
):
    import shutil

    import torch

    from hyperadapt.data import load_tasks
    from hyperadapt.evaluation.harness import make_queries
    from hyperadapt.methods.baselines.meta import MetaICLConfig, train_metaicl
    from hyperadapt.methods.megan import MeganConfig, train_megan
    from hyperadapt.training import Trainer

    data, t = f"jsonl:{jsonl_data}", TrainConfig(steps=3, batch_size=2, lr=1e-2, max_length=64, save_every=1)
    runs = {
        "multitask-lora": (train_multitask_lora, cfg(jsonl_data, tiny_dir, lr=1e-2)),
        "megan": (train_megan, MeganConfig(model=str(tiny_dir), data=data, bottleneck=8, train=t)),
        "metaicl": (train_metaicl, MetaICLConfig(model=str(tiny_dir), data=data, rank=2, train=t)),
    }
    tasks = load_tasks(data, "test")

    def logits(method):
        queries = make_queries(method, tasks, method.setting, 2)
        batch = method.tokenizer([q.prompt for q in queries], return_tensors="pt", padding=True)
        with torch.no_grad(), method.conditioning(queries):
            return method.model(**batch).logits

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    for name, (train, config) in runs.items():
        run = tmp_path / name
        trained = logits(train(config, run, model_and_tokenizer=tiny_model()))
        shutil.rmtree(run / "checkpoints")  # e.g. deleted to save space, or the run copied without them
        record = (run / "run.json").read_text()
        with monkeypatch.context() as m:
            m.setattr(Trainer, "train", no_training)
            again = train(config, run, model_and_tokenizer=tiny_model())
        assert torch.equal(logits(again), trained), name
        assert (run / "run.json").read_text() == record  # still finished, its steps kept
        with pytest.raises(ValueError, match="changed: train.steps"):  # another config is still refused
            train(
                dataclasses.replace(config, train=dataclasses.replace(t, steps=4)),
                run,
                model_and_tokenizer=tiny_model(),
            )


def test_train_says_when_a_finished_run_had_nothing_left_to_train(jsonl_data, tiny_dir, tmp_path):
    overrides = ("train.steps=2", "train.batch_size=2", "rank=2")
    argv = train_args("multitask-lora", tiny_dir, jsonl_data, tmp_path / "r", *overrides)
    first = runner.invoke(app, argv)
    assert first.exit_code == 0 and "trained multitask-lora ->" in first.output
    again = runner.invoke(app, argv)
    assert again.exit_code == 0 and "already holds this finished multitask-lora run: nothing to train" in again.output
    fresh = runner.invoke(app, [*argv, "--no-resume"])
    assert fresh.exit_code == 0 and "trained multitask-lora ->" in fresh.output


def test_continual_says_how_far_it_got_when_interrupted_and_what_no_resume_deletes(tiny_dir, tmp_path, monkeypatch):
    from hyperadapt.evaluation import harness

    run = tmp_path / "run"
    argv = ["continual", "--config", "configs/switch_synthetic.yaml", "--method", "sequential", "--out", str(run)]
    argv += sets(
        f"model={tiny_dir}",
        "n_tasks=2",
        "limit_train=12",
        "train.steps=2",
        "train.batch_size=2",
        "eval.limit=2",
        "eval.batch_size=1",
        "eval.max_new_tokens=2",
        "unseen_limit=2",
    )
    real, calls = harness.generate_batch, []

    def generate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # zero-shot took 4 answers; stop after 2 of the first task's
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(harness, "generate_batch", generate)
    result = runner.invoke(app, argv)
    assert result.exit_code == 130
    said = [line for line in result.stderr.splitlines() if line.startswith("interrupted")]
    assert said[0].startswith(
        "interrupted: 0 of 2 tasks done; the task in progress: 2 of its answers are logged; "
        "resume with `hyperadapt continual --config "
    )
    monkeypatch.setattr(harness, "generate_batch", real)
    assert runner.invoke(app, argv).exit_code == 0
    again = runner.invoke(app, [*argv, "--no-resume"])
    assert again.exit_code == 0
    assert f"--no-resume: deleting the run in {run} (2 of 2 tasks done) and starting over" in again.stderr


# ---------------------------------------------------------------------------------------------------------
# Run: one owner of a run folder; old records still load


CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "tagi-smollm2-135m-sni"


@pytest.mark.skipif(not (CHECKPOINT / "hypernet").is_dir(), reason="the released checkpoint is not in this checkout")
def test_the_committed_checkpoint_opens_with_every_answer_from_its_record():
    from hyperadapt.methods.tagi import TagiConfig, load_tagi
    from hyperadapt.runs import Run

    run = Run.open(CHECKPOINT)
    assert (run.kind, run.method, run.finished, run.released) == ("train", "tagi", True, True)
    assert run.entry.load is load_tagi and isinstance(run.config, TagiConfig)
    assert run.prompt_style.setting == "def" and run.artefact == CHECKPOINT / "hypernet"
    assert run.base_model.name_or_path == "default" and run.base_model.comparable  # checked by its weights


def test_an_old_stream_record_is_finished_once_its_results_exist(tmp_path):
    from hyperadapt.runs import Run

    (tmp_path / "run.json").write_text(
        json.dumps(
            {
                "kind": "continual",
                "method": "sequential",
                "config": {"model": "tiny", "setting": "def"},
                "tasks": ["a"],
                "added": ["b"],
            }
        )
    )
    run = Run.open(tmp_path)
    assert not run.finished and run.tasks == ["a", "b"] and run.prompt_style.setting == "def"
    with pytest.raises(FileNotFoundError, match="has not finished its stream: resume it first: `hyperadapt continual"):
        run.check_loadable()
    (tmp_path / "results.json").write_text("{}")
    assert Run.open(tmp_path).finished


@pytest.mark.parametrize(
    "record, message",
    [
        ([1, 2], "must hold a JSON object"),
        ({"config": {}}, "names no method"),
        ({"method": "tagi"}, "holds no config"),
        ({"method": "nope", "config": {}}, "unknown method 'nope'"),
        ({"schema": 99, "method": "tagi", "config": {}}, "has schema 99; this version of hyperadapt reads schema 1"),
        ({"schema": "1", "method": "tagi", "config": {}}, 'has schema "1"; this version'),
        ({"method": "tagi", "config": {"train": "x"}}, r"run\.json: train must be a mapping"),
        ({"method": "tagi", "config": {"bottleneck": 5}}, r"run\.json: unknown config key\(s\) \['bottleneck'\]"),
    ],
)
def test_a_bad_record_is_refused_with_what_is_wrong(tmp_path, record, message):
    from hyperadapt.runs import Run

    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message):
        run = Run.open(tmp_path)
        run.check_loadable()
        assert run.config is None  # what loading reads next


@pytest.mark.parametrize(
    "base_model", ["abc", [1], {"fingerprint": "0123", "scheme": "two"}, {"fingerprint": 5, "scheme": 2}]
)
def test_a_damaged_base_model_record_is_refused_naming_the_file(tmp_path, base_model):
    from hyperadapt.runs import Run

    record = {"method": "tagi", "config": {"model": "default"}, "base_model": base_model}
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"run\.json: base_model must be an object"):
        Run.open(tmp_path).check_model(None)  # what eval asks first


def test_the_weight_fingerprint_ignores_dtype_and_tells_weights_apart():
    import torch

    from hyperadapt.runs import model_fingerprint

    model, _ = tiny_model()
    same = model_fingerprint(model)["fingerprint"]
    assert model_fingerprint(model.to(torch.bfloat16))["fingerprint"] == same
    assert model_fingerprint(tiny_model(seed=1)[0])["fingerprint"] != same

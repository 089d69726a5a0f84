"""Serving run folders: the server renders a run's trained prompt (its answers equal `hyperadapt generate`'s),
every run `eval --run` loads is served, another base model is refused, and each command reads run.json once."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.cli_helpers import runner
from tests.methods.test_tagi_pipeline import train_servable_tagi

from hyperadapt import runs
from hyperadapt.cli import app
from hyperadapt.data.prompts import render, user_message
from hyperadapt.methods.baselines.multitask_lora import MultiTaskLoraConfig, train_multitask_lora
from hyperadapt.methods.tagi import load_tagi
from hyperadapt.methods.tagi.method import HYPERNET_DIR, save_hypernet
from hyperadapt.serve import RunningServer, ServeConfig, build_server, create_app
from hyperadapt.testing import save_tiny_model, tiny_model
from hyperadapt.training import TrainConfig

CONDITION, INPUT = "Repeat the input.", "test 3"


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
    from tests.conftest import write_jsonl

    return write_jsonl(tmp_path_factory.mktemp("data") / "tasks.jsonl")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tagi_run(jsonl, model_dir, tmp_path_factory):
    run = train_servable_tagi(jsonl, model_dir, tmp_path_factory.mktemp("tagi") / "run")
    method = load_tagi(run, tiny_model())  # a few steps leave B ≈ 0: perturb it, so that adapters change answers
    torch.manual_seed(0)
    with torch.no_grad():
        for param in method.hypernet.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    save_hypernet(method.hypernet, run / HYPERNET_DIR)
    return run


@pytest.fixture(scope="module")
def lora_run(jsonl, model_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("lora") / "run"
    cfg = MultiTaskLoraConfig(
        model=str(model_dir), data=f"jsonl:{jsonl}", rank=2, train=TrainConfig(steps=3, batch_size=2, max_length=64)
    )
    train_multitask_lora(cfg, run, model_and_tokenizer=tiny_model())
    weights = run / "adapter" / "adapter_model.safetensors"  # perturbed as the TAGI run's, for the same reason
    torch.manual_seed(0)
    save_file({k: v + torch.randn_like(v) * 0.5 for k, v in load_file(weights).items()}, weights)
    return run


def generated(run) -> str:
    """What `hyperadapt generate RUN --condition C --input X` answers (greedy)."""
    result = runner.invoke(
        app, ["generate", str(run), "--condition", CONDITION, "--input", INPUT, "--max-new-tokens", "8"]
    )
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.replace("\r", "\n").splitlines() if f"{INPUT}  [condition:" in x)
    return line.split(" -> ", 1)[1]


@pytest.mark.parametrize("kind", ["tagi", "lora"])
def test_condition_and_input_are_answered_as_generate_answers_them(kind, tagi_run, lora_run):
    run = tagi_run if kind == "tagi" else lora_run
    server = build_server([f"r={run}"], ServeConfig(gather_ms=0.0))
    running = RunningServer(create_app(server))
    try:
        body = {"model": "r", "condition": CONDITION, "input": INPUT, "max_tokens": 8, "temperature": 0}
        completion = httpx.post(running.url + "/v1/completions", json=body, timeout=60)
        chat = httpx.post(running.url + "/v1/chat/completions", json=body, timeout=60)
        raw = httpx.post(
            running.url + "/v1/completions",
            timeout=60,
            json={**{k: v for k, v in body.items() if k != "input"}, "prompt": INPUT},
        )
    finally:
        running.stop()
    assert completion.status_code == 200, completion.text
    answer = completion.json()["choices"][0]["text"].strip()
    assert answer and answer == generated(run)
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"].strip() == answer
    trained = render(server.tokenizer, user_message(CONDITION, INPUT, "def"))  # both runs were trained on 'def'
    assert completion.json()["usage"]["prompt_tokens"] == len(
        server.tokenizer(trained, add_special_tokens=False).input_ids
    )
    route = completion.json()["route"]
    assert route.startswith("r:") and (route == "r:adapter") == (kind == "lora")
    if kind == "lora":  # a plain prompt with a condition: the LoRA run takes no condition outside its trained prompt
        assert raw.status_code == 400 and "takes no 'condition'" in raw.text


def test_a_request_gives_prompt_or_input_not_both(tagi_run):
    server = build_server([f"r={tagi_run}"], ServeConfig(gather_ms=0.0))
    running = RunningServer(create_app(server))
    try:
        both = httpx.post(
            running.url + "/v1/completions",
            timeout=60,
            json={"model": "r", "condition": CONDITION, "input": INPUT, "prompt": INPUT},
        )
        base = httpx.post(running.url + "/v1/completions", timeout=60, json={"model": "base", "input": INPUT})
        missing = httpx.post(running.url + "/v1/completions", timeout=60, json={"model": "r", "input": INPUT})
    finally:
        running.stop()
    assert both.status_code == 400 and "either 'prompt'" in both.text
    assert base.status_code == 400 and "no trained prompt" in base.text
    assert missing.status_code == 400 and "condition" in missing.text


def test_a_run_is_refused_on_another_base_model(tagi_run, tmp_path):
    other = save_tiny_model(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="was trained on the base model"):
        build_server([str(tagi_run)], model=str(other))
    with pytest.raises(ValueError, match="was trained on the base model"):
        runs.Run.open(tagi_run).load(tiny_model(seed=1))
    result = runner.invoke(app, ["eval", "--run", str(tagi_run), "--data", "synthetic", "--model", str(other)])
    assert result.exit_code == 2 and "was trained on the base model" in result.output


def test_a_run_loads_on_any_path_to_its_own_weights(tagi_run, model_dir, jsonl, tmp_path, monkeypatch):
    """A run records its base model as the user named it, so a relative path names it only from the folder the
    run was trained from: from elsewhere, eval and serve say so, and --model names the same weights by another
    path (checked against the run's fingerprint)."""
    moved = tmp_path / "moved"
    shutil.copytree(tagi_run, moved)
    record = json.loads((moved / "run.json").read_text())
    record["config"]["model"] = f"./{model_dir.name}"  # as trained from model_dir's parent
    (moved / "run.json").write_text(json.dumps(record))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    copy = shutil.copytree(model_dir, tmp_path / "copy of the model")
    args = ["eval", "--run", str(moved), "--data", f"jsonl:{jsonl}", "--split", "test", "--limit", "1"]
    args += ["--max-new-tokens", "2", "--out", str(tmp_path / "e.json")]

    lost = runner.invoke(app, args)
    assert lost.exit_code == 2
    assert "a path relative to the folder it was trained from" in lost.output and "--model" in lost.output
    record["config"]["model"] = model_dir.name  # a bare folder name: "unknown model" from here
    (moved / "run.json").write_text(json.dumps(record))
    bare = runner.invoke(app, args)
    assert bare.exit_code == 2 and "a path relative to the folder it was trained from" in bare.output
    with pytest.raises(FileNotFoundError, match="relative to the folder it was trained from"):
        build_server([str(moved)])

    found = runner.invoke(app, [*args, "--model", str(copy)])
    assert found.exit_code == 0, found.output
    again = runner.invoke(app, [*args, "--model", str(model_dir)])  # the same weights by another path
    assert again.exit_code == 0, again.output  # the same evaluation: its results are replaced, not refused
    assert build_server([str(moved)], model=str(copy)).targets.keys() == {"base", "moved"}
    answer = ["generate", str(moved), "--condition", CONDITION, "--input", INPUT, "--max-new-tokens", "8"]
    assert "--model" in runner.invoke(app, answer).output
    assert generated(tagi_run) in runner.invoke(app, [*answer, "--model", str(copy)]).output
    export = ["adapter", str(moved), "--instruction", CONDITION, "--out", str(tmp_path / "adapter")]
    assert runner.invoke(app, [*export, "--model", str(copy)]).exit_code == 0
    other = save_tiny_model(tmp_path / "other", seed=1)
    refused = runner.invoke(app, [*answer, "--model", str(other)])
    assert refused.exit_code == 2 and "was trained on the base model" in refused.output


def test_each_command_reads_the_run_record_once(tagi_run, jsonl, tmp_path, monkeypatch):
    reads = []
    read = runs.read_record
    monkeypatch.setattr(runs, "read_record", lambda path: reads.append(path) or read(path))
    result = runner.invoke(
        app,
        [
            "eval",
            "--run",
            str(tagi_run),
            "--data",
            f"jsonl:{jsonl}",
            "--split",
            "test",
            "--limit",
            "1",
            "--max-new-tokens",
            "2",
            "--out",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(reads) == 1
    generated(tagi_run)
    assert len(reads) == 2
    create_app(build_server([str(tagi_run)], ServeConfig()))
    assert len(reads) == 3

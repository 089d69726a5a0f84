"""Continual baselines on a tiny model: each runs the shared stream runner; O-LoRA's pieces and loss."""

from __future__ import annotations

import json

import pytest
import torch
from test_switch_helpers import tiny_config

from hyperadapt.core import AdapterBank, LoraConditioning
from hyperadapt.methods.continual import run_stream
from hyperadapt.methods.continual.learners import ReplayLearner, bank_of, concat, orthogonality_loss
from hyperadapt.methods.continual.stream import make_context
from hyperadapt.testing import tiny_model


@pytest.mark.parametrize("method", ["sequential", "replay", "olora", "oracle"])
def test_baseline_fills_the_accuracy_matrix(method, tmp_path):
    results = run_stream(tiny_config(), tmp_path / method, method=method, model_and_tokenizer=tiny_model())
    assert results["method"] == method and len(results["matrix"]) == 2
    assert all(v is not None for row in results["matrix"] for v in row)
    assert results["metrics"]["over_tasks"] == 2 and results["metrics"]["BWT"] is not None
    assert len(results["storage"]["per_task_bytes"]) == 2


def test_multitask_upper_bound_is_one_stage_with_the_whole_budget(tmp_path):
    results = run_stream(tiny_config(), tmp_path / "mt", method="multitask", model_and_tokenizer=tiny_model())
    assert len(results["matrix"]) == 1 and results["after"] == [1]
    assert results["rows"][0]["train"]["steps"] == 2 * 3
    assert results["metrics"]["BWT"] is None and results["metrics"]["AP"] is not None
    assert (tmp_path / "mt" / "matrix.png").exists() and not (tmp_path / "mt" / "ap_curve.png").exists()


def test_replay_mixes_in_a_share_of_earlier_tasks(tmp_path):
    ctx = make_context(tiny_config(), tmp_path, tiny_model())
    learner = ReplayLearner(ctx)
    assert len(learner.examples(0)) == 12
    assert len(learner.examples(1)) == 12 + 1  # 1 % of 12, at least one example


def _random_lora(model_shapes, rank, seed, scale):
    g = torch.Generator().manual_seed(seed)
    factors = {
        n: (torch.randn(1, rank, i, generator=g), torch.randn(1, o, rank, generator=g))
        for n, (i, o) in model_shapes.items()
    }
    return LoraConditioning(factors, scale)


def test_concat_is_the_sum_of_the_adapters_deltas():
    shapes = {"model.layers.0.self_attn.q_proj": (6, 5)}
    a, b = _random_lora(shapes, 2, 0, 2.0), _random_lora(shapes, 3, 1, 0.5)
    name = next(iter(shapes))
    torch.testing.assert_close(concat([a, b]).delta(name), a.delta(name) + b.delta(name))


def test_orthogonality_loss_is_zero_for_orthogonal_subspaces():
    shapes = {"model.layers.0.self_attn.q_proj": (4, 3)}
    bank = AdapterBank(shapes, 1, rank=2)
    with torch.no_grad():
        bank.lora_A[0].copy_(torch.eye(4)[:2][None])
    old = LoraConditioning({next(iter(shapes)): (torch.eye(4)[2:][None], torch.ones(1, 3, 2))}, 1.0)
    assert orthogonality_loss(bank, [old], 0.5)().item() == 0.0
    overlapping = LoraConditioning({next(iter(shapes)): (torch.eye(4)[1:3][None], torch.ones(1, 3, 2))}, 1.0)
    loss = orthogonality_loss(bank, [overlapping], 0.5)()
    assert loss.item() == pytest.approx(0.5) and loss.requires_grad


def test_bank_of_holds_an_adapter_of_any_rank():
    shapes = {"model.layers.0.self_attn.q_proj": (6, 5)}
    lora = concat([_random_lora(shapes, 2, 0, 2.0), _random_lora(shapes, 2, 1, 2.0)])
    name = next(iter(shapes))
    bank = bank_of(lora, torch.nn.Linear(2, 2))
    torch.testing.assert_close(bank.adapter(0).delta(name), lora.delta(name))


def test_oracle_seeded_from_switchcit_reuses_its_adapters_and_matches_a_fresh_oracle(tmp_path):
    cfg, model = tiny_config(), tiny_model()
    run_stream(cfg, tmp_path / "switchcit", "switchcit", model_and_tokenizer=model)
    fresh = run_stream(cfg, tmp_path / "fresh", method="oracle", model_and_tokenizer=model)
    seeded = run_stream(
        cfg, tmp_path / "oracle", method="oracle", model_and_tokenizer=model, seed_from=tmp_path / "switchcit"
    )
    assert seeded["matrix"] == fresh["matrix"] and seeded["zero_shot"] == fresh["zero_shot"]
    assert all(row["train"] == {"reused": True} for row in seeded["rows"])


def test_seeding_shares_only_base_answers_across_learner_kinds_and_refuses_another_stream(tmp_path):
    cfg, model = tiny_config(), tiny_model()
    run_stream(cfg, tmp_path / "switchcit", "switchcit", model_and_tokenizer=model)
    seq = run_stream(
        cfg, tmp_path / "seq", method="sequential", model_and_tokenizer=model, seed_from=tmp_path / "switchcit"
    )
    assert all("reused" not in row["train"] for row in seq["rows"])
    other = tiny_config()
    other.setting = "none"
    with pytest.raises(ValueError, match="differs in setting"):
        run_stream(
            other, tmp_path / "other", method="oracle", model_and_tokenizer=model, seed_from=tmp_path / "switchcit"
        )


def test_seeding_from_a_folder_that_is_not_a_continual_run_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a continual run directory"):
        run_stream(
            tiny_config(),
            tmp_path / "run",
            method="oracle",
            model_and_tokenizer=tiny_model(),
            seed_from=tmp_path / "empty",
        )


def test_an_unfinished_stream_writes_its_progress_and_the_results_replace_it(tmp_path):
    import json

    run = tmp_path / "seq"
    state = run_stream(tiny_config(), run, method="sequential", model_and_tokenizer=tiny_model(), stop_after=1)
    text = (run / "progress.md").read_text()
    assert text.startswith("Unfinished: 1 of 2 tasks done in ") and " left at that pace" in text
    assert "over the 1 task trained on so far" in text
    first = state["rows"][0]["scores"][state["rows"][0]["task"]]["rougeL"]
    assert f"| {first:.1f} | – | – | – |" in text  # AP over the one task trained on, not the whole row
    assert not (run / "results.json").exists()
    results = run_stream(tiny_config(), run, method="sequential", model_and_tokenizer=tiny_model())
    assert not (run / "progress.md").exists() and (run / "results.md").exists()
    assert json.loads((run / "results.json").read_text())["matrix"] == results["matrix"]


def one_answer_per_batch():
    import dataclasses

    cfg = tiny_config()
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, batch_size=1))


def run_until_answer(cfg, run, monkeypatch, n: int) -> list:
    """Run a sequential stream into ``run`` and end it (``KeyboardInterrupt``) when it asks for its ``n``-th
    answer (one answer per batch; zero-shot takes the first 4 of the tiny stream). Returns the list that
    counts the answers generated from then on (one entry per call)."""
    from hyperadapt.evaluation import harness

    real, calls = harness.generate_batch, []

    def generate(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(harness, "generate_batch", generate)
    with pytest.raises(KeyboardInterrupt):
        run_stream(cfg, run, method="sequential", model_and_tokenizer=tiny_model())
    calls.clear()
    return calls


def test_a_stage_interrupted_while_answering_continues_from_its_answer_log(tmp_path, monkeypatch):
    cfg = one_answer_per_batch()
    straight = run_stream(cfg, tmp_path / "straight", method="sequential", model_and_tokenizer=tiny_model())
    run = tmp_path / "interrupted"
    calls = run_until_answer(cfg, run, monkeypatch, 7)  # in the middle of the first stage's answers
    assert len((run / "answering" / "after-000.jsonl").read_text().splitlines()) == 1 + 2  # header + 2 answers
    resumed = run_stream(cfg, run, method="sequential", model_and_tokenizer=tiny_model())
    assert len(calls) == 2 + 4  # the stage's last 2 answers, then the second stage's 4
    assert resumed["matrix"] == straight["matrix"] and not (run / "answering").exists()


def test_a_stage_resumed_after_training_reports_the_seconds_and_statistics_of_both_processes(tmp_path, monkeypatch):
    from hyperadapt.clock import Stopwatch
    from hyperadapt.evaluation import harness
    from hyperadapt.evaluation.harness import AnswerLog
    from hyperadapt.methods.continual import runner

    def clock(step: float) -> type[Stopwatch]:  # every reading of its clock is ``step`` seconds after the last
        now = [0.0]

        def tick() -> float:
            now[0] += step
            return now[0]

        return type("FakeStopwatch", (Stopwatch,), {"now": staticmethod(tick)})

    monkeypatch.setattr(runner, "Stopwatch", clock(1000.0))  # run_stage: 1000 s between its clock readings
    monkeypatch.setattr(harness, "Stopwatch", clock(10.0))  # each batch of answers: 10 s
    cfg = one_answer_per_batch()
    run = tmp_path / "run"
    run_until_answer(cfg, run, monkeypatch, 7)  # after the first stage's training and 2 of its answers
    learned = json.loads((run / "state.json").read_text())[runner.LEARNED]
    assert learned["after"] == 0 and learned["seconds"] == 1000.0
    assert learned["train"]["steps"] == cfg.train.steps and "reused" not in learned["train"]
    assert AnswerLog.logged_seconds(run / "answering" / "after-000.jsonl") == 20.0  # two batches of 10 s
    resumed = run_stream(cfg, run, method="sequential", model_and_tokenizer=tiny_model())
    first = resumed["rows"][0]
    assert first["train"] == learned["train"]  # the training process's statistics, not the reload's "reused"
    assert first["seconds"] == {"train": 1000.0 + 1000.0, "eval": 1000.0 + 20.0}  # both processes' time
    assert resumed["rows"][1]["seconds"] == {"train": 1000.0, "eval": 1000.0}  # an uninterrupted stage
    assert runner.LEARNED not in json.loads((run / "state.json").read_text())


def test_a_finished_sequential_stream_evaluates_as_the_lora_it_ends_with(tmp_path, monkeypatch):
    import dataclasses

    from hyperadapt.evaluation.harness import EvalConfig, evaluate
    from hyperadapt.methods import load_run
    from hyperadapt.methods.continual.stream import make_context

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, batch_size=1))
    run = tmp_path / "seq"
    with pytest.raises(FileNotFoundError, match="has not finished its stream: resume it first"):
        run_stream(cfg, run, method="sequential", model_and_tokenizer=tiny_model(), stop_after=1)
        load_run(run, tiny_model())
    results = run_stream(cfg, run, method="sequential", model_and_tokenizer=tiny_model())
    record = json.loads((run / "run.json").read_text())  # the one schema of every run
    assert {"schema", "kind", "method", "config", "status", "versions", "base_model", "prompt_style"} <= set(record)
    assert record["status"] == "finished" and record["prompt_style"] == {"setting": cfg.setting}
    method = load_run(run, tiny_model())
    assert method.name == "sequential" and method.setting == cfg.setting
    tasks = [t.test for t in make_context(cfg, tmp_path / "ctx", tiny_model()).tasks]
    e = cfg.eval
    scored = evaluate(
        method,
        tasks,
        EvalConfig(
            setting=cfg.setting,
            limit=e.limit,
            batch_size=1,
            max_new_tokens=e.max_new_tokens,
            max_prompt_tokens=e.max_prompt_tokens,
        ),
    )
    # the stream's last row is this adapter on the same prompts
    assert [scored["tasks"][t.name]["rougeL"] for t in tasks] == pytest.approx(results["matrix"][-1])
    from hyperadapt.methods.inputs import answer_inputs  # generate: the same LoRA, under the given condition

    rows = answer_inputs(
        run, ["hello"], ["Convert the text to upper case."], max_new_tokens=2, model_and_tokenizer=tiny_model()
    )
    assert len(rows) == 1 and rows[0][0] == "hello" and rows[0][2] == "condition: Convert the text to upper case."


@pytest.mark.parametrize("config", [{"model": "default"}, {"model": "default", "lora": [], "setting": "def"}])
def test_a_finished_stream_whose_record_lost_its_lora_settings_is_refused_naming_the_file(tmp_path, config):
    from hyperadapt.errors import UserError
    from hyperadapt.methods.continual.runner import load_final_adapter

    record = {"schema": 1, "kind": "continual", "method": "sequential", "config": config, "status": "finished"}
    (tmp_path / "run.json").write_text(json.dumps(record))
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(UserError, match=f"run file {tmp_path / 'run.json'} is damaged: its config needs lora"):
        load_final_adapter(tmp_path)


def test_a_stream_that_cannot_start_leaves_no_folder_behind(tmp_path):
    import dataclasses

    cfg = dataclasses.replace(tiny_config(), stream=f"cl:{tmp_path / 'no-such-stream'}")
    with pytest.raises((FileNotFoundError, ValueError)):
        run_stream(cfg, tmp_path / "out" / "run", method="sequential", model_and_tokenizer=tiny_model())
    assert not (tmp_path / "out" / "run").exists()


def test_bf16_storage_halves_the_adapter_int8_quarters_it_and_both_load_back_as_float32(tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    from hyperadapt.data.schema import Instance, Task
    from hyperadapt.methods.continual.store import AdapterStore

    model, _ = tiny_model()
    bank = AdapterBank.for_model(model, 1, 4, ["q_proj", "v_proj", "down_proj"], alpha=8)
    with torch.no_grad():
        for p in bank.parameters():
            p.normal_(std=0.1)
    task = Task("t", "Do it.", [Instance("t-0", "x", ("y",))])
    stored = {}
    for dtype in ("float32", "bfloat16"):
        store = AdapterStore(tmp_path / dtype, dtype)
        folder = store.write(0, task, model, bank.adapter(0))
        assert {t.dtype for t in load_file(folder / "adapter_model.safetensors").values()} == {getattr(torch, dtype)}
        stored[dtype] = store.load(0, "t")
        assert {a.dtype for pair in stored[dtype].factors.values() for a in pair} == {torch.float32}
        PeftModel.from_pretrained(tiny_model()[0], folder)  # a plain PEFT folder either way
    weights = {d: (tmp_path / d / "000-t" / "adapter_model.safetensors").stat().st_size for d in stored}
    tensor_bytes = 4 * sum(a.numel() + b.numel() for a, b in stored["float32"].factors.values())
    assert weights["float32"] - weights["bfloat16"] >= 0.45 * tensor_bytes  # half the tensor bytes, less header
    for name, (a, b) in stored["float32"].factors.items():
        a16, b16 = stored["bfloat16"].factors[name]
        assert torch.equal(a16, a.bfloat16().float()) and torch.equal(b16, b.bfloat16().float())
    int8 = AdapterStore(tmp_path / "int8", "int8")
    folder = int8.write(0, task, model, bank.adapter(0))
    assert int8.has(0, "t") and not (folder / "adapter_model.safetensors").exists()
    codes = load_file(folder / "adapter_model.int8.safetensors")
    assert {t.dtype for k, t in codes.items() if not k.endswith("_scale")} == {torch.int8}
    int8_bytes = sum(t.numel() * t.element_size() for t in codes.values())  # the codes and one scale per rank row
    assert int8_bytes <= 0.25 * tensor_bytes + 4 * 2 * 4 * len(stored["float32"].factors)
    for name, (a, b) in int8.load(0, "t").factors.items():
        a32, b32 = stored["float32"].factors[name]
        assert (a - a32).abs().max() <= a32.abs().max() / 254 + 1e-7
        assert (b - b32).abs().max() <= b32.abs().max() / 254 + 1e-7
    assert int8.bank(model, ["t"]).num_adapters == 1
    with pytest.raises(ValueError, match="already exists"):
        int8.write(0, task, model, bank.adapter(0))
    with pytest.raises(ValueError, match="lora.storage_dtype"):
        AdapterStore(tmp_path, "float16")


@pytest.mark.parametrize("cache", ["old answers.json", "another model's"])
def test_the_answer_cache_is_an_answer_log_and_an_old_one_still_reads(tmp_path, monkeypatch, caplog, cache):
    import logging

    from hyperadapt.evaluation import harness

    run = tmp_path / "seq"
    run_stream(tiny_config(), run, method="sequential", model_and_tokenizer=tiny_model(), stop_after=1)
    header, answers = harness.AnswerLog.read(run / "answers.jsonl")
    assert header["identity"]["weights"] and any(k.endswith("\tbase") for k in answers)
    if cache == "old answers.json":  # as runs started before wrote it
        (run / "answers.json").write_text(json.dumps(answers))
        (run / "answers.jsonl").unlink()
    else:
        header["identity"]["weights"] = "0" * 16
        lines = (run / "answers.jsonl").read_text().splitlines()
        (run / "answers.jsonl").write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    real, calls = harness.generate_batch, []
    monkeypatch.setattr(harness, "generate_batch", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    with caplog.at_level(logging.WARNING):
        run_stream(tiny_config(), run, method="sequential", model_and_tokenizer=tiny_model())
    reanswered = sum(calls) - 4  # the second stage's answers on its own adapter are always new
    if cache == "old answers.json":
        assert reanswered == 0 and not (run / "answers.json").exists()  # reused, then kept as an answer log
    else:  # not reused: the base answers it held are dropped (the zero-shot row was scored before)
        kept = harness.AnswerLog.read(run / "answers.jsonl")[1]
        assert "holds answers of another model" in caplog.text and not any(k.endswith("\tbase") for k in kept)
    assert harness.AnswerLog.read(run / "answers.jsonl")[0]["identity"]["weights"] != "0" * 16

"""SwitchCIT on a tiny model: adapter files, routing through the bank, retention, resume, add_task, rejects."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from test_switch_helpers import tiny_config

from hyperadapt.core import conditioned
from hyperadapt.data.synthetic import synthetic_stream
from hyperadapt.evaluation.generate import encode_left_padded
from hyperadapt.methods.continual import run_stream
from hyperadapt.methods.continual.runner import stream_metrics
from hyperadapt.methods.continual.stream import test_queries as make_test_queries
from hyperadapt.methods.inputs import answer_inputs
from hyperadapt.methods.switch import (
    RetentionBuffer,
    RouterConfig,
    SwitchConfig,
    SwitchRouter,
    add_task,
    load_switch,
    load_task_spec,
)
from hyperadapt.methods.switch.learner import routing_stats
from hyperadapt.testing import tiny_model


def _hashes(run_dir) -> dict[str, str]:
    files = sorted((run_dir / "adapters").glob("[0-9]*/*"))
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def switch_run(tmp_path_factory, tiny_dir):
    """A finished two-task SwitchCIT run (do not modify: copy it first)."""
    run_dir = tmp_path_factory.mktemp("switch") / "run"
    results = run_stream(tiny_config(str(tiny_dir)), run_dir, "switchcit")
    return run_dir, results


@pytest.fixture
def run_copy(switch_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(switch_run[0], target)
    return target


def test_free_form_inputs_are_routed_on_the_whole_turn_and_answered_with_their_adapter(switch_run):
    from hyperadapt.data.prompts import render
    from hyperadapt.evaluation.generate import generate_batch
    from hyperadapt.methods.inputs import answer_texts

    method = load_switch(switch_run[0])
    texts = [
        f"Definition: {d}\n\nInput: {x}" for d, x in [("Write the words in capitals.", "red fox"), ("Add.", "2 3")]
    ]
    texts.append("no definition at all")
    got = answer_texts(method, texts, max_new_tokens=4)
    routing = method.route_texts(texts)
    with method.lora_context(routing.adapter):  # what the switch picks for each raw turn, in one batch
        expected = generate_batch(method.model, method.tokenizer, [render(method.tokenizer, t) for t in texts], 4)
    assert [a.input for a in got] == texts and [a.answer for a in got] == expected
    assert [a.route for a in got] == [
        "rejected" if r else f"task: {method.tasks[c]}" for c, r in zip(routing.choice, routing.rejected, strict=True)
    ]
    with pytest.raises(ValueError, match="--condition is not used"):
        answer_texts(method, texts, ["Add."])


def test_every_stage_keeps_its_answers_in_a_log_that_rescores_to_its_row(switch_run):
    from hyperadapt.evaluation.harness import score_answer_log
    from hyperadapt.methods.continual.stream import load_stream

    run_dir, results = switch_run
    cfg = tiny_config()
    tests = [t.test for t in load_stream(cfg)]
    for k, row in zip(results["after"], results["matrix"], strict=True):
        scored = score_answer_log(run_dir / "answer_logs" / f"after-{k:03d}.answers.jsonl", tests, cfg.eval.limit)
        assert [scored[t.name]["rougeL"] for t in tests] == pytest.approx(row)


def test_run_writes_adapters_manifest_router_and_report(switch_run):
    run_dir, results = switch_run
    manifest = json.loads((run_dir / "adapters" / "manifest.json").read_text())["adapters"]
    assert [e["task"] for e in manifest] == ["upper_case", "add"]
    assert all({"instruction", "data_hash", "date", "bytes"} <= set(e) for e in manifest)
    assert (run_dir / "adapters" / "000-upper_case" / "adapter_config.json").exists()
    assert len(results["matrix"]) == 2 and len(results["matrix"][0]) == 2
    assert set(results["metrics"]) >= {"AP", "BWT", "Forgetting", "FWT"}
    assert results["storage"]["per_task_bytes"]["add"] > 0 and results["storage"]["router_bytes"] > 0
    assert 0 <= results["switch"]["unseen_reject_rate"] <= 1 and results["switch"]["routing_ms_per_example"] > 0
    assert "switch_accuracy" in results["rows"][-1]["routing"]
    assert (run_dir / "matrix.png").stat().st_size > 0 and (run_dir / "ap_curve.png").stat().st_size > 0


def test_mixed_batch_through_the_bank_equals_each_example_with_its_own_adapter(switch_run, tiny_dir):
    method = load_switch(switch_run[0])
    with torch.no_grad():
        for b in method.bank.lora_B:  # trained B is tiny after 3 steps: make the adapters clearly different
            b.normal_(std=0.5)
    model, tok = method.model, method.tokenizer
    batch = encode_left_padded(tok, ["hello world", "a b c d e f", "1 2 3"], model.device)
    routes = [1, 0, -1]
    with torch.no_grad(), method.lora_context(routes):
        mixed = model(**batch).logits
    for b, route in enumerate(routes):
        row = {k: v[b : b + 1] for k, v in batch.items()}
        lora = None if route == -1 else method.bank.adapter(route)
        with torch.no_grad(), conditioned(model, lora=lora):
            alone = model(**row).logits
        torch.testing.assert_close(mixed[b : b + 1], alone, atol=1e-5, rtol=1e-5)
    with torch.no_grad(), method.lora_context([-1, -1, -1]):
        base = model(**batch).logits
    assert not torch.allclose(base[0], mixed[0], atol=1e-3)


def test_retention_buffer_holds_the_configured_count():
    inputs = [f"input {i}" for i in range(40)]
    assert RouterConfig(retention=0.25, retention_min=3).retained(40) == 10
    assert RouterConfig(retention=5, retention_min=3).retained(40) == 5
    assert RouterConfig(retention=0.0001, retention_min=4).retained(40) == 4  # never below the minimum
    buffer = RetentionBuffer()
    cfg = RouterConfig(retention=0.25, retention_min=3, calibration=6)
    assert buffer.add("a", inputs, cfg, seed=0) == 0
    assert buffer.add("b", inputs[:8], cfg, seed=0) == 1
    assert buffer.count(0) == 10 and buffer.count(1) == 3
    assert buffer.calib_labels.count(0) == 6 and not set(buffer.calib_texts[:6]) & set(buffer.texts[:10])
    buffer.keep_first(1)
    assert buffer.tasks == ["a"] and buffer.count(1) == 0 and set(buffer.calib_labels) == {0}
    with pytest.raises(ValueError, match="already holds"):
        buffer.add("a", inputs, cfg, seed=0)


def test_run_retains_the_configured_count(switch_run):
    buffer = RetentionBuffer.load(switch_run[0] / "router" / "retention.json")
    assert [buffer.count(i) for i in range(2)] == [3, 3]


def _clusters(n: int, centres: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([c + 0.05 * torch.randn(n, centres.shape[1], generator=g) for c in centres])
    return x, torch.arange(len(centres)).repeat_interleave(n)


@pytest.mark.parametrize("confidence", ["softmax", "knn"])
def test_router_routes_seen_tasks_and_rejects_low_confidence(confidence):
    centres = torch.eye(8)[:3] * 3
    x, y = _clusters(10, centres, 0)
    router = SwitchRouter(8, 3, RouterConfig(hidden=16, epochs=30, lr=1e-2, confidence=confidence))
    router.fit(x, y, seed=0)
    held, held_y = _clusters(10, centres, 1)
    router.calibrate(held, 0.1)
    routing = router.route(held)
    assert routing.choice == held_y.tolist()
    assert 0 < routing.reject_rate <= 0.2
    rejected = [i for i, r in enumerate(routing.rejected) if r]
    assert all(routing.adapter[i] == -1 for i in rejected)
    assert all(routing.confidence[i] < router.threshold for i in rejected)
    router.threshold = 2.0  # above any confidence: everything is flagged
    assert router.route(held).rejected == [True] * len(held)
    router.cfg = RouterConfig(confidence=confidence, fallback="nearest")
    nearest = router.route(held)
    assert nearest.adapter == nearest.choice and all(nearest.rejected)


def test_knn_confidence_flags_inputs_of_an_unseen_task():
    centres = torch.eye(8)[:4] * 3
    x, y = _clusters(10, centres[:3], 0)
    router = SwitchRouter(8, 3, RouterConfig(hidden=16, epochs=30, lr=1e-2, confidence="knn"))
    router.fit(x, y, seed=0)
    router.calibrate(_clusters(10, centres[:3], 1)[0], 0.05)
    unseen, _ = _clusters(10, centres[3:], 2)
    assert router.route(unseen).reject_rate == 1.0


def test_router_save_load_roundtrip(tmp_path):
    x, y = _clusters(5, torch.eye(4)[:2] * 3, 0)
    router = SwitchRouter(4, 2, RouterConfig(hidden=8, epochs=3))
    router.fit(x, y, seed=0)
    router.calibrate(x, 0.1)
    router.save(tmp_path)
    again = SwitchRouter.load(tmp_path)
    assert again.threshold == router.threshold
    assert again.route(x) == router.route(x)


def test_routing_stats_per_task():
    class Q:  # a stand-in for harness.Query: only .task.name is read
        def __init__(self, name):
            self.task = type("T", (), {"name": name})

    queries = [Q("a"), Q("a"), Q("b"), Q("c")]
    from hyperadapt.methods.switch.router import Routing

    routing = Routing(
        choice=[0, 1, 1, 0],
        confidence=[0.9, 0.8, 0.9, 0.1],
        rejected=[False, False, True, True],
        adapter=[0, 1, -1, -1],
    )
    stats = routing_stats(["a", "b", "c"], 1, queries, routing)
    assert stats["switch_accuracy"] == {"a": 50.0, "b": 100.0}
    assert stats["reject_rate_seen"] == pytest.approx(1 / 3) and stats["reject_rate_future"] == 1.0


def test_metrics_of_a_matrix_grown_by_add_task():
    matrix = [[80.0, 10.0, None], [70.0, 90.0, None], [70.0, 90.0, 60.0]]
    m = stream_metrics(matrix, [5.0, 10.0, 20.0])
    assert m["over_tasks"] == 2 and m["AP"] == pytest.approx(220 / 3)
    assert m["BWT"] == pytest.approx(-10.0) and m["Forgetting"] == pytest.approx(10.0) and m["FWT"] == 0.0


def test_resume_after_task_k_gives_the_same_result(switch_run, tiny_dir, tmp_path):
    run_dir = tmp_path / "resumed"
    cfg = tiny_config(str(tiny_dir))
    partial = run_stream(cfg, run_dir, "switchcit", stop_after=1)
    assert partial["completed"] == 1 and not (run_dir / "adapters" / "001-add").exists()
    resumed = run_stream(cfg, run_dir, "switchcit", resume=True)
    straight_dir, straight = switch_run
    assert resumed["matrix"] == straight["matrix"] and resumed["zero_shot"] == straight["zero_shot"]
    assert {k: v for k, v in _hashes(run_dir).items() if "task.json" not in k} == {
        k: v for k, v in _hashes(straight_dir).items() if "task.json" not in k
    }
    a = (run_dir / "router" / "router.safetensors").read_bytes()
    assert a == (straight_dir / "router" / "router.safetensors").read_bytes()


def test_add_task_leaves_earlier_adapters_byte_identical(run_copy):
    before = _hashes(run_copy)
    train, test = synthetic_stream(0, 3)[2]
    results = add_task(run_copy, train.head(12), test)
    after = _hashes(run_copy)
    assert {k: after[k] for k in before} == before
    assert any(k.startswith("adapters/002-reverse_list") for k in after)
    assert results["tasks"][-1] == "reverse_list" and len(results["matrix"]) == 3
    assert results["matrix"][0][2] is None and results["matrix"][2][2] is not None
    assert RetentionBuffer.load(run_copy / "router" / "retention.json").tasks == ["upper_case", "add", "reverse_list"]
    answers = answer_inputs(run_copy, ["Definition: Reverse the list.\n\nInput: a, b, c"], [], max_new_tokens=3)
    assert len(answers) == 1 and answers[0].route in ("rejected", "task: upper_case", "task: add", "task: reverse_list")


def test_rerunning_the_stream_of_a_run_with_an_added_task_keeps_the_task(run_copy, tiny_dir):
    train, test = synthetic_stream(0, 3)[2]
    added = add_task(run_copy, train.head(12), test)
    adapters = {k: v for k, v in _hashes(run_copy).items() if k.startswith("adapters/")}
    again = run_stream(tiny_config(str(tiny_dir)), run_copy, "switchcit")  # the command that started the run
    assert again["tasks"] == added["tasks"] == ["upper_case", "add", "reverse_list"]
    assert again["matrix"] == added["matrix"] and again["switch"]["n_seen"] == added["switch"]["n_seen"]
    assert json.loads((run_copy / "results.json").read_text())["matrix"] == added["matrix"]
    assert {k: v for k, v in _hashes(run_copy).items() if k.startswith("adapters/")} == adapters


def test_add_task_errors(run_copy, tmp_path, tiny_dir):
    train, test = synthetic_stream(0, 1)[0]
    with pytest.raises(ValueError, match="already exists"):
        add_task(run_copy, train, test)
    empty = synthetic_stream(0, 3)[2][0]
    empty.instances = []
    with pytest.raises(ValueError, match="is empty"):
        add_task(run_copy, empty)
    with pytest.raises(FileNotFoundError, match="not a continual run"):
        add_task(tmp_path / "nothing", train, test)
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"method": "multitask-lora", "config": {}}))
    with pytest.raises(ValueError, match="not a continual run"):
        add_task(other, train, test)
    with pytest.raises(ValueError, match="not a continual run"):
        load_switch(other)
    with pytest.raises(ValueError, match="not a continual run"):
        run_stream(tiny_config(str(tiny_dir)), other, "switchcit", model_and_tokenizer=tiny_model())


def test_load_task_spec(tmp_path):
    train, test = load_task_spec("synthetic:plural")
    assert train.name == test.name == "plural" and train.instances and test.instances
    with pytest.raises(ValueError, match="no synthetic task"):
        load_task_spec("synthetic:nope")
    with pytest.raises(ValueError, match="cannot read task"):
        load_task_spec(str(tmp_path / "x.txt"))


def test_config_errors():
    with pytest.raises(ValueError, match="not a stream"):
        SwitchConfig(stream="sni:somewhere")
    with pytest.raises(ValueError, match="router.encoder"):
        RouterConfig(encoder="opt")
    with pytest.raises(ValueError, match="router.fallback"):
        RouterConfig(fallback="random")
    with pytest.raises(ValueError, match="router.retention"):
        RouterConfig(retention=2.5)
    with pytest.raises(ValueError, match="reject_quantile"):
        RouterConfig(reject_quantile=0.7)
    with pytest.raises(ValueError, match="SPEC@SPLIT"):
        SwitchConfig(unseen="synthetic")
    with pytest.raises(ValueError, match="unknown continual method"):
        run_stream(SwitchConfig(), "/nonexistent", method="ewc")


def test_queries_cover_every_task_of_the_stream(tiny_dir):
    from hyperadapt.methods.continual.stream import make_context

    ctx = make_context(tiny_config(str(tiny_dir)), "/tmp/unused", tiny_model())
    queries = make_test_queries(ctx)
    assert [q.task.name for q in queries] == ["upper_case", "upper_case", "add", "add"]

"""SwitchCIT's reject option: the scores on hand-made features, per-task calibration, calibration inputs never
taken from test data, save/load, a resumed run with kept features (and bf16 adapters), and the reject
benchmark's rules."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from test_switch_helpers import tiny_config

from hyperadapt.benchmarks.reject import judge, rules
from hyperadapt.config import from_dict
from hyperadapt.data.schema import Instance, Task
from hyperadapt.methods.continual import run_stream
from hyperadapt.methods.continual.stream import StreamTask
from hyperadapt.methods.switch import RetentionBuffer, RouterConfig, SwitchConfig, SwitchRouter
from hyperadapt.methods.switch.learner import retain_task
from hyperadapt.methods.switch.router import ledoit_wolf, make_router_encoder

SQUARE = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])  # centred, covariance exactly I


def _router(confidence: str, keys: torch.Tensor, labels: torch.Tensor, **cfg) -> SwitchRouter:
    """A 2-d switch fitted on ``keys`` (its MLP routes by the nearest cluster), scoring with ``confidence``; it
    keeps its features in float32 unless ``cfg`` says otherwise, so that the scores are exact."""
    cfg = {"feature_dtype": "float32", **cfg}
    router = SwitchRouter(
        2, int(labels.max()) + 1, RouterConfig(hidden=8, epochs=40, lr=3e-2, confidence=confidence, **cfg)
    )
    router.fit(keys, labels, seed=0)
    return router


def test_energy_is_the_logsumexp_of_the_logits_and_softmax_the_max_probability():
    x, y = torch.cat([SQUARE, SQUARE + 10]), torch.tensor([0] * 4 + [1] * 4)
    probe = torch.tensor([[0.0, 0.5], [9.0, 10.0], [50.0, -50.0]])
    logits = _router("softmax", x, y).logits(probe)
    for kind, expected in (("energy", logits.logsumexp(-1)), ("softmax", logits.softmax(-1).max(-1).values)):
        router = _router(kind, x, y)
        choice, score = router.confidence(probe)
        assert torch.allclose(score, expected, atol=1e-6) and choice.tolist() == [0, 1, int(logits[2].argmax())]


def test_knn_score_is_the_cosine_to_the_kth_nearest_kept_input_of_the_chosen_task():
    keys = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [-1.0, 0.0], [-0.8, -0.6], [-0.6, -0.8]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    probe = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # cosines to task 0's keys: (1, .8, .6) and (0, .6, .8)
    for k, expected in ((1, [1.0, 0.8]), (2, [0.8, 0.6]), (3, [0.6, 0.0]), (9, [0.6, 0.0])):  # k capped at 3
        choice, score = _router("knn", keys, labels, knn_k=k).confidence(probe)
        assert choice.tolist() == [0, 0] and torch.allclose(score, torch.tensor(expected), atol=1e-6)


def test_mahalanobis_score_is_minus_the_squared_distance_to_the_nearest_task_mean():
    keys, labels = torch.cat([SQUARE, SQUARE + torch.tensor([10.0, 0.0])]), torch.tensor([0] * 4 + [1] * 4)
    router = _router("mahalanobis", keys, labels)
    _, score = router.confidence(torch.tensor([[0.0, 3.0], [9.0, 1.0], [5.0, 0.0]]))
    assert torch.allclose(score, torch.tensor([-9.0, -2.0, -25.0]), atol=1e-5)  # covariance I, means (0,0), (10,0)
    stretched = torch.cat([SQUARE * torch.tensor([3.0, 1.0]), SQUARE * torch.tensor([3.0, 1.0]) + 10])
    _, score = _router("mahalanobis", stretched, labels).confidence(torch.tensor([[3.0, 0.0], [0.0, 3.0]]))
    var = ledoit_wolf(torch.cat([SQUARE, SQUARE]) * torch.tensor([3.0, 1.0])).diagonal()  # about (8.7, 1.3)
    assert 1 < var[0] / var[1] < 9  # variance 9 along x, 1 along y, shrunk towards each other
    assert torch.allclose(score.double(), -9 / var, atol=1e-4)


def test_ledoit_wolf_keeps_the_trace_and_is_invertible_with_fewer_rows_than_dimensions():
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x - x.mean(0)
    sample = x.T @ x / 5
    shrunk = ledoit_wolf(x)
    assert torch.linalg.matrix_rank(sample) < 12 and torch.linalg.eigvalsh(shrunk).min() > 0
    assert math.isclose(float(shrunk.trace()), float(sample.trace()), rel_tol=1e-9)
    assert torch.allclose(ledoit_wolf(SQUARE), torch.eye(2, dtype=torch.float64))  # already spherical: unchanged


def test_per_task_calibration_sets_one_threshold_per_task_from_its_own_inputs():
    keys, labels = torch.cat([SQUARE, SQUARE + 10]), torch.tensor([0] * 4 + [1] * 4)
    router = _router("mahalanobis", keys, labels, calibrate_per="task")
    calib = torch.cat([SQUARE * 0.5, SQUARE * 2 + 10])  # task 1's calibration inputs lie further out
    with pytest.raises(ValueError, match="task label"):
        router.calibrate(calib, 0.25)
    router.calibrate(calib, 0.25, labels)
    _, score = router.confidence(calib)
    expected = [float(torch.quantile(score[labels == t], 0.25)) for t in (0, 1)]
    assert router.task_thresholds == pytest.approx(expected) and expected[1] < expected[0]
    routing = router.route(torch.tensor([[1.5, 1.5], [11.5, 11.5]]))  # same offset from each mean
    assert routing.choice == [0, 1] and routing.rejected == [True, False]  # judged by its own task's threshold
    router.calibrate(calib, 0.0, labels)
    assert router.task_thresholds is None and not any(router.route(calib * 100).rejected)


def test_save_load_round_trip_keeps_score_bank_and_task_thresholds(tmp_path):
    keys, labels = torch.cat([SQUARE, SQUARE + 10]), torch.tensor([0] * 4 + [1] * 4)
    bank = torch.cat([SQUARE * 1.5, SQUARE * 1.5 + 10, SQUARE + 10]), torch.tensor([0] * 4 + [1] * 8)
    router = SwitchRouter(
        2, 2, RouterConfig(hidden=8, epochs=5, confidence="mahalanobis", calibrate_per="task", reject_bank=6)
    )
    router.fit(keys, labels, seed=0, bank=bank)
    router.calibrate(keys, 0.3, labels)
    router.save(tmp_path)
    again = SwitchRouter.load(tmp_path)
    assert len(again.keys) == 12 and again.task_thresholds == router.task_thresholds
    probe = torch.randn(20, 2, generator=torch.Generator().manual_seed(1)) * 6
    assert again.route(probe) == router.route(probe)
    meta = json.loads((tmp_path / "router.json").read_text())  # a switch saved before these keys existed
    for key in ("knn_k", "reject_bank", "calibrate_per"):
        del meta["router"][key]
    del meta["task_thresholds"]
    (tmp_path / "router.json").write_text(json.dumps(meta))
    old = SwitchRouter.load(tmp_path)
    assert (old.cfg.calibrate_per, old.cfg.knn_k, old.task_thresholds) == ("global", 1, None)


def test_a_float16_switch_keeps_its_features_in_float16_and_routes_alike_once_read_back(tmp_path):
    gen = torch.Generator().manual_seed(0)
    keys = torch.cat([torch.randn(30, 8, generator=gen), torch.randn(30, 8, generator=gen) + 3]) / 7
    labels = torch.tensor([0] * 30 + [1] * 30)
    router = SwitchRouter(8, 2, RouterConfig(hidden=8, epochs=5, confidence="mahalanobis", feature_dtype="float16"))
    router.fit(keys, labels, seed=0)
    assert torch.equal(router.keys, keys.half().float()) and not torch.equal(router.keys, keys)  # rounded
    router.calibrate(keys, 0.1)
    router.save(tmp_path)
    assert load_file(tmp_path / "router.safetensors")["keys"].dtype == torch.float16
    again = SwitchRouter.load(tmp_path)
    probe = torch.randn(40, 8, generator=gen) / 3
    assert again.keys.dtype == torch.float32 and again.route(probe) == router.route(probe)
    with pytest.raises(ValueError, match="router.feature_dtype"):
        RouterConfig(feature_dtype="int8")
    nan_query = torch.full((1, 8), float("nan"))
    assert router.route(nan_query).rejected == [True]  # no score: not like any seen task
    loud = SwitchRouter(8, 2, RouterConfig(hidden=8, epochs=1, feature_dtype="float16"))
    with pytest.raises(
        ValueError,
        match=r"up to 1\.014e\+05 do not fit router.feature_dtype float16 \(at most 65504\): use router.feature_dtype: "
        "float32",
    ):
        loud.fit(keys * 1e5, labels, seed=0)
    broken = keys.clone()
    broken[3, 1] = float("nan")
    for dtype in ("float16", "float32"):
        with pytest.raises(ValueError, match="1 of 480 switch feature values are NaN or infinite"):
            SwitchRouter(8, 2, RouterConfig(hidden=8, epochs=1, feature_dtype=dtype)).fit(broken, labels, seed=0)


def test_bank_needs_every_task():
    router = SwitchRouter(2, 2, RouterConfig(hidden=8, epochs=1))
    with pytest.raises(ValueError, match="kept features of all 2 tasks"):
        router.fit(
            torch.cat([SQUARE, SQUARE + 10]),
            torch.tensor([0] * 4 + [1] * 4),
            0,
            bank=(SQUARE, torch.zeros(4, dtype=torch.long)),
        )
    with pytest.raises(ValueError, match="router.reject_bank"):
        RouterConfig(reject_bank=-1)
    with pytest.raises(ValueError, match="router.calibrate_per"):
        RouterConfig(calibrate_per="class")
    with pytest.raises(ValueError, match="router.knn_k"):
        RouterConfig(knn_k=0)


def _task(name: str, split: str, n: int) -> Task:
    return Task(name, f"Do {name}.", [Instance(f"{name}-{split}-{i}", f"{split} input {i}", ("x",)) for i in range(n)])


def _stream() -> list[StreamTask]:
    return [StreamTask(n, _task(n, "train", 30), _task(n, "test", 6), _task(n, "dev", 8)) for n in ("a", "b")]


def test_dev_calibration_never_reads_test_inputs_and_the_bank_skips_held_out_inputs():
    stream = _stream()
    cfg = SwitchConfig(
        stream="cl:nowhere#1",
        router=RouterConfig(retention=4, retention_min=4, calibration=5, calibrate_on="dev", reject_bank=10),
    )
    buffer = RetentionBuffer()
    banks = [retain_task(buffer, cfg, task, k) for k, task in enumerate(stream)]
    assert [(label, source, len(bank)) for label, source, bank in banks] == [(0, "dev", 10), (1, "dev", 10)]
    assert all("dev input" in t for t in buffer.calib_texts) and len(buffer.calib_texts) == 10
    assert not any("test input" in t for t in [*buffer.texts, *buffer.calib_texts, *banks[0][2], *banks[1][2]])
    assert banks[0][2][:4] == buffer.texts[:4]  # the retained inputs first
    train_cfg = SwitchConfig(
        stream="cl:nowhere#1",
        router=RouterConfig(retention=4, retention_min=4, calibration=5, calibrate_on="train", reject_bank=10),
    )
    held = RetentionBuffer()
    _, source, bank = retain_task(held, train_cfg, stream[0], 0)
    assert source == "train" and not set(bank) & set(held.calib_texts) and len(bank) == 10


def _fake_encode(texts: list[str]) -> torch.Tensor:
    """Task a around 10 e1, b around 10 e2, other tasks around 10 e3; the offset from the text's number."""

    def vec(text: str) -> list[float]:
        i = int(text.rsplit(" ", 1)[-1])
        axis = 0 if "Do a." in text else 1 if "Do b." in text else 2
        return [10.0 * (axis == d) + math.cos(i + d) for d in range(3)]

    return torch.tensor([vec(t) for t in texts])


def test_judge_calibrates_on_dev_only_and_reports_every_rule():
    stream = _stream()
    cfg = SwitchConfig(
        stream="cl:nowhere#1",
        router=RouterConfig(
            retention=4, retention_min=4, calibration=5, calibrate_on="dev", hidden=8, epochs=50, lr=1e-2
        ),
    )
    seen_task = torch.tensor([0] * 6 + [1] * 6)
    unseen = _fake_encode([f"Do c. input {i}" for i in range(6)])
    args = argparse.Namespace(
        banks=[0, 10],
        calibrations=[5],
        confidences=["knn", "mahalanobis"],
        knn_k=[1, 3],
        calibrate_per=["global", "task"],
        quantiles=[0.1],
        feature_dtypes=None,
    )
    grid = rules(cfg, args, "sentence")
    assert len(grid) == 2 * (2 + 1) * 2 and {r.knn_k for r in grid if r.confidence == "mahalanobis"} == {1}
    assert {r.feature_dtype for r in grid} == {"float16"}  # the config's, today's default
    oracle = {"matrix": [[50.0, 30.0]], "zero_shot": [10.0, 20.0]}
    for router in grid:
        run = SwitchConfig(stream=cfg.stream, router=router)
        seen = _fake_encode([f"Do {n}. test input {i}" for n in "ab" for i in range(6)])
        a = judge(run, stream, seen, seen_task, unseen, _fake_encode, oracle)
        b = judge(run, stream, seen * 0 + 1, seen_task, unseen, _fake_encode, oracle)  # other test features
        assert (a["threshold"], a["task_thresholds"]) == (b["threshold"], b["task_thresholds"])
        assert a["reject_auroc"] == 1.0 and a["unseen_reject_rate"] == 1.0 and a["switch_accuracy"] == 1.0
        share = list(a["seen_rejected_per_task"].values())
        assert a["ap_estimate"] == pytest.approx(
            ((1 - share[0]) * 50 + share[0] * 10 + (1 - share[1]) * 30 + share[1] * 20) / 2
        )
        assert a["kept_features"] == (20 if router.reject_bank else 8)
        assert a["switch_bytes"] > 4 * 3 * a["kept_features"]  # at least the kept features, in float32
        assert b["routing_digest"] != a["routing_digest"]  # every seen input now routed alike
        full = judge(replace(run, router=replace(router, feature_dtype="float32")), stream, seen, seen_task, unseen,
                     _fake_encode, oracle)  # fmt: skip
        assert full["routing_digest"] == a["routing_digest"] and full["switch_bytes"] > a["switch_bytes"]


def test_resumed_run_with_kept_features_and_per_task_thresholds_equals_an_uninterrupted_one(tiny_dir, tmp_path):
    cfg = tiny_config(
        str(tiny_dir),
        encoder="base_mean",
        confidence="mahalanobis",
        calibrate_per="task",
        reject_bank=6,
        feature_dtype="float16",  # the switch's features kept in float16, read back by the resumed run
    )
    cfg.lora.storage_dtype = "bfloat16"  # and the adapters in bf16, read back for every answer
    straight = run_stream(cfg, tmp_path / "straight", "switchcit")
    run_stream(cfg, tmp_path / "resumed", "switchcit", stop_after=1)
    resumed = run_stream(cfg, tmp_path / "resumed", "switchcit", resume=True)
    assert resumed["switch"]["rule"] == "base_mean/mahalanobis/task/bank6/calib4/q0.02/fp16"
    for name in ("router.safetensors", "retention_features.safetensors"):
        stored = load_file(tmp_path / "resumed" / "router" / name)
        assert {t.dtype for t in stored.values() if t.is_floating_point()} == (
            {torch.float16} if name.startswith("retention") else {torch.float16, torch.float32}  # keys; MLP
        )
    assert len(resumed["switch"]["task_thresholds"]) == 2
    assert resumed["switch"]["task_thresholds"] == straight["switch"]["task_thresholds"]
    router = SwitchRouter.load(tmp_path / "resumed" / "router")
    assert router.key_labels.tolist() == [0] * 6 + [1] * 6
    a, b = (tmp_path / run / "router" / "router.safetensors" for run in ("resumed", "straight"))
    assert a.read_bytes() == b.read_bytes()
    assert resumed["matrix"] == straight["matrix"]
    weights = load_file(next((tmp_path / "resumed" / "adapters").glob("000-*")) / "adapter_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}


def test_a_run_saved_before_the_new_router_keys_keeps_its_rule():
    from hyperadapt.config import to_dict
    from hyperadapt.methods.switch.learner import upgrade_config

    config = to_dict(tiny_config(confidence="knn"))
    for key in ("knn_k", "reject_bank", "calibrate_per"):
        del config["router"][key]
    del config["router"]["feature_dtype"]
    router = from_dict(SwitchConfig, upgrade_config(config)).router
    assert (router.confidence, router.reject_bank, router.calibrate_per, router.knn_k) == ("knn", 0, "global", 1)
    assert router.feature_dtype == "float32"
    today = RouterConfig()
    assert (today.confidence, today.reject_bank, today.feature_dtype) == ("mahalanobis", 200, "float16")


def test_a_run_saved_before_storage_dtype_keeps_float32_adapters_and_today_stores_int8():
    from hyperadapt.config import to_dict
    from hyperadapt.methods.switch.learner import upgrade_config

    config = to_dict(tiny_config())
    del config["lora"]["storage_dtype"]
    assert from_dict(SwitchConfig, upgrade_config(config)).lora.storage_dtype == "float32"
    config["lora"]["storage_dtype"] = "bfloat16"  # a key the run saved is never replaced
    assert from_dict(SwitchConfig, upgrade_config(config)).lora.storage_dtype == "bfloat16"
    assert SwitchConfig().lora.storage_dtype == "int8"
    assert upgrade_config({"model": "x"}) == {"model": "x"}  # a config with neither section passes as it is


def test_a_run_saved_before_feature_dtype_resumes_from_its_own_config_in_float32(tmp_path):
    from hyperadapt.config import load_config, to_dict
    from hyperadapt.methods.continual.runner import start_run
    from hyperadapt.runs import RunDir, new_record

    legacy = to_dict(tiny_config(confidence="knn"))
    for key in ("knn_k", "reject_bank", "calibrate_per", "feature_dtype"):
        del legacy["router"][key]
    RunDir(tmp_path).write(new_record("continual", "switchcit", legacy, None, tasks=["a", "b"], added=[]))
    (tmp_path / "state.json").write_text(json.dumps({"completed": 1, "zero_shot": None, "rows": []}))
    own = load_config(SwitchConfig, tmp_path / "run.json")  # `hyperadapt continual --config RUN/run.json`
    assert (own.router.feature_dtype, own.router.reject_bank, own.router.knn_k) == ("float32", 0, 1)
    assert start_run(SimpleNamespace(cfg=own, run_dir=tmp_path), "switchcit", resume=True)["completed"] == 1
    today = replace(own, router=replace(own.router, feature_dtype="float16"))
    with pytest.raises(ValueError, match=r"differs in router.feature_dtype\): resume it with its own config"):
        start_run(SimpleNamespace(cfg=today, run_dir=tmp_path), "switchcit", resume=True)


def test_a_base_model_router_encoder_without_the_model_names_the_fix():
    with pytest.raises(ValueError, match="'base_mean' router encoder reads the base model"):
        make_router_encoder("base_mean", None, None)
    with pytest.raises(ValueError, match="unknown router encoder 'nope'"):
        make_router_encoder("nope", None, None)

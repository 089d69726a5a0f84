"""Serving parts without HTTP: the byte-bounded cache, vLLM's adapter constraints, loading run folders, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from serve_helpers import megan_method
from tests.cli_helpers import runner

from hyperadapt.cli import app
from hyperadapt.config import to_dict
from hyperadapt.core import AdapterBank, export_peft, inject
from hyperadapt.io import save_json
from hyperadapt.methods.megan import MeganConfig, save_hypernetwork
from hyperadapt.models import load_base_model
from hyperadapt.serve import ByteLRU, ServeConfig, build_server, check_vllm_adapter, vllm_problems
from hyperadapt.serve.conditioning import BetaSource, RowCondition, batch_conditioning
from hyperadapt.testing import tiny_model


def test_byte_lru_evicts_least_recently_used_and_counts_hits():
    cache = ByteLRU(max_bytes=3 * 400)
    for key in "abc":
        cache.put(key, torch.zeros(100))  # 400 bytes each
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", torch.zeros(100))
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.get("b") is None
    assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 1 and cache.evictions == 1
    assert cache.put("huge", torch.zeros(1000)) is False and cache.bytes <= cache.max_bytes


def export_bank_adapter(tmp_path, rank=4, targets=("q_proj", "v_proj")):
    model, _ = tiny_model()
    inject(model, targets, gating=False)
    bank = AdapterBank.for_model(model, 1, rank=rank, targets=targets)
    return export_peft(model, bank.adapter(0), tmp_path / "adapter"), model


def test_vllm_constraints(tmp_path):
    folder, _ = export_bank_adapter(tmp_path)
    assert vllm_problems(folder, 8) == []
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(
        json.dumps({**config, "r": 4, "rank_pattern": {"x": 2}, "target_modules": ["q_proj", "lm_head"]})
    )
    problems = " ".join(vllm_problems(folder, 8))
    assert "rank_pattern" in problems and "lm_head" in problems
    (folder / "adapter_config.json").write_text(json.dumps({**config, "r": 16}))
    with pytest.raises(ValueError, match="outside 1..8"):
        check_vllm_adapter(folder, 8)
    with pytest.raises(ValueError, match="not a vLLM rank"):
        vllm_problems(folder, 12)


def test_mixed_ranks_and_modules_pad_to_one_batch():
    a = {"m.q": (torch.ones(2, 3), torch.ones(4, 2))}
    b = {"m.q": (torch.ones(4, 3), torch.ones(4, 4)), "m.v": (torch.ones(1, 3), torch.ones(5, 1))}
    lora, beta = batch_conditioning([RowCondition(a), RowCondition(), RowCondition(b)])
    assert beta is None and lora.factors["m.q"][0].shape == (3, 4, 3) and lora.factors["m.v"][1].shape == (3, 5, 1)
    assert lora.factors["m.q"][0][1].abs().sum() == 0 and lora.factors["m.v"][0][0].abs().sum() == 0
    shared, _ = batch_conditioning([RowCondition(a), RowCondition(a)])
    assert shared.shared and shared.batch_size == 2


class SomeGates:
    """A β maker that gates only the layers in ``gated``: its ``beta_fn`` gives None (β ≡ 1, as ``BetaFn``
    allows) for the others."""

    def __init__(self, gated):
        self.gated = gated

    def group_beta_fn(self, sources):
        def fn(layer, x):  # x [b, T, 2] -> β [b, 1, 3]
            return torch.stack([s.channel for s in sources])[:, None, :] if layer in self.gated else None

        return fn


def test_a_beta_group_may_leave_a_layer_ungated():
    one = BetaSource(SomeGates({1}), channel=torch.full((3,), 2.0))
    both = BetaSource(SomeGates({0, 1}), channel=torch.full((3,), 3.0))
    _, beta = batch_conditioning([RowCondition(beta=one), RowCondition(), RowCondition(beta=one)])
    x = torch.zeros(3, 4, 2)  # [B, T, H]
    assert beta(0, x) is None  # no group gates layer 0: the base model's MLP
    assert beta(1, x).tolist() == [[[2.0] * 3], [[1.0] * 3], [[2.0] * 3]]
    _, mixed = batch_conditioning([RowCondition(beta=one), RowCondition(beta=both), RowCondition()])
    assert mixed(0, x).tolist() == [[[1.0] * 3], [[3.0] * 3], [[1.0] * 3]]
    assert mixed(1, x).tolist() == [[[2.0] * 3], [[3.0] * 3], [[1.0] * 3]]


def test_build_server_loads_run_folders_and_adapters(tiny_dir, tmp_path):
    model, tok = load_base_model(str(tiny_dir))
    method = megan_method(model, tok)
    run = tmp_path / "megan"
    save_json({"method": "megan", "config": to_dict(MeganConfig(model=str(tiny_dir)))}, run / "run.json")
    save_hypernetwork(method.hypernet, model, run / "hypernetwork")
    adapter, _ = export_bank_adapter(tmp_path)
    server = build_server([f"style={run}"], ServeConfig(), adapters=[f"mine={adapter}"])
    assert {n: t.kind for n, t in server.targets.items()} == {"base": "base", "style": "megan", "mine": "adapter"}
    save_json(
        {"kind": "continual", "method": "oracle", "config": {}, "status": "finished"}, tmp_path / "oracle" / "run.json"
    )
    with pytest.raises(ValueError, match="'oracle' run, which cannot be loaded"):
        build_server([str(tmp_path / "oracle")])
    with pytest.raises(ValueError, match="export_lora_rank"):
        ServeConfig(export_lora_rank=12)


def test_cli_serve_help_and_errors(tmp_path):
    assert "OpenAI-compatible" in runner.invoke(app, ["serve", "--help"]).output
    result = runner.invoke(app, ["serve", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    port = runner.invoke(app, ["serve", str(tmp_path / "missing"), "--port", "99999"])
    assert port.exit_code == 2 and "--port" in port.output


@pytest.mark.parametrize(
    "runs, adapters, message",
    [
        (["a=x", "a=y"], [], "two things are named 'a'"),  # the second would replace the first without a word
        (["a=x"], ["a=z"], "two things are named 'a'"),
        (["base=x"], [], "two things are named 'base'"),
        (["=x"], [], "empty name"),
        (["a="], [], "names no folder"),
    ],
)
def test_serve_refuses_unusable_names_before_loading_anything(runs, adapters, message):
    with pytest.raises(ValueError, match=message):
        build_server(runs, ServeConfig(), adapters=adapters)  # the folders do not exist: nothing was read


def test_the_benchmarks_load_driver_sends_every_body_and_counts_the_answer_tokens():
    import asyncio

    from serve_helpers import tiny_server

    from hyperadapt.benchmarks.common import drive_load
    from hyperadapt.serve import RunningServer, create_app

    running = RunningServer(create_app(tiny_server()))
    try:
        bodies = [{"model": "base", "prompt": f"hello {i}", "max_tokens": 2, "temperature": 0} for i in range(3)]
        got = asyncio.run(drive_load(running.url, bodies, clients=2))
    finally:
        running.stop()
    assert got["requests"] == 3 and got["clients"] == 2
    assert got["tokens_per_s"] > 0 and 0 < got["p50_s"] <= got["p99_s"]

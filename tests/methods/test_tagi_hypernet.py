"""TAGI's hypernetwork: output shapes across architectures and ranks, ΔW = 0 at initialisation."""

from __future__ import annotations

import pytest
import torch

from hyperadapt.core import LINEAR_MODULES, conditioned, inject, target_linears
from hyperadapt.methods.tagi import TagiHypernetwork
from hyperadapt.methods.tagi.hypernet import parse_module
from hyperadapt.testing import tiny_model


def make(arch: str, rank: int, targets, layers: int = 2):
    model, tok = tiny_model(arch, layers=layers)
    shapes = {n: (m.in_features, m.out_features) for n, m in target_linears(model, targets).items()}
    torch.manual_seed(0)
    return model, tok, shapes, TagiHypernetwork(shapes, input_dim=12, rank=rank, alpha=2 * rank, hidden=16, blocks=1)


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "qwen3"])
@pytest.mark.parametrize(("rank", "targets"), [(2, ("q_proj", "v_proj")), (4, LINEAR_MODULES)])
def test_factor_shapes(arch, rank, targets):
    _, _, shapes, net = make(arch, rank, targets, layers=3)
    factors = net.factors(torch.randn(5, 12))
    assert set(factors) == set(shapes) and len(factors) == 3 * len(targets)
    for name, (a, b) in factors.items():
        fan_in, fan_out = shapes[name]
        assert a.shape == (5, rank, fan_in) and b.shape == (5, fan_out, rank)
    assert net.parameter_count() == sum(p.numel() for p in net.parameters()) > 0
    assert net.scale == 2.0


def test_index_gathers_rows_and_one_row_is_shared():
    _, _, _, net = make("llama", 2, ("q_proj", "v_proj"))
    vectors = torch.randn(3, 12)
    lora = net(vectors, torch.tensor([2, 0, 2, 1]))
    rows = net.factors(vectors)
    for name, (a, b) in lora.factors.items():
        assert torch.equal(a, rows[name][0][[2, 0, 2, 1]]) and torch.equal(b, rows[name][1][[2, 0, 2, 1]])
    shared = net(vectors[:1], torch.zeros(4, dtype=torch.long))
    assert shared.shared and shared.batch_size == 4


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_generated_adapter_starts_at_zero_delta(arch):
    model, tok, _, net = make(arch, 4, LINEAR_MODULES)
    ids = tok(["the answer is", "a b c d e f"], return_tensors="pt", padding=True)
    base = model(**ids).logits
    inject(model, LINEAR_MODULES, gating=False)
    lora = net(torch.randn(2, 12), torch.tensor([0, 1]))
    with conditioned(model, lora=lora):
        out = model(**ids).logits
    assert torch.equal(out, base)
    for name in lora.modules:
        assert lora.example(0).delta(name).abs().max() == 0


def test_b_head_gets_gradient_at_initialisation():
    model, tok, _, net = make("llama", 4, ("q_proj", "v_proj"))
    inject(model, ("q_proj", "v_proj"), gating=False)
    ids = tok(["the answer is a"], return_tensors="pt")
    with conditioned(model, lora=net(torch.randn(1, 12), torch.tensor([0]))):
        model(**ids).logits.square().mean().backward()
    assert all(net.head_b[k].weight.grad.abs().sum() > 0 for k in net.kinds)


def test_bad_inputs_are_clear_errors():
    _, _, shapes, net = make("llama", 2, ("q_proj",))
    with pytest.raises(ValueError, match=r"must be \[N, 12\]"):
        net.factors(torch.randn(2, 7))
    with pytest.raises(ValueError, match="at least one target"):
        TagiHypernetwork({}, 12)
    assert parse_module("model.layers.3.self_attn.q_proj") == (3, "q_proj")
    with pytest.raises(ValueError, match="cannot read layer"):
        parse_module("lm_head")

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


def test_spread_splits_the_adapter_into_shared_generated_and_instruction_parts():
    _, _, shapes, _ = make("llama", 2, ("q_proj", "v_proj"))
    torch.manual_seed(1)
    net = TagiHypernetwork(shapes, input_dim=12, rank=2, alpha=4, hidden=16, blocks=1, shared=True)
    vectors = torch.randn(4, 12)
    zero = net.spread(vectors)  # at initialisation B0 = 0 and B's head = 0: no adapter at all
    assert zero["shared"] == zero["generated"] == zero["instruction"] == zero["instruction_share"] == 0.0
    with torch.no_grad():
        for b in net.shared_b:
            b.normal_()
        for kind in net.kinds:  # the generated part through the biases only: the same for every instruction
            net.head_b[kind].bias.normal_()
            net.head_a[kind].weight.zero_()
    constant = net.spread(vectors)
    expected = sum(
        float((net.scale * b @ a).detach().pow(2).sum()) for a, b in zip(net.shared_a, net.shared_b, strict=True)
    )
    assert constant["shared"] == pytest.approx(expected**0.5, rel=1e-5)
    assert constant["generated"] > 0 and constant["instruction"] < 1e-6 * constant["generated"]
    with torch.no_grad():
        for head in net.head_b.values():
            head.weight.normal_()  # now B reads the instruction (A still does not)
    varied = net.spread(vectors)
    assert varied["instruction"] > 0 and 0 < varied["instruction_share"] < 1
    assert varied["shared"] == pytest.approx(constant["shared"])
    same = net.spread(vectors[:1].repeat(3, 1))  # one instruction three times: nothing to tell apart
    assert same["instruction"] < 1e-6 * same["generated"]
    with pytest.raises(ValueError, match="at least 2 instruction vectors"):
        net.spread(vectors[:1])

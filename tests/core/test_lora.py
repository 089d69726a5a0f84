import pytest
import torch
from core_helpers import batch_of, make_peft, peft_adapter, random_bank

from hyperadapt.core import ConditionedLinear, LoraConditioning, conditioned, inject
from hyperadapt.testing import TINY_ARCHITECTURES, tiny_model


def stack(adapters: list[LoraConditioning]) -> LoraConditioning:
    """One adapter per example from single adapters with the same scale."""
    factors = {
        name: (torch.cat([a.factors[name][0] for a in adapters]), torch.cat([a.factors[name][1] for a in adapters]))
        for name in adapters[0].factors
    }
    return LoraConditioning(factors, adapters[0].scale)


def test_unconditioned_wrappers_are_exact():
    model, tok = tiny_model("llama")
    batch = batch_of(tok)
    ref = model(**batch).logits
    inject(model)
    assert torch.equal(model(**batch).logits, ref)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_shared_adapter_matches_peft(arch):
    model, tok = tiny_model(arch)
    batch = batch_of(tok)
    peft_model = make_peft(tiny_model(arch)[0])
    with torch.no_grad():
        want = peft_model(**batch).logits
    lora = peft_adapter(peft_model)
    inject(model)
    with torch.no_grad(), conditioned(model, lora=lora):
        got = model(**batch).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert not torch.allclose(got, model(**batch).logits, atol=1e-3)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_per_example_adapters_match_peft_mixed_batch(arch):
    model, tok = tiny_model(arch)
    batch = batch_of(tok)
    names = ["x", "y", "z"]
    peft_model = make_peft(tiny_model(arch)[0], adapters=names)
    with torch.no_grad():
        want = peft_model(**batch, adapter_names=["z", "x", "y"]).logits
    lora = stack([peft_adapter(peft_model, n) for n in ["z", "x", "y"]])
    inject(model)
    with torch.no_grad(), conditioned(model, lora=lora):
        got = model(**batch).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_per_example_equals_each_example_alone():
    model, tok = tiny_model("llama")
    inject(model)
    bank = random_bank(model, 3)
    batch = batch_of(tok)
    with conditioned(model, lora=bank.conditioning([2, 0, 1])):
        together = model(**batch).logits
    for row, i in enumerate([2, 0, 1]):
        with conditioned(model, lora=bank.adapter(i)):
            alone = model(**batch).logits[row]
        torch.testing.assert_close(together[row], alone, atol=1e-5, rtol=0)


def test_per_example_scale():
    model, tok = tiny_model("llama")
    inject(model)
    batch = batch_of(tok, 2)
    lora = random_bank(model, 2).conditioning([0, 1])
    base = model(**batch).logits
    with conditioned(model, lora=LoraConditioning(lora.factors, torch.tensor([0.0, 1.0]) * lora.scale)):
        scaled = model(**batch).logits
    with conditioned(model, lora=lora):
        full = model(**batch).logits
    torch.testing.assert_close(scaled[0], base[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(scaled[1], full[1], atol=1e-6, rtol=0)


def test_generated_factors_are_differentiable():
    model, tok = tiny_model("llama")
    inject(model, targets=["q_proj", "v_proj"])
    batch = batch_of(tok, 2)
    producer = torch.nn.Parameter(torch.randn(2, 8) * 0.1)  # stands in for a hypernetwork's output
    factors = {}
    for m in model.modules():
        if isinstance(m, ConditionedLinear):
            a = producer[:, :4, None].expand(2, 4, m.in_features)  # A: [B, r, in]
            b = producer[:, None, 4:].expand(2, m.out_features, 4)  # B: [B, out, r]
            factors[m.name] = (a, b)
    with conditioned(model, lora=LoraConditioning(factors)):
        model(**batch, labels=batch.input_ids).loss.backward()
    assert producer.grad is not None and producer.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_wrong_factor_shapes_are_refused():
    model, tok = tiny_model("llama")
    inject(model)
    name = "model.layers.0.self_attn.q_proj"
    with pytest.raises(ValueError, match="must be A"):
        LoraConditioning({name: (torch.zeros(2, 4, 32), torch.zeros(32, 4))})
    with pytest.raises(ValueError, match="rank mismatch"):
        LoraConditioning({name: (torch.zeros(2, 4, 32), torch.zeros(2, 32, 8))})
    misfit = LoraConditioning({name: (torch.zeros(2, 4, 31), torch.zeros(2, 32, 4))})
    with pytest.raises(ValueError, match="do not fit the layer"), conditioned(model, lora=misfit):
        pass
    with pytest.raises(ValueError, match="disagree on the batch size"):
        LoraConditioning(
            {
                name: (torch.zeros(2, 4, 32), torch.zeros(2, 32, 4)),
                "other": (torch.zeros(3, 4, 32), torch.zeros(3, 32, 4)),
            }
        )


def test_batch_size_mismatch_is_refused():
    model, tok = tiny_model("llama")
    inject(model)
    lora = random_bank(model, 2).conditioning([0, 1])
    expected = "conditioning is for a batch of 2 but the input has a batch of 3"
    with pytest.raises(ValueError, match=expected), conditioned(model, lora=lora):
        model(**batch_of(tok, 3))


def test_unwrapped_module_is_refused():
    model, tok = tiny_model("llama")
    inject(model, targets=["q_proj"])
    lora = random_bank(model, 1, targets=["q_proj"]).adapter(0)
    factors = {name.replace("q_proj", "k_proj"): f for name, f in lora.factors.items()}
    expected = r"not wrapped.*inject\(model, targets=\['k_proj'\]\)"
    with pytest.raises(ValueError, match=expected), conditioned(model, lora=LoraConditioning(factors)):
        pass

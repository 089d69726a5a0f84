import pytest
import torch
from core_helpers import batch_of

from hyperadapt.core import GatedMLP, conditioned, inject, swish_beta
from hyperadapt.testing import TINY_ARCHITECTURES, tiny_model


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("grad", [False, True])
def test_beta_one_reproduces_the_model_bit_for_bit(arch, grad):
    model, tok = tiny_model(arch)
    batch = batch_of(tok)
    ref = model(**batch).logits
    inject(model)
    b, t = batch.input_ids.shape
    inter = model.config.intermediate_size
    for beta in (torch.ones(b, t, inter, requires_grad=grad), torch.ones(b, 1, inter), torch.ones(b, 1, 1)):
        with torch.set_grad_enabled(grad), conditioned(model, beta=beta):
            assert torch.equal(model(**batch).logits, ref)


def test_gated_mlp_matches_the_formula():
    model, _ = tiny_model("llama")
    mlp = model.model.layers[0].mlp
    gated = GatedMLP(mlp, 0, "mlp")
    x = torch.randn(2, 5, model.config.hidden_size)
    beta = 1 + 0.5 * torch.tanh(torch.randn(2, 5, model.config.intermediate_size))
    gated.beta = beta
    g = mlp.gate_proj(x)
    want = mlp.down_proj(g * torch.sigmoid(beta * g) * mlp.up_proj(x))
    with torch.no_grad():
        torch.testing.assert_close(gated(x), want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gated(x), want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(swish_beta(g, torch.ones(())), torch.nn.functional.silu(g))


def test_beta_is_per_example_and_gets_gradients():
    model, tok = tiny_model("llama")
    batch = batch_of(tok, 2)
    ref = model(**batch).logits
    inject(model)
    beta = torch.tensor([1.0, 1.3]).reshape(2, 1, 1).requires_grad_()
    with conditioned(model, beta=beta):
        out = model(**batch).logits
    assert torch.equal(out[0], ref[0])
    assert not torch.allclose(out[1], ref[1], atol=1e-4)
    out.sum().backward()
    assert beta.grad[1].abs().item() > 0


def test_beta_per_layer_and_callable():
    model, tok = tiny_model("llama")
    batch = batch_of(tok, 2)
    inject(model)
    beta = torch.full((2, 1, 1), 1.4)
    seen = []

    def beta_fn(layer, x):
        seen.append((layer, tuple(x.shape)))
        return beta if layer == 1 else None

    with conditioned(model, beta=beta_fn):
        by_fn = model(**batch).logits
    with conditioned(model, beta=[None, beta]):
        by_list = model(**batch).logits
    with conditioned(model, beta={1: beta}):
        by_dict = model(**batch).logits
    assert [s[0] for s in seen] == [0, 1] and seen[0][1][:2] == tuple(batch.input_ids.shape)
    assert torch.equal(by_fn, by_list) and torch.equal(by_fn, by_dict)


def test_bad_beta_is_refused():
    model, tok = tiny_model("llama")
    batch = batch_of(tok, 2)
    with pytest.raises(ValueError, match="gating=True"), conditioned(model, beta=torch.ones(2, 1, 1)):
        pass
    inject(model)
    wrong_batch = torch.ones(3, 1, 1)
    with pytest.raises(ValueError, match=r"β must have shape \[B, T, I\]"), conditioned(model, beta=wrong_batch):
        model(**batch)
    with pytest.raises(ValueError, match=r"β must have shape"), conditioned(model, beta=torch.ones(2, 64)):
        model(**batch)
    with pytest.raises(ValueError, match="model has 2"), conditioned(model, beta=[torch.ones(2, 1, 1)]):
        pass

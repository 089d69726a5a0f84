"""Activation checkpointing replays each layer with the conditioning its forward saw: gradients equal."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from hyperadapt.core import AdapterBank, conditioned, inject
from hyperadapt.core.checkpointing import set_activation_checkpointing
from hyperadapt.testing import tiny_model
from hyperadapt.training import answer_loss, pad_batch

BATCH = pad_batch([([5, 6, 7, 8, 9], [-100, -100, 7, 8, 9]), ([5, 6, 7], [-100, 6, 7])], pad_id=0)


def _grads(model, params, loss_of):
    for p in params:
        p.grad = None
    loss = loss_of()
    loss.backward()
    return float(loss.detach()), [None if p.grad is None else p.grad.clone() for p in params]


def _count_calls(model):
    calls = []
    model.model.layers[0].self_attn.register_forward_hook(lambda *a: calls.append(1))
    return calls


@pytest.mark.parametrize("kind", ["per-example lora", "generated lora", "beta_fn", "peft"])
def test_checkpointed_layers_give_the_same_loss_and_gradients(kind):
    model, _ = tiny_model()
    torch.manual_seed(0)
    if kind == "peft":
        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
        for p in model.parameters():
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.1)
        params = [p for p in model.parameters() if p.requires_grad]
        base = model.get_base_model()

        def loss_of():
            return answer_loss(model, BATCH)
    else:
        base = inject(model, ("q_proj", "v_proj"), gating=True)
        bank = AdapterBank.for_model(model, 2, rank=2)
        with torch.no_grad():
            for b in bank.lora_B:
                b.normal_(std=0.3)
        scale = torch.nn.Parameter(torch.tensor([0.7, 1.3]))  # a tensor outside the model, as a hypernet's output
        params = [*bank.parameters(), scale]

        def loss_of():
            if kind == "beta_fn":
                beta = lambda layer, x: 1 + scale[:, None, None] * x.mean(-1, keepdim=True)  # noqa: E731
                ctx = conditioned(model, beta=beta)
            else:
                lora = bank.conditioning([0, 1])
                if kind == "generated lora":
                    lora = type(lora)({n: (a, b * scale[:, None, None]) for n, (a, b) in lora.factors.items()})
                ctx = conditioned(model, lora=lora)
            with ctx:
                return answer_loss(model, BATCH)  # backward runs after the context has restored the model

    calls = _count_calls(base)
    want_loss, want = _grads(model, params, loss_of)
    plain_calls = len(calls)
    set_activation_checkpointing(base, True)
    got_loss, got = _grads(model, params, loss_of)
    assert len(calls) == 3 * plain_calls  # forward, then the replay in backward: the layer was checkpointed
    assert got_loss == want_loss
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
        else:
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7)
    set_activation_checkpointing(base, False)
    calls.clear()
    _grads(model, params, loss_of)
    assert len(calls) == plain_calls

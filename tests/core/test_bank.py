import pytest
import torch
from core_helpers import batch_of, random_bank

from hyperadapt.core import BASE, AdapterBank, LoraConditioning, conditioned, inject
from hyperadapt.testing import tiny_model


def snapshot(bank: AdapterBank) -> list[torch.Tensor]:
    return [p.detach().clone() for p in bank.parameters()]


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_training_updates_only_the_indexed_adapters(optimizer):
    model, tok = tiny_model("llama")
    inject(model)
    bank = AdapterBank.for_model(model, 4, rank=4)
    before = snapshot(bank)
    opt = optimizer(bank.parameters(), lr=1e-2)
    batch = batch_of(tok, 4)
    with conditioned(model, lora=bank.conditioning([0, 2, 2, BASE])):
        model(**batch, labels=batch.input_ids).loss.backward()
    opt.step()
    for old, new in zip(before, bank.parameters(), strict=True):
        assert torch.equal(old[[1, 3]], new[[1, 3]])
    changed = [not torch.equal(old[[0, 2]], new[[0, 2]]) for old, new in zip(before, bank.parameters(), strict=True)]
    assert any(changed)
    assert all(p.grad is None for p in model.parameters())


def test_mixed_batch_gradient_equals_per_adapter_gradient():
    """One pass over a mixed batch gives each teacher the gradient of its own examples."""
    model, tok = tiny_model("llama")
    inject(model)
    bank = random_bank(model, 2, targets=["q_proj", "v_proj"])
    batch = batch_of(tok, 4)
    index = torch.tensor([1, 0, 1, 0])

    def grads(rows):
        bank.zero_grad()
        sub = {k: v[rows] for k, v in batch.items()}
        with conditioned(model, lora=bank.conditioning(index[rows])):
            logits = model(**sub).logits
        logits.pow(2).sum().backward()
        return [p.grad.clone() for p in bank.parameters()]

    together = grads(torch.arange(4))
    for adapter in (0, 1):
        alone = grads(torch.nonzero(index == adapter).squeeze(1))
        for g, a in zip(together, alone, strict=True):
            torch.testing.assert_close(g[adapter], a[adapter], atol=1e-4, rtol=1e-4)


def test_routing_and_base_route():
    model, tok = tiny_model("llama")
    inject(model)
    bank = random_bank(model, 3)
    batch = batch_of(tok, 3)
    base = model(**batch).logits
    with conditioned(model, lora=bank.conditioning([2, BASE, 0])):
        mixed = model(**batch).logits
    with conditioned(model, lora=bank.adapter(2)):
        two = model(**batch).logits
    torch.testing.assert_close(mixed[0], two[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1], base[1], atol=1e-6, rtol=0)
    with conditioned(model, lora=bank.conditioning([BASE] * 3)):
        assert torch.equal(model(**batch).logits, base)


def test_one_repeated_index_takes_the_shared_path():
    model, tok = tiny_model("llama")
    inject(model)
    bank = random_bank(model, 3)
    batch = batch_of(tok, 3)
    lora = bank.conditioning([1, 1, 1])
    assert lora.shared and lora.batch_size == 3
    with conditioned(model, lora=lora):
        shared = model(**batch).logits
    with conditioned(model, lora=LoraConditioning(bank.factors([1, 1, 1]), bank.scale)):
        batched = model(**batch).logits  # the same adapter three times, on the batched path
    torch.testing.assert_close(shared, batched, atol=1e-5, rtol=0)


@pytest.mark.parametrize("index", [[0, 3], [-2, 0], []])
def test_index_out_of_range_is_refused(index):
    model, _ = tiny_model("llama")
    bank = AdapterBank.for_model(model, 3)
    with pytest.raises(ValueError, match="bank index"):
        bank.conditioning(index)


def test_save_and_load(tmp_path):
    model, _ = tiny_model("llama")
    bank = random_bank(model, 2)
    loaded = AdapterBank.load(bank.save(tmp_path / "bank"))
    assert loaded.module_names == bank.module_names and loaded.scale == bank.scale
    for a, b in zip(bank.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="bank_config.json"):
        AdapterBank.load(tmp_path / "missing")

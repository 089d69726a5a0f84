"""Helpers for the core tests (imported as ``core_helpers``: pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from hyperadapt.core import LINEAR_MODULES, AdapterBank, LoraConditioning
from hyperadapt.core.peft_io import PREFIX

PROMPTS = ["hello world", "a b c d e f g h", "the answer is", "1 2 3"]


def random_bank(model, num_adapters: int, rank: int = 4, targets=LINEAR_MODULES, seed: int = 0) -> AdapterBank:
    """A bank whose B factors are random too, so every adapter changes the output."""
    torch.manual_seed(seed)
    bank = AdapterBank.for_model(model, num_adapters, rank=rank, targets=targets, alpha=2 * rank)
    with torch.no_grad():
        for b in bank.lora_B:
            b.normal_(std=0.2)
    return bank


def peft_adapter(peft_model, adapter: str = "default") -> LoraConditioning:
    """Read one adapter of a PEFT model as a shared conditioning."""
    factors = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and adapter in module.lora_A:
            path = name.removeprefix(PREFIX)
            factors[path] = (module.lora_A[adapter].weight[None], module.lora_B[adapter].weight[None])
            scale = module.scaling[adapter]
    return LoraConditioning(factors, scale)


def make_peft(model, adapters=("default",), rank: int = 4, alpha: int = 8, targets=LINEAR_MODULES):
    """A PEFT LoRA model with random (non-zero) A and B for each named adapter."""
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, config, adapter_name=adapters[0])
    for name in adapters[1:]:
        peft_model.add_adapter(name, config)
    return peft_model.eval()


def batch_of(tokenizer, n: int = 3):
    """A left-padded batch of ``n`` prompts of different lengths."""
    return tokenizer(PROMPTS[:n], return_tensors="pt", padding=True)

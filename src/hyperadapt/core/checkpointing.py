"""Activation checkpointing of the decoder layers that keeps each call's per-example conditioning.

A checkpointed layer keeps only its input in the forward pass and runs again in the backward pass. The
backward pass runs after ``conditioned(...)`` has restored the model, so the replay must see the LoRA
factors and β that the forward saw: each layer's forward records them, and ``torch.utils.checkpoint``'s
``context_fn`` sets them again around the replay (non-reentrant checkpointing, so gradients also reach
tensors the layer reads from outside, such as a hypernetwork's generated factors).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hyperadapt.core.gating import GatedMLP
from hyperadapt.core.lora import ConditionedLinear
from hyperadapt.models import decoder_layers

_FORWARD = "_hyperadapt_unchecked_forward"  # a checkpointed layer keeps its own forward here


def _state(module: nn.Module) -> Any:
    return module.lora if isinstance(module, ConditionedLinear) else module.beta


def _set_state(module: nn.Module, value: Any) -> None:
    setattr(module, "lora" if isinstance(module, ConditionedLinear) else "beta", value)


Context = contextlib.AbstractContextManager[None]


def _contexts(layer: nn.Module) -> tuple[Context, Context]:
    """(forward context, replay context): the replay sets the conditioning the forward saw, then restores."""
    saved = [(m, _state(m)) for m in layer.modules() if isinstance(m, ConditionedLinear | GatedMLP)]

    @contextlib.contextmanager
    def replay() -> Iterator[None]:
        current = [(m, _state(m)) for m, _ in saved]
        try:
            for module, value in saved:
                _set_state(module, value)
            yield
        finally:
            for module, value in current:
                _set_state(module, value)

    return contextlib.nullcontext(), replay()


def _checkpointed(layer: nn.Module, *args: Any, **kwargs: Any) -> Any:
    forward = getattr(layer, _FORWARD)
    if not torch.is_grad_enabled():  # inference, generation with a KV cache: nothing to recompute
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, context_fn=functools.partial(_contexts, layer), **kwargs)


def set_activation_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Checkpoint (``enabled``) or stop checkpointing every decoder layer of ``model``: in a backward pass
    each layer is recomputed from its input, so a step keeps one hidden state per layer instead of all of
    its activations. Gradients are those of the plain model; calls without gradients are unchanged.
    Idempotent; works with ``inject``'s wrappers, PEFT and FSDP2 (its hooks stay outside the replay)."""
    for layer in decoder_layers(model):
        if enabled and not hasattr(layer, _FORWARD):
            setattr(layer, _FORWARD, layer.forward)
            layer.forward = functools.partial(_checkpointed, layer)
        elif not enabled and hasattr(layer, _FORWARD):
            layer.forward = getattr(layer, _FORWARD)
            delattr(layer, _FORWARD)

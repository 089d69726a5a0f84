"""Per-example Swish_β in SwiGLU: ``down(gate·σ(β·gate) * up)``, with β set per call by ``conditioned(...)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hyperadapt.models import SWIGLU_MODULES

BetaFn = Callable[[int, Tensor], Tensor | None]  # (layer index, MLP input [B, T, H]) -> β or None
BetaSpec = Tensor | Sequence[Tensor | None] | Mapping[int, Tensor] | BetaFn


def swish_beta(gate: Tensor, beta: Tensor) -> Tensor:
    """Swish_β(g) = g·σ(β·g), computed as SiLU(β·g)/β so that β ≡ 1 gives SiLU bit for bit (β must be ≠ 0)."""
    return F.silu(beta * gate) / beta


class GatedMLP(nn.Module):
    """A SwiGLU MLP whose gate activation is Swish_β with a per-example β (MeGan, meta-gated SwiGLU).

    Without β it calls the original MLP (``base_layer``) unchanged.
    """

    def __init__(self, base_layer: nn.Module, layer_idx: int, name: str) -> None:
        super().__init__()
        missing = [m for m in SWIGLU_MODULES if not hasattr(base_layer, m)]
        if missing:
            raise ValueError(f"{name}: gating needs a SwiGLU MLP with {SWIGLU_MODULES}, missing {missing}")
        self.base_layer = base_layer
        self.layer_idx = layer_idx
        self.name = name
        gate_proj: Any = base_layer.gate_proj  # a linear layer (or our wrapper of one)
        self.intermediate_size = int(gate_proj.out_features)
        self.beta: Tensor | BetaFn | None = None

    @property
    def gate_proj(self) -> nn.Module:
        return cast(nn.Module, self.base_layer.gate_proj)

    @property
    def up_proj(self) -> nn.Module:
        return cast(nn.Module, self.base_layer.up_proj)

    @property
    def down_proj(self) -> nn.Module:
        return cast(nn.Module, self.base_layer.down_proj)

    def forward(self, x: Tensor) -> Tensor:
        beta = self.beta if self.beta is None or isinstance(self.beta, Tensor) else self.beta(self.layer_idx, x)
        if beta is None:
            return cast(Tensor, self.base_layer(x))
        check_beta(beta, x, self.intermediate_size, self.name)
        gate: Tensor = self.gate_proj(x)  # [B, T, I]
        up: Tensor = self.up_proj(x)  # [B, T, I]
        beta = beta.to(gate.dtype)
        if torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad or beta.requires_grad):
            return cast(Tensor, self.down_proj(swish_beta(gate, beta) * up))
        h = F.silu(torch.mul(beta, gate), inplace=True).div_(beta).mul_(up)  # [B, T, I], one allocation
        return cast(Tensor, self.down_proj(h))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layer_idx={self.layer_idx}"


def check_beta(beta: Tensor, x: Tensor, intermediate: int, name: str) -> None:
    """β must be [B|1, T|1, I|1] for an input [B, T, H]."""
    want = (x.shape[0], x.shape[1], intermediate)
    if beta.dim() != 3 or any(b not in (1, w) for b, w in zip(beta.shape, want, strict=True)):
        raise ValueError(
            f"{name}: β must have shape [B, T, I] = {list(want)} or broadcast to it ([B, 1, I], [B, 1, 1]), "
            f"got {list(beta.shape)}. With KV-cache generation T changes per step: use [B, 1, I] or a "
            "callable beta_fn(layer_idx, x)"
        )


def beta_for_layers(beta: BetaSpec, num_layers: int) -> list[Tensor | BetaFn | None]:
    """Resolve a β spec (one tensor, one per layer, a dict by layer, or a callable) to one entry per layer."""
    if isinstance(beta, Tensor) or callable(beta):
        return [beta] * num_layers
    if isinstance(beta, Mapping):
        bad = [k for k in beta if not (isinstance(k, int) and 0 <= k < num_layers)]
        if bad:
            raise ValueError(f"β given for layers {bad}; the model has layers 0..{num_layers - 1}")
        return [beta.get(i) for i in range(num_layers)]
    if isinstance(beta, Sequence):
        if len(beta) != num_layers:
            raise ValueError(f"β given for {len(beta)} layers; the model has {num_layers} (use None to skip one)")
        return list(beta)
    raise ValueError(
        "β must be a tensor [B, T|1, I|1], a list or dict of them per layer, or a callable "
        f"beta_fn(layer_idx, x) -> β; got {type(beta).__name__}"
    )

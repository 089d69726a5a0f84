"""What one request is conditioned on (a row of a batch), and one batched conditioning for a mixed batch.

A row carries LoRA factors (scale folded in) and/or a β source; :func:`batch_conditioning` lays the rows of
a batch out for ``conditioned(model, lora=..., beta=...)``: ranks are zero-padded to the largest in the batch
and modules missing from a row get zero factors (both leave that row's output exactly as it was), rows
without β get β ≡ 1, and so do the layers that a row's β maker leaves ungated (its ``BetaFn`` gives None).
Every request of a batch is answered in the same forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyperadapt.core import BetaFn, LoraConditioning
from hyperadapt.core.rows import BASE_ROW, BetaSource, RowCondition, RowFactors

__all__ = ["BASE_ROW", "BetaSource", "RowCondition", "RowFactors", "batch_conditioning"]


def batch_conditioning(rows: list[RowCondition]) -> tuple[LoraConditioning | None, BetaFn | None]:
    """The ``lora`` and ``beta`` arguments of ``conditioned`` for a batch whose row i is ``rows[i]`` (B rows).

    ``lora``: per module A [B, r, in] and B [B, out, r], r the largest rank of the batch (A [1, r, in] and
    B [1, out, r] when every row holds the same factors), scale 1 (folded in); None when no row has factors.
    ``beta``: ``beta(layer, x)`` for the MLP input x [B, T, H], β [B, T or 1, I] (None at a layer no row
    gates); None when no row has β."""
    return _batch_lora(rows), _batch_beta(rows)


def _batch_lora(rows: list[RowCondition]) -> LoraConditioning | None:
    loras = [r.lora for r in rows]
    if all(x is None for x in loras):
        return None
    first = loras[0]
    if first is not None and all(x is first for x in loras):  # one adapter for the whole batch: cheaper path
        return LoraConditioning({p: (a[None], b[None]) for p, (a, b) in first.items()}, 1.0, batch_size=len(rows))
    shapes: dict[str, tuple[int, int, int, Tensor]] = {}
    for lora in loras:
        for path, (a, b) in (lora or {}).items():
            rank = max(a.shape[0], shapes[path][0]) if path in shapes else a.shape[0]
            shapes[path] = (rank, a.shape[1], b.shape[0], a)
    factors = {}
    for path, (rank, d_in, d_out, like) in shapes.items():
        big_a = like.new_zeros(len(rows), rank, d_in)  # [B, r, in]
        big_b = like.new_zeros(len(rows), d_out, rank)  # [B, out, r]
        for i, lora in enumerate(loras):
            if lora is not None and path in lora:
                a, b = lora[path]
                big_a[i, : a.shape[0]] = a
                big_b[i, :, : b.shape[1]] = b
        factors[path] = (big_a, big_b)
    return LoraConditioning(factors, 1.0)


def _batch_beta(rows: list[RowCondition]) -> BetaFn | None:
    groups: dict[int, list[tuple[int, BetaSource]]] = {}  # β maker -> (row, its source) of the rows it conditions
    for i, row in enumerate(rows):
        if row.beta is not None:
            groups.setdefault(id(row.beta.owner), []).append((i, row.beta))
    if not groups:
        return None
    fns = [
        (torch.tensor([i for i, _ in members]), members[0][1].owner.group_beta_fn([s for _, s in members]))
        for members in groups.values()
    ]

    def fn(layer: int, x: Tensor) -> Tensor | None:
        parts = [(idx, beta) for idx, group in fns if (beta := group(layer, x[idx])) is not None]  # β [b, T|1, I]
        if not parts:  # no group gates this layer (a BetaFn's None): the base model's MLP
            return None
        width = max(beta.shape[1] for _, beta in parts)
        out = x.new_ones(x.shape[0], width, parts[0][1].shape[-1])  # [B, T|1, I]; β ≡ 1 is the base model
        for idx, beta in parts:
            out[idx] = beta.to(out.dtype).expand(-1, width, -1)
        return out

    return fn

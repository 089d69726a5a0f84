"""The hypernetwork: an instruction vector -> rank-r LoRA factors for every target module of every layer.

One shared trunk reads [instruction ; layer embedding ; module-type embedding] and one small pair of
heads per module type emits A and B (Text-to-LoRA, Charakorn et al. 2025; TAGI, Liao et al. 2024).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hyperadapt.core.lora import LoraConditioning, stack_rank

_PATH = re.compile(r"model\.layers\.(\d+)\..*\.([a-z_]+)$")


def parse_module(path: str) -> tuple[int, str]:
    """``"model.layers.3.self_attn.q_proj"`` -> ``(3, "q_proj")``."""
    m = _PATH.fullmatch(path)
    if m is None:
        raise ValueError(f"cannot read layer and module type from {path!r}: expected model.layers.<i>.<...>.<type>")
    return int(m.group(1)), m.group(2)


class ResidualBlock(nn.Module):
    """x + MLP(LayerNorm(x)), as in Text-to-LoRA's trunk."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(2 * width, width)
        )

    def forward(self, x: Tensor) -> Tensor:
        h: Tensor = self.mlp(self.norm(x))  # [..., H]
        return x + h  # [..., H]


class TagiHypernetwork(nn.Module):
    """Instruction vector -> one LoRA adapter per example for all ``shapes`` (TAGI, Liao et al. NeurIPS 2024).

    ``shapes`` maps each target module path to ``(in_features, out_features)``. The trunk is shared by all
    modules and conditioned on learned layer and module-type embeddings; per module type, head A emits
    ``[r, in]`` and head B ``[out, r]``. B's head starts at zero, so every generated ΔW starts at 0; A's
    head starts small around a LoRA-like (Kaiming-uniform) bias so that B gets useful gradients at once.
    The heads' weights are read out with a multiplier 1/hidden (initialised ×hidden to match): a plain
    readout sums ``hidden`` Adam updates into every generated entry, which then moves some hundred times
    faster than a LoRA factor's entry at the same learning rate and wrecks the model in the first steps.

    ``shared=True`` adds a learned, instruction-independent LoRA (A0 ``[r, in]``, B0 ``[out, r]`` per module,
    LoRA's initialisation: B0 = 0) and generates a *residual* on top of it: the adapter of an instruction is
    ``s · (B0 A0 + B(z) A(z))``, returned as one rank-2r LoRA (``A = [A0; A(z)]``, ``B = [B0, B(z)]``), so
    it exports as a plain PEFT adapter. The shared part learns what every task needs (where a multi-task
    LoRA would be), and distillation trains the generated part on what depends on the instruction.
    """

    slot_layer: Tensor  # [M] buffers: the layer and module type of each slot
    slot_kind: Tensor

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, int]],
        input_dim: int,
        rank: int = 8,
        alpha: float = 16.0,
        hidden: int = 256,
        blocks: int = 2,
        dropout: float = 0.0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        if not shapes:
            raise ValueError("the hypernetwork needs at least one target module")
        if rank < 1 or input_dim < 1 or hidden < 1:
            raise ValueError(f"need rank, input_dim and hidden >= 1, got {rank}, {input_dim}, {hidden}")
        self.shapes = {name: (int(i), int(o)) for name, (i, o) in shapes.items()}
        self.module_names = list(self.shapes)
        self.rank, self.alpha, self.input_dim, self.hidden = rank, float(alpha), input_dim, hidden
        parsed = [parse_module(n) for n in self.module_names]
        self.kinds = sorted({kind for _, kind in parsed})
        kind_shapes = {
            kind: {self.shapes[n] for n, (_, k) in zip(self.module_names, parsed, strict=True) if k == kind}
            for kind in self.kinds
        }
        uneven = {k: s for k, s in kind_shapes.items() if len(s) != 1}
        if uneven:
            raise ValueError(f"modules of one type must share a shape, got {uneven}")
        self.kind_shape = {k: next(iter(s)) for k, s in kind_shapes.items()}
        self.num_layers = max(layer for layer, _ in parsed) + 1
        self.register_buffer("slot_layer", torch.tensor([layer for layer, _ in parsed]), persistent=False)
        self.register_buffer("slot_kind", torch.tensor([self.kinds.index(k) for _, k in parsed]), persistent=False)
        self.instruction = nn.Sequential(nn.LayerNorm(input_dim), nn.Linear(input_dim, hidden), nn.Tanh())
        self.layer_emb = nn.Embedding(self.num_layers, hidden)
        self.kind_emb = nn.Embedding(len(self.kinds), hidden)
        self.trunk = nn.Sequential(*(ResidualBlock(hidden, dropout) for _ in range(blocks)), nn.LayerNorm(hidden))
        self.head_a = nn.ModuleDict({k: nn.Linear(hidden, rank * i) for k, (i, _) in self.kind_shape.items()})
        self.head_b = nn.ModuleDict({k: nn.Linear(hidden, o * rank) for k, (_, o) in self.kind_shape.items()})
        self.shared = shared
        if shared:  # keyed by slot: module paths hold dots, which parameter names cannot
            self.shared_a = nn.ParameterList(nn.Parameter(torch.empty(rank, i)) for i, _ in self.shapes.values())
            self.shared_b = nn.ParameterList(nn.Parameter(torch.zeros(o, rank)) for _, o in self.shapes.values())
        self.reset_heads()

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_heads(self) -> None:
        """B head = 0 (ΔW = 0 at initialisation); A head small around a Kaiming-uniform bias like LoRA's A."""
        nn.init.normal_(self.layer_emb.weight, std=0.02)
        nn.init.normal_(self.kind_emb.weight, std=0.02)
        for kind, (fan_in, _) in self.kind_shape.items():
            head_a, head_b = self._head(self.head_a, kind), self._head(self.head_b, kind)
            nn.init.normal_(head_a.weight, std=math.sqrt(self.hidden / fan_in))  # read out ×1/hidden
            bias = torch.empty(self.rank, fan_in)  # [r, in]
            nn.init.kaiming_uniform_(bias, a=math.sqrt(5))
            head_a.bias.copy_(bias.reshape(-1))
            head_b.weight.zero_()
            head_b.bias.zero_()
        if self.shared:
            for a, b in zip(self.shared_a, self.shared_b, strict=True):
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # as PEFT initialises LoRA's A
                nn.init.zeros_(b)

    @torch.no_grad()
    def set_shared(self, lora: LoraConditioning) -> None:
        """Start the shared adapter from a single LoRA of this rank on these modules (e.g. the teachers'
        shared one): ``A0 = A``, ``B0 = B · scale_lora / scale`` (the same ΔW). Raises ``ValueError`` without
        a shared adapter, for a per-example LoRA, another rank or other modules."""
        if not self.shared:
            raise ValueError("this hypernetwork has no shared adapter (shared_adapter: false)")
        if not lora.shared:
            raise ValueError("set_shared needs a single adapter, not one per example")
        if set(lora.factors) != set(self.module_names):
            raise ValueError(
                f"the adapter covers other modules than the hypernetwork: "
                f"{sorted(set(lora.factors) ^ set(self.module_names))[:3]}"
            )
        fold = float(lora.scale) / self.scale
        for slot, name in enumerate(self.module_names):
            a, b = lora.factors[name]  # [1, r, in], [1, out, r]
            if a.shape[1] != self.rank:
                raise ValueError(f"{name}: adapter rank {a.shape[1]}, the shared adapter's is {self.rank}")
            self.shared_a[slot].copy_(a[0])
            self.shared_b[slot].copy_(b[0] * fold)

    @torch.no_grad()
    def spread(self, vectors: Tensor) -> dict[str, float]:
        """How much the generated adapters depend on the instruction, for instruction vectors ``[N, input_dim]``
        (N ≥ 2): Frobenius norms of ΔW = scale · B·A summed in square over all modules, as square roots.

        ``shared``: the instruction-independent adapter (0 without ``shared=True``); ``generated``: the
        generated part (the residual), root mean square over the N instructions; ``instruction``: the generated
        part's deviation from its mean over the N instructions (root mean square), the only part that tells
        one instruction from another; ``instruction_share``: ``instruction`` over the whole adapter's norm
        (shared + generated, root mean square). A hypernetwork that collapsed to one adapter has
        ``instruction`` ≈ 0 (Text-to-LoRA's failure mode; see docs/TAGI.md). Raises ``ValueError`` for N < 2.
        """
        if vectors.dim() != 2 or vectors.shape[0] < 2:
            raise ValueError(
                f"spread needs at least 2 instruction vectors [N, {self.input_dim}], got {tuple(vectors.shape)}"
            )
        r, n = self.rank, vectors.shape[0]
        shared = generated = instruction = whole = 0.0
        for a, b in self.factors(vectors).values():  # [N, r', in], [N, out, r']
            own = self.scale * (b[:, :, -r:] @ a[:, -r:])  # [N, out, in]: the generated part
            common = self.scale * (b[0, :, :-r] @ a[0, :-r]) if self.shared else torch.zeros_like(own[0])
            shared += float(common.pow(2).sum())
            generated += float(own.pow(2).sum()) / n
            instruction += float((own - own.mean(0)).pow(2).sum()) / n
            whole += float((own + common).pow(2).sum()) / n
        return {
            "n": n,
            "shared": shared**0.5,
            "generated": generated**0.5,
            "instruction": instruction**0.5,
            "instruction_share": (instruction / whole) ** 0.5 if whole else 0.0,
        }

    def generated_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters that read the instruction (all but the shared adapter)."""
        return {k: p for k, p in self.named_parameters() if not k.startswith("shared_")}

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the network (saved next to its weights)."""
        out: dict[str, Any] = {
            "shapes": self.shapes,
            "input_dim": self.input_dim,
            "rank": self.rank,
            "alpha": self.alpha,
            "hidden": self.hidden,
            "blocks": sum(isinstance(m, ResidualBlock) for m in self.trunk),
        }
        if self.shared:  # only when on, so that folders saved before the option still load
            out["shared"] = True
        return out

    def factors(self, vectors: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Per module, ``(A [N, r, in], B [N, out, r])`` for instruction vectors ``[N, input_dim]``; with the
        shared adapter, ``(A [N, 2r, in], B [N, out, 2r])`` (shared rows/columns first)."""
        if vectors.dim() != 2 or vectors.shape[1] != self.input_dim:
            raise ValueError(f"instruction vectors must be [N, {self.input_dim}], got {tuple(vectors.shape)}")
        w = self.layer_emb.weight
        h = self.instruction(vectors.to(w.device, w.dtype))  # [N, H]
        slots = self.layer_emb(self.slot_layer) + self.kind_emb(self.slot_kind)  # [M, H]
        z = self.trunk(h[:, None, :] + slots[None])  # [N, M, H]
        n, out = vectors.shape[0], {}
        for kind in self.kinds:
            idx = (self.slot_kind == self.kinds.index(kind)).nonzero().squeeze(1)  # [L_k]
            zk = z[:, idx]  # [N, L_k, H]
            fan_in, fan_out = self.kind_shape[kind]
            head_a, head_b = self._head(self.head_a, kind), self._head(self.head_b, kind)
            a = self._readout(head_a, zk).view(n, len(idx), self.rank, fan_in)  # [N, L_k, r, in]
            b = self._readout(head_b, zk).view(n, len(idx), fan_out, self.rank)  # [N, L_k, out, r]
            for j, slot in enumerate(idx.tolist()):
                out[self.module_names[slot]] = (a[:, j], b[:, j])  # [N, r, in], [N, out, r]
        if self.shared:
            for slot, name in enumerate(self.module_names):
                a, b = out[name]
                shared = (self.shared_a[slot].to(a.dtype)[None], self.shared_b[slot].to(b.dtype)[None])  # [1, r, *]
                out[name] = stack_rank(shared, (a, b))  # [N, 2r, in], [N, out, 2r]
        return out

    @staticmethod
    def _head(heads: nn.ModuleDict, kind: str) -> nn.Linear:
        return cast(nn.Linear, heads[kind])  # ModuleDict types its values as Module

    def _readout(self, head: nn.Linear, z: Tensor) -> Tensor:
        """``head(z)`` with the weight part scaled by 1/hidden (a LoRA-like step size per generated entry)."""
        return F.linear(z, head.weight) / self.hidden + head.bias

    def forward(self, vectors: Tensor, index: Tensor | None = None) -> LoraConditioning:
        """The conditioning for a batch: example b uses the adapter of ``vectors[index[b]]``.

        ``vectors`` holds one row per distinct instruction ``[U, D]``; ``index`` ``[B]`` picks each example's
        row (``None``: one example per row). With one row and an index, the adapter is shared (fast path).
        """
        factors = self.factors(vectors)  # per module [U, r, in], [U, out, r]
        if index is None:
            return LoraConditioning(factors, self.scale)
        index = torch.as_tensor(index, dtype=torch.long, device=self.layer_emb.weight.device).reshape(-1)  # [B]
        if vectors.shape[0] == 1:
            return LoraConditioning(factors, self.scale, batch_size=len(index))
        gathered = {name: (a[index], b[index]) for name, (a, b) in factors.items()}  # [B, r, in], [B, out, r]
        return LoraConditioning(gathered, self.scale)

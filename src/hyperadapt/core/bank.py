"""A bank of N LoRA adapters over the same modules, routed per example and trainable in place.

Per module it stores ``A: [N, r, in]`` and ``B: [N, out, r]``; ``conditioning(index)`` gathers one row per
example, so gradients reach only the indexed adapters and N adapters train in one pass over a mixed batch.
Index ``-1`` (``BASE``) runs an example without an adapter, like PEFT's ``"__base__"`` route.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from hyperadapt.core.inject import target_linears
from hyperadapt.core.lora import LoraConditioning
from hyperadapt.io import load_json, load_state_strict, load_tensors

BASE = -1
CONFIG_NAME = "bank_config.json"
WEIGHTS_NAME = "bank.safetensors"


class AdapterBank(nn.Module):
    """N LoRA adapters on the same target modules; one adapter per example (SwitchCIT's task adapters,
    TAGI's teachers).

    ``shapes`` maps each module path to its ``(in_features, out_features)``. The delta of adapter i is
    ``(alpha / rank) · B_i A_i``; A starts like PEFT's (Kaiming-uniform), B at zero.
    """

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, int]],
        num_adapters: int,
        rank: int = 8,
        alpha: float | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if num_adapters < 1 or rank < 1 or not shapes:
            raise ValueError(f"need num_adapters >= 1, rank >= 1 and some modules; got {num_adapters}, {rank}")
        self.module_names = list(shapes)
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        self.num_adapters = num_adapters
        self.rank = rank
        self.alpha = float(alpha if alpha is not None else rank)
        self.lora_A = nn.ParameterList(
            nn.Parameter(torch.empty(num_adapters, rank, i, dtype=dtype, device=device)) for i, _ in shapes.values()
        )
        self.lora_B = nn.ParameterList(
            nn.Parameter(torch.zeros(num_adapters, o, rank, dtype=dtype, device=device)) for _, o in shapes.values()
        )
        self.reset_parameters()

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        num_adapters: int,
        rank: int = 8,
        targets: Sequence[str] = ("q_proj", "v_proj"),
        alpha: float | None = None,
    ) -> AdapterBank:
        """A bank over ``targets`` of every decoder layer of ``model``, on the model's device."""
        linears = target_linears(model, targets)
        shapes = {
            name: (lin.in_features, lin.out_features)
            for name, lin in ((n, cast(nn.Linear, m)) for n, m in linears.items())
        }  # or our wrapper of one
        device = next(model.parameters()).device
        return cls(shapes, num_adapters, rank, alpha, device=device)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def reset_parameters(self) -> None:
        """PEFT's init: each adapter's A like an ``nn.Linear`` weight (Kaiming-uniform, a=√5), B = 0."""
        with torch.no_grad():
            for a, b in zip(self.lora_A, self.lora_B, strict=True):
                for i in range(self.num_adapters):
                    nn.init.kaiming_uniform_(a[i], a=math.sqrt(5))
                b.zero_()

    def check_index(self, index: Tensor | Sequence[int]) -> Tensor:
        """``index`` as a long tensor [B] on the bank's device, each in ``-1 .. N-1``."""
        device = self.lora_A[0].device
        idx = torch.as_tensor(index, dtype=torch.long, device=device).reshape(-1)  # [B]
        if idx.numel() == 0:
            raise ValueError("the bank index is empty: give one adapter index per example")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < BASE or hi >= self.num_adapters:
            raise ValueError(
                f"bank index out of range: got values in [{lo}, {hi}], allowed are 0..{self.num_adapters - 1} "
                f"and {BASE} (no adapter)"
            )
        return idx

    def factors(self, index: Tensor | Sequence[int]) -> dict[str, tuple[Tensor, Tensor]]:
        """Per module, ``(A[idx], B[idx])``: ``[B, r, in]`` and ``[B, out, r]`` (``-1`` gathers row 0)."""
        idx = self.check_index(index).clamp(min=0)
        return {name: (a[idx], b[idx]) for name, a, b in self._rows()}

    def conditioning(self, index: Tensor | Sequence[int]) -> LoraConditioning:
        """The conditioning that runs example b with adapter ``index[b]`` (``-1``: no adapter).

        When every example uses the same adapter, it is gathered once and runs on the shared fast path.
        """
        idx = self.check_index(index)
        first = int(idx[0])
        if bool((idx == first).all()):
            if first == BASE:
                return LoraConditioning({}, batch_size=len(idx))
            return LoraConditioning(self._single(first), self.scale, batch_size=len(idx))
        scale: float | Tensor = self.scale
        if bool((idx == BASE).any()):
            scale = (idx != BASE).to(self.lora_A[0].dtype) * self.scale  # [B]
        return LoraConditioning(self.factors(idx), scale, batch_size=len(idx))

    def adapter(self, i: int) -> LoraConditioning:
        """Adapter ``i`` alone, as a shared conditioning (to export, merge or run on any batch)."""
        self.check_index([i])
        if i == BASE:
            raise ValueError(f"adapter index must be 0..{self.num_adapters - 1}, not {BASE}")
        return LoraConditioning(self._single(i), self.scale)

    def _single(self, i: int) -> dict[str, tuple[Tensor, Tensor]]:
        return {name: (a[i : i + 1], b[i : i + 1]) for name, a, b in self._rows()}  # [1, r, in], [1, out, r]

    def _rows(self) -> Iterator[tuple[str, nn.Parameter, nn.Parameter]]:
        return zip(self.module_names, self.lora_A, self.lora_B, strict=True)

    @torch.no_grad()
    def set_adapter(self, i: int, lora: LoraConditioning) -> None:
        """Overwrite adapter ``i`` with a single adapter (e.g. from ``load_peft``); scales are folded into B.

        A lower rank is zero-padded (same delta); modules the bank has but ``lora`` lacks get a zero delta.
        """
        self.check_index([i])
        if not lora.shared:
            raise ValueError("set_adapter needs a single adapter: pick one with lora.example(j)")
        extra = [n for n in lora.factors if n not in self.shapes]
        if extra:
            raise ValueError(f"the adapter has modules the bank lacks: {extra[:3]}; use a bank made for them")
        fold = float(lora.scale) / self.scale
        for name, a, b in self._rows():
            a[i].zero_()
            b[i].zero_()
            if name not in lora.factors:
                continue
            la, lb = lora.factors[name]
            r = la.shape[1]
            if r > self.rank:
                raise ValueError(f"{name}: adapter rank {r} exceeds the bank's rank {self.rank}")
            a[i, :r].copy_(la[0])
            b[i, :, :r].copy_(lb[0] * fold)

    def config(self) -> dict[str, Any]:
        return {"shapes": self.shapes, "num_adapters": self.num_adapters, "rank": self.rank, "alpha": self.alpha}

    def save(self, path: str | Path) -> Path:
        """Write ``bank_config.json`` and ``bank.safetensors`` to the folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps(self.config(), indent=2))
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, path / WEIGHTS_NAME)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> AdapterBank:
        """Load a bank written by ``save``, strictly."""
        path = Path(path)
        if not (path / CONFIG_NAME).exists():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {path}: save a bank there with AdapterBank.save")
        cfg = load_json(path / CONFIG_NAME, "adapter bank config")
        state = load_tensors(path / WEIGHTS_NAME, "adapter bank weights")
        if "lora_A.0" not in state:
            raise ValueError(f"adapter bank weights {path / WEIGHTS_NAME} hold no adapter bank (no lora_A.0)")
        bank = cls(cfg["shapes"], cfg["num_adapters"], cfg["rank"], cfg["alpha"], dtype=state["lora_A.0"].dtype)
        load_state_strict(bank, state, path / WEIGHTS_NAME, "adapter bank weights")
        return bank.to(device) if device is not None else bank

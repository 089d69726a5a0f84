"""What a request's ``model`` field names ("targets"): the base model, a PEFT adapter folder, or a loaded run.

A run is served through its method's own conditioning interface (:class:`hyperadapt.core.rows.Servable`):
the server never asks what a method is, only what it serves as (``condition``, ``input`` or ``fixed``). Each
target turns a request into a :class:`RowCondition` in the engine thread (the only thread that touches the
model), and knows the prompt style its run was trained with (how a request's condition and input are
rendered).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeGuard

import torch

from hyperadapt.core import conditioned, inject, load_peft
from hyperadapt.core.rows import BASE_ROW, ConditionServable, RowCondition, RowFactors, Servable, fold
from hyperadapt.data.prompts import PromptStyle
from hyperadapt.runs import Run
from hyperadapt.serve.cache import ByteLRU, tensor_bytes
from hyperadapt.serve.conditions import ConditionText, normalize_condition, read_condition


def serves_conditions(method: Servable) -> TypeGuard[ConditionServable]:
    """Whether ``method`` serves as ``"condition"``, i.e. has the members of :class:`ConditionServable`."""
    return method.serves_as == "condition"


def factors_digest(factors: RowFactors) -> str:
    """20 hex digits of SHA-256 over ``factors`` (module paths, shapes and float32 values, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(factors):
        for tensor in factors[path]:
            values = tensor.detach().to("cpu", torch.float32).contiguous()
            digest.update(f"{path}{tuple(values.shape)}".encode())
            digest.update(values.numpy().tobytes())
    return digest.hexdigest()[:20]


class Target(Protocol):
    """Something a request's ``model`` field can name."""

    name: str
    kind: str  # base, adapter, continual, or the method's name (tagi, hypter, megan, multitask-lora, ...)
    needs_condition: bool
    prompt_style: PromptStyle | None  # how a request's condition and input are rendered; None: send the prompt

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        """The row conditioning for a request (``text``: what a router reads); engine thread only."""
        ...


@dataclass
class BaseTarget:
    name: str
    kind: str = "base"
    needs_condition: bool = False
    prompt_style: PromptStyle | None = None

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        return BASE_ROW


@dataclass
class AdapterTarget:
    """A PEFT LoRA folder loaded at start-up or at run time (``/v1/load_lora_adapter``). ``digest``: 20 hex
    digits of SHA-256 over the loaded factors (:func:`factors_digest`), what ``--engine vllm`` keys the folder it
    hands to vLLM by (a ``replace`` or a folder changed on disk is a new digest)."""

    name: str
    path: str
    factors: RowFactors
    kind: str = "adapter"
    needs_condition: bool = False
    prompt_style: PromptStyle | None = None
    digest: str = ""

    @classmethod
    def load(cls, name: str, path: str | Path, model: Any) -> AdapterTarget:
        """Read ``path`` and wrap the modules it adapts; a folder for another model is a ``ValueError``."""
        lora = load_peft(path)
        inject(model, sorted({p.rsplit(".", 1)[-1] for p in lora.factors}), gating=False)
        with conditioned(model, lora=lora):  # validates module names and factor shapes against the model
            pass
        device = model.get_input_embeddings().weight.device
        factors = fold({p: (a.to(device), b.to(device)) for p, (a, b) in lora.factors.items()}, float(lora.scale))
        return cls(name, str(path), factors, digest=factors_digest(factors))

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        return RowCondition(self.factors, route=f"adapter:{self.name}")


@dataclass
class MethodTarget:
    """A loaded run, served as its method declares (``serves_as``):

    - ``condition`` (TAGI, Hypter, MeGan): the request's condition becomes an adapter or β, cached in the server's
      one LRU under the key of the condition rule (``serve/conditions.py``);
    - ``input`` (SwitchCIT): the method routes each request's text to one of its adapters (or the base model);
    - ``fixed`` (multi-task LoRA, MetaICL, Reptile, single-LoRA streams): one adapter for every request.

    ``prompt_style``: the run's own (``Run.prompt_style``; by default the method's ``setting``); a routing
    method reads the whole user turn, so its requests' input is rendered alone (``none``). ``run``: the run it
    was loaded from (None for a method given in code).
    """

    name: str
    method: Servable
    cache: ByteLRU
    prompt_style: PromptStyle | None = None
    run: Run | None = None
    kind: str = field(init=False)
    needs_condition: bool = field(init=False)
    _fixed: RowCondition | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        serves = self.method.serves_as
        self.needs_condition = serves == "condition"
        self.kind = "continual" if serves == "input" else self.method.name
        if serves == "input":
            self.prompt_style = PromptStyle("none")
        elif self.prompt_style is None:
            self.prompt_style = PromptStyle(self.method.setting)
        if serves == "fixed":
            row = self.method.serve_row(None, "")
            self._fixed = replace(row, route=f"{self.name}:{row.route}")

    @property
    def exports_adapters(self) -> bool:
        """Whether ``/v1/adapters`` can export this run's adapters (a ``condition`` method that makes LoRAs)."""
        return serves_conditions(self.method) and self.method.exports_adapters

    def read_condition(self, condition: str | None) -> ConditionText:
        """``condition`` as this run's method reads it (the condition rule of serve/conditions.py);
        :class:`~hyperadapt.serve.errors.RequestRefused` (400) for a bad condition, ``TypeError`` for a run that
        takes none."""
        return read_condition(self._condition_method(), condition)

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        if self._fixed is not None:
            return self._fixed
        if not serves_conditions(self.method):
            routed = self.method.serve_row(None, text)
            return replace(routed, route=f"{self.name}:{routed.route}")
        if not condition:
            raise ValueError(f"model {self.name!r} needs a non-empty 'condition' (extra_body={{'condition': ...}})")
        read = read_condition(self.method, condition)  # the condition rule of serve/conditions.py
        key = (self.name, read.key)
        row: RowCondition | None = self.cache.get(key)
        hit = row is not None
        if row is None:
            row = self.method.serve_row(read.text, text)
            self.cache.put(key, row, tensor_bytes(row.tensors()))
        return replace(
            row,
            route=f"{self.name}:{read.key[:10]}",
            cache_hit=hit,
            condition_tokens=read.tokens,
            condition_kept=read.kept,
        )

    def export_adapter(self, condition: str, out_dir: Path) -> Path:
        """The adapter of ``condition`` as a PEFT folder (the method's own export); engine thread only.
        ``TypeError`` for a run that takes no condition."""
        return self._condition_method().export_adapter(normalize_condition(condition), out_dir)

    def _condition_method(self) -> ConditionServable:
        if not serves_conditions(self.method):
            raise TypeError(f"model {self.name!r} serves as {self.method.serves_as!r}: it takes no condition")
        return self.method

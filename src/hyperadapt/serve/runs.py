"""Run folders as things the server answers with ("targets"), and a small run loader.

``load_run(path, model_and_tokenizer)`` dispatches on ``run.json`` (``kind``/``method``) to the method's own
loader through the library's one run loader. Each target turns a request into a
:class:`RowCondition` in the engine thread (the only thread that touches the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from hyperadapt.core import BASE, inject, load_peft
from hyperadapt.io import load_json
from hyperadapt.serve.cache import ByteLRU, tensor_bytes
from hyperadapt.serve.conditioning import BASE_ROW, BetaSource, RowCondition, RowFactors
from hyperadapt.serve.conditions import normalize_condition, read_condition

HYPERNET_METHODS = ("tagi", "hypter", "megan")
SERVABLE = (*HYPERNET_METHODS, "switchcit")


def run_info(path: str | Path) -> dict:
    """``run.json`` of a run folder, with a clear error for anything the server cannot answer with."""
    run = load_json(Path(path) / "run.json", "run file")
    kind = "continual" if run.get("kind") == "continual" else run.get("method")
    if kind == "continual" and run.get("method") != "switchcit":
        raise ValueError(f"{path} is a continual {run.get('method')!r} run: only switchcit continual runs are served")
    if kind not in (*HYPERNET_METHODS, "continual"):
        raise ValueError(f"{path} is a {run.get('method')!r} run: serve answers with {', '.join(SERVABLE)} runs")
    return run


def run_base_model(path: str | Path) -> str:
    """The base model a run was trained on (its config's ``model``)."""
    return run_info(path)["config"]["model"]


def load_run(path: str | Path, model_and_tokenizer: tuple[Any, Any]) -> Any:
    """The method of run folder ``path`` (TAGI/Hypter, MeGan or a SwitchCIT stream) on the given base model,
    through the library's one run loader (:func:`hyperadapt.methods.load_run`) once ``run_info`` has checked
    that the server can answer with it."""
    from hyperadapt.methods import load_run as load_any_run

    run_info(path)
    return load_any_run(path, model_and_tokenizer)


class Target(Protocol):
    """Something a request's ``model`` field can name."""

    name: str
    kind: str  # base, adapter, continual, tagi, hypter, megan
    needs_condition: bool

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        """The row conditioning for a request (``text``: what a router reads); engine thread only."""
        ...


@dataclass
class BaseTarget:
    name: str
    kind: str = "base"
    needs_condition: bool = False

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        return BASE_ROW


def fold(factors: dict, scale: float) -> RowFactors:
    """Per-module (A [1, r, in], B [1, out, r]) with a scale -> (A [r, in], s·B [out, r])."""
    return {p: (a[0].detach(), (b[0] * scale).detach()) for p, (a, b) in factors.items()}


@dataclass
class AdapterTarget:
    """A PEFT LoRA folder loaded at start-up or at run time (``/v1/load_lora_adapter``)."""

    name: str
    path: str
    factors: RowFactors
    kind: str = "adapter"
    needs_condition: bool = False

    @classmethod
    def load(cls, name: str, path: str | Path, model: Any) -> AdapterTarget:
        """Read ``path`` and wrap the modules it adapts; a folder for another model is a ``ValueError``."""
        lora = load_peft(path)
        inject(model, sorted({p.rsplit(".", 1)[-1] for p in lora.factors}), gating=False)
        from hyperadapt.core import conditioned

        with conditioned(model, lora=lora):  # validates module names and factor shapes against the model
            pass
        device = model.get_input_embeddings().weight.device
        factors = fold({p: (a.to(device), b.to(device)) for p, (a, b) in lora.factors.items()}, float(lora.scale))
        return cls(name, str(path), factors)

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        return RowCondition(self.factors, route=f"adapter:{self.name}")


@dataclass
class ContinualTarget:
    """A SwitchCIT run: its switch routes each request's text to a task adapter, or rejects it (base model)."""

    name: str
    method: Any
    kind: str = "continual"
    needs_condition: bool = False

    def __post_init__(self) -> None:
        bank = self.method.bank
        self._rows = [fold(bank.factors([i]), bank.scale) for i in range(len(self.method.tasks))]

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        routing = self.method.route_texts([text])
        self.method.encoder.clear_cache()  # the server holds no per-input state
        adapter = routing.adapter[0]
        if adapter == BASE:
            return RowCondition(route=f"{self.name}:rejected->base")
        return RowCondition(self._rows[adapter], route=f"{self.name}:{self.method.tasks[adapter]}")


@dataclass
class HypernetTarget:
    """A TAGI/Hypter run (condition -> LoRA factors) or a MeGan run (condition -> β), cached per condition."""

    name: str
    method: Any
    cache: ByteLRU
    kind: str = "tagi"
    needs_condition: bool = True

    def __post_init__(self) -> None:
        self.kind = "megan" if self.is_megan else self.method.name

    @property
    def is_megan(self) -> bool:
        return hasattr(self.method, "hypernet") and hasattr(self.method.hypernet, "spec")

    @property
    def prompt_setting(self) -> str:
        """How the run was trained to be prompted: ``"def"`` when the condition was also in the prompt (TAGI
        with fusion, MeGan with ``condition_in_prompt``; the user turn was ``Definition: {condition}\n\n
        Input: {input}``, see :func:`hyperadapt.data.prompts.user_message`), ``"none"`` for the input alone."""
        return getattr(self.method, "setting", "none")

    def clean(self, condition: str) -> str:
        text = normalize_condition(condition)
        return text if self.is_megan else self.method.vectors.clean(text)

    def resolve(self, condition: str | None, text: str) -> RowCondition:
        if not condition:
            raise ValueError(f"model {self.name!r} needs a non-empty 'condition' (extra_body={{'condition': ...}})")
        read = read_condition(self.method, condition)  # the condition rule of serve/conditions.py
        key = (self.name, read.key)
        value = self.cache.get(key)
        hit = value is not None
        if not hit:
            value = self._make(read.text)
            size = tensor_bytes([value.condition, value.channel]) if self.is_megan else tensor_bytes(value)
            self.cache.put(key, value, size)
        route = f"{self.name}:{read.key[:10]}"
        if self.is_megan:
            return RowCondition(beta=value, route=route, cache_hit=hit)
        return RowCondition(value, route=route, cache_hit=hit)

    @torch.no_grad()
    def _make(self, text: str) -> RowFactors | BetaSource:
        method = self.method
        if not self.is_megan:
            factors = method.hypernet.factors(method.vectors([text]))  # {path: ([1, r, in], [1, out, r])}
            method.vectors.encoder.clear_cache()  # the server's LRU is the only per-condition cache
            return fold(factors, method.hypernet.scale)
        cond = method.condition_batch([text])  # embeddings [1, C, H]
        if method.hypernet.spec.per_token:
            return BetaSource(method.hypernet, condition=cond.embeddings[0])
        return BetaSource(method.hypernet, channel=method.hypernet.channel_betas(cond)[0])  # [L, I]

    def factors(self, condition: str) -> RowFactors:
        """The generated adapter of ``condition`` (TAGI/Hypter runs only)."""
        if self.is_megan:
            raise ValueError(f"{self.name!r} is a MeGan run: it makes β for the SwiGLU gates, not a LoRA adapter")
        return self.resolve(condition, "").lora

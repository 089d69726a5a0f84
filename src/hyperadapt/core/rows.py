"""One request's conditioning (a row of a batch), and the interface through which a method serves requests.

A loaded method serves as one of three things (``serves_as``, also in its registry entry):

- ``"condition"``: a condition text becomes an adapter or β (TAGI, Hypter, MeGan): ``clean_condition`` gives the
  text that identifies it (the server's cache key), ``serve_row`` makes it (no cache of its own);
- ``"input"``: each input is routed to one of its adapters, or to the base model (SwitchCIT);
- ``"fixed"``: one adapter answers every input (multi-task LoRA, MetaICL, Reptile, single-LoRA streams).

``serve_row(condition, text)`` returns a :class:`RowCondition`; the server batches rows of any methods
together (``hyperadapt.serve.conditioning.batch_conditioning``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from torch import Tensor

from hyperadapt.core.bank import AdapterBank
from hyperadapt.core.gating import BetaFn

ServesAs = Literal["condition", "input", "fixed"]
RowFactors = dict[str, tuple[Tensor, Tensor]]  # module path -> (A [r, in], B [out, r]), scale folded into B


class BetaGroup(Protocol):
    """What makes β: builds one ``beta_fn`` for the rows of a batch that it conditions."""

    def group_beta_fn(self, sources: list[BetaSource]) -> BetaFn:
        """``beta_fn(layer, x)`` for rows ``sources`` (in that order), x: [b, T, I] -> β [b, T or 1, I]."""
        ...


@dataclass(frozen=True, eq=False)
class BetaSource:
    """One request's β, made by ``owner``: per-token (``condition`` = token embeddings [C, H]) or per-channel
    (``channel`` = β [L, I], computed once per condition)."""

    owner: BetaGroup
    condition: Tensor | None = None  # [C, H]
    channel: Tensor | None = None  # [L, I]


@dataclass(frozen=True, eq=False)
class RowCondition:
    """What answers one request: LoRA factors, a β source, both or neither (the base model); ``route`` names
    what answered (a method returns its own part, e.g. a task name; the server prefixes the served name)."""

    lora: RowFactors | None = None
    beta: BetaSource | None = None
    route: str = "base"
    cache_hit: bool | None = None
    condition_tokens: int | None = None  # tokens of the condition text (a condition method's row)
    condition_kept: int | None = None  # of which the method read these (fewer: the condition was cut)

    def tensors(self) -> list[Tensor]:
        """Every tensor the row holds (to size a cache entry)."""
        out = [t for pair in (self.lora or {}).values() for t in pair]
        if self.beta is not None:
            out += [t for t in (self.beta.condition, self.beta.channel) if t is not None]
        return out


BASE_ROW = RowCondition()


def fold(factors: dict[str, tuple[Tensor, Tensor]], scale: float) -> RowFactors:
    """Per-module (A [1, r, in], B [1, out, r]) with a scale -> (A [r, in], s·B [out, r])."""
    return {p: (a[0].detach(), (b[0] * scale).detach()) for p, (a, b) in factors.items()}


def bank_row(bank: AdapterBank, index: int, route: str = "adapter") -> RowCondition:
    """Adapter ``index`` of ``bank`` as a row."""
    return RowCondition(fold(bank.factors([index]), bank.scale), route=route)


class Servable(Protocol):
    """A loaded method as the server sees it (engine thread only; see the module docstring)."""

    name: str
    setting: str  # the prompt setting it was trained in (``data/prompts.py``): how the server renders an input

    @property
    def serves_as(self) -> ServesAs:
        """What it serves as: a class constant of each method (``ClassVar[ServesAs]``)."""
        ...

    def serve_row(self, condition: str | None, text: str) -> RowCondition:
        """The conditioning of one request: ``condition`` (``"condition"`` methods), ``text`` (the user's text,
        what an ``"input"`` method routes)."""
        ...


class ConditionServable(Servable, Protocol):
    """A ``"condition"`` method: also names the text that identifies a condition's conditioning."""

    @property
    def exports_adapters(self) -> bool:
        """Whether its conditioning is a LoRA adapter that :meth:`export_adapter` writes (TAGI, Hypter; not MeGan)."""
        ...

    def clean_condition(self, condition: str) -> str: ...

    def condition_reader(self) -> tuple[Any, int]:
        """The tokenizer through which the method reads a condition and how many of its tokens it keeps."""
        ...

    def export_adapter(self, instruction: str, out_dir: str | Path) -> Path:
        """The adapter of ``instruction`` written as a PEFT folder ``out_dir`` (its path); a ``UserError`` for a
        method whose conditioning is not an adapter (``exports_adapters`` False)."""
        ...

"""The methods by name: each method package registers itself once, as PEFT registers a tuner
(``register_peft_method(name="lora", config_cls=..., model_cls=...)``)::

    register_method("megan", MeganConfig, train=train_megan, load=load_megan, folder="hypernetwork",
                    serves_as="condition")

Nothing else lists method names: the CLI, :class:`hyperadapt.runs.Run`, release, serve, the demo and the
benchmarks ask :func:`method_entry` / :func:`method_names`. The entries are filled when
``hyperadapt.methods`` is imported; the look-ups import it on first use (as a plugin registry discovers its
plugins), so this module itself imports no method.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from hyperadapt.errors import UserError

Kind = Literal["train", "continual", "prompt"]
# what a loaded method serves as (its conditioning interface, hyperadapt.core.rows.Servable):
#   condition: a condition text -> an adapter or β (TAGI, Hypter, MeGan); input: each input routed to an adapter
#   (SwitchCIT); fixed: one adapter for every input (multi-task LoRA, MetaICL, Reptile, the single-LoRA streams)
ServesAs = Literal["condition", "input", "fixed"]


class _WithSetting(Protocol):
    """A config that names its own prompt setting (``setting: Literal["def", "def2pos", ...]``)."""

    @property
    def setting(self) -> str: ...


def _own_setting(cfg: _WithSetting) -> str:
    return cfg.setting


@dataclass(frozen=True)
class MethodEntry:
    """One method: its name (``run.json``'s ``method``), config class, entry points and artefact folder.

    ``train(cfg, run_dir, resume=True, model_and_tokenizer=None) -> method``; ``load(run, model_and_tokenizer=None)
    -> method`` for a :class:`~hyperadapt.runs.Run` (None: its runs cannot be loaded, e.g. the oracle stream);
    ``make(model=..., setting=...) -> method`` for a prompt-only method (zero-shot); ``folder``: the run's
    subfolder that holds what loading needs (released with the run); ``prompt_setting(cfg)``: the prompt
    setting the method was trained on (``def``, ``def2pos`` or ``none``); ``upgrade_config(saved) -> dict``:
    a saved config with the keys it predates at the values that run used (applied by ``Run.config``).
    """

    name: str
    config_cls: type[Any] | None
    kind: Kind = "train"
    train: Callable[..., Any] | None = None
    load: Callable[..., Any] | None = None
    make: Callable[..., Any] | None = None
    folder: str | None = None
    serves_as: ServesAs | None = None
    prompt_setting: Callable[[Any], str] = _own_setting
    releasable: bool = False
    upgrade_config: Callable[[dict[str, Any]], dict[str, Any]] = dict


_ENTRIES: dict[str, MethodEntry] = {}


def register_method(name: str, config_cls: type[Any] | None, **fields: Any) -> MethodEntry:
    """Register method ``name`` (``fields``: those of :class:`MethodEntry`); ``ValueError`` when the name is
    taken by another entry."""
    entry = MethodEntry(name, config_cls, **fields)
    if name in _ENTRIES and _ENTRIES[name] != entry:
        raise ValueError(f"method {name!r} is registered twice")
    _ENTRIES[name] = entry
    return entry


def _discover() -> None:
    importlib.import_module("hyperadapt.methods")  # its packages call register_method


def method_entry(name: str) -> MethodEntry:
    """The entry of method ``name``; ``ValueError`` naming the known methods otherwise."""
    if name not in _ENTRIES:
        _discover()
    if name not in _ENTRIES:
        raise UserError(f"unknown method {name!r}: use one of {', '.join(method_names())}")
    return _ENTRIES[name]


def method_names(kind: Kind | None = None, loadable: bool = False) -> list[str]:
    """The registered names (of one ``kind``; with ``loadable``, only those whose runs load), sorted."""
    _discover()
    return sorted(
        n for n, e in _ENTRIES.items() if (kind is None or e.kind == kind) and (not loadable or e.load is not None)
    )

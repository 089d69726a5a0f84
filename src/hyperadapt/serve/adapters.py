"""The adapters loaded at run time (vLLM's ``/v1/load_lora_adapter``): their names, their limits, one load
per name at a time.

As vLLM's ``LoRARequest`` bookkeeping: at most ``max_loras`` runtime adapters at once, none of a rank above
``max_lora_rank``, and at most ``max_bytes`` of factors in memory together (vLLM bounds its CPU cache of
adapters the same way; we refuse a load beyond it instead of evicting, because an evicted adapter would fail
the requests that name it). Names are what a client sends and what comes back in the ``x-hyperadapt-route``
header, so they are Latin-1 printable text (HTTP headers are Latin-1) without CR/LF. A second load of a name
that is loaded, or being loaded, is refused unless it is an explicit ``replace`` of a loaded adapter.

Example::

    store = AdapterStore(server.targets, max_loras=8)
    target = await store.load(server.engine, "sql", "adapters/sql", server.model)
    store.unload("sql")
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperadapt.serve.cache import tensor_bytes
from hyperadapt.serve.engine import ServingEngine
from hyperadapt.serve.errors import RequestRefused
from hyperadapt.serve.runs import AdapterTarget, Target

MAX_NAME_CHARS = 200


def check_name(name: str) -> None:
    """Raise :class:`RequestRefused` (400) unless ``name`` is 1..200 Latin-1 printable characters (no
    control characters, so no CR/LF) with no space at either end."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise RequestRefused(f"an adapter name has 1 to {MAX_NAME_CHARS} characters", "lora_name")
    bad = next((c for c in name if not (" " <= c <= "~" or "\xa0" <= c <= "\xff")), None)
    if bad is not None:
        raise RequestRefused(
            f"the adapter name {name!r} holds {bad!r}: names are Latin-1 printable text "
            "(letters, digits, punctuation, spaces; no CR/LF or other control characters)",
            "lora_name",
        )
    if name != name.strip():
        raise RequestRefused(f"the adapter name {name!r} starts or ends with a space", "lora_name")


@dataclass
class AdapterStore:
    """Loads, replaces and unloads the runtime adapters among ``targets`` (the server's name -> target map)."""

    targets: dict[str, Target]
    max_loras: int = 32
    max_lora_rank: int = 64
    max_bytes: int = 512 * 2**20

    def __post_init__(self) -> None:
        for name in ("max_loras", "max_lora_rank", "max_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        self._lock = threading.Lock()
        self._loading: set[str] = set()

    def runtime(self) -> dict[str, AdapterTarget]:
        return {n: t for n, t in self.targets.items() if isinstance(t, AdapterTarget)}

    @property
    def bytes(self) -> int:
        return sum(tensor_bytes(t.factors) for t in self.runtime().values())

    async def load(
        self, engine: ServingEngine, name: str, path: str | Path, model: Any, replace: bool = False
    ) -> AdapterTarget:
        """Load the PEFT folder ``path`` as ``name`` in the engine thread (``replace``: swap a loaded adapter
        of that name for it). Raises :class:`RequestRefused`: 400 for a bad name or an adapter beyond the
        limits, 409 for a name that is taken or being loaded; ``ValueError``/``FileNotFoundError`` for a
        folder that does not load (see :func:`hyperadapt.core.load_peft`)."""
        self._reserve(name, replace)
        try:
            target = await asyncio.wrap_future(engine.call(lambda: self._read(name, path, model)))
            with self._lock:
                self.targets[name] = target
            return target
        finally:
            with self._lock:
                self._loading.discard(name)

    def unload(self, name: str) -> None:
        """Remove the runtime adapter ``name``; :class:`RequestRefused` (404) when there is none, 409 while
        it is being loaded."""
        with self._lock:
            if name in self._loading:
                raise RequestRefused(
                    f"the adapter {name!r} is being loaded: unload it when that ends", "lora_name", 409
                )
            if not isinstance(self.targets.get(name), AdapterTarget):
                raise RequestRefused(f"no LoRA adapter named {name!r} is loaded", "lora_name", 404)
            del self.targets[name]

    def _reserve(self, name: str, replace: bool) -> None:
        check_name(name)
        with self._lock:
            if name in self._loading:
                raise RequestRefused(f"the adapter {name!r} is being loaded by another request", "lora_name", 409)
            current = self.targets.get(name)
            if current is not None and not isinstance(current, AdapterTarget):
                raise RequestRefused(
                    f"the name {name!r} is a {current.kind} target, not a runtime adapter: choose another name",
                    "lora_name",
                    409,
                )
            if current is not None and not replace:
                raise RequestRefused(
                    f"the name {name!r} is taken: unload it first, or load with replace", "lora_name", 409
                )
            if current is None and len(self.runtime()) + len(self._loading) >= self.max_loras:
                raise RequestRefused(f"{self.max_loras} adapters are loaded (max_loras): unload one first", "lora_name")
            self._loading.add(name)

    def _read(self, name: str, path: str | Path, model: Any) -> AdapterTarget:
        target = AdapterTarget.load(name, path, model)
        rank = max(a.shape[0] for a, _ in target.factors.values())
        if rank > self.max_lora_rank:
            raise RequestRefused(
                f"the adapter has rank {rank}; this server loads ranks up to {self.max_lora_rank} (max_lora_rank)",
                "lora_path",
            )
        others = sum(tensor_bytes(t.factors) for n, t in self.runtime().items() if n != name)
        size = tensor_bytes(target.factors)
        if others + size > self.max_bytes:
            raise RequestRefused(
                f"the adapter needs {size} bytes and the loaded ones hold {others} of the "
                f"{self.max_bytes} allowed (max_bytes): unload one first",
                "lora_path",
            )
        return target

"""Generated adapters on disk, one PEFT folder per (run, condition), bounded and evicted least recently used.

A vLLM server loads adapters from folders, so a condition served through vLLM must exist on disk once. The key is
a hash of the run's fingerprint and the condition's normalised text (:func:`normalise_condition`); the folder is
written once through the caller's ``write(condition, folder)`` (a hypernetwork pass: nothing here knows TAGI).
The order of use is the folders' modification times, so a restarted server keeps its cache and its LRU order.
A folder in use is pinned (``get_or_create(..., pin=True)`` until ``release``): eviction passes over it, so that
many new conditions at once (more than ``max_adapters``) cannot delete or unload an adapter a request still runs
with; the cache then holds more than ``max_adapters`` folders until the pins are released.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hyperadapt.io import write_dir_atomic

WriteAdapter = Callable[[str, Path], None]  # (normalised condition, empty folder) -> writes a PEFT adapter there
MARKER = "adapter_config.json"  # a folder without it is not a finished adapter


def normalise_condition(text: str) -> str:
    """The condition as keyed and as generated: Unicode NFC, runs of whitespace made one space, ends stripped.

    Raises ``ValueError`` for an empty condition."""
    normalised = " ".join(unicodedata.normalize("NFC", text).split())
    if not normalised:
        raise ValueError("the condition is empty: give the instruction or style to follow")
    return normalised


def adapter_key(run_fingerprint: str, condition: str) -> str:
    """20 hex digits of SHA-256 over the run's fingerprint and the normalised condition."""
    payload = f"{run_fingerprint}\x00{normalise_condition(condition)}".encode()
    return hashlib.sha256(payload).hexdigest()[:20]


@dataclass(frozen=True)
class CachedAdapter:
    """One adapter folder of the cache. ``name`` is what vLLM serves it as; ``hit`` says it existed already."""

    name: str
    path: Path
    condition: str
    hit: bool


class AdapterDiskCache:
    """At most ``max_adapters`` generated PEFT folders under ``root`` (``root/<key>/``), least recently used
    evicted first; a pinned one (in use, see :meth:`get_or_create`) is never evicted. ``on_evict(name)`` is called
    for each evicted adapter (to unload it from vLLM) after its folder is gone. Thread-safe: two threads asking for
    one new condition write it once.

    Example::

        cache = AdapterDiskCache("~/.cache/hyperadapt/vllm-adapters", max_adapters=512)
        entry = cache.get_or_create(run_fingerprint, "Answer in French.", write=lambda text, out: ...)
        entry.path  # a PEFT folder; entry.hit is False the first time
    """

    def __init__(
        self, root: str | Path, max_adapters: int, on_evict: Callable[[str], None] | None = None, prefix: str = "ha-"
    ) -> None:
        if max_adapters < 1:
            raise ValueError(f"max_adapters must be >= 1, got {max_adapters}")
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_adapters, self.on_evict, self.prefix = max_adapters, on_evict, prefix
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._pins: Counter[str] = Counter()  # key -> requests using its folder now
        self._order: OrderedDict[str, None] = OrderedDict(
            (p.name, None) for p in sorted(self._finished(), key=lambda p: p.stat().st_mtime_ns)
        )
        self.hits = self.misses = self.evictions = 0
        self._evict_over(self.max_adapters)

    def __len__(self) -> int:
        return len(self._order)

    def _finished(self) -> list[Path]:
        return [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MARKER).exists()]

    def name_of(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _key_of(self, name: str) -> str:
        return name.removeprefix(self.prefix)

    def holds(self, name: str) -> bool:
        """Whether the adapter served as ``name`` has its folder in the cache now."""
        with self._lock:
            return self._key_of(name) in self._order

    def pinned(self, name: str) -> int:
        """How many users hold the adapter ``name`` pinned (0: it may be evicted)."""
        with self._lock:
            return self._pins[self._key_of(name)]

    def get_or_create(
        self, run_fingerprint: str, condition: str, write: WriteAdapter, pin: bool = False
    ) -> CachedAdapter:
        """The folder of (run, condition), written by ``write(normalised condition, folder)`` if absent. With
        ``pin`` the folder is kept (never evicted) until :meth:`release` is called with the entry's name, once
        for each pinned call.

        Raises ``ValueError`` for an empty condition and whatever ``write`` raises (nothing is kept or pinned
        then), or ``RuntimeError`` when ``write`` leaves no ``adapter_config.json``."""
        text = normalise_condition(condition)
        key = adapter_key(run_fingerprint, text)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        try:
            with key_lock:
                path = self.root / key
                hit = (path / MARKER).exists()
                if hit:
                    os.utime(path)
                else:
                    self._write(path, text, write)
                with self._lock:
                    self._order[key] = None
                    self._order.move_to_end(key)
                    self.hits, self.misses = self.hits + hit, self.misses + (not hit)
                    if pin:
                        self._pins[key] += 1
        finally:
            with self._lock:
                self._key_locks.pop(key, None)
        self._evict_over(self.max_adapters, keep=key)  # never the folder about to be returned
        return CachedAdapter(self.name_of(key), path, text, hit)

    @staticmethod
    def _write(path: Path, text: str, write: WriteAdapter) -> None:
        write_dir_atomic(path, lambda tmp: write(text, tmp))
        if not (path / MARKER).exists():
            shutil.rmtree(path, ignore_errors=True)
            raise RuntimeError(f"the adapter writer left no {MARKER} in {path}: it must write a PEFT folder")

    def release(self, name: str) -> None:
        """Unpin the adapter ``name`` (one pinned :meth:`get_or_create`); what the pins kept over the limit is
        evicted now. ``ValueError`` for a name that is not pinned."""
        key = self._key_of(name)
        with self._lock:
            if self._pins[key] < 1:
                raise ValueError(f"adapter {name!r} is not pinned: release it once per pinned get_or_create")
            self._pins[key] -= 1
            if not self._pins[key]:
                del self._pins[key]
        self._evict_over(self.max_adapters)

    def _evict_over(self, limit: int, keep: str | None = None) -> None:
        evicted = []
        with self._lock:
            unpinned = [k for k in self._order if not self._pins[k] and k != keep]  # least recently used first
            for key in unpinned[: max(0, len(self._order) - limit)]:
                del self._order[key]
                shutil.rmtree(self.root / key, ignore_errors=True)
                self.evictions += 1
                evicted.append(self.name_of(key))
        if self.on_evict is not None:
            for name in evicted:
                self.on_evict(name)

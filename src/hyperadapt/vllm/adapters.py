"""The adapters vLLM serves on our behalf: one owner that loads each name once, under a per-name lock, and
unloads what the disk cache evicted (vLLM's ``/v1/load_lora_adapter``; the engine then sees a ``LoRARequest``).

Runtime loading, not a ``LoRAResolver`` plugin (``vllm/lora/resolver.py``, vLLM 0.32), because:

- a refusal keeps its reason: ``load_lora_adapter`` runs the worker's checks at once and answers with them
  ("LoRA rank 32 is greater than max_lora_rank 16"), while a resolver's failed load becomes "LoRA adapter 'x'
  was found but could not be loaded" (400) on the user's request, the reason only in vLLM's log;
- it works with any vLLM reached by URL: a resolver is code registered inside vLLM's process (a
  ``vllm.general_plugins`` entry point installed in vLLM's environment), which a user's cluster may not have;
  the stock filesystem resolver (``VLLM_LORA_RESOLVER_CACHE_DIR``) also demands that the adapter's
  ``base_model_name_or_path`` equal the served model's path, which our generated adapters do not write;
- eviction is explicit: the cache's evicted folders are unloaded here, while a resolver never forgets a name
  whose folder is gone.
Both need the folder on a filesystem vLLM reads; a load costs one round trip per new condition (20-80 ms here).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from hyperadapt.vllm.cache import AdapterDiskCache, CachedAdapter, WriteAdapter
from hyperadapt.vllm.client import VllmClient
from hyperadapt.vllm.errors import VllmError

log = logging.getLogger(__name__)
ALREADY_LOADED = "has already been loaded"  # vLLM's refusal of a name it serves: ours are content hashes, so fine


class ServedAdapters:
    """Names vLLM serves for us, each a PEFT folder: generated conditions through ``cache`` (``condition``), or
    folders given by the user (``folder``). Safe for concurrent requests on one event loop.

    Example::

        cache = AdapterDiskCache(root, max_adapters=256)
        served = ServedAdapters(client, cache)
        entry = await served.condition(run_fingerprint, "Answer in French.", write)  # entry.name -> vLLM model
    """

    def __init__(self, client: VllmClient, cache: AdapterDiskCache | None = None) -> None:
        self.client, self.cache = client, cache
        self.loaded: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._evicted: list[str] = []
        self._evicted_lock = threading.Lock()
        if cache is not None:
            cache.on_evict = self._note_evicted

    def _note_evicted(self, name: str) -> None:  # called from the cache's thread
        with self._evicted_lock:
            self._evicted.append(name)

    async def condition(
        self, run_fingerprint: str, condition: str, write: WriteAdapter, pin: bool = False
    ) -> CachedAdapter:
        """The adapter of ``condition`` for the run, written on disk if new (``write`` runs in a worker thread)
        and loaded into vLLM if not yet; ``hit`` says it was on disk already. With ``pin`` it stays on disk and
        in vLLM until :meth:`release` (a request answering with it pins it: see :class:`AdapterDiskCache`).

        Raises ``ValueError`` for an empty condition, :class:`~hyperadapt.vllm.errors.AdapterRefused` with
        vLLM's reason, or another :class:`VllmError` when vLLM cannot be reached (nothing stays pinned then)."""
        cache = self._cache()
        made = asyncio.ensure_future(asyncio.to_thread(cache.get_or_create, run_fingerprint, condition, write, pin))
        try:
            entry = await asyncio.shield(made)  # the thread runs on when the request is cancelled; so must its pin
        except asyncio.CancelledError:
            if pin:
                made.add_done_callback(self._release_made)
            raise
        try:
            await self._unload_evicted()
            await self.folder(entry.name, entry.path)
        except BaseException:
            if pin:
                self.release(entry.name)
            raise
        return entry

    def release(self, name: str) -> None:
        """Unpin the adapter ``name`` that :meth:`condition` pinned; whatever the cache evicts now is unloaded
        from vLLM by the next :meth:`condition`."""
        self._cache().release(name)

    def _release_made(self, made: asyncio.Future[CachedAdapter]) -> None:
        """Release the pin of a pinned :meth:`condition` whose request was cancelled while its folder was made."""
        if not made.cancelled() and made.exception() is None:
            self.release(made.result().name)

    def _cache(self) -> AdapterDiskCache:
        if self.cache is None:
            raise RuntimeError("ServedAdapters was built without a cache: it serves given folders only")
        return self.cache

    async def folder(self, name: str, path: str | Path) -> None:
        """Have vLLM serve the PEFT folder ``path`` as ``name`` (once; later calls return at once)."""
        if name in self.loaded:
            return
        try:
            async with self._locks.setdefault(name, asyncio.Lock()):
                if name in self.loaded:
                    return
                try:
                    await self.client.load_adapter(name, str(path))
                except VllmError as err:
                    if ALREADY_LOADED not in str(err):
                        raise
                self.loaded.add(name)
        finally:
            self._locks.pop(name, None)

    async def unload(self, name: str) -> None:
        """Have vLLM drop ``name`` if we loaded it."""
        if name in self.loaded:
            self.loaded.discard(name)
            await self.client.unload_adapter(name)

    async def _unload_evicted(self) -> None:
        with self._evicted_lock:
            names, self._evicted = self._evicted, []
        for name in names:
            if self.cache is not None and self.cache.holds(name):
                continue  # written again since it was evicted (the same key: the same weights), and maybe in use
            try:
                await self.unload(name)
            except VllmError as err:  # not the concern of the request that happened to come next
                log.warning("could not unload the evicted adapter %s from vLLM: %s", name, err)

    def forget(self) -> None:
        """Forget what vLLM had loaded (after it restarted): each name is loaded again on its next use."""
        self.loaded.clear()

"""The on-disk adapter cache: one folder per (run, normalised condition), written once, evicted LRU."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from hyperadapt.vllm import AdapterDiskCache, adapter_key, normalise_condition


class Writer:
    """Writes a stand-in PEFT folder and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, text: str, out: Path) -> None:
        self.calls.append(text)
        (out / "adapter_config.json").write_text("{}")
        (out / "condition.txt").write_text(text)


def test_a_condition_is_written_once_and_then_hit(tmp_path):
    write, cache = Writer(), AdapterDiskCache(tmp_path, max_adapters=4)
    first = cache.get_or_create("run-a", "Answer in French.", write)
    again = cache.get_or_create("run-a", "  Answer   in\nFrench. ", write)
    assert (first.hit, again.hit) == (False, True)
    assert first.path == again.path and first.name == again.name == f"ha-{first.path.name}"
    assert write.calls == ["Answer in French."]
    assert (first.path / "condition.txt").read_text() == "Answer in French."
    assert (cache.hits, cache.misses) == (1, 1)


def test_the_key_depends_on_run_and_normalised_text():
    assert adapter_key("r", "a  b") == adapter_key("r", " a b\t") == adapter_key("r", "a\u00a0b")
    assert adapter_key("r", "a b") != adapter_key("other run", "a b")
    assert adapter_key("r", "a b") != adapter_key("r", "a c")
    assert normalise_condition("Cafe\u0301 ") == "Caf\u00e9"


def test_an_empty_condition_is_refused_before_writing(tmp_path):
    write = Writer()
    with pytest.raises(ValueError, match="condition is empty"):
        AdapterDiskCache(tmp_path, 2).get_or_create("r", " \n", write)
    assert write.calls == []


def test_least_recently_used_is_evicted_and_reported(tmp_path):
    evicted: list[str] = []
    write, cache = Writer(), AdapterDiskCache(tmp_path, max_adapters=2, on_evict=evicted.append)
    a = cache.get_or_create("r", "a", write)
    b = cache.get_or_create("r", "b", write)
    cache.get_or_create("r", "a", write)  # a is now the most recent
    c = cache.get_or_create("r", "c", write)
    assert evicted == [b.name] and not b.path.exists()
    assert a.path.exists() and c.path.exists() and len(cache) == 2 and cache.evictions == 1
    assert cache.get_or_create("r", "b", write).hit is False  # written again
    assert write.calls == ["a", "b", "c", "b"]


def test_a_restarted_cache_keeps_its_folders_and_their_order(tmp_path):
    write = Writer()
    first = AdapterDiskCache(tmp_path, max_adapters=3)
    paths = [first.get_or_create("r", t, write).path for t in ("old", "mid", "new")]
    for age, path in zip((300, 200, 100), paths, strict=True):  # mtimes decide the order, whatever the clock's grain
        os.utime(path, ns=(0, 10**12 - age * 10**9))
    (tmp_path / "unfinished").mkdir()  # no adapter_config.json: not an entry
    evicted: list[str] = []
    again = AdapterDiskCache(tmp_path, max_adapters=2, on_evict=evicted.append)
    assert len(again) == 2 and not paths[0].exists() and evicted == [f"ha-{paths[0].name}"]
    assert again.get_or_create("r", "mid", write).hit and again.get_or_create("r", "new", write).hit


def test_a_failing_writer_leaves_nothing(tmp_path):
    cache = AdapterDiskCache(tmp_path, 2)

    def broken(text: str, out: Path) -> None:
        (out / "adapter_model.safetensors").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.get_or_create("r", "x", broken)
    with pytest.raises(RuntimeError, match="left no adapter_config.json"):
        cache.get_or_create("r", "x", lambda text, out: None)
    assert len(cache) == 0 and not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


def test_concurrent_requests_for_one_new_condition_write_it_once(tmp_path):
    cache, gate = AdapterDiskCache(tmp_path, 4), threading.Event()
    write = Writer()

    def slow(text: str, out: Path) -> None:
        gate.wait(5)
        write(text, out)

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_create("r", "same", slow))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert write.calls == ["same"] and sorted(r.hit for r in results) == [False, True, True, True]


def test_max_adapters_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="max_adapters must be >= 1"):
        AdapterDiskCache(tmp_path, 0)


def test_a_pinned_adapter_outlives_the_limit_until_released(tmp_path):
    evicted: list[str] = []
    write, cache = Writer(), AdapterDiskCache(tmp_path, max_adapters=1, on_evict=evicted.append)
    a = cache.get_or_create("r", "a", write, pin=True)
    b = cache.get_or_create("r", "b", write, pin=True)  # over the limit: both in use, neither evicted
    assert len(cache) == 2 and a.path.exists() and b.path.exists() and evicted == []
    assert cache.pinned(a.name) == 1 and cache.holds(a.name)
    cache.get_or_create("r", "a", write, pin=True)  # a second request on a
    cache.release(a.name)
    assert evicted == [] and cache.pinned(a.name) == 1
    cache.release(b.name)  # b is unpinned and the least recently used: evicted now
    assert evicted == [b.name] and not b.path.exists() and not cache.holds(b.name) and len(cache) == 1
    cache.release(a.name)
    assert a.path.exists() and len(cache) == 1
    with pytest.raises(ValueError, match="is not pinned"):
        cache.release(a.name)
    c = cache.get_or_create("r", "c", write)  # unpinned: a (unpinned, older) goes
    assert evicted == [b.name, a.name] and c.path.exists() and len(cache) == 1


def test_a_failing_writer_pins_nothing(tmp_path):
    cache = AdapterDiskCache(tmp_path, 1)
    with pytest.raises(RuntimeError, match="left no adapter_config.json"):
        cache.get_or_create("r", "x", lambda text, out: None, pin=True)
    assert cache.pinned(cache.name_of(adapter_key("r", "x"))) == 0

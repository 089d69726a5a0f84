"""Runtime adapters: names, limits, one load per name at a time."""

from __future__ import annotations

import asyncio

import pytest

from hyperadapt.core import AdapterBank, export_peft, inject
from hyperadapt.serve.adapters import AdapterStore, check_name
from hyperadapt.serve.engine import Engine
from hyperadapt.serve.errors import RequestRefused
from hyperadapt.serve.runs import AdapterTarget, BaseTarget
from hyperadapt.testing import tiny_model


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model, tok = tiny_model("llama")
    folders = {}
    for rank in (2, 8):
        donor, _ = tiny_model("llama")
        inject(donor, ("q_proj", "v_proj"), gating=False)
        bank = AdapterBank.for_model(donor, 1, rank=rank, targets=("q_proj", "v_proj"))
        folders[rank] = export_peft(donor, bank.adapter(0), tmp_path_factory.mktemp("a") / f"rank{rank}")
    engine = Engine(model, tok).start()
    yield model, engine, folders
    engine.stop()


def store_of(**limits) -> AdapterStore:
    return AdapterStore({"base": BaseTarget("base")}, **limits)


@pytest.mark.parametrize("name", ["a\r\nb", "tab\tname", "über\u2028", "名前", "", " lead", "x" * 201, "nul\x00"])
def test_names_outside_latin1_printable_are_refused(name):
    with pytest.raises(RequestRefused, match="adapter name") as err:
        check_name(name)
    assert err.value.status == 400 and err.value.param == "lora_name"


def test_latin1_printable_names_pass():
    for name in ("sql-v2", "Café au lait", "a b", "x" * 200):
        check_name(name)


def test_limits_on_count_rank_and_bytes(served):
    model, engine, folders = served
    store = store_of(max_loras=2, max_lora_rank=4)
    asyncio.run(store.load(engine, "one", folders[2], model))
    with pytest.raises(RequestRefused, match="rank 8.*max_lora_rank"):
        asyncio.run(store.load(engine, "big", folders[8], model))
    asyncio.run(store.load(engine, "two", folders[2], model))
    with pytest.raises(RequestRefused, match="max_loras"):
        asyncio.run(store.load(engine, "three", folders[2], model))
    assert sorted(store.runtime()) == ["one", "two"]
    size = store.bytes // 2
    small = store_of(max_bytes=size + size // 2)
    asyncio.run(small.load(engine, "one", folders[2], model))
    with pytest.raises(RequestRefused, match="max_bytes"):
        asyncio.run(small.load(engine, "two", folders[2], model))
    asyncio.run(small.load(engine, "one", folders[2], model, replace=True))  # a replace frees what it replaces


def test_one_load_per_name_unless_an_explicit_replace(served):
    model, engine, folders = served
    store = store_of()

    async def twice():
        return await asyncio.gather(
            store.load(engine, "same", folders[2], model),
            store.load(engine, "same", folders[2], model),
            return_exceptions=True,
        )

    results = asyncio.run(twice())
    assert sum(isinstance(r, AdapterTarget) for r in results) == 1
    refused = next(r for r in results if isinstance(r, RequestRefused))
    assert refused.status == 409 and "being loaded" in str(refused)
    first = store.targets["same"]
    with pytest.raises(RequestRefused, match="taken.*replace") as err:
        asyncio.run(store.load(engine, "same", folders[2], model))
    assert err.value.status == 409 and store.targets["same"] is first
    second = asyncio.run(store.load(engine, "same", folders[2], model, replace=True))
    assert store.targets["same"] is second is not first
    with pytest.raises(RequestRefused, match="not a runtime adapter"):
        asyncio.run(store.load(engine, "base", folders[2], model, replace=True))
    store.unload("same")
    with pytest.raises(RequestRefused, match="no LoRA adapter") as err:
        store.unload("same")
    assert err.value.status == 404


def test_a_failed_load_frees_its_name(served, tmp_path):
    model, engine, folders = served
    store = store_of()
    with pytest.raises(FileNotFoundError):
        asyncio.run(store.load(engine, "gone", tmp_path / "nothing", model))
    asyncio.run(store.load(engine, "gone", folders[2], model))
    assert "gone" in store.runtime()

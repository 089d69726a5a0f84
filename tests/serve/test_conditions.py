"""The condition rule (serve/conditions.py): what is refused, normalised and cut, and the cache key."""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import pytest
from serve_helpers import tagi_method

from hyperadapt.encoders import sentence_encoder_dir
from hyperadapt.methods.tagi import instructions
from hyperadapt.serve.cache import ByteLRU
from hyperadapt.serve.conditions import normalize_condition, read_condition
from hyperadapt.serve.errors import RequestRefused
from hyperadapt.serve.runs import MethodTarget
from hyperadapt.testing import tiny_model


@pytest.fixture(scope="module")
def target():
    model, tok = tiny_model("llama")
    return MethodTarget("tagi", tagi_method(model, tok), ByteLRU(2**24))  # reads 16 instruction tokens


@pytest.mark.parametrize("text", ["", "   \n\t", "\u200b\u200b", "\x00\x07", "\u2060\ufeff ", "\u2028", "Add \ud800"])
def test_invisible_or_unreadable_conditions_are_refused(text):
    with pytest.raises(RequestRefused) as err:
        normalize_condition(text)
    assert err.value.status == 400 and err.value.param == "condition"


def test_nfc_and_stripping_are_the_only_rewrites():
    assert normalize_condition("  Cafe\u0301 au lait \n") == "Caf\u00e9 au lait"
    assert normalize_condition("Keep  its   spacing and CASE") == "Keep  its   spacing and CASE"


def test_the_key_follows_the_tokens_the_method_reads(target):
    head = " ".join(["the answer"] * 10)  # more than the 16 tokens TAGI reads here
    a, b = read_condition(target.method, head + " one"), read_condition(target.method, head + " two")
    assert a.truncated and b.truncated and a.kept == 16 and a.tokens > 16
    assert a.key == b.key  # the method reads the same 16 tokens: one adapter, one cache entry
    short = read_condition(target.method, "Sort the digits.")
    assert not short.truncated and short.key != a.key
    assert read_condition(target.method, "Caf\u00e9.").key == read_condition(target.method, " Cafe\u0301. ").key
    first = target.resolve(head + " one", "")
    second = target.resolve(head + " two", "")
    assert second.cache_hit is True and second.route == first.route and second.lora is first.lora
    assert target.resolve("Sort the digits.", "").route != first.route


def test_case_accent_and_spacing_variants_share_a_key_under_an_uncased_encoder():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sentence_encoder_dir())  # TAGI's sentence encoder (all-MiniLM-L6-v2)
    method = SimpleNamespace(condition_reader=lambda: (tok, 256))
    keys = {
        read_condition(method, t).key
        for t in ("Translate to French.", "translate  to  FRENCH.", "Tränslate to French.")
    }
    assert len(keys) == 1
    assert read_condition(method, "Translate to German.").key not in keys


def test_many_long_conditions_keep_bounded_memory(target, monkeypatch):
    monkeypatch.setattr(instructions, "CLEAN_CACHE", 64)
    target.cache = ByteLRU(0)  # the adapter LRU keeps nothing: what stays is per-condition text
    long = "word " * 600

    def burst(start: int) -> None:
        for i in range(start, start + 300):
            target.resolve(f"{i} {long}", "")

    burst(0)
    tracemalloc.start()
    burst(300)  # fills what is bounded
    ours = [tracemalloc.Filter(True, "*/hyperadapt/*")]  # memory allocated by our code (texts, keys, caches)
    before = tracemalloc.take_snapshot().filter_traces(ours)
    burst(600)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().filter_traces(ours).compare_to(before, "filename"))
    tracemalloc.stop()
    assert len(target.method.vectors._clean) <= 64 and len(target.cache) == 0
    assert grown < 10 * len(long)  # keeping every condition's text would be 300 × 3,000 characters

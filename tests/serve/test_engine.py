"""The engine without HTTP: no request can fail another, every request and every call ends, clients that
leave are cancelled."""

from __future__ import annotations

import asyncio
import queue
import time

import pytest
import torch
from serve_helpers import tagi_method

from hyperadapt.data.prompts import render
from hyperadapt.serve.cache import ByteLRU
from hyperadapt.serve.conditioning import RowCondition
from hyperadapt.serve.engine import Engine, EngineStopped, Job, Sampling, cancel_on_disconnect
from hyperadapt.serve.runs import BaseTarget, MethodTarget
from hyperadapt.testing import tiny_model

BASE = BaseTarget("base")


@pytest.fixture(scope="module")
def engine():
    model, tok = tiny_model("llama")
    engine = Engine(model, tok, max_batch=16, gather_ms=50.0).start()
    engine.tagi = MethodTarget("tagi", tagi_method(model, tok), ByteLRU(2**24))
    yield engine
    engine.stop()


def job(engine, text="the answer is", target=BASE, condition=None, **sampling) -> Job:
    events: queue.Queue = queue.Queue()
    readable = text.encode("utf-8", "replace").decode()  # the routed text keeps any lone surrogate
    ids = engine.tokenizer(render(engine.tokenizer, readable), add_special_tokens=False).input_ids
    j = Job(ids, target, condition, text, Sampling(**{"max_tokens": 12, "temperature": 0.0, **sampling}), events.put)
    j.events = events
    return j


def result(j: Job, timeout: float = 60.0) -> dict:
    """The job's text and its last event (done or error)."""
    text, deadline = [], time.monotonic() + timeout
    while True:
        event = j.events.get(timeout=max(0.01, deadline - time.monotonic()))
        if event["type"] == "delta":
            text.append(event["text"])
        elif event["type"] in ("done", "error"):
            return {**event, "text": "".join(text)}


def run(engine, jobs: list[Job]) -> list[dict]:
    for j in jobs:
        engine.submit(j)
    return [result(j) for j in jobs]


GOOD = [
    dict(text="the answer is"),
    dict(text="a b c", temperature=0.8, seed=3),
    dict(text="1 2 3", target="tagi", condition="Answer in capitals."),
]


def good_jobs(engine) -> list[Job]:
    return [job(engine, **{**g, "target": engine.tagi if g.get("target") else BASE}) for g in GOOD]


BAD = [  # (job fields, the field named in the 400)
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=float("nan")), "top_p"),
    (dict(seed=2**64, temperature=1.0), "seed"),
    (dict(seed=-1, temperature=1.0), "seed"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(stop=("ok\ud800",)), "stop"),
    (dict(text="abc \udc00"), "prompt"),
]


def test_bad_requests_get_their_own_400_and_never_touch_the_batch(engine):
    alone = [run(engine, [j])[0] for j in good_jobs(engine)]
    assert all(r["type"] == "done" for r in alone)
    bad = [job(engine, **fields) for fields, _ in BAD]
    bad.append(job(engine, target=engine.tagi, condition="Add \ud800"))
    bad.append(job(engine, target=engine.tagi, condition="   "))
    out_of_vocab = job(engine)
    out_of_vocab.prompt_ids = [*out_of_vocab.prompt_ids, 10**6]
    bad.append(out_of_vocab)
    good = good_jobs(engine)
    together = run(engine, [good[0], *bad, good[1], good[2]])
    got_good, got_bad = [together[0], together[-2], together[-1]], together[1:-2]
    assert [(r["text"], r["finish_reason"]) for r in got_good] == [(r["text"], r["finish_reason"]) for r in alone]
    assert all(r["type"] == "error" and r["status"] == 400 for r in got_bad), got_bad
    assert [r.get("param") for r in got_bad[: len(BAD)]] == [p for _, p in BAD]
    assert got_bad[len(BAD)]["param"] == "condition" and "surrogate" in got_bad[len(BAD)]["message"]
    assert got_bad[-1]["param"] == "prompt"
    assert run(engine, good_jobs(engine)[:1])[0]["text"] == alone[0]["text"]  # and it still answers


def test_what_vllm_treats_as_greedy_is_greedy(engine):
    greedy = run(engine, [job(engine, temperature=0.0)])[0]
    for t in (1e-45, 1e-6):
        r = run(engine, [job(engine, temperature=t, top_p=0.5, seed=1)])[0]
        assert (r["type"], r["text"]) == ("done", greedy["text"])
    r = run(engine, [job(engine, temperature=1e-3, seed=1)])[0]  # sampled at vLLM's least temperature, 1e-2
    assert r["type"] == "done"


def test_a_fault_in_one_row_fails_that_row_only(engine, monkeypatch):
    alone = [run(engine, [j])[0] for j in good_jobs(engine)]
    victim = job(engine, text="x y z")
    sample = Engine._sample

    def faulty(self, row, logits):
        if row.job is victim and len(row.generated) == 3:  # mid-answer, in a decoding step
            raise RuntimeError("injected fault")
        return sample(self, row, logits)

    monkeypatch.setattr(Engine, "_sample", faulty)
    good = good_jobs(engine)
    together = run(engine, [good[0], victim, good[1], good[2]])
    assert together[1]["type"] == "error" and together[1]["status"] == 500
    assert "injected fault" in together[1]["message"]
    assert [(r["text"], r["finish_reason"]) for r in (together[0], *together[2:])] == [
        (r["text"], r["finish_reason"]) for r in alone
    ]


class BrokenTarget:
    """A target whose adapter does not fit the model: its prefill raises inside the forward pass."""

    name, kind, needs_condition = "broken", "adapter", False

    def resolve(self, condition, text):
        return RowCondition({"model.layers.0.self_attn.q_proj": (torch.ones(2, 5), torch.ones(7, 2))})


def test_a_request_whose_prefill_fails_fails_alone(engine):
    alone = [run(engine, [j])[0] for j in good_jobs(engine)]
    good = good_jobs(engine)
    together = run(engine, [good[0], job(engine, target=BrokenTarget()), good[1], good[2]])
    assert together[1]["type"] == "error" and together[1]["status"] == 500
    assert [r["text"] for r in (together[0], *together[2:])] == [r["text"] for r in alone]


def test_every_call_resolves_whatever_it_raises(engine):
    async def call(fn):
        return await asyncio.wait_for(asyncio.wrap_future(engine.call(fn)), 30)

    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(call(lambda: next(iter([]))))
    with pytest.raises(KeyError):
        asyncio.run(call(lambda: {}["x"]))
    assert asyncio.run(call(lambda: 7)) == 7


def test_stop_ends_every_waiting_request_and_call():
    model, tok = tiny_model("llama")
    engine = Engine(model, tok)  # never started: nothing it holds is ever run
    waiting = job(engine)
    engine.submit(waiting)
    pending = engine.call(lambda: 1)
    engine.stop()
    assert result(waiting, timeout=5)["status"] == 503
    with pytest.raises(EngineStopped):
        pending.result(timeout=5)
    with pytest.raises(EngineStopped):
        engine.call(lambda: 1).result(timeout=5)
    with pytest.raises(EngineStopped):
        engine.submit(job(engine))


def test_a_client_that_leaves_is_cancelled_while_tokens_flow(engine):
    full = run(engine, [job(engine, max_tokens=60, stop=())])[0]
    assert full["finish_reason"] == "length"  # the tiny model does not stop by itself within 60 tokens
    before = engine.metrics.cancelled
    leaving = job(engine, max_tokens=60)
    seen: list[str] = []

    async def receive() -> dict[str, str]:  # the client leaves once it has seen its first tokens
        while "delta" not in seen:
            seen.append((await asyncio.to_thread(leaving.events.get, timeout=60))["type"])
        return {"type": "http.disconnect"}

    async def main() -> bool:
        engine.submit(leaving)
        return await asyncio.wait_for(cancel_on_disconnect([leaving], receive), 60)

    assert asyncio.run(main()) is True
    deadline = time.monotonic() + 30
    while engine.metrics.cancelled == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.metrics.cancelled == before + 1
    assert not any(r.job is leaving for r in engine.rows)
    while not leaving.events.empty():
        seen.append(leaving.events.get_nowait()["type"])
    assert "done" not in seen and seen.count("delta") < 60
    assert run(engine, [job(engine, max_tokens=60)])[0]["text"] == full["text"]  # the engine serves on

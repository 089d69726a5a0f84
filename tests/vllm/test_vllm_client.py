"""The vLLM client and the served adapters against a fake vLLM (httpx.MockTransport) that answers as vLLM 0.32
does: the error bodies below are the ones the real server gave (see tests/vllm/test_vllm_integration.py)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
import pytest

from hyperadapt.vllm import (
    AdapterDiskCache,
    AdapterRefused,
    ServedAdapters,
    VllmClient,
    VllmError,
    VllmTimeout,
    VllmUnavailable,
    adapter_key,
)


def vllm_error(message: str, status: int, kind: str = "InvalidUserInput") -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": kind, "param": None, "code": status}})


class FakeVllm:
    """Adapters by name; a rank above 16 is refused as vLLM's worker refuses it; completions echo the model."""

    def __init__(self, runtime_loading: bool = True) -> None:
        self.loaded: dict[str, str] = {}
        self.load_calls: list[str] = []
        self.runtime_loading = runtime_loading

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        if path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter") and not self.runtime_loading:
            return httpx.Response(404, json={"detail": "Not Found"})
        if path == "/v1/load_lora_adapter":
            return self.load(body)
        if path == "/v1/unload_lora_adapter":
            if self.loaded.pop(body["lora_name"], None) is None:
                return vllm_error(f"The lora adapter '{body['lora_name']}' cannot be found.", 404, "NotFoundError")
            return httpx.Response(200, text="Success")
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "base"}] + [{"id": n} for n in self.loaded]})
        if path == "/v1/completions":
            return self.complete(body)
        return httpx.Response(404, json={"detail": "Not Found"})

    def load(self, body: dict) -> httpx.Response:
        name, folder = body["lora_name"], Path(body["lora_path"])
        self.load_calls.append(name)
        if name in self.loaded:
            return vllm_error(
                f"The lora adapter '{name}' has already been loaded. If you want to load the adapter "
                "in place, set 'load_inplace' to True.",
                400,
            )
        if not (folder / "adapter_config.json").exists():
            return vllm_error(f"Loading lora {name} failed: No adapter found for <path>", 404, "NotFoundError")
        rank = json.loads((folder / "adapter_config.json").read_text()).get("r", 8)
        if rank > 16:
            return vllm_error(
                "Call to add_lora method failed: Worker failed with error 'LoRA rank "
                f"{rank} is greater than max_lora_rank 16.', please check the stack trace above for "
                "the root cause",
                500,
                "InternalServerError",
            )
        self.loaded[name] = str(folder)
        return httpx.Response(200, text=f"Success: LoRA adapter '{name}' added successfully.")

    def complete(self, body: dict) -> httpx.Response:
        if body["model"] != "base" and body["model"] not in self.loaded:
            return vllm_error(f"The model `{body['model']}` does not exist.", 404, "NotFoundError")
        if body["max_tokens"] > 1024:
            return vllm_error(
                f"max_tokens={body['max_tokens']} cannot be greater than max_model_len=1024.", 400, "BadRequestError"
            )
        text = f"answer from {body['model']}"
        if not body.get("stream"):
            return httpx.Response(200, json={"choices": [{"index": 0, "text": text}], "model": body["model"]})
        events = [{"choices": [{"index": 0, "text": word}]} for word in text.split(" ")]
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})


def client_for(handler) -> VllmClient:
    return VllmClient("http://vllm.test", transport=httpx.MockTransport(handler))


def adapter_folder(root: Path, name: str, rank: int = 8) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank}))
    return folder


def run(coro):
    return asyncio.run(coro)


def test_load_generate_stream_and_unload(tmp_path):
    fake = FakeVllm()

    async def go():
        async with client_for(fake) as vllm:
            await vllm.load_adapter("movie", str(adapter_folder(tmp_path, "movie")))
            answer = await vllm.generate("completion", {"model": "movie", "prompt": "hi", "max_tokens": 4})
            chunks = [
                c["choices"][0]["text"]
                async for c in vllm.stream("completion", {"model": "movie", "prompt": "hi", "max_tokens": 4})
            ]
            models = await vllm.models()
            await vllm.unload_adapter("movie")
            return answer, chunks, models

    answer, chunks, models = run(go())
    assert answer["choices"][0]["text"] == "answer from movie"
    assert chunks == ["answer", "from", "movie"] and models == ["base", "movie"] and fake.loaded == {}


def test_a_refused_adapter_gives_vllms_reason_as_a_422(tmp_path):
    folder = adapter_folder(tmp_path, "big", rank=32)
    with pytest.raises(AdapterRefused) as err:
        run(client_for(FakeVllm()).load_adapter("big", str(folder)))
    assert err.value.status == 422
    assert str(err.value) == f"vLLM refused adapter 'big' ({folder}): LoRA rank 32 is greater than max_lora_rank 16."


def test_a_missing_folder_is_refused_with_its_path(tmp_path):
    with pytest.raises(AdapterRefused, match=r"\(/nowhere/x\): Loading lora x failed: No adapter found"):
        run(client_for(FakeVllm()).load_adapter("x", "/nowhere/x"))


def test_a_server_without_runtime_loading_says_how_to_start_it(tmp_path):
    with pytest.raises(VllmError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True") as err:
        run(client_for(FakeVllm(runtime_loading=False)).load_adapter("a", str(adapter_folder(tmp_path, "a"))))
    assert err.value.status == 503


def test_a_refused_request_keeps_vllms_status_and_reason():
    with pytest.raises(VllmError, match="max_tokens=2000 cannot be greater than max_model_len=1024") as err:
        run(client_for(FakeVllm()).generate("completion", {"model": "base", "prompt": "x", "max_tokens": 2000}))
    assert err.value.status == 400


def test_a_refused_stream_fails_before_its_first_chunk():
    async def go():
        return [
            c
            async for c in client_for(FakeVllm()).stream(
                "completion", {"model": "gone", "prompt": "x", "max_tokens": 2}
            )
        ]

    with pytest.raises(VllmError, match="The model `gone` does not exist") as err:
        run(go())
    assert err.value.status == 404


@pytest.mark.parametrize(
    ("failure", "error", "status", "words"),
    [
        (httpx.ConnectError("Connection refused"), VllmUnavailable, 503, "is not reachable"),
        (httpx.ReadTimeout("timed out"), VllmTimeout, 504, "did not answer a completion request within"),
    ],
)
def test_a_dead_or_slow_server_gives_one_clear_error(failure, error, status, words):
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    client = client_for(handler)
    with pytest.raises(error, match=words) as err:
        run(client.generate("completion", {"model": "base", "prompt": "x", "max_tokens": 2}))
    assert err.value.status == status
    assert run(client.healthy()) is False


def test_a_stream_that_breaks_off_is_an_unavailable_server():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection")

    async def go():
        return [c async for c in client_for(handler).stream("chat", {"model": "base", "messages": []})]

    with pytest.raises(VllmUnavailable, match="broke off a streamed chat request"):
        run(go())


def test_an_unknown_request_kind_is_refused():
    with pytest.raises(ValueError, match=r"unknown request kind 'embed': use one of \['chat', 'completion'\]"):
        run(client_for(FakeVllm()).generate("embed", {}))


def writer(text: str, out: Path) -> None:
    (out / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "text": text}))


def test_served_adapters_write_and_load_each_condition_once_under_concurrency(tmp_path):
    fake = FakeVllm()
    served = ServedAdapters(client_for(fake), AdapterDiskCache(tmp_path / "cache", max_adapters=8))

    async def go():
        return await asyncio.gather(*(served.condition("run", c, writer) for c in ["a", "a ", " a", "b"]))

    entries = run(go())
    assert len({e.name for e in entries}) == 2 and sorted(fake.load_calls) == sorted({e.name for e in entries})
    assert sorted(e.hit for e in entries) == [False, False, True, True]
    assert served.loaded == set(fake.loaded)


def test_an_adapter_vllm_already_serves_counts_as_loaded(tmp_path):
    fake = FakeVllm()
    folder = adapter_folder(tmp_path, "x")
    fake.loaded["x"] = str(folder)  # e.g. loaded by a previous front on the same vLLM
    served = ServedAdapters(client_for(fake))
    run(served.folder("x", folder))
    assert served.loaded == {"x"}


def test_evicted_conditions_are_unloaded_from_vllm(tmp_path):
    fake = FakeVllm()
    served = ServedAdapters(client_for(fake), AdapterDiskCache(tmp_path / "cache", max_adapters=1))

    async def go():
        first = await served.condition("run", "a", writer)
        second = await served.condition("run", "b", writer)
        return first, second

    first, second = run(go())
    assert set(fake.loaded) == {second.name} == served.loaded and not first.path.exists()


def test_a_refused_condition_is_not_marked_loaded(tmp_path):
    served = ServedAdapters(client_for(FakeVllm()), AdapterDiskCache(tmp_path / "cache", max_adapters=2))

    def big(text: str, out: Path) -> None:
        (out / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64}))

    with pytest.raises(AdapterRefused, match="LoRA rank 64 is greater than max_lora_rank 16"):
        run(served.condition("run", "x", big))
    assert served.loaded == set()


def test_a_failure_inside_vllm_is_a_bad_gateway():
    def handler(request: httpx.Request) -> httpx.Response:
        return vllm_error("EngineCore encountered an issue", 500, "InternalServerError")

    with pytest.raises(VllmError, match="refused the chat request: EngineCore encountered an issue") as err:
        run(client_for(handler).generate("chat", {"model": "base", "messages": []}))
    assert err.value.status == 502


def test_an_adapter_in_use_is_neither_deleted_nor_unloaded_by_other_conditions(tmp_path):
    """More new conditions at once than the cache keeps: the pinned adapter of a running request stays on disk and
    in vLLM; released, it is evicted and unloaded like any other."""
    fake = FakeVllm()
    served = ServedAdapters(client_for(fake), AdapterDiskCache(tmp_path / "cache", max_adapters=1))

    async def go():
        busy = await served.condition("run", "busy", writer, pin=True)
        others = [await served.condition("run", c, writer) for c in ("b", "c")]
        assert busy.path.exists() and busy.name in fake.loaded and busy.name in served.loaded
        served.release(busy.name)  # the request ended: busy is over the limit and unpinned, so it goes
        last = await served.condition("run", "d", writer)
        return busy, others, last

    busy, others, last = run(go())
    assert not busy.path.exists() and set(fake.loaded) == {last.name} == served.loaded
    assert all(not e.path.exists() for e in others)


def test_a_condition_written_again_after_eviction_is_not_unloaded(tmp_path):
    fake = FakeVllm()
    served = ServedAdapters(client_for(fake), AdapterDiskCache(tmp_path / "cache", max_adapters=1))

    async def go():
        first = await served.condition("run", "a", writer)
        served._note_evicted(first.name)  # an eviction reported late, after "a" was written again
        again = await served.condition("run", "a", writer, pin=True)
        return first, again

    first, again = run(go())
    assert first.name == again.name and again.name in fake.loaded and again.path.exists()
    served.release(again.name)


def test_a_cancelled_request_releases_the_pin_of_the_adapter_being_written(tmp_path):
    cache, started, gate = AdapterDiskCache(tmp_path / "cache", max_adapters=1), threading.Event(), threading.Event()
    served = ServedAdapters(client_for(FakeVllm()), cache)

    def slow(text: str, out: Path) -> None:
        started.set()
        gate.wait(5)
        writer(text, out)

    async def go():
        task = asyncio.ensure_future(served.condition("run", "slow", slow, pin=True))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        name = cache.name_of(adapter_key("run", "slow"))
        for _ in range(250):  # the writer's thread finishes, then its pin is released
            await asyncio.sleep(0.02)
            if cache.holds(name) and not cache.pinned(name):
                return True
        return False

    assert run(go())


def test_a_refused_pinned_condition_is_released(tmp_path):
    cache = AdapterDiskCache(tmp_path / "cache", max_adapters=2)
    served = ServedAdapters(client_for(FakeVllm()), cache)

    def big(text: str, out: Path) -> None:
        (out / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64}))

    with pytest.raises(AdapterRefused):
        run(served.condition("run", "x", big, pin=True))
    assert cache.pinned(cache.name_of(adapter_key("run", "x"))) == 0


def test_more_streams_than_httpx_pools_by_default_reach_vllm_at_once():
    """httpx pools 100 connections by default: the front held vLLM's batch to 100 streams and timed out the rest.
    Here the fake vLLM answers no stream until all 130 have arrived."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    from hyperadapt.serve import RunningServer

    streams, seen = 130, {"arrived": 0}
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions():
        if "all_in" not in seen:
            seen["all_in"] = asyncio.Event()
        seen["arrived"] += 1
        if seen["arrived"] == streams:
            seen["all_in"].set()
        try:
            await asyncio.wait_for(seen["all_in"].wait(), 20)
        except TimeoutError:
            return JSONResponse({"error": {"message": f"only {seen['arrived']} arrived"}}, 500)

        async def chunks():
            yield 'data: {"choices": [{"text": "ok"}]}\n\ndata: [DONE]\n\n'

        return StreamingResponse(chunks(), media_type="text/event-stream")

    server = RunningServer(app)
    try:

        async def one(client: VllmClient) -> str:
            return "".join([c["choices"][0]["text"] async for c in client.stream("completion", {"model": "m"})])

        async def go():
            async with VllmClient(server.url, timeout=30) as client:
                return await asyncio.gather(*(one(client) for _ in range(streams)))

        assert run(go()) == ["ok"] * streams and seen["arrived"] == streams
    finally:
        server.stop()
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        VllmClient("http://vllm.test", max_connections=0)


def test_tokenize_reads_vllms_answer_and_names_another_shape():
    answers = iter(
        [
            httpx.Response(200, json={"count": 2, "max_model_len": 2560, "tokens": [5, 9]}),
            httpx.Response(404, json={"detail": "Not Found"}),  # not vLLM: no such route
            httpx.Response(200, json={"tokens": ["5"], "max_model_len": 2560}),
            httpx.Response(200, text="<html>"),
        ]
    )

    async def go():
        async with client_for(lambda request: next(answers)) as client:
            assert await client.tokenize("m", "hi") == ([5, 9], 2560)
            assert await client.tokenize("m", "hi") is None
            for _ in range(2):
                with pytest.raises(VllmError, match="not vLLM's shape"):
                    await client.tokenize("m", "hi")

    run(go())


def test_an_evicted_adapter_vllm_no_longer_knows_fails_no_request(tmp_path, caplog):
    """vLLM restarted, or lost the name: unloading an evicted adapter is vLLM's 404. The request that happened to
    come next is not the one to fail."""
    fake = FakeVllm()
    served = ServedAdapters(client_for(fake), AdapterDiskCache(tmp_path / "cache", max_adapters=1))

    async def go():
        first = await served.condition("run", "a", writer)
        fake.loaded.clear()  # vLLM forgot it
        with caplog.at_level("WARNING", logger="hyperadapt.vllm.adapters"):
            second = await served.condition("run", "b", writer)  # evicts a; its unload is a 404
        return first, second

    first, second = run(go())
    assert second.name in fake.loaded and first.name not in served.loaded
    assert f"could not unload the evicted adapter {first.name}" in caplog.text

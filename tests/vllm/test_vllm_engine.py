"""The vLLM engine of ``hyperadapt serve`` on the tiny model, against a fake vLLM (an OpenAI server that records
what it is asked and answers with the model name it was given): which vLLM model each kind of request reaches,
adapters written and loaded once, refusals and a vLLM that is gone become one clear error, MeGan stays home.
The real vLLM is in ``test_vllm_serve.py``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_helpers import ROUTED, tiny_server  # noqa: E402

from hyperadapt.serve import RunningServer, create_app  # noqa: E402
from hyperadapt.serve.vllm_engine import use_vllm  # noqa: E402
from hyperadapt.vllm import VllmUnavailable  # noqa: E402
from hyperadapt.vllm.process import free_port  # noqa: E402

CONDITIONS = ["Answer in capitals.", "Reverse the list."]


def fake_vllm(tokenize=None) -> tuple[FastAPI, dict]:
    """``tokenize(text) -> (ids, max_model_len)`` answers ``POST /tokenize``; without it the route is absent."""
    seen: dict = {"loaded": {}, "bodies": []}
    app = FastAPI()

    if tokenize is not None:

        @app.post("/tokenize")
        async def tokenize_route(request: Request):
            body = await request.json()
            assert body["add_special_tokens"] is False
            ids, context = tokenize(body["prompt"])
            return {"count": len(ids), "max_model_len": context, "tokens": ids}

    @app.get("/health")
    async def health():
        return {}

    @app.get("/v1/models")
    async def models():
        return {"data": [{"id": "/models/tiny"}] + [{"id": n} for n in seen["loaded"]]}

    @app.post("/v1/load_lora_adapter")
    async def load(request: Request):
        body = await request.json()
        config = json.loads((Path(body["lora_path"]) / "adapter_config.json").read_text())
        if config["r"] > 16:
            return JSONResponse(
                {"error": {"message": f"LoRA rank {config['r']} is greater than max_lora_rank 16"}}, 400
            )
        seen["loaded"][body["lora_name"]] = body["lora_path"]
        return PlainTextResponse("Success")

    @app.post("/v1/unload_lora_adapter")
    async def unload(request: Request):
        name = (await request.json())["lora_name"]
        if seen["loaded"].pop(name, None) is None:
            return JSONResponse({"error": {"message": f"The lora adapter '{name}' cannot be found."}}, 404)
        return PlainTextResponse("Success")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        seen["bodies"].append(body)

        async def slow():  # max_tokens >= 50: a long answer, a chunk every 50 ms, that notes being cut off
            finished = False
            try:
                for _ in range(200):
                    yield f"data: {json.dumps({'choices': [{'text': 'x', 'finish_reason': None}]})}\n\n"
                    await asyncio.sleep(0.05)
                finished = True
                yield "data: [DONE]\n\n"
            finally:
                if not finished:
                    seen["aborted"] = seen.get("aborted", 0) + 1

        if body["max_tokens"] >= 50:
            return StreamingResponse(slow(), media_type="text/event-stream")

        async def chunks():
            for i, text in enumerate(("<", body["model"], ">")):
                choice: dict = {"text": text, "finish_reason": None}
                if body.get("logprobs") is not None:  # vLLM's shape with return_tokens_as_token_ids
                    chosen, other = f"token_id:{10 + i}", f"token_id:{20 + i}"
                    choice["logprobs"] = {
                        "tokens": [chosen],
                        "token_logprobs": [-0.5 - i],
                        "top_logprobs": [{chosen: -0.5 - i, other: -0.25 - i}],  # the chosen one is not the best
                        "text_offset": [i],
                    }
                yield f"data: {json.dumps({'choices': [choice]})}\n\n"
            done = {"choices": [{"text": "", "finish_reason": "length"}]}
            yield f"data: {json.dumps(done)}\n\n"
            usage = {"choices": [], "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 3}}
            yield f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app, seen


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    app, seen = fake_vllm()
    vllm = RunningServer(app)
    server = tiny_server()
    engine = use_vllm(server, url=vllm.url, adapter_dir=tmp_path_factory.mktemp("adapters"), max_adapters=8)
    running = RunningServer(create_app(server))
    yield server, engine, seen, running
    running.stop()
    vllm.stop()


def chat(url: str, model: str, text: str, condition: str | None = None, **kw):
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
    extra = {"condition": condition} if condition else None
    kw = {"temperature": 0, **kw}
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=3, extra_body=extra, **kw
    )


def test_each_kind_of_request_reaches_its_vllm_model(served):
    server, engine, seen, running = served
    base = chat(running.url, "base", "hi")
    assert base.choices[0].message.content == "</models/tiny>" and base.model_extra["route"] == "base"
    first = chat(running.url, "tagi", "a b c", CONDITIONS[0])
    again = chat(running.url, "tagi", "x y", f"  {CONDITIONS[0]} ")
    other = chat(running.url, "tagi", "a b c", CONDITIONS[1])
    assert (first.model_extra["cache_hit"], again.model_extra["cache_hit"]) == (False, True)
    name = first.choices[0].message.content[1:-1]
    assert name.startswith("ha-") and again.choices[0].message.content == first.choices[0].message.content
    assert other.choices[0].message.content != first.choices[0].message.content
    assert first.model_extra["route"].startswith("tagi:")
    folder = Path(seen["loaded"][name])
    assert (folder / "adapter_config.json").exists() and (folder / "instruction.txt").read_text() == CONDITIONS[0]
    routed = [chat(running.url, "cl", text) for text in ROUTED.values()]
    assert [r.model_extra["route"] for r in routed] == ["cl:plural", "cl:upper"]
    assert len({r.choices[0].message.content for r in routed}) == 2
    body = seen["bodies"][-1]  # the prompt goes as the front's token ids, stopping at the model's end of turn
    assert (
        body["prompt"]
        == server.tokenizer(
            server.tokenizer.apply_chat_template(
                [{"role": "user", "content": ROUTED["upper"]}], add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        ).input_ids
    )
    assert body["stop_token_ids"] == sorted(engine.own.eos) and body["temperature"] == 0
    # each request pinned its generated adapter while vLLM answered, and released it after (the reply may come first)
    names = [n for n in seen["loaded"] if n.startswith("ha-")]
    assert len(names) == 4 and all(engine.cache.holds(n) for n in names)
    deadline = time.monotonic() + 5
    while any(engine.cache.pinned(n) for n in names) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(engine.cache.pinned(n) for n in names)


def test_a_seed_above_int64_reaches_vllm_as_its_signed_64_bits(served):
    """The front takes seeds in [0, 2**64), vLLM's completions in the int64 range."""
    _, _, seen, running = served
    pairs = ((2**64 - 2, -2), (2**63, -(2**63)), (2**63 - 1, 2**63 - 1), (0, 0), (2**64 - 1, -(2**63)))  # -1: no seed
    for seed, sent in pairs:
        chat(running.url, "base", "hi", seed=seed, temperature=1.0)
        assert seen["bodies"][-1]["seed"] == sent


def test_a_client_that_leaves_ends_its_vllm_stream_and_releases_its_adapter(served):
    """The front notices the client is gone, cancels the job, closes its stream to vLLM (which aborts it there)
    and unpins the adapter the request was answering with."""
    server, engine, seen, running = served
    before, aborted = engine.metrics.cancelled, seen.get("aborted", 0)
    body = {
        "model": "tagi",
        "messages": [{"role": "user", "content": "a long answer"}],
        "condition": "Say x many times.",
        "max_tokens": 60,
        "stream": True,
    }
    with httpx.stream("POST", running.url + "/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert first.startswith("data:")
    deadline = time.monotonic() + 10
    while (seen.get("aborted", 0) == aborted or engine.metrics.cancelled == before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen.get("aborted", 0) == aborted + 1 and engine.metrics.cancelled == before + 1
    name = next(n for n, b in reversed(list(enumerate(seen["bodies"]))) if b["max_tokens"] >= 50)
    assert not engine.cache.pinned(seen["bodies"][name]["model"])


def test_megan_is_answered_by_the_own_engine(served):
    _, _, seen, running = served
    before = len(seen["bodies"])
    answer = chat(running.url, "megan", "the answer is", CONDITIONS[0])
    assert len(seen["bodies"]) == before and answer.choices[0].finish_reason in ("stop", "length")
    assert not answer.choices[0].message.content.startswith("<")


def test_streamed_chunks_carry_vllm_text(served):
    _, _, _, running = served
    chunks = chat(running.url, "base", "hi", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "</models/tiny>"


def test_logprobs_are_asked_of_vllm_as_token_ids_and_answered_in_openais_shape(served):
    server, _, seen, running = served
    answer = chat(running.url, "tagi", "a b c", CONDITIONS[0], logprobs=True, top_logprobs=1)
    body = seen["bodies"][-1]
    assert body["logprobs"] == 1 and body["return_tokens_as_token_ids"] is True
    content = answer.choices[0].logprobs.content
    text = [server.tokenizer.decode([i]) for i in (10, 11, 12)]
    assert [c.token for c in content] == text and [c.logprob for c in content] == [-0.5, -1.5, -2.5]
    best = [server.tokenizer.decode([i]) for i in (20, 21, 22)]  # the better alternative, not the chosen token
    assert [[t.token for t in c.top_logprobs] for c in content] == [[b] for b in best]
    plain = chat(running.url, "base", "hi")
    assert plain.choices[0].logprobs is None and "logprobs" not in seen["bodies"][-1]


def test_vllm_logprobs_become_the_own_engines_entries():
    from hyperadapt.serve.vllm_engine import vllm_logprobs
    from hyperadapt.vllm import VllmError

    block = {
        "tokens": ["token_id:7", "token_id:3"],
        "token_logprobs": [-0.1, -2.0],
        "top_logprobs": [{"token_id:7": -0.1, "token_id:9": -3.0, "token_id:4": -2.5}, {"token_id:3": -2.0}],
    }
    assert vllm_logprobs(block, 2) == [(7, -0.1, [(7, -0.1), (4, -2.5)]), (3, -2.0, [(3, -2.0)])]
    assert vllm_logprobs(block, 0) == [(7, -0.1, []), (3, -2.0, [])]
    with pytest.raises(VllmError, match="not 'token_id:N'"):
        vllm_logprobs({"tokens": ["Paris"], "token_logprobs": [-0.1], "top_logprobs": [None]}, 0)


def test_an_adapter_vllm_refuses_is_one_422(served, tmp_path):
    server, engine, _, running = served
    folder = engine.cache.get_or_create("any", "x", lambda _, out: _big_adapter(server, out)).path
    loaded = httpx.post(running.url + "/v1/load_lora_adapter", json={"lora_name": "big", "lora_path": str(folder)})
    assert loaded.status_code == 200, loaded.text
    with pytest.raises(openai.UnprocessableEntityError, match="LoRA rank 32 is greater than max_lora_rank 16"):
        chat(running.url, "big", "hi")
    assert chat(running.url, "base", "hi").choices[0].message.content == "</models/tiny>"


def test_a_runtime_adapter_reaches_vllm_as_the_front_loaded_it(served, tmp_path):
    """vLLM is handed the factors the front loaded and checked, keyed by their content: a replace under the same
    name is a new vLLM adapter, and a folder changed on disk after its load does not change what is served."""
    import shutil

    from hyperadapt.serve.vllm_engine import write_row

    server, _, seen, running = served
    folders = {}
    for key in ("plural", "upper"):
        folders[key] = tmp_path / key
        folders[key].mkdir()
        write_row(server.model, server.targets["cl"].method.serve_row(None, ROUTED[key]), folders[key])

    def load(folder: Path, replace: bool = False) -> None:
        body = {"lora_name": "swap", "lora_path": str(folder), "replace": replace}
        assert httpx.post(running.url + "/v1/load_lora_adapter", json=body).status_code == 200

    def served_as() -> tuple[str, str]:
        answer = chat(running.url, "swap", "hi")
        return answer.choices[0].message.content[1:-1], answer.model_extra["route"]

    load(folders["plural"])
    first, route = served_as()
    load(folders["upper"], replace=True)
    second, _ = served_as()
    assert route == "adapter:swap" and first.startswith("ha-") and second.startswith("ha-") and first != second
    shutil.rmtree(folders["upper"])
    shutil.copytree(folders["plural"], folders["upper"])  # the folder changes on disk; the loaded adapter does not
    assert served_as()[0] == second and Path(seen["loaded"][second]).parent != folders["upper"].parent
    load(folders["plural"], replace=True)  # the first content again: its folder, already in vLLM
    assert served_as()[0] == first
    assert httpx.post(running.url + "/v1/unload_lora_adapter", json={"lora_name": "swap"}).status_code == 200


def _big_adapter(server, out: Path) -> None:
    """A rank-32 adapter for the tiny model (the fake vLLM, like vLLM started with --max-lora-rank 16, refuses)."""
    from hyperadapt.core.rows import RowCondition
    from hyperadapt.serve.vllm_engine import write_row

    row = server.targets["cl"].method.serve_row(None, ROUTED["plural"])
    lora = {p: (a.repeat(16, 1), b.repeat(1, 16) / 16) for p, (a, b) in row.lora.items()}  # r 2 -> 32
    write_row(server.model, RowCondition(lora), out)


def test_a_vllm_that_went_away_is_a_503_and_megan_still_answers(tmp_path):
    app, _ = fake_vllm()
    vllm = RunningServer(app)
    server = tiny_server()
    use_vllm(server, url=vllm.url, adapter_dir=tmp_path)
    running = RunningServer(create_app(server))
    try:
        assert chat(running.url, "base", "hi").choices[0].message.content == "</models/tiny>"
        vllm.stop()
        with pytest.raises(openai.InternalServerError, match="not reachable") as err:
            chat(running.url, "base", "hi")
        assert err.value.status_code == 503
        assert chat(running.url, "megan", "the answer is", CONDITIONS[0]).choices[0].finish_reason
    finally:
        running.stop()


def test_a_vllm_that_never_answers_stops_the_start_with_its_reason(tmp_path):
    server = tiny_server()
    engine = use_vllm(server, url=f"http://127.0.0.1:{free_port()}", adapter_dir=tmp_path)
    engine.process.connect_timeout = 1
    with pytest.raises(VllmUnavailable, match="was not healthy within 1s"):
        engine.start()
    engine.stop()


def test_a_vllm_of_another_model_is_refused_and_a_short_context_named(tmp_path, caplog):
    """The front sends token ids: a vLLM with another tokenizer would answer garbage without an error."""
    server = tiny_server(max_prompt_tokens=300, max_tokens=100)
    ours = server.tokenizer

    def start(tokenize) -> None:
        app, _ = fake_vllm(tokenize)
        vllm = RunningServer(app)
        engine = use_vllm(tiny_server(max_prompt_tokens=300, max_tokens=100), url=vllm.url, adapter_dir=tmp_path)
        try:
            engine.start()
        finally:
            engine.stop()
            vllm.stop()

    with pytest.raises(VllmUnavailable, match="whose tokenizer is not that of"):
        start(lambda text: ([t + 1 for t in ours(text, add_special_tokens=False).input_ids], 4096))
    with caplog.at_level("WARNING", logger="hyperadapt.serve.vllm_engine"):
        start(lambda text: (ours(text, add_special_tokens=False).input_ids, 256))
    assert "a context of 256 tokens; the front admits requests of up to 400" in caplog.text


def test_serve_refuses_an_unknown_engine_and_a_missing_vllm(tmp_path, monkeypatch):
    from tests.cli_helpers import runner

    from hyperadapt.cli import app

    bad = runner.invoke(app, ["serve", "--engine", "magic"])
    assert bad.exit_code != 0 and "'own' or 'vllm'" in bad.output
    monkeypatch.setenv("HYPERADAPT_VLLM_PYTHON", str(tmp_path / "no-python"))
    missing = runner.invoke(app, ["serve", "--engine", "vllm"])
    assert missing.exit_code != 0 and "make vllm" in missing.output


def test_serve_with_a_vllm_that_cannot_serve_is_one_line_before_the_app(tiny_dir, monkeypatch):
    """Was uvicorn's lifespan traceback ("Application startup failed"); the app must not start."""
    import uvicorn
    from tests.cli_helpers import runner

    from hyperadapt.cli import app

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the app started"))
    fake, _ = fake_vllm(lambda text: ([1, 2, 3], 4096))  # another model's tokenizer
    vllm = RunningServer(fake)
    try:
        args = ["serve", "--model", str(tiny_dir), "--engine", "vllm", "--vllm-url", vllm.url]
        result = runner.invoke(app, [*args, "--port", str(free_port())])
    finally:
        vllm.stop()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "tokenizer is not that of" in errors[0], result.output
    assert "Traceback" not in result.output


def test_vllm_is_started_with_a_context_for_the_longest_request_the_front_admits(monkeypatch):
    """vLLM's default here was 1,024 tokens while the front admits 2,048-token prompts and 512 new tokens: vLLM
    refused requests the own engine answers."""
    import hyperadapt.models
    from hyperadapt.serve.vllm_engine import vllm_config

    monkeypatch.setattr(hyperadapt.models, "resolve_model_path", lambda name: f"/models/{name}")
    server = tiny_server(max_prompt_tokens=300, max_tokens=100)
    positions = server.model.config.max_position_embeddings
    assert vllm_config(server).max_model_len == min(400, positions)
    server.config.max_prompt_tokens = positions  # a context beyond the model's positions is capped at them
    assert vllm_config(server).max_model_len == positions
    assert vllm_config(server, max_model_len=64).max_model_len == 64  # an explicit override wins

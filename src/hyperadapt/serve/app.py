"""The HTTP layer: an OpenAI-compatible FastAPI app over one :class:`Engine`.

``/v1/completions``, ``/v1/chat/completions`` (both with ``stream``), ``/v1/models``; ``POST /v1/adapters``
(a generated adapter as a zipped PEFT folder); vLLM's ``/v1/load_lora_adapter`` and
``/v1/unload_lora_adapter``; ``/health`` and ``/metrics`` (Prometheus). Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``; malformed requests get a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hyperadapt.serve.engine import Job, QueueFull, Sampling
from hyperadapt.serve.metrics import Metrics
from hyperadapt.serve.runs import AdapterTarget, MethodTarget
from hyperadapt.serve.schemas import (
    AdapterRequest,
    ChatRequest,
    CompletionRequest,
    LoadLoraRequest,
    SamplingFields,
    UnloadLoraRequest,
)
from hyperadapt.serve.server import Server
from hyperadapt.serve.vllm_compat import vllm_problems

ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/adapters", "/v1/load_lora_adapter",
             "/v1/unload_lora_adapter", "/health", "/metrics")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
               503: "server_busy"}


class ApiError(Exception):
    """An error answered with ``status`` and an OpenAI-style body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param,
                      "code": status}}
    return JSONResponse(body, status_code=status)


class _ClientGone(Exception):
    pass


class MetricsMiddleware:
    """Counts every HTTP request by endpoint and status (pure ASGI, so streaming and disconnects pass through)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            path = scope.get("path", "")
            self.metrics.request(path if path in ENDPOINTS else "other", status)


def create_app(server: Server) -> FastAPI:
    """The FastAPI app serving ``server`` (its engine starts and stops with the app)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.engine.start()
        yield
        server.engine.stop()

    app = FastAPI(title="hyperadapt", lifespan=lifespan)
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)
    cfg = server.config

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.message, err.param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        return error_response(500, f"internal error: {type(err).__name__}: {err}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(400, _describe(err.errors()))

    def authorize(request: Request) -> None:
        if cfg.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {cfg.api_key}".encode()):
            raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'")

    async def parse(request: Request, model: type[BaseModel]) -> Any:
        authorize(request)
        size = int(request.headers.get("content-length") or 0)
        chunks, total = [], 0
        if size <= cfg.max_body_bytes:
            async for chunk in request.stream():
                total += len(chunk)
                if total > cfg.max_body_bytes:
                    break
                chunks.append(chunk)
        if max(size, total) > cfg.max_body_bytes:
            raise ApiError(413, f"request body larger than {cfg.max_body_bytes} bytes")
        try:
            data = json.loads(b"".join(chunks) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ApiError(400, f"the request body is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise ApiError(400, _describe(err.errors())) from err

    # -- generation ------------------------------------------------------------------------------------

    def make_jobs(req: SamplingFields, prompts: list[list[int]], route_texts: list[str], max_tokens: int | None):
        target = server.targets.get(req.model)
        if target is None:
            raise ApiError(404, f"model {req.model!r} does not exist: see /v1/models ({', '.join(server.targets)})",
                           "model")
        if target.needs_condition and not (req.condition or "").strip():
            raise ApiError(400, f"model {req.model!r} is a {target.kind} run: give the condition in the body field "
                                "'condition' (openai client: extra_body={'condition': ...})", "condition")
        if not target.needs_condition and req.condition is not None:
            raise ApiError(400, f"model {req.model!r} ({target.kind}) takes no 'condition'", "condition")
        if req.condition is not None and len(req.condition) > cfg.max_condition_chars:
            raise ApiError(400, f"condition longer than {cfg.max_condition_chars} characters", "condition")
        max_tokens = max_tokens or cfg.default_max_tokens
        if max_tokens > cfg.max_tokens:
            raise ApiError(400, f"max_tokens={max_tokens} exceeds this server's limit of {cfg.max_tokens}",
                           "max_tokens")
        try:
            sampling = Sampling(max_tokens, req.temperature, req.top_p, req.seed, req.stops())
        except ValueError as err:
            raise ApiError(400, str(err), "stop") from err
        for ids in prompts:
            if not ids:
                raise ApiError(400, "the prompt is empty", "prompt")
            if len(ids) > cfg.max_prompt_tokens:
                raise ApiError(400, f"the prompt has {len(ids)} tokens; this server takes at most "
                                    f"{cfg.max_prompt_tokens}", "prompt")
        loop = asyncio.get_running_loop()
        jobs = []
        for ids, text in zip(prompts, route_texts, strict=True):
            events: asyncio.Queue = asyncio.Queue()
            job = Job(ids, target, req.condition, text, sampling,
                      lambda ev, q=events: loop.call_soon_threadsafe(q.put_nowait, ev))
            job.events = events
            jobs.append(job)
        try:
            for job in jobs:
                server.engine.submit(job)
        except QueueFull as err:
            for job in jobs:
                job.cancel()
            raise ApiError(503, str(err)) from err
        return jobs

    async def next_event(job: Job, request: Request) -> dict:
        while True:
            try:
                return await asyncio.wait_for(job.events.get(), 0.5)
            except TimeoutError:
                if await request.is_disconnected():
                    job.cancel()
                    raise _ClientGone from None

    async def first_event(job: Job, request: Request) -> dict:
        event = await next_event(job, request)
        if event["type"] == "error":
            raise ApiError(event["status"], event["message"])
        return event

    async def collect(job: Job, request: Request) -> dict:
        start = await first_event(job, request)
        text = []
        while (event := await next_event(job, request))["type"] == "delta":
            text.append(event["text"])
        if event["type"] == "error":
            raise ApiError(event["status"], event["message"])
        return {**event, "text": "".join(text), "route": start["route"], "cache_hit": start["cache_hit"]}

    def usage(results: list[dict]) -> dict:
        p = sum(r["prompt_tokens"] for r in results)
        c = sum(r["completion_tokens"] for r in results)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def stream(job: Job, request: Request, start: dict, chunk, usage_chunk) -> AsyncIterator[str]:
        try:
            first = chunk(None, None, True)
            if first is not None:
                yield _sse(first)
            while True:
                event = await job.events.get()
                if event["type"] == "delta":
                    yield _sse(chunk(event["text"], None, False))
                elif event["type"] == "done":
                    yield _sse(chunk("", event["finish_reason"], False))
                    if usage_chunk is not None:
                        yield _sse(usage_chunk(usage([event])))
                    yield "data: [DONE]\n\n"
                    return
                else:
                    yield _sse({"error": {"message": event["message"], "type": "server_error",
                                          "code": event["status"]}})
                    return
        finally:
            job.cancel()  # a no-op for a finished request; frees the slot of a client that went away

    def header(start: dict) -> dict:
        return {"x-hyperadapt-route": start["route"]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = await parse(request, CompletionRequest)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts:
            raise ApiError(400, "prompt is an empty list", "prompt")
        if req.stream and len(prompts) > 1:
            raise ApiError(400, "stream takes one prompt", "prompt")
        ids = [server.tokenizer(p).input_ids for p in prompts]
        jobs = make_jobs(req, ids, prompts, req.max_tokens)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        try:
            if req.stream:
                start = await first_event(jobs[0], request)

                def chunk(text, finish, first):
                    if first:
                        return None
                    return {"id": rid, "object": "text_completion", "created": created, "model": req.model,
                            "route": start["route"],
                            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}

                return StreamingResponse(stream(jobs[0], request, start, chunk, None),
                                         media_type="text/event-stream", headers=header(start))
            results = [await collect(job, request) for job in jobs]
        except _ClientGone:
            return Response(status_code=499)
        finally:
            if not req.stream:
                for job in jobs:
                    job.cancel()
        choices = [{"index": i, "text": r["text"], "finish_reason": r["finish_reason"], "logprobs": None,
                    "route": r["route"]} for i, r in enumerate(results)]
        body = {"id": rid, "object": "text_completion", "created": created, "model": req.model, "choices": choices,
                "usage": usage(results), "route": results[0]["route"], "cache_hit": results[0]["cache_hit"]}
        return JSONResponse(body, headers=header(results[0]))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        req = await parse(request, ChatRequest)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in req.messages]
        try:
            rendered = server.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as err:  # jinja's TemplateError and friends: the model's template refused the messages
            raise ApiError(400, f"the model's chat template cannot render these messages: {err}", "messages") from err
        users = [m["content"] for m in messages if m["role"] == "user"]
        ids = server.tokenizer(rendered, add_special_tokens=False).input_ids
        jobs = make_jobs(req, [ids], [users[-1] if users else rendered], req.max_completion_tokens or req.max_tokens)
        job, rid, created = jobs[0], f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        try:
            if req.stream:
                start = await first_event(job, request)
                base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                        "route": start["route"]}

                def chunk(text, finish, first):
                    delta = {"role": "assistant", "content": ""} if first else {} if finish else {"content": text}
                    return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

                usage_chunk = None
                if req.stream_options is not None and req.stream_options.include_usage:
                    def usage_chunk(u):
                        return {**base, "choices": [], "usage": u}

                return StreamingResponse(stream(job, request, start, chunk, usage_chunk),
                                         media_type="text/event-stream", headers=header(start))
            result = await collect(job, request)
        except _ClientGone:
            return Response(status_code=499)
        finally:
            if not req.stream:
                job.cancel()
        body = {"id": rid, "object": "chat.completion", "created": created, "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result["text"]},
                             "finish_reason": result["finish_reason"], "logprobs": None}],
                "usage": usage([result]), "route": result["route"], "cache_hit": result["cache_hit"]}
        return JSONResponse(body, headers=header(result))

    # -- models and adapters ---------------------------------------------------------------------------

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authorize(request)
        created = int(server.started)
        data = [{"id": name, "object": "model", "created": created, "owned_by": "hyperadapt", "root": server.base_id,
                 "kind": t.kind, "needs_condition": t.needs_condition,
                 "prompt_setting": t.prompt_style.setting if t.prompt_style else None}
                for name, t in server.targets.items()]
        return {"object": "list", "data": data}

    @app.post("/v1/adapters")
    async def adapters(request: Request) -> Response:
        req = await parse(request, AdapterRequest)
        target = server.targets.get(req.model)
        if not isinstance(target, MethodTarget) or not target.exports_adapters:
            names = [n for n, t in server.targets.items() if isinstance(t, MethodTarget) and t.exports_adapters]
            raise ApiError(400 if target else 404, f"model {req.model!r} does not generate adapters: use a TAGI or "
                                                   f"Hypter run ({', '.join(names) or 'none loaded'})", "model")
        condition = req.condition or req.instruction
        if not (condition or "").strip() or len(condition) > cfg.max_condition_chars:
            raise ApiError(400, f"give 'condition' (the instruction), 1..{cfg.max_condition_chars} characters",
                           "condition")

        def export() -> bytes:
            with tempfile.TemporaryDirectory() as tmp:
                folder = target.export_adapter(condition, Path(tmp) / "adapter")
                problems = vllm_problems(folder, cfg.max_lora_rank)
                if problems:
                    raise ValueError("the generated adapter would not load in vLLM: " + "; ".join(problems))
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                    for f in sorted(folder.iterdir()):
                        zf.write(f, f.name)
                return buf.getvalue()

        try:
            data = await asyncio.wrap_future(server.engine.call(export))
        except ValueError as err:
            raise ApiError(422, str(err), "model") from err
        return Response(data, media_type="application/zip",
                        headers={"content-disposition": 'attachment; filename="adapter.zip"'})

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request) -> Response:
        req = await parse(request, LoadLoraRequest)
        if not cfg.allow_runtime_lora:
            raise ApiError(403, "loading adapters at run time is off: start the server with --allow-runtime-lora")
        if req.lora_name in server.targets:
            raise ApiError(400, f"the name {req.lora_name!r} is taken: unload it first", "lora_name")
        try:
            target = await asyncio.wrap_future(
                server.engine.call(lambda: AdapterTarget.load(req.lora_name, req.lora_path, server.model)))
        except (ValueError, FileNotFoundError, OSError) as err:
            raise ApiError(400, f"cannot load {req.lora_path!r}: {err}", "lora_path") from err
        server.targets[req.lora_name] = target
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request) -> Response:
        req = await parse(request, UnloadLoraRequest)
        if not cfg.allow_runtime_lora:
            raise ApiError(403, "unloading adapters at run time is off: start the server with --allow-runtime-lora")
        if not isinstance(server.targets.get(req.lora_name), AdapterTarget):
            raise ApiError(404, f"no LoRA adapter named {req.lora_name!r} is loaded", "lora_name")
        del server.targets[req.lora_name]
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' removed successfully.")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(server.metrics.render(server.cache.stats()), media_type="text/plain; version=0.0.4")

    return app


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _describe(errors: list[dict]) -> str:
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)

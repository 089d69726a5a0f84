"""What every endpoint shares: OpenAI-style errors, reading a body, the sampling fields, the trained prompt of
a ``{"condition", "input"}`` request, and turning prompts into engine jobs and their events into answers."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hyperadapt.serve.engine import Job, QueueFull, Sampling
from hyperadapt.serve.runs import Target
from hyperadapt.serve.server import Server

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
               503: "server_busy"}


class ApiError(Exception):
    """An error answered with ``status`` and an OpenAI-style body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class ClientGone(Exception):
    """The client disconnected while its request was answered (answered 499)."""


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param,
                      "code": status}}
    return JSONResponse(body, status_code=status)


def describe(errors: list[dict]) -> str:
    """pydantic's validation errors as one message."""
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def server_of(request: Request) -> Server:
    return request.app.state.server


def authorize(request: Request) -> None:
    key = server_of(request).config.api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'")


async def parse(request: Request, model: type[BaseModel]) -> Any:
    """The authorised request's JSON body as ``model``: 413 over the size limit, 400 for anything malformed."""
    authorize(request)
    limit = server_of(request).config.max_body_bytes
    size = int(request.headers.get("content-length") or 0)
    chunks, total = [], 0
    if size <= limit:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                break
            chunks.append(chunk)
    if max(size, total) > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    try:
        data = json.loads(b"".join(chunks) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the request body is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ApiError(400, describe(err.errors())) from err


class Body(BaseModel):
    """A request body (unknown fields are ignored, as vLLM does)."""

    model_config = ConfigDict(extra="ignore")


class SamplingFields(Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="one answer per prompt")
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None
    condition: str | None = Field(None, description="the instruction/condition of a hypernetwork run")
    input: str | list[str] | None = Field(
        None, description="the input, rendered with 'condition' the way the run was trained (instead of a prompt)")

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return tuple(stops)


def find_target(server: Server, name: str) -> Target:
    target = server.targets.get(name)
    if target is None:
        raise ApiError(404, f"model {name!r} does not exist: see /v1/models ({', '.join(server.targets)})", "model")
    return target


def trained_prompts(server: Server, target: Target, req: SamplingFields) -> tuple[list[list[int]], list[str]]:
    """The prompt token ids and route texts of a ``{"condition", "input"}`` request, rendered in the target's
    prompt style (the run's own: ``Definition: {condition}\\n\\nInput: {input}`` through the chat template for
    a ``def`` run, the input alone for ``none``), as ``hyperadapt generate`` renders them."""
    style = target.prompt_style
    if style is None:
        raise ApiError(400, f"model {req.model!r} ({target.kind}) has no trained prompt: send 'prompt' or "
                            "'messages' instead of 'input'", "input")
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not inputs:
        raise ApiError(400, "input is an empty list", "input")
    condition = req.condition or ""
    if style.setting != "none" and not condition.strip():
        raise ApiError(400, f"model {req.model!r} was trained with the condition in its prompt: give 'condition' "
                            "with 'input'", "condition")
    ids = [server.tokenizer(style.prompt(server.tokenizer, condition, x), add_special_tokens=False).input_ids
           for x in inputs]
    return ids, [style.user_text(condition, x) for x in inputs]


def make_jobs(server: Server, req: SamplingFields, target: Target, prompts: list[list[int]], route_texts: list[str],
              max_tokens: int | None) -> list[Job]:
    """Validate a generation request (its condition, limits and prompts) and queue one job per prompt."""
    cfg = server.config
    in_prompt = req.input is not None and target.prompt_style is not None and target.prompt_style.setting != "none"
    if target.needs_condition and not (req.condition or "").strip():
        raise ApiError(400, f"model {req.model!r} is a {target.kind} run: give the condition in the body field "
                            "'condition' (openai client: extra_body={'condition': ...})", "condition")
    if not target.needs_condition and req.condition is not None and not in_prompt:
        raise ApiError(400, f"model {req.model!r} ({target.kind}) takes no 'condition'", "condition")
    if req.condition is not None and len(req.condition) > cfg.max_condition_chars:
        raise ApiError(400, f"condition longer than {cfg.max_condition_chars} characters", "condition")
    max_tokens = max_tokens or cfg.default_max_tokens
    if max_tokens > cfg.max_tokens:
        raise ApiError(400, f"max_tokens={max_tokens} exceeds this server's limit of {cfg.max_tokens}", "max_tokens")
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
    condition = req.condition if target.needs_condition else None
    loop = asyncio.get_running_loop()
    jobs = []
    for ids, text in zip(prompts, route_texts, strict=True):
        events: asyncio.Queue = asyncio.Queue()
        job = Job(ids, target, condition, text, sampling,
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
                raise ClientGone from None


async def first_event(job: Job, request: Request) -> dict:
    event = await next_event(job, request)
    if event["type"] == "error":
        raise ApiError(event["status"], event["message"])
    return event


async def collect(job: Job, request: Request) -> dict:
    """A job's whole answer: ``text``, ``finish_reason``, token counts, ``route`` and ``cache_hit``."""
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


Chunk = Callable[[str | None, str | None, bool], dict | None]


async def stream(job: Job, chunk: Chunk, usage_chunk: Callable[[dict], dict] | None) -> AsyncIterator[str]:
    """Server-sent events of one job: ``chunk(text, finish_reason, first)`` per event, then ``[DONE]``."""
    try:
        first = chunk(None, None, True)
        if first is not None:
            yield sse(first)
        while True:
            event = await job.events.get()
            if event["type"] == "delta":
                yield sse(chunk(event["text"], None, False))
            elif event["type"] == "done":
                yield sse(chunk("", event["finish_reason"], False))
                if usage_chunk is not None:
                    yield sse(usage_chunk(usage([event])))
                yield "data: [DONE]\n\n"
                return
            else:
                yield sse({"error": {"message": event["message"], "type": "server_error", "code": event["status"]}})
                return
    finally:
        job.cancel()  # a no-op for a finished request; frees the slot of a client that went away


def sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def route_header(start: dict) -> dict:
    return {"x-hyperadapt-route": start["route"]}

"""What every endpoint shares: OpenAI-style errors, reading a body, the sampling fields, the trained prompt of
a ``{"condition", "input"}`` request, and turning prompts into engine jobs and their events into answers.

**Nothing accepted is silently ignored.** A body field is either served, or refused with a 400 that names it:
OpenAI/vLLM fields this server does not implement (:data:`REFUSED`) are refused unless they hold their no-op
value (``"best_of": 1``, ``"frequency_penalty": 0``, ...), and unknown fields are refused too (vLLM ignores
them with a warning; a misspelt ``max_token`` would otherwise pass unnoticed). ``user`` is an opaque
identifier: accepted, not used.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hyperadapt.data.prompts import prompt_ids
from hyperadapt.serve.engine import (
    DoneEvent,
    Event,
    Job,
    RowInfo,
    Sampling,
    StartEvent,
    TokenCounts,
    TokenLogprobs,
    cancel_on_disconnect,
)
from hyperadapt.serve.errors import lone_surrogate
from hyperadapt.serve.runs import Target
from hyperadapt.serve.server import Server

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    503: "server_busy",
}

# OpenAI/vLLM fields this server does not implement -> the values that mean "off" (accepted as no-ops)
REFUSED: dict[str, tuple[Any, ...]] = {
    "best_of": (None, 1),
    "logit_bias": (None, {}),
    "frequency_penalty": (None, 0),
    "presence_penalty": (None, 0),
    "repetition_penalty": (None, 1),
    "suffix": (None, ""),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "parallel_tool_calls": (None,),
    "response_format": (None, {"type": "text"}),
    "top_k": (None, -1, 0),
    "min_p": (None, 0),
    "min_tokens": (None, 0),
    "ignore_eos": (None, False),
    "guided_json": (None,),
    "guided_regex": (None,),
    "guided_choice": (None,),
    "prompt_logprobs": (None,),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
}
IGNORED = ("user",)  # an opaque client identifier: accepted, not used
Json = dict[str, Any]  # a JSON object of a response body
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


class Answer(RowInfo, TokenCounts):
    """A job's whole answer (:func:`collect`): what answered it (its start event), its text, why it ended, its
    token counts and log-probabilities (its done event)."""

    text: str
    finish_reason: str
    logprobs: list[TokenLogprobs] | None


class ApiError(Exception):
    """An error answered with ``status`` and an OpenAI-style body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class ClientGone(Exception):
    """The client disconnected while its request was answered (answered 499)."""


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    body = {
        "error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param, "code": status}
    }
    return JSONResponse(body, status_code=status)


def describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """pydantic's validation errors as one message."""
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def server_of(request: Request) -> Server:
    server: Server = request.app.state.server  # set by create_app
    return server


def authorize(request: Request) -> None:
    key = server_of(request).config.api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'")


def surrogate_at(data: Any, path: str = "") -> str | None:
    """The path of the first string in the JSON value ``data`` holding a lone UTF-16 surrogate, else None."""
    if isinstance(data, str):
        return path if lone_surrogate(data) is not None else None
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if (found := surrogate_at(value, f"{path}.{key}" if path else str(key))) is not None:
            return found
    return None


def check_extras(body: BaseModel) -> None:
    """400 for a field of :data:`REFUSED` with an effect, or an unknown field (see the module's docstring)."""
    for name, value in (body.model_extra or {}).items():
        if name in IGNORED:
            continue
        if name in REFUSED:
            if value in REFUSED[name]:
                continue
            raise ApiError(
                400,
                f"{name!r} is not supported by this server (send it only as "
                f"{REFUSED[name][-1]!r}, or leave it out): see docs/SERVING.md",
                name,
            )
        known = sorted(n for n in type(body).model_fields if not n.startswith("_"))
        raise ApiError(400, f"unknown field {name!r}: this endpoint takes {', '.join(known)}", name)


async def parse(request: Request, model: type[M]) -> M:
    """The authorised request's JSON body as ``model``: 413 over the size limit, 400 for anything malformed
    (text with a lone UTF-16 surrogate, which no tokenizer reads, a refused or unknown field)."""
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
    except RecursionError:
        raise ApiError(400, "the request body nests JSON arrays or objects too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if (where := surrogate_at(data)) is not None:
        raise ApiError(
            400,
            f"{where} holds a lone UTF-16 surrogate (e.g. \\ud800): send text, with surrogates only in pairs",
            where.split(".")[0],
        )
    try:
        body = model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0].get("loc", ())
        raise ApiError(400, describe(err.errors()), str(first[0]) if first else None) from err
    check_extras(body)
    return body


class Body(BaseModel):
    """A request body: its extra fields are checked by :func:`check_extras`. A float field refuses NaN and
    infinities by name ("a finite number"), before its bounds would misname them."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class Part(BaseModel):
    """A nested object of a body (a message, an option): unknown fields and non-finite floats are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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
        None, description="the input, rendered with 'condition' the way the run was trained (instead of a prompt)"
    )

    def logprobs_k(self) -> int | None:
        """How many alternatives per answer token (None: no log-probabilities); each endpoint says."""
        return None

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
        raise ApiError(
            400,
            f"model {req.model!r} ({target.kind}) has no trained prompt: send 'prompt' or "
            "'messages' instead of 'input'",
            "input",
        )
    inputs = [req.input] if isinstance(req.input, str) else req.input or []
    check_count(server, inputs, "input")
    condition = req.condition or ""
    if style.setting != "none" and not condition.strip():
        raise ApiError(
            400,
            f"model {req.model!r} was trained with the condition in its prompt: give 'condition' with 'input'",
            "condition",
        )
    ids = [prompt_ids(server.tokenizer, style.prompt(server.tokenizer, condition, x)) for x in inputs]
    return ids, [style.user_text(condition, x) for x in inputs]


def check_count(server: Server, prompts: Sequence[object], param: str) -> None:
    """400 for an empty list of prompts or more than ``max_prompts`` of them."""
    if not prompts:
        raise ApiError(400, f"{param} is an empty list", param)
    if len(prompts) > server.config.max_prompts:
        raise ApiError(
            400,
            f"{param} holds {len(prompts)} prompts; this server takes at most "
            f"{server.config.max_prompts} in one request (--max-prompts)",
            param,
        )


def make_jobs(
    server: Server,
    req: SamplingFields,
    target: Target,
    prompts: list[list[int]],
    route_texts: list[str],
    max_tokens: int | None,
) -> list[Job]:
    """Validate a generation request (its condition, limits and prompts) and queue one job per prompt."""
    cfg = server.config
    in_prompt = req.input is not None and target.prompt_style is not None and target.prompt_style.setting != "none"
    if target.needs_condition and not (req.condition or "").strip():
        raise ApiError(
            400,
            f"model {req.model!r} is a {target.kind} run: give the condition in the body field "
            "'condition' (openai client: extra_body={'condition': ...})",
            "condition",
        )
    if not target.needs_condition and req.condition is not None and not in_prompt:
        raise ApiError(400, f"model {req.model!r} ({target.kind}) takes no 'condition'", "condition")
    if req.condition is not None and len(req.condition) > cfg.max_condition_chars:
        raise ApiError(400, f"condition longer than {cfg.max_condition_chars} characters", "condition")
    max_tokens = max_tokens or cfg.default_max_tokens
    if max_tokens > cfg.max_tokens:
        raise ApiError(400, f"max_tokens={max_tokens} exceeds this server's limit of {cfg.max_tokens}", "max_tokens")
    try:
        stops = req.stops()
    except ValueError as err:
        raise ApiError(400, str(err), "stop") from err
    sampling = Sampling(max_tokens, req.temperature, req.top_p, req.seed, stops, req.logprobs_k())
    if (problem := sampling.problem()) is not None:
        raise ApiError(400, problem[1], problem[0])
    for ids in prompts:
        if not ids:
            raise ApiError(400, "the prompt is empty", "prompt")
        if len(ids) > cfg.max_prompt_tokens:
            raise ApiError(
                400, f"the prompt has {len(ids)} tokens; this server takes at most {cfg.max_prompt_tokens}", "prompt"
            )
    condition = req.condition if target.needs_condition else None
    loop = asyncio.get_running_loop()
    jobs = []
    for ids, text in zip(prompts, route_texts, strict=True):
        events: asyncio.Queue[Event] = asyncio.Queue()
        job = Job(ids, target, condition, text, sampling, queue_sink(loop, events))
        job.events = events
        jobs.append(job)
    server.engine.submit_all(jobs)  # QueueFull and EngineStopped: 503 (app.py)
    return jobs


def queue_sink(loop: asyncio.AbstractEventLoop, events: asyncio.Queue[Event]) -> Callable[[Event], None]:
    """A job's ``sink``: puts each event (sent from the engine thread) on ``events`` in ``loop``'s thread."""

    def put(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    return put


async def watched(jobs: list[Job], request: Request, answer: Coroutine[Any, Any, R]) -> R:
    """Await the coroutine ``answer`` (reading ``jobs``' events) while watching the client: when it leaves,
    every job is cancelled at once, tokens flowing or not (:func:`cancel_on_disconnect`), and :class:`ClientGone`
    is raised."""
    reading = asyncio.ensure_future(answer)
    watcher = asyncio.ensure_future(cancel_on_disconnect(jobs, request.receive))
    try:
        await asyncio.wait({reading, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if reading.done():
            return reading.result()
        if watcher.result():
            raise ClientGone
        return await reading
    finally:
        for task in (reading, watcher):
            task.cancel()


def raise_error(event: Event) -> None:
    if event["type"] == "error":
        raise ApiError(event["status"], event["message"], event.get("param"))


async def next_event(job: Job) -> Event:
    """The next event of a job made by :func:`make_jobs` (``RuntimeError`` for one without an event queue)."""
    if job.events is None:
        raise RuntimeError("the job has no event queue: make it with make_jobs")
    return await job.events.get()


def unexpected(event: Event, expected: str) -> ApiError:
    """A 500 for an event out of order (a bug of the engine)."""
    return ApiError(500, f"internal error: the engine sent a {event['type']!r} event where a {expected} was due")


async def first_event(job: Job) -> StartEvent:
    """The job's start event (an error event raises its :class:`ApiError`)."""
    event = await next_event(job)
    raise_error(event)
    if event["type"] != "start":
        raise unexpected(event, "start")
    return event


async def collect(job: Job) -> Answer:
    """A job's whole answer: ``text``, ``finish_reason``, token counts, ``logprobs``, ``route``, ``cache_hit``
    and the condition's ``condition_tokens``/``condition_kept``."""
    start = await first_event(job)
    text = []
    while (event := await next_event(job))["type"] == "delta":
        text.append(event["text"])
    raise_error(event)
    if event["type"] != "done":
        raise unexpected(event, "done")
    return answer_of(start, event, "".join(text))


def answer_of(start: StartEvent, done: DoneEvent, text: str) -> Answer:
    return {
        "route": start["route"],
        "cache_hit": start["cache_hit"],
        "condition_tokens": start["condition_tokens"],
        "condition_kept": start["condition_kept"],
        "text": text,
        "finish_reason": done["finish_reason"],
        "prompt_tokens": done["prompt_tokens"],
        "completion_tokens": done["completion_tokens"],
        "logprobs": done["logprobs"],
    }


async def collect_all(jobs: list[Job], request: Request) -> list[Answer]:
    """Every job's answer (:func:`collect`), cancelled together when the client leaves (:func:`watched`)."""

    async def answers() -> list[Answer]:
        return [await collect(job) for job in jobs]

    return await watched(jobs, request, answers())


def condition_fields(result: RowInfo) -> dict[str, int | bool]:
    """``condition_tokens`` and ``condition_truncated`` (the method read only the first tokens of the condition:
    see docs/SERVING.md, the condition rule) for a target that reads a condition; else nothing."""
    tokens, kept = result["condition_tokens"], result["condition_kept"]
    if tokens is None or kept is None:
        return {}
    return {"condition_tokens": tokens, "condition_truncated": kept < tokens}


def token_text(server: Server, token: int) -> str:
    text: str = server.tokenizer.decode([token])
    return text


def check_logprobs(k: int | None, stream: bool, param: str) -> None:
    """Log-probabilities are not streamed; their range (0..MAX_LOGPROBS) is each request schema's bound."""
    if k is not None and stream:
        raise ApiError(400, f"{param} is not served with stream: ask without stream", param)


def usage(results: Sequence[TokenCounts]) -> dict[str, int]:
    p = sum(r["prompt_tokens"] for r in results)
    c = sum(r["completion_tokens"] for r in results)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


Chunk = Callable[[str | None, str | None, bool], Json | None]  # (text, finish_reason, first) -> an SSE chunk


async def stream(job: Job, chunk: Chunk, usage_chunk: Callable[[dict[str, int]], Json] | None) -> AsyncIterator[str]:
    """Server-sent events of one job: ``chunk(text, finish_reason, first)`` per event, then ``[DONE]``."""
    try:
        first = chunk(None, None, True)
        if first is not None:
            yield sse(first)
        while True:
            event = await next_event(job)
            if event["type"] == "delta":
                yield sse(chunk(event["text"], None, False))
            elif event["type"] == "done":
                yield sse(chunk("", event["finish_reason"], False))
                if usage_chunk is not None:
                    yield sse(usage_chunk(usage([event])))
                yield "data: [DONE]\n\n"
                return
            elif event["type"] == "start":
                raise unexpected(event, "delta or done")
            else:
                yield sse(
                    {
                        "error": {
                            "message": event["message"],
                            "type": ERROR_TYPES.get(event["status"], "server_error"),
                            "param": event.get("param"),
                            "code": event["status"],
                        }
                    }
                )
                return
    finally:
        job.cancel()  # a no-op for a finished request; frees the slot of a client that went away


def sse(data: Json | None) -> str:
    return f"data: {json.dumps(data)}\n\n"


def route_header(start: RowInfo) -> dict[str, str]:
    return {"x-hyperadapt-route": start["route"]}

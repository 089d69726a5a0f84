"""``POST /v1/chat/completions``: raw ``messages`` rendered with the model's chat template as given, or an
``input`` that the server renders with ``condition`` the way the run was trained (``common.trained_prompts``).

Every message's content is read literally (:func:`hyperadapt.data.prompts.chat_ids`): a forged
``<|im_end|>\n<|im_start|>assistant`` in a user message stays text; only the template makes control tokens.
``logprobs`` with ``top_logprobs`` (0..20) gives each answer token's log-probability in OpenAI's shape
(``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``), without ``stream``.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field

from hyperadapt.data.prompts import chat_ids
from hyperadapt.serve.endpoints.common import (
    ApiError,
    ClientGone,
    Json,
    Part,
    SamplingFields,
    check_logprobs,
    collect_all,
    condition_fields,
    find_target,
    first_event,
    make_jobs,
    parse,
    route_header,
    server_of,
    stream,
    token_text,
    trained_prompts,
    usage,
    watched,
)
from hyperadapt.serve.engine import MAX_LOGPROBS, TokenLogprobs
from hyperadapt.serve.runs import Target
from hyperadapt.serve.server import Server

router = APIRouter()


class TextPart(Part):
    type: Literal["text"]
    text: str


class ChatMessage(Part):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(Part):
    include_usage: bool = False


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream_options: StreamOptions | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    def logprobs_k(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None


def prompt_of(request: Request, req: ChatRequest, target: Target) -> tuple[list[int], str]:
    """The request's prompt token ids and route text (every check of what is prompted, in one place)."""
    if (req.messages is None) == (req.input is None):
        raise ApiError(
            400,
            "give either 'messages' (rendered as they are) or 'input' (rendered with 'condition' "
            "the way the run was trained)",
            "messages",
        )
    server = server_of(request)
    if req.input is not None:
        if not isinstance(req.input, str):
            raise ApiError(400, "a chat completion takes one 'input' string", "input")
        rendered, texts = trained_prompts(server, target, req)
        return rendered[0], texts[0]
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages or []
    ]
    try:
        ids = chat_ids(server.tokenizer, messages)
    except Exception as err:  # jinja's TemplateError and friends: the model's template refused the messages
        raise ApiError(400, f"the model's chat template cannot render these messages: {err}", "messages") from err
    users = [m["content"] for m in messages if m["role"] == "user"]
    return ids, users[-1] if users else messages[-1]["content"]


def chat_logprobs(server: Server, entries: list[TokenLogprobs] | None) -> Json | None:
    """OpenAI's chat ``logprobs`` object for the engine's per-token entries."""
    if entries is None:
        return None

    def one(token: int, logprob: float) -> Json:
        text = token_text(server, token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {"content": [{**one(t, lp), "top_logprobs": [one(i, v) for i, v in top]} for t, lp, top in entries]}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    req = await parse(request, ChatRequest)
    server = server_of(request)
    target = find_target(server, req.model)
    ids, text = prompt_of(request, req, target)
    check_logprobs(req.logprobs_k(), req.stream, "logprobs")
    jobs = make_jobs(server, req, target, [ids], [text], req.max_completion_tokens or req.max_tokens)
    job, rid, created = jobs[0], f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    try:
        if req.stream:
            start = await watched(jobs, request, first_event(job))
            base: Json = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
                "route": start["route"],
                **condition_fields(start),
            }

            def chunk(text: str | None, finish: str | None, first: bool) -> Json | None:
                delta = {"role": "assistant", "content": ""} if first else {} if finish else {"content": text}
                return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

            def with_usage(u: dict[str, int]) -> Json:
                return {**base, "choices": [], "usage": u}

            usage_chunk = with_usage if req.stream_options is not None and req.stream_options.include_usage else None
            return StreamingResponse(
                stream(job, chunk, usage_chunk), media_type="text/event-stream", headers=route_header(start)
            )
        [result] = await collect_all(jobs, request)
    except ClientGone:
        return Response(status_code=499)
    finally:
        if not req.stream:
            job.cancel()
    body: Json = {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": req.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["text"]},
                "finish_reason": result["finish_reason"],
                "logprobs": chat_logprobs(server, result["logprobs"]),
            }
        ],
        "usage": usage([result]),
        "route": result["route"],
        "cache_hit": result["cache_hit"],
        **condition_fields(result),
    }
    return JSONResponse(body, headers=route_header(result))

"""``POST /v1/completions``: a raw ``prompt`` (a string, or a list of at most ``max_prompts`` without
``stream``), or an ``input`` that the server renders with ``condition`` the way the run was trained
(``common.trained_prompts``).

A raw prompt is tokenised whole, control tokens included, as vLLM does: its caller writes the template, so
``<|im_start|>`` in it is the control token. User text that must stay text goes in ``input`` or in chat
``messages``, which are tokenised literally (``data/prompts.py``). ``echo`` puts the prompt before the answer;
``logprobs`` (0..20) gives each answer token's log-probability and its best alternatives in OpenAI's legacy
shape (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``), without ``stream``.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field

from hyperadapt.serve.endpoints.common import (
    ApiError,
    ClientGone,
    Json,
    Part,
    SamplingFields,
    check_count,
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


class StreamOptions(Part):
    include_usage: bool = False


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | None = None
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    stream_options: StreamOptions | None = None

    def logprobs_k(self) -> int | None:
        return self.logprobs


def prompts_of(request: Request, req: CompletionRequest, target: Target) -> tuple[list[list[int]], list[str]]:
    """The request's prompt token ids and route texts (every check of what is prompted, in one place)."""
    if (req.prompt is None) == (req.input is None):
        raise ApiError(
            400,
            "give either 'prompt' (sent as it is) or 'input' (rendered with 'condition' the way the run was trained)",
            "prompt",
        )
    server = server_of(request)
    if req.input is not None:
        ids, texts = trained_prompts(server, target, req)
    else:
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt or []
        check_count(server, texts, "prompt")
        ids = [server.tokenizer(p).input_ids for p in texts]
    if req.stream and len(ids) > 1:
        raise ApiError(400, "stream takes one prompt", "prompt")
    if req.echo and req.stream:
        raise ApiError(400, "echo is not served with stream: ask without stream", "echo")
    check_logprobs(req.logprobs, req.stream, "logprobs")
    return ids, texts


def legacy_logprobs(server: Server, entries: list[TokenLogprobs] | None, offset: int) -> Json | None:
    """OpenAI's completions ``logprobs`` object for the engine's per-token entries; offsets start at ``offset``
    (the characters before the answer: the echoed prompt)."""
    if entries is None:
        return None
    tokens: list[str] = []
    offsets: list[int] = []
    for token, _, _ in entries:
        offsets.append(offset)
        tokens.append(token_text(server, token))
        offset += len(tokens[-1])
    return {
        "tokens": tokens,
        "token_logprobs": [lp for _, lp, _ in entries],
        "top_logprobs": [{token_text(server, i): v for i, v in top} for _, _, top in entries],
        "text_offset": offsets,
    }


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    req = await parse(request, CompletionRequest)
    server = server_of(request)
    target = find_target(server, req.model)
    ids, texts = prompts_of(request, req, target)
    jobs = make_jobs(server, req, target, ids, texts, req.max_tokens)
    rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    try:
        if req.stream:
            start = await watched(jobs, request, first_event(jobs[0]))

            def chunk(text: str | None, finish: str | None, first: bool) -> Json | None:
                if first:
                    return None
                return {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": req.model,
                    "route": start["route"],
                    **condition_fields(start),
                    "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                }

            def with_usage(u: dict[str, int]) -> Json:
                return {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": req.model,
                    "choices": [],
                    "usage": u,
                }

            usage_chunk = with_usage if req.stream_options is not None and req.stream_options.include_usage else None
            return StreamingResponse(
                stream(jobs[0], chunk, usage_chunk), media_type="text/event-stream", headers=route_header(start)
            )
        results = await collect_all(jobs, request)
    except ClientGone:
        return Response(status_code=499)
    finally:
        if not req.stream:
            for job in jobs:
                job.cancel()
    choices: list[Json] = []
    for i, (r, prompt_ids) in enumerate(zip(results, ids, strict=True)):
        echoed = (texts[i] if req.input is None else server.tokenizer.decode(prompt_ids)) if req.echo else ""
        choices.append(
            {
                "index": i,
                "text": echoed + r["text"],
                "finish_reason": r["finish_reason"],
                "logprobs": legacy_logprobs(server, r["logprobs"], len(echoed)),
                "route": r["route"],
            }
        )
    body: Json = {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": req.model,
        "choices": choices,
        "usage": usage(results),
        "route": results[0]["route"],
        "cache_hit": results[0]["cache_hit"],
        **condition_fields(results[0]),
    }
    return JSONResponse(body, headers=route_header(results[0]))

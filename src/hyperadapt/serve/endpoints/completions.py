"""``POST /v1/completions``: a raw ``prompt`` (a string, or a list without ``stream``), or an ``input`` that the
server renders with ``condition`` the way the run was trained (``common.trained_prompts``)."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hyperadapt.serve.endpoints.common import (
    ApiError,
    ClientGone,
    SamplingFields,
    collect,
    find_target,
    first_event,
    make_jobs,
    parse,
    route_header,
    server_of,
    stream,
    trained_prompts,
    usage,
)

router = APIRouter()


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | None = None


def prompts_of(request: Request, req: CompletionRequest, target) -> tuple[list[list[int]], list[str]]:
    """The request's prompt token ids and route texts (every check of what is prompted, in one place)."""
    if (req.prompt is None) == (req.input is None):
        raise ApiError(400, "give either 'prompt' (sent as it is) or 'input' (rendered with 'condition' the way the "
                            "run was trained)", "prompt")
    server = server_of(request)
    if req.input is not None:
        ids, texts = trained_prompts(server, target, req)
    else:
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not texts:
            raise ApiError(400, "prompt is an empty list", "prompt")
        ids = [server.tokenizer(p).input_ids for p in texts]
    if req.stream and len(ids) > 1:
        raise ApiError(400, "stream takes one prompt", "prompt")
    return ids, texts


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
            start = await first_event(jobs[0], request)

            def chunk(text, finish, first):
                if first:
                    return None
                return {"id": rid, "object": "text_completion", "created": created, "model": req.model,
                        "route": start["route"],
                        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}

            return StreamingResponse(stream(jobs[0], chunk, None), media_type="text/event-stream",
                                     headers=route_header(start))
        results = [await collect(job, request) for job in jobs]
    except ClientGone:
        return Response(status_code=499)
    finally:
        if not req.stream:
            for job in jobs:
                job.cancel()
    choices = [{"index": i, "text": r["text"], "finish_reason": r["finish_reason"], "logprobs": None,
                "route": r["route"]} for i, r in enumerate(results)]
    body = {"id": rid, "object": "text_completion", "created": created, "model": req.model, "choices": choices,
            "usage": usage(results), "route": results[0]["route"], "cache_hit": results[0]["cache_hit"]}
    return JSONResponse(body, headers=route_header(results[0]))

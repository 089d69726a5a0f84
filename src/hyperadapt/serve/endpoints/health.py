"""``GET /health`` and ``GET /metrics`` (Prometheus text); both open, without the API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from hyperadapt.serve.endpoints.common import Json, server_of

router = APIRouter()


@router.get("/health")
async def health() -> Json:  # a free-form object in /openapi.json (dict[str, str] would declare its values)
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    server = server_of(request)
    return PlainTextResponse(server.metrics.render(server.cache.stats()), media_type="text/plain; version=0.0.4")

"""The HTTP layer: an OpenAI-compatible FastAPI app over one :class:`Engine`, wired from the endpoint modules.

``/v1/completions``, ``/v1/chat/completions`` (both with ``stream``), ``/v1/models``; ``POST /v1/adapters``
(a generated adapter as a zipped PEFT folder); vLLM's ``/v1/load_lora_adapter`` and
``/v1/unload_lora_adapter``; ``/health`` and ``/metrics`` (Prometheus): one module each in
``serve/endpoints/``. Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``; malformed
requests get a 4xx, never a 500: :class:`RequestRefused` (from the engine's checks, the condition rule or the
adapter store) answers its own status and ``param``, a full queue or a stopping engine a 503.

``/health`` and ``/metrics`` are open (bind the server to a private address). With ``--api-key``, the
OpenAPI schema ``/openapi.json`` needs the key too and the browser pages ``/docs`` and ``/redoc`` (which
cannot send it) are off; without a key all three are open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, HTTPExceptionHandler, Message, Receive, Scope, Send

from hyperadapt.serve.endpoints import ROUTERS
from hyperadapt.serve.endpoints.common import ApiError, authorize, describe, error_response
from hyperadapt.serve.engine import EngineStopped, QueueFull
from hyperadapt.serve.errors import RequestRefused
from hyperadapt.serve.metrics import Metrics
from hyperadapt.serve.server import Server

ENDPOINTS = (
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/models",
    "/v1/adapters",
    "/v1/load_lora_adapter",
    "/v1/unload_lora_adapter",
    "/health",
    "/metrics",
    "/openapi.json",
)
E = TypeVar("E", bound=Exception)


class MetricsMiddleware:
    """Counts every HTTP request by endpoint and status (pure ASGI, so streaming and disconnects pass through)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            path = scope.get("path", "")
            self.metrics.request(path if path in ENDPOINTS else "other", status)


async def _api_error(request: Request, err: ApiError) -> JSONResponse:
    return error_response(err.status, err.message, err.param)


async def _refused(request: Request, err: RequestRefused) -> JSONResponse:
    return error_response(err.status, str(err), err.param)


async def _unavailable(request: Request, err: QueueFull | EngineStopped) -> JSONResponse:
    return error_response(503, str(err))


async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    return error_response(err.status_code, str(err.detail))


async def _internal_error(request: Request, err: Exception) -> JSONResponse:
    return error_response(500, f"internal error: {type(err).__name__}: {err}")


async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    return error_response(400, describe(err.errors()))


def _on(app: FastAPI, kind: type[E], handler: Callable[[Request, E], Awaitable[JSONResponse]]) -> None:
    """Answer the exceptions of type ``kind`` with ``handler``."""
    # Starlette types every handler as taking any Exception; it calls this one for ``kind`` only
    app.add_exception_handler(kind, cast(HTTPExceptionHandler, handler))


def create_app(server: Server) -> FastAPI:
    """The FastAPI app serving ``server`` (its engine starts and stops with the app)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.engine.start()
        yield
        server.engine.stop()

    keyed = server.config.api_key is not None
    hidden: dict[str, Any] = {"openapi_url": None, "docs_url": None, "redoc_url": None} if keyed else {}
    app = FastAPI(title="hyperadapt", lifespan=lifespan, **hidden)
    app.state.server = server
    if keyed:

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi(request: Request) -> dict[str, Any]:
            authorize(request)
            return app.openapi()

    app.add_middleware(MetricsMiddleware, metrics=server.metrics)
    _on(app, ApiError, _api_error)
    _on(app, RequestRefused, _refused)
    _on(app, QueueFull, _unavailable)
    _on(app, EngineStopped, _unavailable)
    _on(app, StarletteHTTPException, _http_error)
    _on(app, Exception, _internal_error)
    _on(app, RequestValidationError, _validation_error)
    for router in ROUTERS:
        app.include_router(router)
    return app

"""An async client for a vLLM OpenAI-compatible server: adapters in and out, completions and chats forwarded.

Every failure becomes one :class:`~hyperadapt.vllm.errors.VllmError` whose message names the problem and whose
``status`` is what a front answers its own client with: vLLM not reachable (503), too slow (504), an adapter it
refuses (422, with vLLM's reason), any other refusal (vLLM's own 4xx, with its message), a failure inside
vLLM (502).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hyperadapt.vllm.errors import AdapterRefused, VllmError, VllmTimeout, VllmUnavailable

ENDPOINTS = {"completion": "/v1/completions", "chat": "/v1/chat/completions"}
# vLLM wraps a worker's refusal of an adapter: "Call to add_lora method failed: Worker failed with error '<reason>',
# please check the stack trace above for the root cause"; the reason is what the client needs
WORKER_REASON = re.compile(r"Worker failed with error '(.*)', please check", re.DOTALL)
NO_ROUTE = {"detail": "Not Found"}  # FastAPI's answer for a route vLLM did not register


def error_message(response: httpx.Response) -> str:
    """vLLM's reason for a refusal: ``{"error": {"message": ...}}``, ``{"message": ...}`` or the raw text."""
    body = _json(response)
    if body is None:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            message = str(inner["message"])
            reason = WORKER_REASON.search(message)
            return reason.group(1) if reason else message
        if isinstance(inner, str):
            return inner
        if body.get("detail"):
            return str(body["detail"])
    return json.dumps(body)


class VllmClient:
    """Talks to the vLLM server at ``base_url`` (e.g. ``http://127.0.0.1:8000``) with one pooled
    ``httpx.AsyncClient``; ``timeout`` (seconds) bounds every request, streamed ones per chunk.
    ``max_connections`` bounds the requests open at once (httpx's default, 100, would hold vLLM's batch to 100
    streams and time out the ones waiting for a connection): a front gives its own bound of open requests.

    Example::

        async with VllmClient("http://127.0.0.1:8000") as vllm:
            await vllm.load_adapter("movie", "/tmp/adapters/movie")
            answer = await vllm.generate("completion", {"model": "movie", "prompt": "...", "max_tokens": 8})
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 300.0,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 1024,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.base_url = base_url.rstrip("/")
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(max_connections, 256))
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=headers, transport=transport, limits=limits
        )

    async def __aenter__(self) -> VllmClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any], what: str) -> httpx.Response:
        try:
            response = await self._http.post(path, json=body)
        except httpx.TimeoutException as err:
            raise VllmTimeout(
                f"vLLM at {self.base_url} did not answer {what} within {self._http.timeout.read}s"
            ) from err
        except httpx.TransportError as err:
            raise VllmUnavailable(
                f"vLLM at {self.base_url} is not reachable ({type(err).__name__}: {err}): is it running?"
            ) from err
        return response

    async def healthy(self) -> bool:
        """True when ``GET /health`` answers 200; False when vLLM is unreachable or not ready."""
        try:
            return (await self._http.get("/health", timeout=5.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def models(self) -> list[str]:
        """The names vLLM serves now: the base model and every loaded adapter."""
        try:
            response = await self._http.get("/v1/models")
        except httpx.HTTPError as err:
            raise VllmUnavailable(f"vLLM at {self.base_url} is not reachable: {err}") from err
        if response.status_code != 200:
            raise VllmError(f"vLLM refused to list its models: {error_message(response)}", _status(response))
        return [m["id"] for m in response.json()["data"]]

    async def tokenize(self, model: str, text: str) -> tuple[list[int], int] | None:
        """vLLM's token ids for ``text`` (no special tokens added) and its context length (``max_model_len``), from
        ``POST /tokenize``; None when the server has no such route (an OpenAI-compatible server that is not vLLM).

        Raises :class:`VllmError` when vLLM refuses the request or answers in another shape."""
        body = {"model": model, "prompt": text, "add_special_tokens": False}
        response = await self._post("/tokenize", body, "a tokenize request")
        if response.status_code == 404 and _json(response) == NO_ROUTE:
            return None
        if response.status_code != 200:
            raise VllmError(f"vLLM refused a tokenize request: {error_message(response)}", _status(response))
        answer = _json(response)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        context = answer.get("max_model_len") if isinstance(answer, dict) else None
        if not isinstance(tokens, list) or not all(type(t) is int for t in tokens) or type(context) is not int:
            raise VllmError(f"vLLM answered /tokenize with {response.text[:200]!r}: not vLLM's shape", 502)
        return tokens, context

    async def load_adapter(self, name: str, path: str) -> None:
        """Have vLLM load the PEFT folder ``path`` as ``name`` (the server needs ``--enable-lora`` and
        ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; ``path`` is read by the server, so it must see that folder).

        Raises :class:`AdapterRefused` with vLLM's reason when it will not serve the adapter."""
        response = await self._post(
            "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}, f"loading adapter {name!r}"
        )
        if response.status_code == 404 and _json(response) == NO_ROUTE:
            raise VllmError(
                f"vLLM at {self.base_url} cannot load adapters at runtime: start it with --enable-lora "
                "and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True",
                503,
            )
        if response.status_code != 200:
            raise AdapterRefused(f"vLLM refused adapter {name!r} ({path}): {error_message(response)}")

    async def unload_adapter(self, name: str) -> None:
        """Have vLLM drop the adapter ``name``; raises :class:`VllmError` when vLLM does not know it."""
        response = await self._post("/v1/unload_lora_adapter", {"lora_name": name}, f"unloading adapter {name!r}")
        if response.status_code != 200:
            raise VllmError(f"vLLM could not unload adapter {name!r}: {error_message(response)}", _status(response))

    async def generate(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """vLLM's answer (the OpenAI response object) to a ``"completion"`` or ``"chat"`` request ``body``.

        Raises :class:`VllmError` with vLLM's status and reason when it refuses the request."""
        response = await self._post(_endpoint(kind), {**body, "stream": False}, f"a {kind} request")
        if response.status_code != 200:
            raise VllmError(f"vLLM refused the {kind} request: {error_message(response)}", _status(response))
        answer: dict[str, Any] = response.json()
        return answer

    async def stream(self, kind: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The chunks of vLLM's streamed answer to ``body``, each a parsed ``data:`` event, up to ``[DONE]``.

        Raises :class:`VllmError` before the first chunk when vLLM refuses the request, and
        :class:`VllmUnavailable`/:class:`VllmTimeout` when the stream breaks off."""
        request = self._http.build_request("POST", _endpoint(kind), json={**body, "stream": True})
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.status_code != 200:
                    await response.aread()
                    raise VllmError(f"vLLM refused the {kind} request: {error_message(response)}", _status(response))
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    yield json.loads(data)
            finally:
                await response.aclose()
        except httpx.TimeoutException as err:
            raise VllmTimeout(f"vLLM at {self.base_url} stopped answering a streamed {kind} request") from err
        except httpx.ConnectError as err:
            raise VllmUnavailable(f"vLLM at {self.base_url} is not reachable ({err}): is it running?") from err
        except httpx.TransportError as err:
            raise VllmUnavailable(f"vLLM at {self.base_url} broke off a streamed {kind} request: {err}") from err


def _status(response: httpx.Response) -> int:
    """vLLM's own status for a refusal of the request (4xx); 502 when vLLM itself failed (5xx)."""
    return response.status_code if response.status_code < 500 else 502


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _endpoint(kind: str) -> str:
    if kind not in ENDPOINTS:
        raise ValueError(f"unknown request kind {kind!r}: use one of {sorted(ENDPOINTS)}")
    return ENDPOINTS[kind]

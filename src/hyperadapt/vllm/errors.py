"""The errors of the vLLM backend, each with the HTTP status a front should answer its client with."""

from __future__ import annotations


class VllmError(RuntimeError):
    """Something went wrong talking to vLLM; ``status`` is the HTTP status to give the client."""

    status = 502

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class VllmUnavailable(VllmError):
    """vLLM is not running, not installed, died, or did not become healthy in time (503)."""

    status = 503


class VllmTimeout(VllmError):
    """vLLM took longer than the client's timeout to answer (504)."""

    status = 504


class AdapterRefused(VllmError):
    """vLLM refused to load an adapter (rank above ``--max-lora-rank``, modules it cannot serve, a bad folder);
    the message is vLLM's own reason (422)."""

    status = 422

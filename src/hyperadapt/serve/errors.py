"""What a request can be refused with, shared by the engine, the condition rule and the adapter store."""

from __future__ import annotations


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone UTF-16 surrogate in ``text`` (``"\\ud800"`` from a JSON body), else None:
    such text cannot be encoded as UTF-8, so no tokenizer or encoder can read it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


class RequestRefused(ValueError):
    """A request that cannot run, with its HTTP status and the field at fault."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status

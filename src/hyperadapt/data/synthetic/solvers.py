"""Answer functions: the reference output of a synthetic input (deterministic, no randomness)."""

from __future__ import annotations

from collections.abc import Callable

from hyperadapt.data.schema import TaskDataError
from hyperadapt.data.synthetic.lexicons import CATEGORY_DOMAINS, CONTINENTS, MONTHS, NEGATIVE, POSITIVE, REVIEW_DOMAINS

Solver = Callable[[str], str]
"""Answers one input of a task."""

_POSITIVE_WORDS = frozenset(POSITIVE).union(*(positive for _, positive, _ in REVIEW_DOMAINS.values()))
_NEGATIVE_WORDS = frozenset(NEGATIVE).union(*(negative for _, _, negative in REVIEW_DOMAINS.values()))


def each(fn: Callable[[str], str], sep: str = ", ") -> Solver:
    """Apply ``fn`` to every item of a ``sep``-separated input."""
    return lambda s: sep.join(fn(item) for item in s.split(sep))


def on_list(fn: Callable[[list[str]], object], sep: str = ", ") -> Solver:
    """Apply ``fn`` to the items of a ``sep``-separated input; a list result is joined back with ``sep``."""

    def solve(s: str) -> str:
        out = fn(s.split(sep))
        return sep.join(out) if isinstance(out, list) else str(out)

    return solve


def lookup_word(table: dict[str, str]) -> Solver:
    """The label of the one input word (or multi-word key) found in ``table``."""

    def solve(s: str) -> str:
        hits = {table[k] for k in table if f" {k} " in f" {s} "}
        if len(hits) != 1:
            raise TaskDataError(f"synthetic input {s!r} matches {sorted(hits)} in its table")
        return hits.pop()

    return solve


def date_as(fmt: str) -> Solver:
    """A ``YYYY-MM-DD`` date rewritten by ``fmt`` (fields ``y``, ``m``, ``d`` and ``month``, its name)."""

    def solve(s: str) -> str:
        y, m, d = s.split("-")
        return fmt.format(y=y, m=m, d=d, month=MONTHS[int(m) - 1])

    return solve


def twelve_hour(s: str) -> str:
    """``13:05`` -> ``1:05 PM``."""
    hours, minutes = (int(x) for x in s.split(":"))
    return f"{(hours - 1) % 12 + 1}:{minutes:02d} {'AM' if hours < 12 else 'PM'}"


def continent_of_place(s: str) -> str:
    """``a village in western Nigeria`` -> ``Africa``."""
    return CONTINENTS[s.split(" in ", 1)[1].split(" ", 1)[1]]


def sentiment(s: str) -> str:
    """``positive`` or ``negative``: the polarity of the review's words (of any review domain)."""
    words = set(s.split())
    positive, negative = words & _POSITIVE_WORDS, words & _NEGATIVE_WORDS
    if bool(positive) == bool(negative):
        raise TaskDataError(f"synthetic review {s!r} has no single polarity")
    return "positive" if positive else "negative"


def category(domain: str) -> Solver:
    """The category label of a ``modifier item xN`` input of ``domain``'s shop."""
    table = CATEGORY_DOMAINS[domain][0]
    return lambda s: table[s.rsplit(" x", 1)[0].split(" ", 1)[1]]

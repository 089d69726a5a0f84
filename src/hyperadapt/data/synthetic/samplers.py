"""Input samplers: how a synthetic task draws one input from its own ``random.Random``.

A sampler is called once per attempted instance with the task's generator (see
:func:`hyperadapt.data.synthetic.suite.task_instances`). The draws a sampler makes, and their order, are
part of the data: changing either changes every instance of the tasks that use it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from hyperadapt.data.synthetic.lexicons import (
    ADJECTIVES,
    ANIMAL_CLASSES,
    ANIMAL_COLORS,
    ANIMAL_SIZES,
    CATEGORY_DOMAINS,
    CONTINENTS,
    INTENSIFIERS,
    NEGATIVE,
    NOUNS,
    PLACES,
    POSITIVE,
    REGIONS,
    REVIEW_DOMAINS,
    TOPIC_LABELS,
    TOPIC_TEMPLATES,
    TOPICS,
)

Sampler = Callable[[random.Random], str]
"""Draws one input of a task from the task's generator."""

_ANIMAL_NAMES = tuple(ANIMAL_CLASSES)
_COUNTRY_NAMES = tuple(CONTINENTS)
_TOPIC_WORDS = {topic: [word for word, label in TOPICS.items() if label == topic] for topic in TOPIC_LABELS}


def phrase(lo: int, hi: int, case: Callable[[str], str] = str) -> Sampler:
    """``lo``..``hi`` words: adjectives then a noun, e.g. ``small red apple``."""
    return lambda rng: case(" ".join([*rng.sample(ADJECTIVES, rng.randint(lo, hi) - 1), rng.choice(NOUNS)]))


def items(pool: Sequence[str], lo: int, hi: int, sep: str = ", ", distinct: bool = True) -> Sampler:
    """``lo``..``hi`` items of ``pool`` joined by ``sep`` (distinct, or drawn with replacement)."""

    def sample(rng: random.Random) -> str:
        k = rng.randint(lo, hi)
        return sep.join(rng.sample(pool, k) if distinct else rng.choices(pool, k=k))

    return sample


def numbers(lo: int, hi: int, top: int, distinct: bool = True, sep: str = ", ") -> Sampler:
    """``lo``..``hi`` numbers from 0 to ``top`` joined by ``sep``, e.g. ``36, 93, 22``."""
    return items([str(i) for i in range(top + 1)], lo, hi, sep, distinct)


def number(top: int) -> Sampler:
    """One number from 0 to ``top``."""
    return lambda rng: str(rng.randint(0, top))


def subtraction(rng: random.Random) -> str:
    """Two numbers, the second at most the first: ``47, 12``."""
    a = rng.randint(10, 99)
    return f"{a}, {rng.randint(0, a)}"


def date(rng: random.Random) -> str:
    """An ISO date ``YYYY-MM-DD`` from 1950 to 2049 (days 1-28)."""
    return f"{rng.randint(1950, 2049)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def clock_time(rng: random.Random) -> str:
    """A 24-hour time ``HH:MM``."""
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"


def animal(rng: random.Random) -> str:
    """A described animal: ``small spotted frog``."""
    return f"{rng.choice(ANIMAL_SIZES)} {rng.choice(ANIMAL_COLORS)} {rng.choice(_ANIMAL_NAMES)}"


def place(rng: random.Random) -> str:
    """A place in a country: ``a village in western Nigeria``."""
    return f"{rng.choice(PLACES)} in {rng.choice(REGIONS)} {rng.choice(_COUNTRY_NAMES)}"


def topic_text(rng: random.Random) -> str:
    """A short text with two keywords of one topic: ``news on the goal and the coach``."""
    words = _TOPIC_WORDS[rng.choice(list(_TOPIC_WORDS))]
    return rng.choice(TOPIC_TEMPLATES).format(*rng.sample(words, 2))


def review(domain: str) -> Sampler:
    """A one- or two-clause review in ``domain`` with one polarity: ``the plot was really gripping``."""
    subjects, positive, negative = REVIEW_DOMAINS[domain]

    def sample(rng: random.Random) -> str:
        words = POSITIVE + positive if rng.random() < 0.5 else NEGATIVE + negative
        clauses = [
            f"the {subject} was {rng.choice(INTENSIFIERS)}{rng.choice(words)}"
            for subject in rng.sample(subjects, rng.randint(1, 2))
        ]
        return " and ".join(clauses)

    return sample


def shop_item(domain: str) -> Sampler:
    """An item of ``domain``'s shop with a modifier and a count: ``cheap banana x2``."""
    table, modifiers = CATEGORY_DOMAINS[domain]
    names = tuple(table)
    return lambda rng: f"{rng.choice(modifiers)} {rng.choice(names)} x{rng.randint(1, 9)}"

"""The condition rule: what the server does to a request's ``condition`` before it conditions the model on
it, and the cache key that follows from it.

1. **Refused** (400): text with a lone UTF-16 surrogate (``"\\ud800"`` from a JSON body), and text with no
   visible character (only whitespace, control or format characters such as U+200B).
2. **Normalised**: Unicode NFC (a decomposed and a composed "é" are one condition), then the ends stripped.
   Nothing else is rewritten: the method's own tokenizer does the rest (TAGI's sentence encoder lowercases,
   strips accents and ignores spacing; the base-model encoders keep all three).
3. **Cut**: the method reads the first ``limit`` tokens of its encoder's tokenizer (TAGI/Hypter:
   ``max_instruction_tokens``, 256 for the released checkpoint; MeGan: ``condition_max_tokens``); the rest
   never reaches it. :attr:`ConditionText.truncated` says so, for the client.
4. **Key**: a hash of the token ids the method reads (and of whether they were cut). Two conditions share a
   key exactly when the method reads the same tokens, i.e. exactly when they give the same adapter or β, so
   case, accent and spacing variants share one cache entry under TAGI's sentence encoder and two conditions
   that agree on their first 256 tokens share one (and both are told they were cut).
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

from hyperadapt.core.rows import ConditionServable
from hyperadapt.serve.errors import RequestRefused, lone_surrogate

INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}  # control, format, surrogate, private, unassigned, spaces


@dataclass(frozen=True)
class ConditionText:
    """A condition as the method reads it: ``text`` (normalised), ``key`` (64 hex digits), ``tokens`` (in the
    normalised text) and ``kept`` (tokens the method reads: ``min(tokens, limit)``)."""

    text: str
    key: str
    tokens: int
    kept: int

    @property
    def truncated(self) -> bool:
        return self.kept < self.tokens


def normalize_condition(text: str | None) -> str:
    """``text`` in NFC with its ends stripped; :class:`RequestRefused` (400) for no text (None), a lone surrogate
    or text without a visible character."""
    if not isinstance(text, str):
        raise RequestRefused("the condition must be text", "condition")
    if (at := lone_surrogate(text)) is not None:
        raise RequestRefused(
            f"the condition holds a lone UTF-16 surrogate at character {at}: send text, with surrogates only in pairs",
            "condition",
        )
    text = unicodedata.normalize("NFC", text).strip()
    if all(unicodedata.category(c) in INVISIBLE for c in text):
        raise RequestRefused(
            "the condition has no visible character (only spaces, control or invisible "
            "format characters): give the instruction in words",
            "condition",
        )
    return text


def condition_reader(method: ConditionServable) -> tuple[Any, int]:
    """The tokenizer and the token limit through which ``method`` (TAGI/Hypter or MeGan: its
    ``ConditionServable.condition_reader``) reads a condition."""
    return method.condition_reader()


def read_condition(method: ConditionServable, text: str | None) -> ConditionText:
    """The condition ``text`` under the rule of this module, for ``method`` (see :func:`condition_reader`);
    :class:`RequestRefused` (400) as :func:`normalize_condition`."""
    text = normalize_condition(text)
    tokenizer, limit = condition_reader(method)
    ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True, verbose=False).input_ids
    kept = ids[:limit]
    digest = hashlib.sha256(f"{len(ids) > limit}:{kept}".encode()).hexdigest()
    return ConditionText(text, digest, len(ids), len(kept))

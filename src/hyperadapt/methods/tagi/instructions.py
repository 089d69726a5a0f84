"""What the hypernetwork reads for a task, and the policy for empty and over-long instructions.

Empty (or whitespace-only) instructions raise ``ValueError``: an adapter generated from nothing would be
an arbitrary multi-task adapter, silently. Instructions longer than ``max_tokens`` tokens (counted by the
encoder's tokenizer) keep their first ``max_tokens`` tokens and warn (one text for all, so Python shows it once
per place): the encoders
read a bounded window anyway, and a long definition's head usually says what the task is.
"""

from __future__ import annotations

import random
import string
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from torch import Tensor

from hyperadapt.data.prompts import literal_ids
from hyperadapt.data.schema import Task
from hyperadapt.encoders import CachedEncoder
from hyperadapt.errors import UserError

CLEAN_CACHE = 4096  # instructions whose cleaned text is remembered (a server sees unboundedly many)


def instruction_text(task: Task, setting: str, instruction: str | None = None) -> str:
    """The text the hypernetwork reads: the definition (``def``), plus two positive examples (``def2pos``)."""
    text = (instruction if instruction is not None else task.instruction).strip()
    if setting != "def2pos" or not text:
        return text
    parts = [text]
    for i, ex in enumerate(task.positive_examples[:2], 1):
        parts.append(f"Positive Example {i}\nInput: {ex.input}\nOutput: {ex.output}")
    return "\n\n".join(parts)


class InstructionVectors:
    """Instruction texts -> encoder vectors ``[N, D]``, applying the empty/over-long policy once per text."""

    def __init__(self, encoder: CachedEncoder, max_tokens: int) -> None:
        if max_tokens < 1:
            raise UserError(f"max_tokens must be at least 1, got {max_tokens}")
        self.encoder = encoder
        self.max_tokens = max_tokens
        self._clean: OrderedDict[str, str] = OrderedDict()  # the CLEAN_CACHE most recently cleaned

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def clean(self, text: str) -> str:
        """``text`` stripped, and cut to ``max_tokens`` tokens with a warning; empty text is an error."""
        if text in self._clean:
            self._clean.move_to_end(text)
            return self._clean[text]
        if not isinstance(text, str) or not text.strip():
            raise UserError(
                "empty instruction: TAGI generates the adapter from the task's instruction, so give a "
                "non-empty definition of the task"
            )
        tokenizer = self.encoder.tokenizer
        ids = literal_ids(tokenizer, text.strip())  # we cut, and warn, below
        cleaned = text.strip()
        if len(ids) > self.max_tokens:
            warnings.warn(  # one text for all instructions: a server's warning registry stays bounded
                f"an instruction is longer than max_instruction_tokens={self.max_tokens}: keeping its first "
                f"{self.max_tokens} tokens",
                stacklevel=3,
            )
            cleaned = str(tokenizer.decode(ids[: self.max_tokens])).strip()
        self._clean[text] = cleaned
        if len(self._clean) > CLEAN_CACHE:
            self._clean.popitem(last=False)
        return cleaned

    def __call__(self, texts: Sequence[str]) -> Tensor:
        return self.encoder.encode([self.clean(t) for t in texts])  # [N, D]


INSTRUCTION_VARIANTS = ("own", "shuffled", "random")  # what `hyperadapt eval --instructions` gives each task


def random_instructions(tasks: list[Task], seed: int) -> list[Task]:
    """Each task's instruction replaced by random lowercase words of the same lengths (drawn with ``seed``);
    examples and paraphrases dropped. The no-instruction control of TAGI's instruction sensitivity."""
    rng = random.Random(seed)
    out: list[Task] = []
    for t in tasks:
        words = ["".join(rng.choices(string.ascii_lowercase, k=len(w))) for w in t.instruction.split()]
        out.append(replace(t, instruction=" ".join(words), positive_examples=[], paraphrases=[]))
    return out


def with_instructions(tasks: list[Task], variant: str, seed: int = 0) -> list[Task]:
    """``tasks`` with their ``own`` instructions, another task's (``shuffled``: :func:`shuffled_instructions`) or
    random words (``random``: :func:`random_instructions`), drawn with ``seed``; ``UserError`` for another
    variant or fewer than two tasks to shuffle. ``hyperadapt bench tagi``'s sensitivity rows are the last two at
    the run's ``train.seed``."""
    if variant not in INSTRUCTION_VARIANTS:
        raise UserError(f"instructions must be one of {', '.join(INSTRUCTION_VARIANTS)}, got {variant!r}")
    if variant == "shuffled":
        if len(tasks) < 2:
            raise UserError(f"shuffled instructions need at least two tasks to swap, got {len(tasks)}")
        return shuffled_instructions(tasks, seed)
    return random_instructions(tasks, seed) if variant == "random" else tasks


def shuffled_instructions(tasks: list[Task], seed: int) -> list[Task]:
    """Each task with another task's instruction and examples (a derangement, drawn with ``seed``);
    paraphrases dropped. The wrong-instruction control of TAGI's instruction sensitivity."""
    order = list(range(len(tasks)))
    rng = random.Random(seed)
    while len(tasks) > 1 and any(i == j for i, j in enumerate(order)):
        rng.shuffle(order)
    return [
        replace(t, instruction=tasks[j].instruction, positive_examples=tasks[j].positive_examples, paraphrases=[])
        for t, j in zip(tasks, order, strict=True)
    ]

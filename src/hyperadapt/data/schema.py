"""One schema for every task: a condition (instruction) and its instances."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from hyperadapt.errors import UserError

ConditionType = Literal["task", "domain", "persona", "style", "sentiment"]
CONDITION_TYPES: tuple[str, ...] = ("task", "domain", "persona", "style", "sentiment")


class TaskDataError(UserError):
    """A task file or record is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Instance:
    """One input with its reference outputs (any of them counts as correct)."""

    id: str
    input: str
    outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.outputs:
            raise TaskDataError(f"instance {self.id!r} has no outputs")


@dataclass(frozen=True)
class Example:
    """A demonstration shown in the prompt (``Def+2Pos``)."""

    input: str
    output: str
    explanation: str = ""


@dataclass
class Task:
    """A task and the condition that describes it.

    ``instruction`` is the definition used in prompts and by hypernetworks; ``paraphrases`` are other
    wordings of the same instruction (the synthetic suite trains on some and holds others out).
    ``options`` lists the allowed answers of a classification task (for rank classification).
    ``output_language`` picks the ROUGE tokenizer when evaluating with ``metric_lang="auto"``.
    """

    name: str
    instruction: str
    instances: list[Instance]
    positive_examples: list[Example] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    condition_type: str = "task"
    paraphrases: list[str] = field(default_factory=list)
    options: list[str] | None = None
    source: str = ""
    output_language: str = ""  # e.g. "English" (SNI's Output_language); "" when the data does not say

    def __post_init__(self) -> None:
        where = f" in {self.source}" if self.source else ""
        if not self.name:
            raise TaskDataError(f"task without a name{where}")
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise TaskDataError(f"task {self.name!r}{where}: field 'instruction' (Definition) is empty")
        if not self.instances:
            raise TaskDataError(f"task {self.name!r}{where}: field 'instances' is empty")
        if self.condition_type not in CONDITION_TYPES:
            raise TaskDataError(
                f"task {self.name!r}{where}: condition_type {self.condition_type!r} is not one of {CONDITION_TYPES}"
            )

    @property
    def category(self) -> str:
        return self.categories[0] if self.categories else ""

    @property
    def instructions(self) -> list[str]:
        """The instruction and all its paraphrases."""
        return [self.instruction, *self.paraphrases]

    def with_instances(self, instances: list[Instance]) -> Task:
        return replace(self, instances=list(instances))

    def with_instruction(self, instruction: str) -> Task:
        return replace(self, instruction=instruction)

    def head(self, limit: int | None) -> Task:
        """The first ``limit`` instances (all when ``limit`` is None)."""
        return self if limit is None else self.with_instances(self.instances[:limit])

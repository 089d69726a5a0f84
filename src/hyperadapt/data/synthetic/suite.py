"""The synthetic suite and stream, built on call from the task specs.

Seeds: task ``name`` draws its inputs from its own ``random.Random(seed + crc32(name))``, so every task is
reproducible on its own whatever the others do, and one ``seed`` gives the same suite on every machine.
"""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from hyperadapt.data.schema import Example, Instance, Task, TaskDataError
from hyperadapt.data.synthetic.specs import TaskSpec, build_task_specs
from hyperadapt.errors import UserError

N_TRAIN = 300
N_TEST = 100
SPLITS: tuple[str, ...] = ("train", "seen", "unseen_paraphrase", "unseen", "unseen_type", "unseen_train")
HELD_OUT_TYPES: tuple[str, ...] = ("persona",)
"""Condition types held out entirely: their tasks are only in ``unseen_type`` (and ``unseen_train``)."""

STREAM_ORDER: tuple[str, ...] = (
    "upper_case",
    "add",
    "reverse_list",
    "antonym",
    "date_dmy",
    "animal_class",
    "sentiment_movie",
    "time_12h",
    "capital",
    "topic",
    "even_odd",
    "plural",
)
"""The continual-learning stream: clearly distinct seen tasks (families and input formats differ)."""


@functools.cache
def task_specs() -> Mapping[str, TaskSpec]:
    """Every synthetic task spec by name, in suite order: built on the first call, then shared (read-only)."""
    return MappingProxyType(build_task_specs())


def synthetic_tasks() -> dict[str, str]:
    """Task name -> one-line description, for every synthetic task."""
    return {name: spec.description for name, spec in task_specs().items()}


def split_of(spec: TaskSpec) -> str:
    """``seen``, ``unseen`` or ``unseen_type`` (a task of a held-out condition type)."""
    return "unseen_type" if spec.condition_type in HELD_OUT_TYPES else spec.split


def task_instances(name: str, seed: int = 0) -> tuple[list[Instance], list[Instance]]:
    """Train and test instances of one task: distinct inputs, deterministic in ``seed`` and ``name``.

    The task's sampler is called with ``random.Random(seed + crc32(name))`` until it has given
    ``N_TRAIN + N_TEST`` distinct inputs; the first ``N_TRAIN`` are train (ids ``NAME-000``...), the rest test.
    """
    spec = task_specs()[name]
    rng = random.Random(seed + zlib.crc32(name.encode()))
    total = N_TRAIN + N_TEST
    inputs: dict[str, None] = {}  # an insertion-ordered set
    for _ in range(50 * total):
        inputs[spec.sample(rng)] = None
        if len(inputs) == total:
            break
    else:
        raise TaskDataError(f"synthetic task {name!r}: only {len(inputs)} distinct inputs, need {total}")
    made = [Instance(f"{name}-{i:03d}", text, spec.answers(text)) for i, text in enumerate(inputs)]
    return made[:N_TRAIN], made[N_TRAIN:]


def _demonstrations(train: list[Instance]) -> list[Instance]:
    """Two train instances to show in prompts: the first, and the next one with a different answer."""
    second = next((i for i in train[1:] if i.outputs[0] != train[0].outputs[0]), train[1])
    return [train[0], second]


def _make(
    spec: TaskSpec, instances: list[Instance], instruction: str, paraphrases: Sequence[str], train: list[Instance]
) -> Task:
    return Task(
        name=spec.name,
        instruction=instruction,
        instances=list(instances),
        positive_examples=[Example(i.input, i.outputs[0]) for i in _demonstrations(train)],
        categories=[spec.family, spec.condition_type],
        condition_type=spec.condition_type,
        paraphrases=list(paraphrases),
        options=list(spec.options) if spec.options else None,
        source="synthetic",
    )


def seen_pair(name: str, seed: int = 0) -> tuple[Task, Task]:
    """A seen task as (train task, test task), with the seen paraphrases only."""
    spec = task_specs()[name]
    if split_of(spec) != "seen":
        raise UserError(f"synthetic task {name!r} is not a seen task")
    train, test = task_instances(name, seed)
    first, *others = spec.instructions[:-1]
    return _make(spec, train, first, others, train), _make(spec, test, first, others, train)


def synthetic_suite(seed: int = 0) -> dict[str, list[Task]]:
    """Every synthetic task, arranged in the evaluation splits (``docs/SYNTHETIC.md``), keys in ``SPLITS`` order.

    ``train``: seen tasks, train instances, the first instruction, the other seen paraphrases.
    ``seen``: the same tasks on their test instances. ``unseen_paraphrase``: the same test instances under
    the held-out paraphrase (the last instruction, never in ``train``). ``unseen``: tasks never trained on.
    ``unseen_type``: tasks of a held-out condition type (persona). ``unseen_train``: the train instances of
    the unseen and unseen_type tasks, for oracle upper bounds only. Every task draws from its own
    generator (see :func:`task_instances`), so ``seed`` changes the instances, never the tasks.
    """
    suite: dict[str, list[Task]] = {key: [] for key in SPLITS}
    for name, spec in task_specs().items():
        split = split_of(spec)
        if split == "seen":
            train_task, test_task = seen_pair(name, seed)
            suite["train"].append(train_task)
            suite["seen"].append(test_task)
            suite["unseen_paraphrase"].append(
                _make(spec, test_task.instances, spec.instructions[-1], [], train_task.instances)
            )
        else:
            train, test = task_instances(name, seed)
            first, *others = spec.instructions
            suite[split].append(_make(spec, test, first, others, train))
            suite["unseen_train"].append(_make(spec, train, first, others, train))
    return suite


def synthetic_stream(seed: int = 0, n_tasks: int = 5) -> list[tuple[Task, Task]]:
    """An ordered continual-learning stream: the first ``n_tasks`` of ``STREAM_ORDER`` (1 to 12) as
    (train task, test task) pairs, with the same instances as in ``synthetic_suite(seed)``."""
    if not 1 <= n_tasks <= len(STREAM_ORDER):
        raise UserError(f"n_tasks must be between 1 and {len(STREAM_ORDER)}, got {n_tasks}")
    return [seen_pair(name, seed) for name in STREAM_ORDER[:n_tasks]]

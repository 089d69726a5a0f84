"""The synthetic suite: sizes, splits, determinism, leakage and answer checks (no model needed)."""

from __future__ import annotations

import time

import pytest

from hyperadapt.data.schema import CONDITION_TYPES, Task
from hyperadapt.data.synthetic import (
    HELD_OUT_TYPES,
    N_TEST,
    N_TRAIN,
    SPLITS,
    STREAM_ORDER,
    SYNTHETIC_TASKS,
    TASK_SPECS,
    split_of,
    synthetic_stream,
    synthetic_suite,
    task_instances,
)

FAMILIES = {"string", "number", "list", "lexicon", "lookup", "format", "classification"}


@pytest.fixture(scope="module")
def suite() -> dict[str, list[Task]]:
    return synthetic_suite(0)


def _by_name(tasks: list[Task]) -> dict[str, Task]:
    return {t.name: t for t in tasks}


def _all_tasks(suite: dict[str, list[Task]]) -> list[Task]:
    return [t for key in SPLITS for t in suite[key]]


def test_registry_size_and_descriptions() -> None:
    assert len(TASK_SPECS) >= 40
    assert set(SYNTHETIC_TASKS) == set(TASK_SPECS)
    assert all(desc.strip() for desc in SYNTHETIC_TASKS.values())
    for spec in TASK_SPECS.values():
        assert len(spec.instructions) >= 4 and len(set(spec.instructions)) == len(spec.instructions)
        assert spec.family in FAMILIES and spec.condition_type in CONDITION_TYPES


def test_split_keys_and_sizes(suite: dict[str, list[Task]]) -> None:
    assert tuple(suite) == SPLITS
    assert all(suite[key] for key in SPLITS)
    assert len(suite["train"]) >= 25 and len(suite["unseen"]) >= 8
    assert [t.name for t in suite["train"]] == [t.name for t in suite["seen"]]
    assert [t.name for t in suite["train"]] == [t.name for t in suite["unseen_paraphrase"]]
    held = [t.name for t in suite["unseen"] + suite["unseen_type"]]
    assert sorted(t.name for t in suite["unseen_train"]) == sorted(held)
    assert len(suite["train"]) + len(held) == len(TASK_SPECS)
    for task in suite["train"] + suite["unseen_train"]:
        assert len(task.instances) == N_TRAIN
    for key in ("seen", "unseen_paraphrase", "unseen", "unseen_type"):
        assert all(len(task.instances) == N_TEST for task in suite[key])


def test_condition_types_per_split(suite: dict[str, list[Task]]) -> None:
    assert {t.condition_type for t in suite["train"]} == {"task", "style", "domain"}
    assert {t.condition_type for t in suite["unseen"]} == {"task", "style", "domain"}
    assert {t.condition_type for t in suite["unseen_type"]} == set(HELD_OUT_TYPES) == {"persona"}


def test_task_fields(suite: dict[str, list[Task]]) -> None:
    for task in _all_tasks(suite):
        spec = TASK_SPECS[task.name]
        assert task.source == "synthetic"
        assert task.categories == [spec.family, task.condition_type]
        assert len(task.positive_examples) == 2


def test_deterministic_by_seed(suite: dict[str, list[Task]]) -> None:
    assert synthetic_suite(0) == suite
    other = synthetic_suite(1)
    for a, b in zip(suite["train"], other["train"], strict=True):
        assert a.name == b.name and a.instances != b.instances


def test_each_task_independent_of_the_others(suite: dict[str, list[Task]]) -> None:
    for name in ("add", "capital", "robot_add", "title_case"):
        train, test = task_instances(name, 0)
        assert _by_name(suite["train"] + suite["unseen_train"])[name].instances == train
        held = _by_name(suite["seen"] + suite["unseen"] + suite["unseen_type"])
        assert held[name].instances == test


def test_instances_distinct_and_train_test_disjoint(suite: dict[str, list[Task]]) -> None:
    train = _by_name(suite["train"] + suite["unseen_train"])
    test = _by_name(suite["seen"] + suite["unseen"] + suite["unseen_type"])
    assert set(train) == set(test)
    for name in train:
        tr, te = [i.input for i in train[name].instances], [i.input for i in test[name].instances]
        assert len(set(tr)) == len(tr) and len(set(te)) == len(te)
        assert not set(tr) & set(te), name
        ids = [i.id for i in train[name].instances + test[name].instances]
        assert len(set(ids)) == len(ids)


def test_no_leak_of_unseen_tasks_types_or_paraphrases(suite: dict[str, list[Task]]) -> None:
    train_names = {t.name for t in suite["train"]}
    assert not train_names & {t.name for t in suite["unseen"] + suite["unseen_type"]}
    assert all(t.condition_type not in HELD_OUT_TYPES for t in suite["train"])
    train_instructions = {s for t in suite["train"] for s in t.instructions}
    for held in suite["unseen_paraphrase"]:
        assert held.paraphrases == [] and held.instruction not in train_instructions
    for task in suite["unseen"] + suite["unseen_type"]:
        assert not set(task.instructions) & train_instructions, task.name
    seen = _by_name(suite["seen"])
    for task in suite["train"]:
        assert seen[task.name].instructions == task.instructions
        assert task.instructions == list(TASK_SPECS[task.name].instructions[:-1])


def test_unseen_tasks_are_related_to_seen_ones(suite: dict[str, list[Task]]) -> None:
    train_names = {t.name for t in suite["train"]}
    for task in suite["unseen"] + suite["unseen_type"]:
        related = TASK_SPECS[task.name].related
        assert related and set(related) <= train_names, task.name


def test_outputs_short_and_answers_deterministic(suite: dict[str, list[Task]]) -> None:
    for task in _all_tasks(suite):
        spec = TASK_SPECS[task.name]
        for inst in task.instances:
            assert inst.outputs and all(o.strip() == o and 0 < len(o) <= 40 for o in inst.outputs)
            assert len(inst.outputs[0].split()) <= 6
            assert 0 < len(inst.input) <= 80 and len(inst.input.split()) <= 12
            assert spec.answers(inst.input) == inst.outputs


def test_options_contain_answers(suite: dict[str, list[Task]]) -> None:
    with_options = 0
    for task in _all_tasks(suite):
        if task.category == "classification":
            assert task.options, task.name
        if task.options:
            with_options += 1
            assert len(set(task.options)) == len(task.options) >= 2
            assert all(inst.outputs[0] in task.options for inst in task.instances), task.name
    assert with_options >= 10


def test_positive_examples_come_from_train(suite: dict[str, list[Task]]) -> None:
    train = _by_name(suite["train"] + suite["unseen_train"])
    for key in ("train", "seen", "unseen_paraphrase", "unseen", "unseen_type", "unseen_train"):
        for task in suite[key]:
            train_pairs = {(i.input, i.outputs[0]) for i in train[task.name].instances}
            test_inputs = set() if key.endswith("train") else {i.input for i in task.instances}
            for ex in task.positive_examples:
                assert (ex.input, ex.output) in train_pairs
                assert ex.input not in test_inputs
            first, second = task.positive_examples
            assert first.input != second.input
            if task.options:  # two different labels are shown
                assert first.output != second.output


def test_stream() -> None:
    stream = synthetic_stream(seed=0, n_tasks=5)
    assert [train.name for train, _ in stream] == list(STREAM_ORDER[:5])
    assert len({train.category for train, _ in stream}) == 5
    for train, test in stream:
        assert train.name == test.name and split_of(TASK_SPECS[train.name]) == "seen"
        assert len(train.instances) == N_TRAIN and len(test.instances) == N_TEST
        assert not {i.input for i in train.instances} & {i.input for i in test.instances}
    assert synthetic_stream(0, n_tasks=3) == stream[:3]
    with pytest.raises(ValueError):
        synthetic_stream(n_tasks=0)
    with pytest.raises(ValueError):
        synthetic_stream(n_tasks=len(STREAM_ORDER) + 1)


def test_generation_is_fast() -> None:
    start = time.perf_counter()
    synthetic_suite(7)
    assert time.perf_counter() - start < 1.0

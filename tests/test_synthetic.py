"""The synthetic suite: sizes, splits, determinism, leakage and answer checks (no model needed)."""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from hyperadapt.data import synthetic
from hyperadapt.data.schema import CONDITION_TYPES, Task
from hyperadapt.data.synthetic import (
    HELD_OUT_TYPES,
    N_TEST,
    N_TRAIN,
    SPLITS,
    STREAM_ORDER,
    SYNTHETIC_TASKS,
    TASK_SPECS,
    TaskSpec,
    split_of,
    synthetic_stream,
    synthetic_suite,
    synthetic_tasks,
    task_instances,
    task_specs,
)
from hyperadapt.data.synthetic.specs import build_task_specs

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


# --- The data is pinned: a refactor of the package must not change one byte of it, nor the draw order ---------

SUITE_SHA256 = "9568983cd34a502b259eaaa02c4a99360b794a7185d8164bacd01d17c6f27ec1"  # synthetic_suite(0)
STREAM_SHA256 = "c92c5df684102b39806c6bc2513b02c912661960d057415ccaa57c7f8f67fcad"  # synthetic_stream(0, 5)


def _sha256(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def test_default_suite_and_stream_are_pinned(suite: dict[str, list[Task]]) -> None:
    """Computed before the module became a package (619b377); update only when the data is meant to change."""
    assert _sha256([[key, [asdict(t) for t in tasks]] for key, tasks in suite.items()]) == SUITE_SHA256
    assert _sha256([[asdict(a), asdict(b)] for a, b in synthetic_stream()]) == STREAM_SHA256


# --- The package: nothing built at import, no stray module-level names ---------------------------------------

PACKAGE = Path(synthetic.__file__).parent
SUBMODULES = {"lexicons", "samplers", "solvers", "specs", "suite"}
LAZY = {"TASK_SPECS", "SYNTHETIC_TASKS"}


def test_package_namespace_is_its_public_names() -> None:
    names = {n for n in vars(synthetic) if not (n.startswith("__") and n.endswith("__"))}
    assert names == set(synthetic.__all__) - LAZY | SUBMODULES
    assert {p.stem for p in PACKAGE.glob("*.py")} == SUBMODULES | {"__init__"}
    assert set(synthetic.__all__) <= set(dir(synthetic)) | LAZY
    assert synthetic.TASK_SPECS is task_specs()
    assert synthetic_tasks() == synthetic.SYNTHETIC_TASKS
    with pytest.raises(AttributeError):
        synthetic.NOT_A_NAME  # noqa: B018


@pytest.mark.parametrize("module", sorted(SUBMODULES | {"__init__"}))
def test_modules_only_define_names_at_top_level(module: str) -> None:
    """No module-level loops, ``with`` or ``try`` (whose variables would stay behind), and no one- or
    two-letter globals: a module's body is imports, definitions and assignments of named constants."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign, ast.Expr)
    assert [type(node).__name__ for node in tree.body if not isinstance(node, allowed)] == []
    imported = importlib.import_module(f"{synthetic.__name__}.{module}" if module != "__init__" else synthetic.__name__)
    short = [n for n in vars(imported) if len(n.strip("_")) <= 2 and not n.startswith("__")]
    assert short == []


def test_importing_builds_nothing() -> None:
    code = (
        "import hyperadapt.data.synthetic as s, hyperadapt.data.synthetic.suite as suite; "
        "assert suite.task_specs.cache_info().currsize == 0; s.TASK_SPECS; "
        "assert suite.task_specs.cache_info().currsize == 1"
    )
    src = Path(synthetic.__file__).parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_task_specs_are_read_only_and_validated() -> None:
    specs = task_specs()
    with pytest.raises(TypeError):
        specs["new"] = specs["add"]  # type: ignore[index]
    assert list(build_task_specs()) == list(specs)
    with pytest.raises(ValueError, match="at least 4 instructions"):
        TaskSpec("short", "string", "too few", ("a", "b"), specs["add"].sample, specs["add"].solve)

"""Task data: one schema, several sources, addressed by a short spec string.

Specs: ``synthetic`` (or ``synthetic:SEED``), ``sni:PATH``, ``cl:PATH`` (or ``cl:PATH#ORDER``),
``jsonl:PATH``, ``hf:NAME``. A split names which tasks/instances: ``train``/``seen``/``unseen``/...
for the synthetic suite, ``train``/``test``/``all`` for SNI, ``train``/``dev``/``test`` for a stream.
"""

from __future__ import annotations

from hyperadapt.data.schema import CONDITION_TYPES, Example, Instance, Task, TaskDataError
from hyperadapt.errors import UserError

DATA_KINDS = ("synthetic", "sni", "cl", "jsonl", "hf")


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``kind:argument``; a bare ``synthetic`` has no argument."""
    kind, _, arg = spec.partition(":")
    if kind not in DATA_KINDS:
        raise UserError(f"unknown data spec {spec!r}: use one of synthetic, sni:PATH, cl:PATH, jsonl:PATH, hf:NAME")
    if kind != "synthetic" and not arg:
        raise UserError(f"data spec {spec!r} needs a path or name after '{kind}:'")
    return kind, arg


def split_names(spec: str) -> list[str]:
    """The splits a data source offers."""
    kind, _ = parse_spec(spec)
    return {
        "synthetic": ["train", "seen", "unseen_paraphrase", "unseen", "unseen_type", "unseen_train"],
        "sni": ["train", "test", "all"],
        "cl": ["train", "dev", "test"],
        "jsonl": ["all", "<value of the 'split' field>"],
        "hf": ["<any split of the dataset>"],
    }[kind]


def load_tasks(spec: str, split: str) -> list[Task]:
    """Tasks of ``split`` from the data source ``spec`` (see the module docstring)."""
    kind, arg = parse_spec(spec)
    if kind == "synthetic":
        from hyperadapt.data.synthetic import synthetic_suite

        suite = synthetic_suite(int(arg) if arg else 0)
        if split not in suite:
            raise UserError(f"the synthetic suite has no split {split!r}: use one of {sorted(suite)}")
        return suite[split]
    from hyperadapt.data import loaders

    if kind == "sni":
        return loaders.load_sni(arg, split)
    if kind == "cl":
        path, _, order = arg.partition("#")
        return loaders.load_cl_stream(path, int(order or 1)).split(split)
    if kind == "jsonl":
        return loaders.load_jsonl(arg, None if split == "all" else split)
    return loaders.load_hf(arg, split)


__all__ = [
    "CONDITION_TYPES",
    "DATA_KINDS",
    "Example",
    "Instance",
    "Task",
    "TaskDataError",
    "load_tasks",
    "parse_spec",
    "split_names",
]

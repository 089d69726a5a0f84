"""Load tasks from Super-NaturalInstructions files, the continual SNI stream, user JSONL and the HF hub.

Every loader returns :class:`~hyperadapt.data.schema.Task` objects. Malformed data raises
:class:`~hyperadapt.data.schema.TaskDataError` naming the file (and line or row) and the field; a missing
file or directory raises :class:`FileNotFoundError` naming the path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperadapt.data.schema import Example, Instance, Task, TaskDataError
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.io import check_plain_name

log = logging.getLogger(__name__)

SNI_SPLIT_DIRS: tuple[str, ...] = ("splits", "splits/default")
CL_SPLITS: tuple[str, ...] = ("train", "dev", "test")
JSONL_FIELDS: tuple[str, ...] = ("task", "instruction", "input", "output")
HF_SNI_COLUMNS: tuple[str, ...] = ("task_name", "definition", "inputs", "targets")
_IDENTITY: dict[str, str] = {}


# ---------------------------------------------------------------- field checks


def _error(where: str, field: str, problem: str) -> TaskDataError:
    return TaskDataError(f"{where}: field {field!r} {problem}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _get(record: Mapping[str, Any], key: str, where: str, label: str | None = None) -> Any:
    """``record[key]``; a missing or null value is an error naming ``label`` (default ``key``)."""
    if record.get(key) is None:
        raise _error(where, label or key, "is missing")
    return record[key]


def _as_str(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise _error(where, field, f"must be a string, got {_kind(value)}")
    return value


def _as_strs(value: Any, where: str, field: str) -> list[str]:
    """A string or a non-empty list of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _error(where, field, f"must be a string or a list of strings, got {_kind(value)}")
    if not value:
        raise _error(where, field, "is an empty list")
    return list(value)


def _optional_strs(value: Any, where: str, field: str) -> list[str]:
    """None, a string or a (possibly empty) list of strings, as a list."""
    if value is None or (isinstance(value, list | tuple) and not value):
        return []
    return _as_strs(value, where, field)


def _optional_id(value: Any, where: str, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _error(where, field, f"must be a string or an integer, got {_kind(value)}")
    return str(value)


def _check_unique_ids(instances: list[Instance], where: str) -> None:
    seen: set[str] = set()
    for inst in instances:
        if inst.id in seen:
            raise TaskDataError(f"{where}: instance id {inst.id!r} appears more than once")
        seen.add(inst.id)


def _existing_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InputNotFound(f"{what} not found: {path}")
    return path


def _read_json(path: str | Path) -> Any:
    """Parse a JSON file; invalid JSON is a TaskDataError naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        problem = f"line {err.lineno}, column {err.colno}: {err.msg}"
        raise TaskDataError(f"{path}: not valid JSON ({problem})") from err
    except UnicodeDecodeError as err:
        raise TaskDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err


# ---------------------------------------------------------------- SNI task files


def _sni_instances(value: Any, name: str, where: str) -> list[Instance]:
    if not isinstance(value, list):
        raise _error(where, "Instances", f"must be a list, got {_kind(value)}")
    if not value:
        raise _error(where, "Instances", "is empty")
    out = []
    for i, raw in enumerate(value):
        label = f"Instances[{i}]"
        if not isinstance(raw, Mapping):
            raise _error(where, label, f"must be an object, got {_kind(raw)}")
        text = _as_str(_get(raw, "input", where, f"{label}.input"), where, f"{label}.input")
        outputs = _as_strs(_get(raw, "output", where, f"{label}.output"), where, f"{label}.output")
        inst_id = _optional_id(raw.get("id"), where, f"{label}.id") or f"{name}-{i}"
        if not any(o.strip() for o in outputs):
            log.warning("%s: skipping instance %r (%s): its only reference is empty", where, inst_id, label)
            continue
        out.append(Instance(id=inst_id, input=text, outputs=tuple(outputs)))
    if not out:
        raise _error(where, "Instances", "has no instance with a non-empty reference")
    _check_unique_ids(out, where)
    return out


def _sni_examples(value: Any, where: str) -> list[Example]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _error(where, "Positive Examples", f"must be a list, got {_kind(value)}")
    out = []
    for i, raw in enumerate(value):
        label = f"Positive Examples[{i}]"
        if not isinstance(raw, Mapping):
            raise _error(where, label, f"must be an object, got {_kind(raw)}")
        text = _as_str(_get(raw, "input", where, f"{label}.input"), where, f"{label}.input")
        output = _as_strs(_get(raw, "output", where, f"{label}.output"), where, f"{label}.output")[0]
        explanation = _as_str(raw.get("explanation") or "", where, f"{label}.explanation")
        out.append(Example(input=text, output=output, explanation=explanation))
    return out


def task_from_sni(record: Any, name: str, source: str) -> Task:
    """A Task from one parsed task object in the Super-NaturalInstructions schema.

    The first ``Definition`` is the instruction and any further ones become paraphrases (the official
    collator also uses the first). ``source`` names the record in errors.
    """
    if not isinstance(record, Mapping):
        raise TaskDataError(f"{source}: expected a JSON object with the task fields, got {_kind(record)}")
    definitions = [d.strip() for d in _as_strs(_get(record, "Definition", source), source, "Definition")]
    if not definitions[0]:
        raise _error(source, "Definition", "is empty")
    return Task(
        name=name,
        instruction=definitions[0],
        instances=_sni_instances(_get(record, "Instances", source), name, source),
        positive_examples=_sni_examples(record.get("Positive Examples"), source),
        categories=_optional_strs(record.get("Categories"), source, "Categories"),
        paraphrases=[d for d in definitions[1:] if d],
        source=source,
        output_language=(_optional_strs(record.get("Output_language"), source, "Output_language") or [""])[0],
    )


def load_task_file(path: str | Path, name: str | None = None) -> Task:
    """One task JSON file in the Super-NaturalInstructions schema; the name defaults to the file stem."""
    path = Path(path)
    return task_from_sni(_read_json(path), name or path.stem, str(path))


def _split_file(root: Path, split: str) -> Path:
    tried = [root / d / f"{split}_tasks.txt" for d in SNI_SPLIT_DIRS]
    for path in tried:
        if path.is_file():
            return path
    raise InputNotFound(f"no split file for split {split!r}: tried {', '.join(map(str, tried))}")


def _read_names(path: Path) -> list[str]:
    """Task names in a split file: one a line; blank lines and ``#`` comments skipped."""
    names: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        name = line.strip().removesuffix(".json")
        if not name or name.startswith("#"):
            continue
        if name in names:
            raise TaskDataError(f"{path} line {lineno}: task {name!r} is listed twice")
        check_plain_name(name, "task name", f"{path} line {lineno}")
        names.append(name)
    if not names:
        raise TaskDataError(f"{path}: lists no tasks")
    return names


def _select(names: list[str], wanted: list[str] | None, where: Path) -> list[str]:
    if wanted is None:
        return names
    known = set(names)
    missing = [t for t in wanted if t not in known]
    if missing:
        raise UserError(f"tasks not in {where}: {', '.join(missing)}")
    return list(dict.fromkeys(wanted))


def load_sni(root: str | Path, split: str, tasks: list[str] | None = None) -> list[Task]:
    """Tasks of a Super-NaturalInstructions directory: ``root/tasks/*.json`` plus a split file.

    The split file is ``root/splits/{split}_tasks.txt`` or, in the official allenai/natural-instructions
    layout, ``root/splits/default/{split}_tasks.txt``; ``split="all"`` takes every task file (sorted by
    name). ``tasks`` keeps only those tasks (in that order); each must be in the split.
    """
    root = _existing_dir(root, "Super-NaturalInstructions directory")
    task_dir = _existing_dir(root / "tasks", "task directory")
    if split == "all":
        listing: Path = task_dir
        names = sorted(p.stem for p in task_dir.glob("*.json"))
        if not names:
            raise InputNotFound(f"no task files (*.json) in {task_dir}")
    else:
        listing = _split_file(root, split)
        names = _read_names(listing)
    out = []
    for name in _select(names, tasks, listing):
        path = task_dir / f"{name}.json"
        if not path.is_file():
            raise InputNotFound(f"task {name!r} is listed in {listing} but {path} does not exist")
        out.append(load_task_file(path))
    return out


# ---------------------------------------------------------------- continual stream


@dataclass
class ContinualStream:
    """Tasks in a continual-learning order, each with its own train, dev and test sets."""

    names: list[str]
    train: dict[str, Task]
    dev: dict[str, Task]
    test: dict[str, Task]
    order: str = ""

    def split(self, name: str) -> list[Task]:
        """The ``train``, ``dev`` or ``test`` Task of every stream task, in stream order."""
        if name not in CL_SPLITS:
            raise UserError(f"a continual stream has no split {name!r}: use one of {', '.join(CL_SPLITS)}")
        table: dict[str, Task] = getattr(self, name)
        return [table[n] for n in self.names]

    def __len__(self) -> int:
        return len(self.names)


def _order_names(orders: Any, order: int | str, path: Path) -> tuple[str, list[str]]:
    """The key and task names of ``order`` (``1`` means key ``order1``) in a parsed ``orders.json``."""
    if not isinstance(orders, Mapping):
        raise TaskDataError(f"{path}: expected an object mapping order names to task lists ({_kind(orders)})")
    key = order if isinstance(order, str) else f"order{order}"
    if key not in orders:
        raise UserError(f"{path} has no order {key!r}: it has {', '.join(map(str, orders))}")
    names = [check_plain_name(n, "task name", f"{path} {key}") for n in _as_strs(orders[key], str(path), key)]
    if len(set(names)) != len(names):
        raise _error(str(path), key, "lists a task more than once")
    return key, names


def load_cl_stream(root: str | Path, order: int | str = 1) -> ContinualStream:
    """A continual instruction-tuning stream: ``root/orders.json`` and ``root/<task>/{train,dev,test}.json``.

    ``orders.json`` maps ``order1``, ``order2``, ... to lists of task names; ``order`` picks one (an int
    ``n`` means ``order{n}``). Each split file is a full task file in the SNI schema.
    """
    root = _existing_dir(root, "continual stream directory")
    orders_path = root / "orders.json"
    key, names = _order_names(_read_json(orders_path), order, orders_path)
    for name in names:
        _existing_dir(root / name, f"directory of task {name!r} (listed in {orders_path} {key})")
    splits = {s: {n: load_task_file(root / n / f"{s}.json", name=n) for n in names} for s in CL_SPLITS}
    return ContinualStream(names=names, order=key, **splits)


# ---------------------------------------------------------------- JSONL and table rows


@dataclass
class _Row:
    """One instance record with its task-level fields, before rows are grouped into tasks."""

    where: str
    source: str
    task: str
    instruction: str
    input: str
    outputs: list[str]
    id: str | None = None
    categories: list[str] | None = None
    condition_type: str | None = None
    options: list[str] | None = None
    split: str | None = None


def _row(record: Any, where: str, source: str, columns: Mapping[str, str] = _IDENTITY) -> _Row:
    """Parse one record in the JSONL schema; ``columns`` renames fields (canonical name -> column)."""
    if not isinstance(record, Mapping):
        raise TaskDataError(f"{where}: expected a JSON object, got {_kind(record)}")

    def col(key: str) -> str:
        return columns.get(key, key)

    def opt(key: str, parse: Callable[[Any, str, str], Any]) -> Any:
        value = record.get(col(key))
        return None if value is None else parse(value, where, col(key))

    req = {k: _as_str(_get(record, col(k), where), where, col(k)) for k in ("task", "instruction", "input")}
    for key in ("task", "instruction"):
        if not req[key].strip():
            raise _error(where, col(key), "is empty")
    return _Row(
        where=where,
        source=source,
        task=req["task"],
        instruction=req["instruction"],
        input=req["input"],
        outputs=_as_strs(_get(record, col("output"), where), where, col("output")),
        id=opt("id", _optional_id),
        categories=opt("categories", _optional_strs),
        condition_type=opt("condition_type", _as_str),
        options=opt("options", _as_strs),
        split=opt("split", _as_str),
    )


def _same(rows: list[_Row], key: str) -> Any:
    """The value of ``key`` given in ``rows`` (None if none gives one); differing values are an error."""
    first: _Row | None = None
    for row in rows:
        value = getattr(row, key)
        if value is None:
            continue
        if first is None:
            first = row
        elif value != getattr(first, key):
            raise TaskDataError(
                f"task {row.task!r}: field {key!r} differs between {first.where} and {row.where} "
                "(it must be the same for every instance of a task)"
            )
    return None if first is None else getattr(first, key)


def _task_from_rows(name: str, rows: list[_Row], split: str | None) -> Task | None:
    """One task from its rows (all splits, so ids are stable); None when ``split`` leaves no instance."""
    instruction = _same(rows, "instruction")
    meta = {key: _same(rows, key) for key in ("categories", "condition_type", "options")}
    instances = [
        Instance(id=r.id or f"{name}-{i}", input=r.input, outputs=tuple(r.outputs))
        for i, r in enumerate(rows)
        if split is None or r.split == split
    ]
    _check_unique_ids(instances, f"task {name!r} ({rows[0].source})")
    if not instances:
        return None
    return Task(
        name=name,
        instruction=instruction,
        instances=instances,
        categories=meta["categories"] or [],
        condition_type=meta["condition_type"] or "task",
        options=meta["options"],
        source=rows[0].source,
    )


def _group(rows: Iterable[_Row], source: str, split: str | None = None) -> list[Task]:
    """Group rows into tasks by name (in order of first appearance), optionally keeping one split."""
    groups: dict[str, list[_Row]] = {}
    for row in rows:
        groups.setdefault(row.task, []).append(row)
    if not groups:
        raise TaskDataError(f"{source}: no instances")
    tasks = [t for name, rs in groups.items() if (t := _task_from_rows(name, rs, split)) is not None]
    if not tasks:
        found = sorted({r.split for rs in groups.values() for r in rs if r.split is not None})
        if not found:
            raise TaskDataError(
                f"{source}: no instance has a 'split' field, so split {split!r} keeps none: use split 'all' "
                "(--split all, or --set split=all for training) to keep every instance, or give each a split"
            )
        raise TaskDataError(f"{source}: no instance has field 'split' equal to {split!r} (found: {', '.join(found)})")
    return tasks


def _jsonl_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise InputNotFound(f"no .jsonl files in {path}")
        return files
    if not path.is_file():
        raise InputNotFound(f"JSONL file not found: {path}")
    return [path]


def _jsonl_rows(path: Path) -> Iterable[_Row]:
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path} line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskDataError(f"{where}: not valid JSON (column {err.colno}: {err.msg})") from err
            yield _row(record, where, str(path))


def load_jsonl(path: str | Path, split: str | None = None) -> list[Task]:
    """Tasks from user-written JSONL: a file, or a directory of ``*.jsonl`` files (read in name order).

    One instance a line: required ``task``, ``instruction``, ``input``, ``output`` (a string or a list of
    strings); optional ``id``, ``categories``, ``condition_type``, ``options``, ``split``. Lines are grouped
    into tasks by ``task``; task-level fields must agree across a task's lines. ``split`` keeps only the
    lines whose ``split`` field equals it; ``None`` or ``"all"`` keeps every line.
    """
    path = Path(path)
    rows = [row for file in _jsonl_files(path) for row in _jsonl_rows(file)]
    return _group(rows, str(path), None if split == "all" else split)


def _pick_columns(row: Any, source: str) -> dict[str, str]:
    """The column renaming for the schema ``row`` is in; an error naming both schemas otherwise."""
    keys = set(row) if isinstance(row, Mapping) else set()
    if set(JSONL_FIELDS) <= keys:
        return _IDENTITY
    if set(HF_SNI_COLUMNS) <= keys:
        return dict(zip(("task", "instruction", "input", "output"), HF_SNI_COLUMNS, strict=True))
    raise TaskDataError(
        f"{source}: unrecognised columns {sorted(keys)}; expected {', '.join(JSONL_FIELDS)} (JSONL schema) "
        f"or {', '.join(HF_SNI_COLUMNS)} (Super-NaturalInstructions mirror), plus an optional id"
    )


def tasks_from_rows(rows: Iterable[Mapping[str, Any]], source: str = "rows") -> list[Task]:
    """Tasks from table rows (e.g. a ``datasets.Dataset``), grouped by task name.

    Rows are in the JSONL schema (see :func:`load_jsonl`) or the common Super-NaturalInstructions mirror
    schema (``task_name``, ``definition``, ``inputs``, ``targets``, optional ``id``); the first row decides.
    """
    columns: Mapping[str, str] | None = None
    parsed = []
    for i, record in enumerate(rows):
        if columns is None:
            columns = _pick_columns(record, source)
        parsed.append(_row(record, f"{source} row {i}", source, columns))
    return _group(parsed, source)


def load_hf(name: str, split: str, config: str | None = None) -> list[Task]:
    """Tasks from a Hugging Face dataset (needs the optional dependency ``datasets``)."""
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        hint = "pip install 'hyperadapt[hub]'"
        raise ImportError(f"load_hf needs the optional dependency 'datasets' ({hint})") from err
    rows = datasets.load_dataset(name, config, split=split)
    return tasks_from_rows(rows, f"{name}{f' ({config})' if config else ''} split {split}")


__all__ = [
    "ContinualStream",
    "load_cl_stream",
    "load_hf",
    "load_jsonl",
    "load_sni",
    "load_task_file",
    "task_from_sni",
    "tasks_from_rows",
]

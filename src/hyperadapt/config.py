"""Configs are dataclasses, read from one YAML file per experiment with ``key=value`` overrides (the
command line's ``--set key=value``).

Example::

    cfg = load_config(MultiTaskLoraConfig, "configs/multitask_lora.yaml", ["train.steps=50"])

Renamed keys (``RENAMED_KEYS``) keep loading under their old name: silently from a saved run's ``run.json``
(:func:`from_dict`), with a deprecation warning from a YAML file or an override (:func:`load_config`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from hyperadapt.errors import InputNotFound, UserError

T = TypeVar("T")

# Config keys renamed since runs were first saved: old name -> new name, in any section that has the new one
# (the LoRA targets took PEFT's name: TAGI's `targets` and SwitchCIT's `lora.targets` are `target_modules`).
RENAMED_KEYS: dict[str, str] = {"targets": "target_modules"}
# Config options added since answers were first logged, with their default (dotted key -> default): at that
# default the option changes nothing, so answers logged before it existed are still reused.
ADDED_KEYS: dict[str, Any] = {
    "teachers.shared": False,
    # activation checkpointing (e10ddaf): the same answers with or without it
    "train.gradient_checkpointing": False,
    "teachers.train.gradient_checkpointing": False,
    "pretrain.train.gradient_checkpointing": False,
}
# The one override syntax: every command and benchmark that reads a config takes `--set KEY=VALUE`, repeatable.
OVERRIDE_HELP = (
    "config override KEY=VALUE, the value in YAML (repeatable; several may follow one --set): "
    "--set train.steps=100 --set train.lr=5e-4"
)


@dataclasses.dataclass(frozen=True)
class Word:
    """A YAML scalar that YAML 1.1 reads as true, false or null (``yes``, ``no``, ``off``, ``~``, an empty
    value, ...), kept with the ``text`` it was written as until the setting's type says which it is: a
    setting typed ``str`` takes the text (``precision: no`` is ``"no"``), any other takes ``value``."""

    text: str
    value: bool | None

    def __str__(self) -> str:
        return self.text


class ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 safe loading, but numbers written as people write them (``5e-4``, ``1e3``) are floats and
    true/false/null are :class:`Word` s (:func:`check_type` decides what they are)."""


def _construct_word(loader: ConfigLoader, node: yaml.ScalarNode) -> Word:
    value = loader.construct_yaml_bool(node) if node.tag.endswith(":bool") else None
    return Word(str(node.value), value)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.?[0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
ConfigLoader.add_constructor("tag:yaml.org,2002:bool", _construct_word)
ConfigLoader.add_constructor("tag:yaml.org,2002:null", _construct_word)


def yaml_value(data: Any) -> Any:
    """``data`` with every :class:`Word` replaced by what YAML reads it as (true, false or None)."""
    if isinstance(data, Word):
        return data.value
    if isinstance(data, dict):
        return {yaml_value(k): yaml_value(v) for k, v in data.items()}
    if isinstance(data, list):
        return [yaml_value(v) for v in data]
    return data


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed with :class:`ConfigLoader` (an empty text is the empty :class:`Word`); a syntax error
    is a ``ValueError`` naming ``where`` and the line (tabs, for one, are not allowed for indentation in YAML)."""
    if not text.strip():
        return Word("", None)
    try:
        return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        hint = " (YAML does not allow tabs: indent with spaces)" if "'\\t'" in str(err) else ""
        raise UserError(f"{where}{at}: invalid YAML: {problem}{hint}") from err


def rename_old_keys(
    data: Mapping[str, Any], known: Collection[str], where: str = ""
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``data`` with each old key name of ``RENAMED_KEYS`` renamed to the new one where ``known`` (the keys the
    section allows) has only the new one; and the (old, new) dotted keys renamed. Both names at once is an
    error."""
    out, renamed = dict(data), []
    for before, after in RENAMED_KEYS.items():
        if before in out and before not in known and after in known:
            if after in out:
                raise UserError(
                    f"config keys {where}{before} and {where}{after} are the same setting: keep "
                    f"{where}{after} ({where}{before} is its old name)"
                )
            out = {after if k == before else k: v for k, v in out.items()}
            renamed.append((f"{where}{before}", f"{where}{after}"))
    return out, renamed


def upgrade_saved(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """A config saved by an older version (``run.json``) with its old key names renamed as in ``current`` (a
    config of this version, as a dict), so that the two compare key by key."""
    out, _ = rename_old_keys(saved, current)
    return {
        k: upgrade_saved(v, current[k]) if isinstance(v, Mapping) and isinstance(current.get(k), Mapping) else v
        for k, v in out.items()
    }


def from_dict(cls: type[T], data: dict[str, Any], where: str = "", renamed: list[tuple[str, str]] | None = None) -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses; unknown keys are errors.

    Old key names (``RENAMED_KEYS``) are read as their new names; the (old, new) dotted keys are appended to
    ``renamed`` when it is given (``load_config`` warns about them; a saved run loads silently)."""
    if not isinstance(data, dict):
        raise UserError(f"config section {where or cls.__name__!r} must be a mapping, got {data!r}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a config dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    data, old = rename_old_keys(data, fields, where)
    if renamed is not None:
        renamed += old
    hints = typing.get_type_hints(cls)
    unknown = set(data) - set(fields)
    if unknown:
        raise UserError(
            f"unknown config key(s) {sorted(f'{where}{k}' for k in unknown)} for {cls.__name__}; "
            f"allowed: {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = _dataclass_type(hints[key])
        if sub and isinstance(value, dict):
            kwargs[key] = from_dict(sub, value, f"{where}{key}.", renamed)
        else:
            kwargs[key] = check_type(value, hints[key], f"{where}{key}")
    try:
        return cls(**kwargs)
    except TypeError as err:  # a value of the wrong kind that only a check in __post_init__ met
        raise UserError(f"config section {where.rstrip('.') or cls.__name__}: {err}") from err


def check_type(value: Any, hint: Any, key: str) -> Any:
    """``value`` when it fits the type ``hint`` (an int counts as a float), else a ``ValueError`` naming
    ``key``, e.g. ``train.steps must be an integer, got 1.5``. A :class:`Word` is what YAML reads it as when
    that fits, else its text when that fits (``no`` for a ``str``, but ``null`` for a ``str | None`` is None).
    """
    if isinstance(value, Word):
        try:
            return check_type(value.value, hint, key)
        except ValueError:
            try:
                return check_type(value.text, hint, key)
            except ValueError:
                pass
            raise
    if hint is Any:
        return yaml_value(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        for arg in args:
            try:
                return check_type(value, arg, key)
            except ValueError:
                continue
        raise UserError(f"{key} must be {_describe(hint)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise UserError(f"{key} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            raise UserError(f"{key} must be a list, got {value!r}")
        item = args[0] if args else Any
        return [check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a mapping, got {value!r}")
        return yaml_value(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise UserError(f"{key} must be a mapping of {hint.__name__} settings, got {value!r}")
        return value
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        type(None): lambda v: v is None,
    }.get(hint)
    if ok is None:
        return value
    if not ok(value):
        raise UserError(f"{key} must be {_describe(hint)}, got {value!r}")
    return value


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if typing.get_origin(hint) in (list, tuple):
        return "a list"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _dataclass_type(hint: Any) -> type | None:
    """The config dataclass ``hint`` names (itself, or the one in a union such as ``X | None``), or None."""
    candidates = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    return next((a for a in candidates if isinstance(a, type) and dataclasses.is_dataclass(a)), None)


def parse_override(item: str) -> tuple[list[str], Any]:
    """The one reading of an override ``KEY=VALUE`` (``--set`` of every command and benchmark): the dotted key's
    parts and the value parsed as YAML, e.g. ``train.lr=5e-4`` -> ``(["train", "lr"], 0.0005)``; ``x=`` is null,
    ``[a, b]`` a list. ``UserError`` for an item without ``=``, an empty key part or invalid YAML."""
    key, sep, raw = item.partition("=")
    parts = [part.strip() for part in key.split(".")]
    if not sep or not all(parts):
        raise UserError(f"override {item!r} must look like key=value, e.g. --set train.steps=100")
    return parts, parse_yaml(raw, f"override {item!r}")


def expand_set_args(args: Sequence[str]) -> list[str]:
    """Command-line arguments with ``--set`` before each ``KEY=VALUE`` that follows another one, so that
    ``--set a=1 b=2`` reads as ``--set a=1 --set b=2``: the one ``--set`` syntax of every command and benchmark
    (the commands that take ``--set`` take no positional ``KEY=VALUE`` arguments)."""
    out: list[str] = []
    value_next = after_set = False
    for arg in args:
        if value_next or arg.startswith("--set="):  # an item of --set
            value_next, after_set = False, True
        elif arg == "--set":
            value_next = True
        elif after_set and "=" in arg and not arg.startswith("-"):
            out.append("--set")
        else:
            after_set = False
        out.append(arg)
    return out


def refuse_stray_overrides(args: Collection[str]) -> None:
    """Refuse arguments left over after a command's options (``UserError``), naming the ``--set`` form for a bare
    ``key=value`` (the old override syntax)."""
    if args:
        fixed = " ".join(f"--set {a}" if "=" in a and not a.startswith("-") else a for a in args)
        raise UserError(
            f"unexpected argument(s) {' '.join(args)}: config overrides are written --set KEY=VALUE ({fixed})"
        )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``a.b=value`` entries (read by :func:`parse_override`) in a nested dict."""
    if overrides and not isinstance(data, dict):
        raise UserError(f"the config must be a mapping of settings (key: value), got {data!r}")
    for item in overrides:
        (*parents, leaf), value = parse_override(item)
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {part!r} is not a config section")
        # an old and a new name of one renamed key are one setting: the override replaces whichever is there
        for before, after in RENAMED_KEYS.items():
            if leaf == before and after in node:
                warnings.warn(
                    f"override {item!r}: config key renamed ({before} is now {after}); the old name still "
                    "loads for now: use the new one",
                    FutureWarning,
                    stacklevel=3,
                )
                leaf = after
            elif leaf == after:
                node.pop(before, None)
        node[leaf] = value
    return data


def upgraded_run_config(config: dict[str, Any], method: Any) -> dict[str, Any]:
    """A run's saved ``config`` with the keys it predates at the values that run used, as its method's
    ``upgrade_config`` hook says (``Run.config`` reads runs the same way); as saved for a method this version
    does not know."""
    from hyperadapt.registry import method_entry

    if not isinstance(method, str):
        return config
    try:
        entry = method_entry(method)
    except ValueError:
        return config
    return entry.upgrade_config(config)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Read ``cls`` from a YAML file (or its defaults when ``path`` is None) and apply overrides; an old key
    name (``RENAMED_KEYS``) still works, with one ``FutureWarning`` naming the new one.

    ``path`` may also be a run's ``run.json`` (or its run folder): its ``config`` section, the config the
    run was started with, is read (old key names silently; keys it predates at the values it used, see
    ``upgraded_run_config``), which is how a run is resumed."""
    data: dict[str, Any] = {}
    saved_run = False
    if path is not None:
        from hyperadapt.runs import is_run, is_run_record, record_file

        path = Path(path)
        if path.is_dir() and is_run(path):
            path = record_file(path)
        if not path.exists():
            raise InputNotFound(f"config file not found: {path}")
        parsed = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        parsed = (parsed.value if isinstance(parsed, Word) else parsed) or {}  # an empty file: the defaults
        if is_run_record(path) and isinstance(parsed, dict) and isinstance(parsed.get("config"), dict):
            parsed, saved_run = upgraded_run_config(parsed["config"], parsed.get("method")), True
        if not isinstance(parsed, dict):
            raise UserError(
                f"{path}: a config file must be a mapping of settings (key: value lines, see "
                f"configs/), got {type(parsed).__name__} {parsed!r}"
            )
        data = parsed
    renamed: list[tuple[str, str]] = []
    cfg = from_dict(cls, apply_overrides(data, list(overrides)), renamed=renamed)
    if renamed and not saved_run:
        names = ", ".join(f"{old} is now {new}" for old, new in renamed)
        warnings.warn(
            f"{path or 'overrides'}: config key renamed ({names}); the old name still loads for now: use the new one",
            FutureWarning,
            stacklevel=2,
        )
    return cfg


@dataclasses.dataclass(frozen=True)
class Setting:
    """One key of a config, as ``--set KEY=VALUE`` names it: its default, type and help text."""

    key: str
    default: Any
    kind: str
    help: str


def settings(cls: type, prefix: str = "") -> list[Setting]:
    """Every key of config dataclass ``cls`` (nested sections as dotted keys, ``train.steps``) with its default
    in the default config, the type it takes and its ``metadata["help"]`` ("" where a field has none)."""
    return _settings(cls(), prefix)


def _settings(cfg: Any, prefix: str) -> list[Setting]:
    hints = typing.get_type_hints(type(cfg))
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out += _settings(value, f"{prefix}{f.name}.")
        else:
            out.append(Setting(f"{prefix}{f.name}", value, _describe(hints[f.name]), f.metadata.get("help", "")))
    return out


def settings_help(cls: type) -> str:
    """The keys of config dataclass ``cls`` for a command's ``--help``: one line each, ``KEY = DEFAULT`` (the
    default as YAML reads it), the type, and the field's help text."""
    rows = [(s.key, json.dumps(s.default, default=str), s.kind, s.help) for s in settings(cls)]
    width = max(len(f"{k} = {d}") for k, d, _, _ in rows)
    return "\n".join(f"{f'{k} = {d}':<{width}}  ({kind}){f' {text}' if text else ''}" for k, d, kind, text in rows)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def with_overrides(cfg: T, *overrides: str) -> T:
    """A copy of the config dataclass ``cfg`` with ``key=value`` overrides applied, as ``--set`` applies them on
    the command line: ``with_overrides(TagiConfig(), "rank=4", "teachers.train.steps=20")``.

    Raises ``ValueError`` naming the key for an unknown key, a value of the wrong type or a malformed item."""
    return from_dict(type(cfg), apply_overrides(to_dict(cfg), list(overrides)))


def with_steps(cfg: T, steps: int) -> T:
    """A copy of ``cfg`` whose every training stage runs ``steps`` optimiser steps: each nested section with a
    ``steps`` field (``train``, and for TAGI also ``teachers.train`` and ``pretrain.train``). The quick way to a
    small budget: ``with_steps(TagiConfig(), 20)``. Raises ``ValueError`` when ``steps`` < 1 or ``cfg`` has
    no training stage."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    keys = _step_keys(to_dict(cfg))
    if not keys:
        raise ValueError(f"{type(cfg).__name__} has no training stage (no section with a `steps` field)")
    return with_overrides(cfg, *(f"{key}={steps}" for key in keys))


def _step_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of every ``steps`` entry inside a nested section of ``data``."""
    keys = []
    for name, value in data.items():
        if isinstance(value, Mapping):
            if "steps" in value:
                keys.append(f"{prefix}{name}.steps")
            keys += _step_keys(value, f"{prefix}{name}.")
    return keys

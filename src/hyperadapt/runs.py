"""A run directory: the unit a user carries between ``train``, ``eval``, ``generate``, ``serve`` and ``release``.

This module owns the one ``run.json`` schema of every run (a trained method, a continual stream, a released
checkpoint)::

    {"schema": 1, "kind": "train" | "continual", "method": "tagi", "config": {...},
     "status": "running" | "finished", "versions": {"hyperadapt": ..., "torch": ..., ...},
     "base_model": {"name_or_path": ..., "fingerprint": ..., "scheme": 2},
     "prompt_style": {"setting": "def"},
     ...continual: "tasks", "added"; released: "released_from", "dtype"}

:class:`Run` opens a run folder, reads ``run.json`` once and answers every question about it (its method's
registry entry, typed config, status, base model, prompt style, the paths of its parts); ``Run.load`` turns it
into a ready method on its own base model (another base model is refused). :class:`RunDir` writes the record
and keeps a run's integrity: training another method into a run directory, or a different config into a run
that has started, is refused before anything is written (the changed keys are named); two processes cannot
train into one directory at once (``.lock`` holds the owner's pid); a run stopped early stays ``running``, and
loading it says how to resume it. Every other path of a run derives from its folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, cast

from hyperadapt.config import from_dict, upgrade_saved
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.io import load_json, save_json
from hyperadapt.registry import MethodEntry, method_entry, method_names

if TYPE_CHECKING:
    from hyperadapt.data.prompts import PromptStyle

SCHEMA = 1
RUN_FILE = "run.json"
LOCK_FILE = ".lock"
EVAL_DIR = "eval"  # a run's evaluation results (``hyperadapt eval --run``; see evaluation/destination.py)
# keys that may change between a run and its resumption without changing what is trained: these settings of
# any ``train`` section (``train.save_every``, ``teachers.train.save_every``, ``pretrain.train.log_every``, ...)
RESUMABLE_TRAIN_KEYS = ("save_every", "keep_checkpoints", "log_every", "eval_every")
RunKind = Literal["train", "continual"]


class Fingerprint(TypedDict):
    """A base model's identity (:func:`model_fingerprint`); records written before 2026-12 lack ``scheme``."""

    name_or_path: str
    fingerprint: str
    scheme: NotRequired[int]


class RunRecord(TypedDict, total=False):
    """A run's ``run.json`` (the schema in the module docstring). Records of older versions may lack any key;
    :meth:`Run.open` refuses one without ``method`` or ``config``."""

    schema: int
    kind: RunKind
    method: str
    config: dict[str, Any]
    status: str
    versions: dict[str, str]
    base_model: Fingerprint
    prompt_style: dict[str, str]
    steps: int  # trained methods, when they finish
    tasks: list[str]  # continual runs: the stream's tasks, then those added with ``continual add``
    added: list[str]
    released_from: str  # released checkpoints: the run they were released from, and their weights' dtype
    dtype: str


def resumable(key: str) -> bool:
    """Whether the dotted config key may change when a run is resumed (a logging or checkpointing setting of
    any ``train`` section): the one rule of ``train`` and ``continual`` runs."""
    *section, last = key.split(".")
    return bool(section) and section[-1] == "train" and last in RESUMABLE_TRAIN_KEYS


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("hyperadapt", "torch", "transformers", "peft"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


FINGERPRINT_SCHEME = 2  # 1 (no "scheme" key) hashed the config dict too, which changes with transformers versions


def model_fingerprint(model: Any) -> Fingerprint:
    """Name and a short hash of a base model's shape (type, vocabulary, width, depth) and first 256 embedding
    rows rounded to bf16, so that the same weights hash alike whatever dtype, device or library version
    loaded them, and other weights do not."""
    import torch

    config = getattr(model, "config", None)
    name = str(getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", ""))
    digest = hashlib.sha1()
    shape = [getattr(config, k, None) for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers")]
    digest.update(json.dumps(shape, default=str).encode())
    embed = model.get_input_embeddings().weight[:256].detach().to(torch.bfloat16).float().cpu().contiguous()
    digest.update(embed.numpy().tobytes())
    return {"name_or_path": name, "fingerprint": digest.hexdigest()[:16], "scheme": FINGERPRINT_SCHEME}


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The dotted config keys set in both ``old`` and ``new`` whose values differ (a key that only one side
    has is an option added or removed by another library version, at its default, and is not counted; a key
    that was renamed since ``old`` was saved is compared under its new name, see ``config.RENAMED_KEYS``;
    the ``resumable`` keys are not counted)."""
    a, b = flatten(upgrade_saved(old, new)), flatten(new)
    return sorted(k for k in set(a) & set(b) if a[k] != b[k] and not resumable(k))


class RunLocked(RuntimeError):
    """Another live process is training into the run directory (the CLI says so in one ``error:`` line)."""


class RunDir:
    """One run's folder and its ``run.json`` (see the module docstring). Use it around training::

    with RunDir(out).begin("tagi", to_dict(cfg), model) as run:
        ...train...
        run.finish()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._locked = False

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    def exists(self) -> bool:
        return self.run_file.is_file()

    def read(self) -> RunRecord | None:
        """The run's record, or None for a folder without ``run.json``."""
        return read_record(self.path) if self.run_file.exists() else None

    def check(self, method: str, config: Mapping[str, Any]) -> RunRecord | None:
        """Refuse (``ValueError``) to train ``method`` with ``config`` here when the folder holds another
        method's run, or this method's run with another config; return the existing record (or None)."""
        run = self.read()
        if run is None:
            return None
        if run.get("kind", "train") != "train" or run.get("method") != method:
            raise UserError(
                f"{self.path} holds a {run.get('method')!r} run; training {method!r} into it would overwrite it: "
                "choose another --out"
            )
        changed = changed_keys(run.get("config", {}), config)
        if changed:
            shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
            raise UserError(
                f"{self.path} was trained with another config (changed: {shown}); it keeps its weights only for "
                f"the config it was trained with: resume with its own config (--config {self.run_file}), or "
                "choose another --out for a new run"
            )
        return run

    def finished(self, method: str, config: Mapping[str, Any], artefact: Path) -> bool:
        """True when this folder holds ``method``'s finished run of ``config`` with its final ``artefact``
        (a file or folder): resuming it would only train it again, as its checkpoints may be gone (deleted
        to save space, or copied without them), so load ``artefact`` instead. Refuses another method or
        config as ``check`` does."""
        run = self.check(method, config)
        return run is not None and run.get("status") == "finished" and Path(artefact).exists()

    def begin(self, method: str, config: Mapping[str, Any], model: Any = None) -> RunDir:
        """Check, lock and record the run as ``running`` (keeping a finished run finished). Returns ``self``."""
        existing = self.check(method, config)
        self.lock()
        try:
            finished = existing is not None and existing.get("status") == "finished"
            self.write(new_record("train", method, config, model, "finished" if finished else "running"))
        except BaseException:
            self.release()
            raise
        return self

    def write(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as the run's ``run.json`` (atomically)."""
        save_json(dict(record), self.run_file)

    def update(self, **fields: Any) -> None:
        """Set ``fields`` of the run's record (e.g. ``added`` of a continual run)."""
        self.write({**(self.read() or {}), **fields})

    def finish(self, **extra: Any) -> None:
        """Record the run as finished (with ``extra`` fields, e.g. the number of steps)."""
        self.update(**extra, status="finished")

    def is_finished(self) -> bool:
        run = self.read()
        return run is not None and run.get("status", "finished") == "finished"

    # -- the lock ----------------------------------------------------------------------------------

    def owner(self) -> int | None:
        """The pid of another live process that holds this run's lock, or None (no lock, or a stale one)."""
        owner = _read_pid(self.path / LOCK_FILE)
        return owner if owner is not None and owner != os.getpid() and _alive(owner) else None

    def locked_message(self, owner: int) -> str:
        return (
            f"{self.path} is being trained by another process (pid {owner}); wait for it, or remove "
            f"{self.path / LOCK_FILE} if that process is gone"
        )

    def lock(self) -> RunDir:
        """Take the run's lock (creating the folder); ``RunLocked`` while another live process holds it, a
        stale lock (its process is gone) is taken over. Released by ``release()`` or leaving ``with``."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        return self

    def _lock(self) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under a launcher the main process holds the lock
            from hyperadapt.distributed import is_main

            if not is_main():
                return
        lock = self.path / LOCK_FILE
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self.owner()
                if owner is not None:
                    raise RunLocked(self.locked_message(owner)) from None
                lock.unlink(missing_ok=True)  # a stale lock (its process is gone) or our own
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self._locked = True
            return
        raise RunLocked(f"could not lock {lock}")

    def release(self) -> None:
        if self._locked:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            self._locked = False

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------------------
# The record: read once, written by RunDir


def read_record(run_dir: str | Path) -> RunRecord:
    """The ``run.json`` of ``run_dir`` as read from disk (the one reader; :meth:`Run.open` calls it once).

    Raises ``FileNotFoundError`` when ``run_dir`` does not exist or holds no ``run.json``, ``ValueError`` when
    ``run_dir`` is a file or ``run.json`` is not a file holding a JSON object.
    """
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).exists():
        raise InputNotFound(f"run directory {run_dir} does not exist")
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory")
    if not path.exists():
        raise InputNotFound(f"{run_dir} is not a run directory (no {RUN_FILE}): train a method into it first")
    record = load_json(path, "run file")
    if not isinstance(record, dict):
        raise UserError(f"run file {path} must hold a JSON object")
    return cast(RunRecord, record)  # JSON from disk: Run.open checks the keys it relies on


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a run folder (it holds a ``run.json``)."""
    return (Path(path) / RUN_FILE).is_file()


def is_run_record(path: str | Path) -> bool:
    """Whether ``path`` names a run's record file (``.../run.json``), as ``--config`` may."""
    return Path(path).name == RUN_FILE


def record_file(run_dir: str | Path) -> Path:
    """The path of ``run_dir``'s record file."""
    return Path(run_dir) / RUN_FILE


def new_record(
    kind: RunKind,
    method: str,
    config: Mapping[str, Any],
    model: Any = None,
    status: str = "running",
    tasks: list[str] | None = None,
    added: list[str] | None = None,
) -> RunRecord:
    """A fresh record of the one schema (see the module docstring); ``model``: the base model, fingerprinted;
    ``tasks`` and ``added``: a continual run's stream and the tasks added to it."""
    entry = method_entry(method)
    setting = entry.prompt_setting(from_dict(entry.config_cls, dict(config))) if entry.config_cls else None
    record: RunRecord = {
        "schema": SCHEMA,
        "kind": kind,
        "method": method,
        "config": dict(config),
        "status": status,
        "versions": _versions(),
    }
    if tasks is not None:
        record["tasks"] = tasks
    if added is not None:
        record["added"] = added
    if setting is not None:
        record["prompt_style"] = {"setting": setting}
    if model is not None:
        record["base_model"] = model_fingerprint(model)
    return record


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The most recently written training checkpoint anywhere in a run (any stage's ``checkpoints/``), or None."""
    from hyperadapt.training import latest_checkpoint

    found = [c for d in Path(run_dir).rglob("checkpoints") if d.is_dir() and (c := latest_checkpoint(d.parent))]
    return max(found, key=lambda c: (c / "state.json").stat().st_mtime, default=None)


def stopped_at(run_dir: str | Path) -> str:
    """Where a run stopped early (e.g. by Ctrl-C) stands, in words: its newest checkpoint, or that nothing
    of it was saved (for the line that says how to resume it)."""
    if not is_run(run_dir):
        return f"{run_dir} was not started yet: nothing was saved"
    checkpoint = newest_checkpoint(run_dir)
    return f"the last checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been written yet"


def train_resume_command(method: str, run_dir: str | Path) -> str:
    """The command that resumes the ``train`` run ``run_dir`` with the config it was started with."""
    return f"hyperadapt train {method} --config {Path(run_dir) / RUN_FILE} --out {run_dir}"


def continual_resume_command(method: str, run_dir: str | Path) -> str:
    """The command that resumes the continual run ``run_dir`` with the config it was started with."""
    return f"hyperadapt continual --config {Path(run_dir) / RUN_FILE} --method {method} --out {run_dir}"


# ---------------------------------------------------------------------------------------------------------
# The run: one owner of everything a finished folder answers


@dataclass(frozen=True)
class BaseModel:
    """The base model a run was trained on: its name and the fingerprint of its weights
    (:func:`model_fingerprint`; ``scheme`` 1, written before 2026-12, is checked by name only)."""

    name_or_path: str
    fingerprint: str | None = None
    scheme: int = 1

    @property
    def comparable(self) -> bool:
        """Whether the record holds a weight fingerprint that any loaded copy can be checked against (every run
        written since 2026-12): then any path or id of the same weights serves, not only the recorded name."""
        return self.fingerprint is not None and self.scheme == FINGERPRINT_SCHEME

    def load(self, run: str | Path) -> tuple[Any, Any]:
        """Load the recorded base model (``models.load_base_model``) for the run ``run``, unchecked.

        A local path is recorded as the user gave it, so a relative one names the model only from the folder
        the run was trained from: when it cannot be loaded from here, the ``FileNotFoundError`` or ``OSError``
        says so and how to name the model instead (``--model``, checked against the fingerprint)."""
        from hyperadapt.models import DEFAULT_MODEL_ID, load_base_model

        name = self.name_or_path
        try:
            return load_base_model(name)
        except (FileNotFoundError, OSError, UserError) as err:  # UserError: a bare folder name ("unknown model")
            path = Path(name).expanduser()
            if name in ("default", DEFAULT_MODEL_ID) or path.is_absolute() or path.exists():
                raise
            how = (
                "pass --model with its path (the weights are checked against the run's fingerprint)"
                if self.comparable
                else "run this from the folder the run was trained from"
            )
            raise InputNotFound(
                f"{run} was trained on the base model {name!r}, a path relative to the folder it was trained "
                f"from, which is not found from here ({Path.cwd()}): {how}"
            ) from err

    def check(self, model: Any, run: str | Path) -> None:
        """Refuse (``ValueError``) a loaded ``model`` other than this one."""
        from hyperadapt.models import same_model

        if self.comparable:
            found = model_fingerprint(model)
            same = found["fingerprint"] == self.fingerprint
        else:  # no weight hash that can be compared across machines: the name must agree
            found = model_fingerprint(model)
            same = (
                not found["name_or_path"]
                or not self.name_or_path
                or same_model(found["name_or_path"], self.name_or_path)
            )
        if not same:
            raise UserError(
                f"{run} was trained on the base model {self.name_or_path!r} (fingerprint "
                f"{self.fingerprint}), not on {found['name_or_path']!r} (fingerprint "
                f"{found['fingerprint']}): a run's adapters only fit their own base model; load it on "
                "that one (its own path, or --model with another path to the same weights)"
            )


@dataclass(frozen=True)
class Run:
    """One run folder, its ``run.json`` read once (:meth:`open`): what every command asks of a run.

    ``kind``: ``train`` (a trained method or a released checkpoint) or ``continual``; ``status``: ``running`` or
    ``finished`` (continual runs written before the schema was shared: finished once ``results.json`` exists);
    ``record``: the raw record. Example::

        run = Run.open("checkpoints/tagi-smollm2-135m-sni")
        run.entry.name, run.config.rank, run.prompt_style.setting, run.artefact   # 'tagi', 8, 'def', .../hypernet
        method = run.load()      # on its own base model (any other is refused)
    """

    path: Path
    kind: RunKind
    method: str
    status: str
    record: RunRecord = field(repr=False)

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """Read ``path/run.json`` (once). ``FileNotFoundError`` without one; ``ValueError`` for a record that
        names no method or holds no config, or of a ``schema`` this version does not read (a newer one)."""
        path = Path(path)
        record = read_record(path)
        schema = record.get("schema", SCHEMA)  # records written before the schema was numbered lack it
        if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
            raise UserError(
                f"run file {path / RUN_FILE} has schema {json.dumps(schema)[:40]}; this version of hyperadapt reads "
                f"schema {SCHEMA} and older: a newer hyperadapt wrote it (upgrade hyperadapt) or the file is damaged"
            )
        method = record.get("method")
        if not isinstance(method, str):
            raise UserError(f"run file {path / RUN_FILE} names no method")
        if not isinstance(record.get("config"), dict):
            raise UserError(f"run file {path / RUN_FILE} holds no config")
        kind: RunKind = "continual" if record.get("kind") == "continual" else "train"
        status = record.get("status")
        if status is None:  # records without a status: old train runs were finished; old streams when done
            status = "finished" if kind == "train" or (path / "results.json").exists() else "running"
        return cls(path, kind, method, str(status), record)

    @classmethod
    def of(cls, run: Run | str | Path) -> Run:
        """``run`` itself, or the run opened at the path ``run``."""
        return run if isinstance(run, Run) else cls.open(run)

    # -- what it is

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def released(self) -> bool:
        """Whether this is a released checkpoint (``hyperadapt release``)."""
        return "released_from" in self.record

    @property
    def digest(self) -> str:
        """16 hex digits of a hash of the folder's resolved path and its record: what identifies this run's
        artefacts in a cache (a retrained run writes a new record, so it gets a new digest)."""
        payload = str(self.path.resolve()).encode() + b"\0" + json.dumps(self.record, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    @cached_property
    def entry(self) -> MethodEntry:
        """The method's registry entry (``ValueError`` for a method this version does not know)."""
        return method_entry(self.method)

    @property
    def config_dict(self) -> dict[str, Any]:
        """The config as saved (old key names included)."""
        return self.record["config"]

    @cached_property
    def config(self) -> Any:
        """The config dataclass of the run's method (old key names renamed; keys the run predates at the values
        it used where its method says so, ``MethodEntry.upgrade_config``, else at their defaults). Raises
        ``UserError`` naming the run file for a config of unknown keys or values of the wrong kind."""
        config_cls = self.entry.config_cls
        if config_cls is None:  # a prompt-only method (zero-shot): nothing is trained, so no run holds it
            raise UserError(f"run file {self.path / RUN_FILE} names {self.method!r}, a method that has no runs")
        try:
            return from_dict(config_cls, self.entry.upgrade_config(self.config_dict))
        except UserError as err:
            raise UserError(f"run file {self.path / RUN_FILE}: {err}") from err

    @property
    def base_model(self) -> BaseModel:
        """The base model it was trained on (its record's fingerprint, else its config's ``model``).

        Raises ``UserError`` for a record without ``config.model`` or with a ``base_model`` that is not an
        object with a text ``fingerprint`` and a whole-number ``scheme``."""
        saved: Mapping[str, Any] = self.record.get("base_model") or {}
        own = self.config_dict.get("model")
        if not isinstance(own, str):
            raise UserError(f"{self.path / RUN_FILE} names no base model (config.model)")
        fingerprint, scheme = (saved.get("fingerprint"), saved.get("scheme", 1)) if isinstance(saved, dict) else (0, 0)
        if not isinstance(fingerprint, str | None) or isinstance(scheme, bool) or not isinstance(scheme, int):
            raise UserError(
                f"run file {self.path / RUN_FILE}: base_model must be an object with a text 'fingerprint' and a "
                f"whole-number 'scheme', got {json.dumps(self.record.get('base_model'))[:200]}"
            )
        return BaseModel(own, fingerprint, scheme)

    @property
    def prompt_style(self) -> PromptStyle:
        """How its prompts were built in training (the record's ``prompt_style``, else its config's)."""
        from hyperadapt.data.prompts import PromptStyle

        saved = self.record.get("prompt_style")
        if isinstance(saved, dict) and "setting" in saved:
            return PromptStyle(saved["setting"])
        return PromptStyle(self.entry.prompt_setting(self.config))

    @property
    def tasks(self) -> list[str]:
        """A continual run's tasks: the stream's, then those added with ``continual add``."""
        return [*self.record.get("tasks", []), *self.record.get("added", [])]

    # -- its parts

    def part(self, name: str) -> Path:
        return self.path / name

    @property
    def eval_dir(self) -> Path:
        """Where ``hyperadapt eval --run`` writes this run's results (one file per evaluation)."""
        return self.path / EVAL_DIR

    @property
    def artefact(self) -> Path | None:
        """The folder that holds what loading needs (``hypernet/``, ``hypernetwork/``, ``adapter/``, ...)."""
        return self.path / self.entry.folder if self.entry.folder else None

    def resume_command(self) -> str:
        if self.kind == "continual":
            return continual_resume_command(self.method, self.path)
        return train_resume_command(self.method, self.path)

    # -- checks and loading

    def check_finished(self) -> None:
        """``ValueError`` for a trained run that has not finished, saying how to resume it (or who trains it now);
        ``FileNotFoundError`` for an unfinished stream, with the command that resumes it."""
        if self.finished:
            return
        if self.kind == "continual":
            raise InputNotFound(f"{self.path} has not finished its stream: resume it first: `{self.resume_command()}`")
        owner = RunDir(self.path).owner()
        if owner is not None:
            raise UserError(
                f"{self.path} has not finished training: it is being trained now by another process "
                f"(pid {owner}); wait for it to finish"
            )
        raise UserError(
            f"{self.path} has not finished training (status {self.status!r}): resume it with `{self.resume_command()}`"
        )

    def check_loadable(self) -> None:
        """The ``ValueError`` that says why ``load`` cannot load this run (unfinished, or a method whose runs
        do not load, e.g. the oracle stream); loads nothing."""
        self._loader()
        self.check_finished()

    def _loader(self) -> Callable[..., Any]:
        """The method's ``load``; ``ValueError`` for a method whose runs do not load."""
        if self.entry.load is None:
            raise UserError(
                f"{self.path} is a {self.method!r} run, which cannot be loaded for evaluation: loadable "
                f"runs are {', '.join(method_names(loadable=True))}"
            )
        return self.entry.load

    def check_model(self, model: str | None) -> str:
        """The base model to evaluate the run on: its own, or ``model`` when given. A run with a weight
        fingerprint (``BaseModel.comparable``) takes any path or id of the same weights (``model_and_tokenizer``
        checks them when they load); an older run only the name it recorded (``ValueError`` for another)."""
        from hyperadapt.models import same_model

        own = self.base_model.name_or_path
        if model is not None and self.base_model.comparable:
            return model
        if model is not None and not same_model(model, own):
            raise UserError(
                f"--model {model!r} does not match the model the run {self.path} was trained on "
                f"({own!r}): a run is evaluated on its own model; leave out --model"
            )
        return own

    def model_and_tokenizer(self, given: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        """``given`` (a loaded model and tokenizer), else the run's own base model, checked to be the one the
        run was trained on (``ValueError`` otherwise)."""
        if given is None:
            given = self.base_model.load(self.path)
        self.base_model.check(given[0], self.path)
        return given

    def load(self, model_and_tokenizer: tuple[Any, Any] | None = None) -> Any:
        """The run as a ready method (the harness's ``Method``; a ``Servable`` for ``serve``) on its base model.

        Raises ``ValueError`` for an unfinished or unloadable run or another base model, ``FileNotFoundError``
        for missing weights."""
        load = self._loader()
        self.check_finished()
        return load(self, model_and_tokenizer)

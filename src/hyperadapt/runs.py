"""A run directory: the unit a user carries between ``train``, ``eval``, ``generate`` and ``serve``.

:class:`RunDir` owns the one ``run.json`` schema of a trained method::

    {"schema": 1, "kind": "train", "method": "tagi", "config": {...}, "status": "running" | "finished",
     "versions": {"hyperadapt": ..., "torch": ..., "transformers": ..., "peft": ...},
     "base_model": {"name_or_path": ..., "fingerprint": ...}}

and its integrity: training another method into a run directory, or a different config into a run that has
started, is refused before anything is written (the changed keys are named); two processes cannot train
into one directory at once (``.lock`` holds the owner's pid); a run stopped early stays ``running``, and
loading it says how to resume it. Continual runs keep their own ``run.json`` (kind ``continual``) written by
their runner. Every other path of a run derives from its folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hyperadapt.config import upgrade_saved
from hyperadapt.io import load_json, save_json

SCHEMA = 1
RUN_FILE = "run.json"
LOCK_FILE = ".lock"
# keys that may change between a run and its resumption without changing what is trained: these settings of
# any ``train`` section (``train.save_every``, ``teachers.train.save_every``, ``pretrain.train.log_every``, ...)
RESUMABLE_TRAIN_KEYS = ("save_every", "keep_checkpoints", "log_every", "eval_every")


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


def model_fingerprint(model: Any) -> dict[str, str]:
    """Name and a short hash of a base model's config and first embedding rows (to tell models apart)."""
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or getattr(model, "name_or_path", ""))
    digest = hashlib.sha1()
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    embed = model.get_input_embeddings().weight[:256].detach().float().cpu().contiguous()
    digest.update(embed.numpy().tobytes())
    return {"name_or_path": name, "fingerprint": digest.hexdigest()[:16]}


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

    def read(self) -> dict | None:
        """The run's record, or None for a folder without ``run.json``."""
        return load_json(self.run_file, "run file") if self.run_file.exists() else None

    def check(self, method: str, config: Mapping[str, Any]) -> dict | None:
        """Refuse (``ValueError``) to train ``method`` with ``config`` here when the folder holds another
        method's run, or this method's run with another config; return the existing record (or None)."""
        run = self.read()
        if run is None:
            return None
        if run.get("kind", "train") != "train" or run.get("method") != method:
            raise ValueError(
                f"{self.path} holds a {run.get('method')!r} run; training {method!r} into it would overwrite it: "
                "choose another --out"
            )
        changed = changed_keys(run.get("config", {}), config)
        if changed:
            shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
            raise ValueError(
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
            record = {"schema": SCHEMA, "kind": "train", "method": method, "config": dict(config),
                      "status": "finished" if finished else "running", "versions": _versions()}
            if model is not None:
                record["base_model"] = model_fingerprint(model)
            save_json(record, self.run_file)
        except BaseException:
            self.release()
            raise
        return self

    def finish(self, **extra: Any) -> None:
        """Record the run as finished (with ``extra`` fields, e.g. the number of steps)."""
        run = self.read() or {}
        save_json({**run, **extra, "status": "finished"}, self.run_file)

    def is_finished(self) -> bool:
        run = self.read()
        return run is not None and run.get("status", "finished") == "finished"

    # -- the lock ----------------------------------------------------------------------------------

    def owner(self) -> int | None:
        """The pid of another live process that holds this run's lock, or None (no lock, or a stale one)."""
        owner = _read_pid(self.path / LOCK_FILE)
        return owner if owner is not None and owner != os.getpid() and _alive(owner) else None

    def locked_message(self, owner: int) -> str:
        return (f"{self.path} is being trained by another process (pid {owner}); wait for it, or remove "
                f"{self.path / LOCK_FILE} if that process is gone")

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


def read_run(run_dir: str | Path, methods: tuple[str, ...] | list[str]) -> dict:
    """The ``run.json`` of a trained run of one of ``methods``, checked before anything loads from it.

    Raises ``FileNotFoundError`` without one, and ``ValueError`` naming the file when it is not a JSON object,
    names no method or another one, or holds no ``config``.
    """
    path = Path(run_dir) / RUN_FILE
    run = load_json(path, "run file")
    if not isinstance(run, dict):
        raise ValueError(f"run file {path} must hold a JSON object")
    method = run.get("method")
    if not isinstance(method, str):
        raise ValueError(f"run file {path} names no method")
    if method not in methods:
        wanted = methods[0] if len(methods) == 1 else f"one of {', '.join(methods)}"
        raise ValueError(f"{run_dir} is a {method!r} run, not {wanted}")
    if not isinstance(run.get("config"), dict):
        raise ValueError(f"run file {path} holds no config")
    return run


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The most recently written training checkpoint anywhere in a run (any stage's ``checkpoints/``), or None."""
    from hyperadapt.training import latest_checkpoint

    found = [c for d in Path(run_dir).rglob("checkpoints") if d.is_dir() and (c := latest_checkpoint(d.parent))]
    return max(found, key=lambda c: (c / "state.json").stat().st_mtime, default=None)


def train_resume_command(method: str, run_dir: str | Path) -> str:
    """The command that resumes the ``train`` run ``run_dir`` with the config it was started with."""
    return f"hyperadapt train {method} --config {Path(run_dir) / RUN_FILE} --out {run_dir}"


def check_finished(path: str | Path, method: str) -> None:
    """Raise ``ValueError`` for a run that has not finished training, saying how to resume it (or that it is
    being trained now)."""
    run_dir = RunDir(path)
    run = run_dir.read()
    if run is not None and run.get("status", "finished") != "finished":
        owner = run_dir.owner()
        if owner is not None:
            raise ValueError(f"{path} has not finished training: it is being trained now by another process "
                             f"(pid {owner}); wait for it to finish")
        raise ValueError(
            f"{path} has not finished training (status {run.get('status')!r}): resume it with "
            f"`{train_resume_command(method, path)}`"
        )

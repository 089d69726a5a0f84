"""Small file helpers: everything we write is written under a temporary name, then renamed."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from hyperadapt.errors import InputNotFound, UserError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
M = TypeVar("M", bound="torch.nn.Module")


def main_writes(write: Callable[[], T]) -> T | None:
    """``write()`` on the main process only under a multi-process launcher (see ``hyperadapt.distributed``);
    a single process writes directly, without importing torch. Returns what ``write`` returned (None on the
    other processes)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return write()
    from hyperadapt.distributed import main_writes as distributed_writes

    return distributed_writes(write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (under several training processes: the main one writes). A write
    that fails (a full disk, a folder at ``path``) raises its ``OSError`` and leaves no temporary file behind."""
    path = Path(path)

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    main_writes(write)
    return path


def save_json(obj: object, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def load_json(path: str | Path, what: str = "file") -> dict[str, Any]:
    """The JSON object in file ``path``; ``FileNotFoundError`` without it, ``ValueError`` naming ``what`` and the
    file when it is not JSON or holds another kind of value."""
    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{what} {path} is not valid JSON (line {err.lineno}): {err.msg}") from err
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {err.start}): not a JSON file") from err
    except IsADirectoryError as err:
        raise UserError(f"{what} {path} is a folder, not a file") from err
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


def load_tensors(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path`` (``safetensors.torch.load_file``, on the CPU).

    Raises ``FileNotFoundError`` when it is missing and ``ValueError`` naming the file when it is not a
    readable safetensors file (truncated, corrupted header, another format).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"{what} not found: {path}")
    try:
        return load_file(path)
    except SafetensorError as err:
        raise UserError(
            f"{what} {path} is not a readable safetensors file ({err}): it is damaged or "
            "incomplete; copy or save it again"
        ) from err


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """Whether a value read from JSON is a finite number (an int or a float, not a bool, not NaN or infinite)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def first_nonfinite(tensors: Mapping[str, Any]) -> tuple[str, int] | None:
    """The name of the first floating-point tensor of ``tensors`` that holds NaN or infinite values, with how many
    it holds; None when every one is finite (other values are skipped)."""
    import torch

    for name, value in tensors.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name, int((~torch.isfinite(value)).sum())
    return None


def load_state_strict(module: M, state: Mapping[str, Any], path: str | Path, what: str = "weights") -> M:
    """``module.load_state_dict(state, strict=True)``; returns ``module``.

    Raises ``ValueError`` naming ``path`` when the tensors do not fit the module (missing or unexpected
    names, other shapes, integers where the module holds floating-point values): weights of another model,
    method or config; and naming the tensor when one holds NaN or infinite values (damaged weights, which
    would only produce empty or garbled answers).
    """
    import torch

    own = module.state_dict()
    for name, value in state.items():
        if not torch.is_tensor(value) or name not in own:
            continue  # load_state_dict names what does not fit
        if own[name].is_floating_point() and not value.is_floating_point():
            raise UserError(
                f"{what} {path}: {name} is stored as {value.dtype}, not as floating-point numbers: the file is "
                "damaged or holds something else; copy or save it again"
            )
    damaged = first_nonfinite({name: value for name, value in state.items() if name in own})
    if damaged is not None:
        raise UserError(
            f"{what} {path}: {damaged[0]} holds {damaged[1]} NaN or infinite value(s): the weights are damaged (or "
            "the training diverged); copy them again or train anew"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = next((ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()), str(err))
        first = first if len(first) <= 200 else first[:200] + " ..."
        raise UserError(
            f"{what} {path} do not fit this {type(module).__name__} (weights of another model, "
            f"method or config): {first}"
        ) from err
    return module


def write_dir_atomic(target: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_dir)``, then swap ``tmp_dir`` into place at ``target`` (the main process only)."""
    target = Path(target)
    main_writes(lambda: _write_dir(target, write))
    return target


def _write_dir(target: Path, write: Callable[[Path], object]) -> None:
    if target.is_symlink():  # a link to a folder (or to none yet): write the folder it names, keep the link
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    except OSError as err:  # name the folder the user gave, not the temporary one beside it
        raise OSError(err.errno, err.strerror, str(target)) from None
    try:
        write(tmp)
        _umask_permissions(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask_permissions(root: Path) -> None:
    """Give ``root`` and what it holds the permissions of an ordinary ``mkdir``/``open`` under the umask:
    ``mkdtemp`` makes the folder 0700 and safetensors writes its files 0600, which would leave a run or a
    released checkpoint unreadable to the rest of a group sharing it."""
    umask = os.umask(0)
    os.umask(umask)
    for path in (root, *root.rglob("*")):
        if path.is_symlink():
            continue
        executable = path.is_dir() or path.stat().st_mode & 0o111
        path.chmod((0o777 if executable else 0o666) & ~umask)


SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 64


def safe_name(name: str, what: str = "name") -> str:
    """A file name for ``name`` (a task, adapter, condition or run name) that stays inside its folder.

    Plain names (ASCII letters, digits, ``.``, ``_``, ``-``; not starting with a dot; at most 64
    characters) are kept as they are; any other name is mapped to its plain characters plus a short hash
    of the real name, so different names never share a file. Keep the real name in the manifest.
    Raises ``ValueError`` for an empty name.
    """
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{what} is empty: give it a name")
    if SAFE_CHARS.search(name) is None and not name.startswith(".") and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    stem = SAFE_CHARS.sub("_", name).strip("._-")[: MAX_NAME - 11]
    return f"{stem}-{digest}" if stem else digest


def child_path(root: str | Path, name: str, what: str = "name", suffix: str = "") -> Path:
    """``root / safe_name(name) + suffix``, checked to lie inside ``root``."""
    root = Path(root)
    path = root / f"{safe_name(name, what)}{suffix}"
    if path.resolve().parent != root.resolve():
        raise UserError(f"{what} {name!r} does not stay inside {root}")
    return path


def check_plain_name(name: str, what: str, where: str | Path) -> str:
    """``name`` unchanged when it is a single file name (no separator, not ``.``/``..``, not absolute);
    else a ``ValueError`` naming ``where`` it came from: names read from data files are not paths."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UserError(f"{where}: {what} {name!r} is not a plain name (no path separators or '..')")
    return name


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Check before any work that ``path`` (a file or folder to be written) can be written: its nearest
    existing ancestor must be a writable folder (or ``path`` a writable file). Raises ``ValueError`` when an
    ancestor is a file, ``PermissionError`` when it cannot be written."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise UserError(f"{what} {path} cannot be written: {probe} is a file, not a folder")
    folder = probe if probe.is_dir() else probe.parent
    if not os.access(folder, os.W_OK | os.X_OK) or (probe.is_file() and not os.access(probe, os.W_OK)):
        raise PermissionError(f"{what} {path} cannot be written: no write permission in {folder}")
    return path


def check_out_file(path: str | Path, what: str = "--out") -> Path:
    """``check_writable`` for a file output, also refusing an existing folder at ``path``."""
    path = check_writable(path, what)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder: give a file path")
    return path


def check_out_dir(
    path: str | Path,
    what: str = "--out",
    *,
    inputs: tuple[str | Path, ...] = (),
    replaces: Callable[[Path], bool] | None = None,
    kind: str = "output",
) -> Path:
    """``check_writable`` for a folder output, before any work: ``path`` must not be an existing file, nor
    one of ``inputs``, a folder holding one, or a folder inside one. With ``replaces`` (the command writes
    the whole folder anew), an existing non-empty folder must be a previous ``kind`` (``replaces(path)``):
    any other folder's files would be lost. Raises ``UserError`` for each of these and for a link loop."""
    path = check_writable(path, what)
    if path.name in ("", ".."):  # "." or "..": the folder by its own name, which the atomic write goes beside
        path = Path(os.path.abspath(path))
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder: give a folder path")
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as err:  # a link that leads back to itself
        raise UserError(f"{what} {path} cannot be written: {err}") from err
    for source in inputs:
        src = Path(source).resolve()
        if real == src or real in src.parents or src in real.parents:
            raise UserError(f"{what} {path} would overwrite or mix into {source}: choose a folder outside it")
    if replaces is not None and path.is_dir() and any(path.iterdir()) and not replaces(path):
        raise UserError(
            f"{what} {path} is a folder with other files in it, not a previous {kind}: its files "
            "would be lost or mixed with the new ones; choose a new or empty folder"
        )
    return path

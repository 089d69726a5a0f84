"""Where an evaluation's results go: a file name that names everything that tells two evaluations apart.

``hyperadapt eval`` writes ``RUN/eval/NAME`` for a run and ``results/METHOD.MODEL.NAME`` otherwise, where
``NAME`` is ``DATA.SPLIT.SETTING[.INSTRUCTIONS][.limitN].json`` (``INSTRUCTIONS`` only when the tasks read
other instructions than their own, ``eval --instructions``) and ``DATA`` names the data source with a short hash of its
folder's absolute path (``sni-sni-3f2a1c``): two SNI folders, two settings, two models or two limits never
share a file. An existing results file of another evaluation (another method, model, data source, split,
setting, mode, limit or budget) is never replaced silently: :func:`check_results_target` refuses it unless
the caller asks to overwrite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperadapt.errors import UserError
from hyperadapt.io import load_json, safe_name

if TYPE_CHECKING:
    from hyperadapt.evaluation.harness import EvalConfig
    from hyperadapt.runs import Run

PATH_KINDS = ("sni", "cl", "jsonl")  # data specs KIND:PATH whose PATH is a file or folder
# what tells two evaluations apart: keys of a results dict, and of its config["eval"]
RESULT_KEYS = ("method", "model", "data", "split", "setting", "mode", "instructions")
EVAL_KEYS = ("limit", "max_new_tokens", "max_prompt_tokens", "metric_lang")


def _path_tag(path: str) -> str:
    """``NAME-HASH``: a path's last part and 6 hex digits of its absolute form (one folder, one tag)."""
    full = Path(path).expanduser().resolve()
    return f"{full.name or 'root'}-{hashlib.sha1(str(full).encode()).hexdigest()[:6]}"


def source_tag(spec: str) -> str:
    """A short file-safe name of a data spec or a model: ``synthetic``, ``sni-NAME-HASH`` for ``sni:PATH`` (also
    ``cl:``, ``jsonl:``), ``hf-NAME`` for ``hf:NAME``; a model folder or file as ``NAME-HASH``, a model id as is."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in PATH_KINDS:
        tag = f"{kind}-{_path_tag(rest)}"
    elif sep:
        tag = f"{kind}-{rest}"
    else:
        tag = _path_tag(spec) if Path(spec).expanduser().exists() else spec
    return safe_name(tag, "data or model name")


def result_name(data: str, split: str, setting: str, limit: int | None = None, instructions: str | None = None) -> str:
    """``DATA.SPLIT.SETTING[.INSTRUCTIONS][.limitN].json`` (``DATA``: :func:`source_tag`; ``INSTRUCTIONS``: the
    tasks' instructions when they are not their own, e.g. ``shuffled-seed0``)."""
    parts = [source_tag(data), safe_name(split, "split"), safe_name(setting, "setting")]
    parts += [safe_name(instructions, "instructions")] if instructions else []
    return ".".join(parts + ([f"limit{limit}"] if limit is not None else [])) + ".json"


def results_path(
    out: str | Path | None,
    data: str,
    split: str,
    setting: str,
    limit: int | None,
    *,
    method: str,
    model: str,
    run: Run | None = None,
    instructions: str | None = None,
) -> Path:
    """Where ``eval`` writes: ``out`` when it names a ``.json`` file; else in the folder ``out`` (default: the
    run's ``Run.eval_dir``, or ``results/``) the file :func:`result_name`, prefixed ``METHOD.MODEL.`` without a
    run (a run's folder already names both)."""
    if out is not None and Path(out).suffix == ".json":
        return Path(out)
    name = result_name(data, split, setting, limit, instructions)
    if run is not None:
        return Path(out or run.eval_dir) / name
    return Path(out or "results") / f"{safe_name(method, 'method')}.{source_tag(model)}.{name}"


def identity(result: Mapping[str, Any]) -> dict[str, Any]:
    """What tells the evaluation of a results dict (or of the same keys, ``config.eval`` holding ``EVAL_KEYS``)
    apart from another one; data and model by :func:`source_tag`."""
    settings = (result.get("config") or {}).get("eval") or {}
    found = {**{k: result.get(k) for k in RESULT_KEYS}, **{k: settings.get(k) for k in EVAL_KEYS}}
    sources = result.get("sources")  # the tags recorded where the results were written (since 2026-12-08)
    recorded = sources if isinstance(sources, dict) else {}
    for key in ("data", "model"):  # one folder, however its path is written
        value, tag = found[key], recorded.get(key)
        if isinstance(tag, str) and tag:
            found[key] = tag  # a relative path is resolved where it was given, not in today's folder
        elif isinstance(value, str) and value:
            found[key] = source_tag(value)
    return found


def expected_identity(
    method: Any,
    cfg: EvalConfig,
    *,
    model: str,
    data: str,
    split: str,
    instructions: str | None = None,
    model_tag: str | None = None,
) -> dict[str, Any]:
    """The :func:`identity` of the results that ``evaluate(method, tasks, cfg, model=, data=, split=)`` writes
    (``instructions``: what the tasks' instructions were when not their own, as ``eval`` records it; ``model_tag``:
    the model's recorded tag when it is not its path's, e.g. a run's weight fingerprint)."""
    return identity(
        {
            "sources": {"model": model_tag} if model_tag else None,
            "method": method.name,
            "model": model,
            "data": data,
            "split": split,
            "setting": cfg.setting or method.setting,
            "mode": cfg.mode,
            "instructions": instructions,
            "config": {"eval": vars(cfg)},
        }
    )


def check_results_target(path: str | Path, expected: Mapping[str, Any], overwrite: bool = False) -> None:
    """Refuse (``UserError``) to write results to ``path`` when it holds the results of another evaluation than
    ``expected`` (an :func:`identity`), unless ``overwrite``; the same evaluation's results may be replaced."""
    path = Path(path)
    if overwrite or not path.is_file():
        return
    try:
        found = identity(load_json(path, "results file"))
    except ValueError as err:  # load_json's one line names the file and what is wrong with it
        raise UserError(f"{err}: pass --overwrite to replace it, or --out another file") from err
    except AttributeError as err:  # "config" or "config.eval" not an object
        raise UserError(
            f"results file {path} is not one that hyperadapt eval wrote (its config is not a JSON object): pass "
            "--overwrite to replace it, or --out another file"
        ) from err
    differ = [k for k, v in expected.items() if found.get(k) != v]
    if differ:
        was = ", ".join(f"{k} {found.get(k)!r}" for k in differ)
        raise UserError(
            f"{path} holds the results of another evaluation ({was}): pass --overwrite to replace "
            "them, or --out another file"
        )

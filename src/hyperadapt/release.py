"""Release a trained hypernetwork run as a small, ready-to-use checkpoint folder.

A checkpoint is a run folder trimmed to what loading needs: ``run.json`` (method and full config), the
final hypernetwork in bf16 safetensors, and a model card (``README.md``). It loads with the same loaders
as the run it came from (``load_tagi``, ``load_megan``), so ``hyperadapt adapter CHECKPOINT ...`` and
``hyperadapt eval --method tagi --run CHECKPOINT ...`` work on it directly. Checkpoints, logs and
teachers are left behind::

    hyperadapt release runs/sni/tagi/tagi --out checkpoints/tagi-smollm2-135m-sni --card card.md
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from hyperadapt.config import to_dict
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.io import check_out_dir, first_nonfinite, load_tensors, write_dir_atomic
from hyperadapt.registry import method_entry, method_names
from hyperadapt.report.tables import markdown_table
from hyperadapt.runs import Run, RunDir

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def release_checkpoint(
    run: Run | str | Path, out: str | Path, card: str | None = None, dtype: str = "bfloat16"
) -> Path:
    """Write the finished hypernetwork run ``run`` (a :class:`~hyperadapt.runs.Run` or its folder) as a
    checkpoint folder ``out`` (atomically).

    ``card``: the model card's Markdown (data, command, budget, scores, known weaknesses); without it a
    card stating the method and config is written, to be completed by hand. Floating-point tensors are
    stored as ``dtype``. Raises ``ValueError`` for a run of a method that is not released this way (see the
    registry's ``releasable``), an unfinished run, an unknown dtype or weights with NaN or infinite values
    (:func:`check_finite`), and ``FileNotFoundError`` when the run has no final hypernetwork.
    """
    run = Run.of(run)
    run_dir, out = check_release_out(run.path, out, card is not None)
    folder, source = run.entry.folder, run.artefact  # None for a method without an artefact folder
    if not run.entry.releasable or folder is None or source is None:
        names = [n for n in method_names() if method_entry(n).releasable]
        raise UserError(f"{run_dir} is a {run.method!r} run: only {', '.join(names)} runs can be released")
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    run.check_finished()
    weights = sorted(source.glob("*.safetensors")) if source.is_dir() else []
    if not weights:
        raise InputNotFound(f"{run_dir} has no final hypernetwork ({source}): finish training it first")

    def write(tmp: Path) -> None:
        (tmp / folder).mkdir()
        for path in source.iterdir():
            if path.suffix == ".safetensors":
                tensors = {
                    k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).contiguous()
                    for k, v in load_tensors(path, "hypernetwork weights").items()
                }
                check_finite(tensors, path, dtype)
                save_file(tensors, tmp / folder / path.name, metadata={"dtype": dtype})
            elif path.is_file():
                shutil.copy2(path, tmp / folder / path.name)
        released = {
            **run.record,
            "config": to_dict(run.config),
            "prompt_style": run.prompt_style.to_dict(),
            "released_from": str(run_dir),
            "dtype": dtype,
        }
        RunDir(tmp).write(released)
        (tmp / "README.md").write_text(card if card is not None else default_card(released, run_evals(run_dir)))

    return write_dir_atomic(out, write)


def check_finite(tensors: Mapping[str, torch.Tensor], path: Path, dtype: str) -> None:
    """Refuse (``UserError``) to release weights of ``path`` that hold NaN or infinite values once stored as
    ``dtype``: damaged weights, a diverged run, or values beyond float16's range."""
    damaged = first_nonfinite(tensors)
    if damaged is not None:
        beyond = ", or values beyond float16's range: then use --dtype bfloat16" if dtype == "float16" else ""
        raise UserError(
            f"hypernetwork weights {path}: {damaged[0]} holds NaN or infinite values as {dtype} (damaged weights or "
            f"a diverged run{beyond}); nothing was released"
        )


def is_checkpoint(path: Path) -> bool:
    """Whether the folder ``path`` is a released checkpoint (its run record names ``released_from``)."""
    try:
        return Run.open(path).released
    except (OSError, ValueError):
        return False


GENERATED_CARD = "<!-- written by hyperadapt release (sha256 {}); ship your own card with --card -->"


def check_release_out(run_dir: str | Path, out: str | Path, card: bool = False) -> tuple[Path, Path]:
    """Refuse, before any work, an ``out`` whose files the release would lose: the run itself, a folder
    holding it or inside it, an existing file, a non-empty folder other than a previous checkpoint, or (without
    a new ``card``) a previous checkpoint whose model card was not the generated one (written by hand)."""
    out = check_out_dir(
        out,
        "--out",
        inputs=(run_dir,),
        replaces=is_checkpoint,
        kind="checkpoint (a folder whose run record names released_from)",
    )
    readme = out / "README.md"
    if not card and readme.is_file() and not generated_unchanged(readme.read_text(encoding="utf-8", errors="replace")):
        raise UserError(
            f"{out} holds a checkpoint whose model card was written or edited by hand: pass --card {readme} to keep "
            "it, --card FILE for another, or choose another --out"
        )
    return Path(run_dir), out


def run_evals(run_dir: Path) -> list[dict[str, Any]]:
    """The evaluations saved in ``run_dir/eval/`` (``hyperadapt eval --run``), oldest first."""
    folder = run_dir / "eval"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(res, dict) and isinstance(res.get("mean"), dict):
            found.append(res)
    return found


def budget_lines(cfg: Mapping[str, Any]) -> list[str]:
    """One line per training stage of ``cfg``: steps × batch (× accumulation) = training examples."""
    stages = [("stage 2" if "teachers" in cfg else "training", cfg.get("train"))]
    if "teachers" in cfg and not (cfg["teachers"] or {}).get("path"):
        stages.insert(0, ("teachers", cfg["teachers"].get("train")))
    if (cfg.get("pretrain") or {}).get("enabled") and not cfg["pretrain"].get("path"):
        stages.insert(-1, ("stage 1", cfg["pretrain"].get("train")))
    lines, total = [], 0
    for name, train in stages:
        if not isinstance(train, dict):
            continue
        n = train.get("steps", 0) * train.get("batch_size", 0) * train.get("grad_accum", 1)
        total += n
        lines.append(
            f"- {name}: {train.get('steps')} steps × batch {train.get('batch_size')} × accumulation "
            f"{train.get('grad_accum', 1)} = {n:,} examples (lr {train.get('lr')}, max length "
            f"{train.get('max_length')})"
        )
    return [*lines, f"- total: {total:,} training examples"]


def default_card(run: Mapping[str, Any], evals: list[dict[str, Any]] | None = None) -> str:
    """A model card from a run's record: method, base model, data, the budget per stage, the scores found in
    the run's ``eval/`` folder, the library versions and the full config. The exact command and the known
    weaknesses are for the author to add (``--card``)."""
    cfg = run.get("config", {})
    lines = [
        f"# {run.get('method')} hypernetwork for {cfg.get('model', '?')}",
        "",
        f"Trained on `{cfg.get('data', '?')}` (split `{cfg.get('split', '?')}`, setting "
        f"`{cfg.get('setting', '?')}`), seed {(cfg.get('train') or {}).get('seed', '?')}.",
        "",
        "## Budget",
        "",
        *budget_lines(cfg),
        "",
        "## Scores",
        "",
    ]
    if evals:
        rows = [
            [
                f"`{res.get('data', '?')}`",
                res.get("split", "?"),
                res.get("setting", "?"),
                res["mean"].get("n", "?"),
                f"{res['mean'].get('rougeL', float('nan')):.2f}",
                f"{res['mean'].get('em', float('nan')):.2f}",
            ]
            for res in evals
        ]
        lines.append(markdown_table(["data", "split", "setting", "answers", "ROUGE-L", "EM"], rows))
    else:
        lines.append("No evaluation in the run's `eval/` folder (`hyperadapt eval --run RUN ...` writes one).")
    lines += ["", "Not recorded here: the exact command and the known weaknesses (ship them with `--card`).", ""]
    if run.get("versions"):
        lines += ["## Versions", "", "```json", json.dumps(run["versions"], indent=1), "```", ""]
    lines += ["## Config", "", "```json", json.dumps(cfg, indent=1), "```", ""]
    text = "\n".join(lines)
    return f"{text}\n{GENERATED_CARD.format(_card_hash(text))}\n"


def _card_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def generated_unchanged(card: str) -> bool:
    """Whether ``card`` is a model card :func:`default_card` wrote, not edited since (its last line's hash)."""
    text, _, last = card.rstrip("\n").rpartition("\n")
    return last == GENERATED_CARD.format(_card_hash(text))


def checkpoint_bytes(path: str | Path) -> int:
    """Total size of the files in a checkpoint folder, in bytes."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())

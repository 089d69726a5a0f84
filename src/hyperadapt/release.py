"""Release a trained hypernetwork run as a small, ready-to-use checkpoint folder.

A checkpoint is a run folder trimmed to what loading needs: ``run.json`` (method and full config), the
final hypernetwork in bf16 safetensors, and a model card (``README.md``). It loads with the same loaders
as the run it came from (``load_tagi``, ``load_megan``), so ``hyperadapt adapter CHECKPOINT ...`` and
``hyperadapt eval --method tagi --run CHECKPOINT ...`` work on it directly. Checkpoints, logs and
teachers are left behind::

    hyperadapt release runs/sni/tagi/tagi --out checkpoints/tagi-smollm2-135m-sni --card card.md
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hyperadapt.io import load_json, write_dir_atomic

# the folder holding each method's final hypernetwork in its run directory
HYPERNET_FOLDERS = {"tagi": "hypernet", "hypter": "hypernet", "megan": "hypernetwork"}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def release_checkpoint(run_dir: str | Path, out: str | Path, card: str | None = None,
                       dtype: str = "bfloat16") -> Path:
    """Write the finished hypernetwork run ``run_dir`` as a checkpoint folder ``out`` (atomically).

    ``card``: the model card's Markdown (data, command, budget, scores, known weaknesses); without it a
    card stating the method and config is written, to be completed by hand. Floating-point tensors are
    stored as ``dtype``. Raises ``ValueError`` for a run that is not a hypernetwork run or an unknown
    dtype, and ``FileNotFoundError`` when the run has not finished (no final hypernetwork).
    """
    run_dir, out = Path(run_dir), Path(out)
    run = load_json(run_dir / "run.json", "run file")
    method = run.get("method")
    if method not in HYPERNET_FOLDERS:
        raise ValueError(f"{run_dir} is a {method!r} run: only {', '.join(HYPERNET_FOLDERS)} runs can be released")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    folder = HYPERNET_FOLDERS[method]
    source = run_dir / folder
    weights = sorted(source.glob("*.safetensors")) if source.is_dir() else []
    if not weights:
        raise FileNotFoundError(f"{run_dir} has no final hypernetwork ({source}): finish training it first")

    def write(tmp: Path) -> None:
        (tmp / folder).mkdir()
        for path in source.iterdir():
            if path.suffix == ".safetensors":
                tensors = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).contiguous()
                           for k, v in load_file(path).items()}
                save_file(tensors, tmp / folder / path.name, metadata={"dtype": dtype})
            elif path.is_file():
                shutil.copy2(path, tmp / folder / path.name)
        released = {**run, "released_from": str(run_dir), "dtype": dtype}
        (tmp / "run.json").write_text(json.dumps(released, indent=1) + "\n")
        (tmp / "README.md").write_text(card if card is not None else default_card(run))

    return write_dir_atomic(out, write)


def default_card(run: dict) -> str:
    """A model card skeleton from a run's record: method, base model, data and the full config."""
    cfg = run.get("config", {})
    return (
        f"# {run.get('method')} hypernetwork for {cfg.get('model', '?')}\n\n"
        f"Trained on `{cfg.get('data', '?')}` (split `{cfg.get('split', '?')}`). Fill in: the exact command, the "
        "budget, the measured scores and the known weaknesses.\n\n"
        "```json\n" + json.dumps(cfg, indent=1) + "\n```\n"
    )


def checkpoint_bytes(path: str | Path) -> int:
    """Total size of the files in a checkpoint folder, in bytes."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())

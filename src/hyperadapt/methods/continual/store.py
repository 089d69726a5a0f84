"""The adapter store of a continual run: ``adapters/NNN-<task>/``, one LoRA folder per task (PEFT's layout; int8
weights by default, see :mod:`hyperadapt.core.peft_io`), written once
and never rewritten, each with its ``task.json`` (task, instruction, training-data SHA-256, date), plus
``adapters/manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from hyperadapt.core import AdapterBank, LoraConditioning, export_peft, load_peft
from hyperadapt.core.peft_io import weights_file
from hyperadapt.data.schema import Task
from hyperadapt.io import safe_name, save_json, write_dir_atomic
from hyperadapt.methods.continual.config import STORAGE_DTYPES, check_choice

MANIFEST = "manifest.json"


class AdapterStore:
    """``adapters/NNN-<task>/``: one LoRA folder per task, written once, plus ``manifest.json``.

    ``dtype`` is what ``write`` stores (``float32``, ``bfloat16``, or ``int8``: ``adapter_model.int8.safetensors``,
    see :mod:`hyperadapt.core.peft_io`); ``load`` always returns float32 factors.
    """

    def __init__(self, root: Path, dtype: str = "float32") -> None:
        check_choice("lora.storage_dtype", dtype, STORAGE_DTYPES)
        self.root, self.dtype = root, dtype

    def folder(self, index: int, name: str) -> Path:
        return self.root / f"{index:03d}-{safe_name(name, 'task name')}"

    def has(self, index: int, name: str) -> bool:
        return weights_file(self.folder(index, name)) is not None

    def write(self, index: int, task: Task, model: PreTrainedModel, lora: LoraConditioning) -> Path:
        """Export ``lora`` for ``task`` once; refuse to overwrite an existing adapter."""
        target = self.folder(index, task.name)
        if self.has(index, task.name):
            raise ValueError(f"adapter {target} already exists: adapters are never rewritten")
        meta = {
            "index": index,
            "task": task.name,
            "instruction": task.instruction,
            "data_hash": data_hash(task),
            "n_train": len(task.instances),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }

        def write(tmp: Path) -> None:
            export_peft(model, lora, tmp, dtype=getattr(torch, self.dtype))
            (tmp / "task.json").write_text(json.dumps(meta, indent=2) + "\n")

        write_dir_atomic(target, write)
        self.write_manifest()
        return target

    def entries(self) -> list[dict[str, Any]]:
        """The ``task.json`` of every adapter folder, in index order."""
        found = sorted(self.root.glob("[0-9][0-9][0-9]-*/task.json"))
        return [{**json.loads(p.read_text()), "path": p.parent.name, "bytes": folder_bytes(p.parent)} for p in found]

    def write_manifest(self) -> None:
        save_json({"adapters": self.entries()}, self.root / MANIFEST)

    def load(self, index: int, name: str) -> LoraConditioning:
        """Task ``index``'s adapter, its factors float32 whatever dtype stores them."""
        lora = load_peft(self.folder(index, name))
        return LoraConditioning({n: (a.float(), b.float()) for n, (a, b) in lora.factors.items()}, lora.scale)

    def bank(self, model: PreTrainedModel, names: Sequence[str]) -> AdapterBank:
        """All adapters of ``names`` (in order) as one bank, for per-example routing."""
        from hyperadapt.core import bank_from_peft

        return bank_from_peft(model, [self.folder(i, n) for i, n in enumerate(names)])


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def data_hash(task: Task) -> str:
    """SHA-256 of a task's instruction and instances: what its adapter was trained on."""
    payload = [task.instruction, *[(i.id, i.input, list(i.outputs)) for i in task.instances]]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()

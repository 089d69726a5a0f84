"""TAGI's teachers ("training with instance"): one LoRA per task or per category, instruction in the prompt.

All teachers train together as one :class:`~hyperadapt.core.AdapterBank` over mixed batches (each example
routed to its own teacher), through the shared Trainer, and are saved so that hypernetwork runs reuse them
(TAGI, Liao et al. NeurIPS 2024).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.core import AdapterBank, LoraConditioning, conditioned
from hyperadapt.core.lora import stack_rank
from hyperadapt.data.schema import Task
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.io import atomic_write_text
from hyperadapt.methods.tagi.batches import encode_examples
from hyperadapt.methods.tagi.config import TagiConfig
from hyperadapt.training import Batch, Trainer, answer_logits, answer_loss, pad_batch

TEACHERS_FILE = "teachers.json"


SHARED_DIR = "shared"


@dataclass
class Teachers:
    """A bank of teacher adapters and which group (task or category name) each one serves.

    With ``shared`` (a one-adapter bank of the same rank and alpha), teacher i is ``shared + bank[i]``: the
    teachers learn together what every task needs and each its own rest (``teachers.shared``).
    """

    bank: AdapterBank
    groups: list[str]
    group_by: str
    shared: AdapterBank | None = None

    def conditioning(self, index: Tensor | list[int]) -> LoraConditioning:
        """Example b runs with teacher ``index[b]``: its own factors, after the shared ones when there are
        (``A [N, 2r, in]``, ``B [N, out, 2r]``; one scale, as the two banks share rank and alpha)."""
        own = self.bank.conditioning(index)
        if self.shared is None:
            return own
        common = self.shared.factors([0])  # [1, r, in], [1, out, r]
        factors = {name: stack_rank(common[name], pair) for name, pair in own.factors.items()}
        return LoraConditioning(factors, own.scale, own.batch_size)

    def indices(self, tasks: list[Task]) -> list[int]:
        """The teacher of each task; a task without a teacher is an error naming it."""
        position = {g: i for i, g in enumerate(self.groups)}
        missing = sorted({group_of(t, self.group_by) for t in tasks} - set(position))
        if missing:
            raise UserError(
                f"the teachers have no adapter for {self.group_by}(s) {missing[:5]}: train teachers on these "
                "tasks (leave teachers.path empty) or point teachers.path at matching ones"
            )
        return [position[group_of(t, self.group_by)] for t in tasks]

    def save(self, path: str | Path, meta: dict[str, Any]) -> Path:
        path = Path(path)
        self.bank.save(path / "bank")
        info = {"group_by": self.group_by, "groups": self.groups, **meta}
        if self.shared is not None:  # only when on, so that teachers saved before the option read the same
            self.shared.save(path / SHARED_DIR)
            info["shared"] = True
        atomic_write_text(path / TEACHERS_FILE, json.dumps(info, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> Teachers:
        path = Path(path)
        if not (path / TEACHERS_FILE).exists():
            raise InputNotFound(f"no trained teachers in {path}: expected {TEACHERS_FILE} (train them first)")
        info = json.loads((path / TEACHERS_FILE).read_text())
        bank = AdapterBank.load(path / "bank", device=device)
        bank.requires_grad_(False)
        shared = AdapterBank.load(path / SHARED_DIR, device=device) if info.get("shared") else None
        if shared is not None:
            shared.requires_grad_(False)
        return cls(bank, list(info["groups"]), info["group_by"], shared)


def group_of(task: Task, group_by: str) -> str:
    """The teacher group of ``task``: its name, or its first category (its name when it has none)."""
    return task.name if group_by == "task" else (task.category or task.name)


def group_names(tasks: list[Task], group_by: str) -> list[str]:
    """Distinct teacher groups of ``tasks`` in order of first appearance."""
    return list(dict.fromkeys(group_of(t, group_by) for t in tasks))


def teacher_logits(model: nn.Module, teachers: Teachers, batch: Batch) -> Tensor:
    """Logits of the answer tokens from the base model with each example's teacher adapter: [n_answer, V]."""
    with torch.no_grad(), conditioned(model, lora=teachers.conditioning(batch["teacher"])):
        return answer_logits(
            model, batch["teacher_input_ids"], batch["teacher_attention_mask"], batch["teacher_labels"]
        )


def train_teachers(
    model: nn.Module,
    tokenizer: Tokenizer,
    tasks: list[Task],
    cfg: TagiConfig,
    out_dir: str | Path,
    resume: bool = True,
    stop_at: int | None = None,
) -> Teachers | None:
    """Train one adapter per group on all of ``tasks`` in one pass over mixed batches; ``None`` when stopped
    early (``stop_at``). The model must be injected on ``cfg.target_modules``."""
    out_dir = Path(out_dir)
    if not resume:
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    groups = group_names(tasks, cfg.teachers.group)
    torch.manual_seed(cfg.teachers.train.seed)
    bank = AdapterBank.for_model(model, len(groups), cfg.teachers.rank, cfg.target_modules, cfg.teachers.alpha)
    shared = (
        AdapterBank.for_model(model, 1, cfg.teachers.rank, cfg.target_modules, cfg.teachers.alpha)
        if cfg.teachers.shared
        else None
    )
    teachers = Teachers(bank, groups, cfg.teachers.group, shared)
    of_task = teachers.indices(tasks)
    tcfg = cfg.teachers.train
    examples = encode_examples(tokenizer, tasks, cfg.setting, cfg.setting, tcfg.max_length, tcfg.seed)
    device = next(model.parameters()).device

    def make_batch(indices: list[int]) -> Batch:
        batch = pad_batch([examples[i].teacher for i in indices], tokenizer.pad_token_id)
        batch["teacher"] = torch.tensor([of_task[examples[i].task_index] for i in indices])  # [B]
        return {k: v.to(device) for k, v in batch.items()}

    def loss_fn(batch: Batch, step: int) -> Tensor:
        with conditioned(model, lora=teachers.conditioning(batch["teacher"])):
            return answer_loss(model, batch)

    params = {f"bank.{n}": p for n, p in bank.named_parameters()}
    if shared is not None:
        params.update({f"shared.{n}": p for n, p in shared.named_parameters()})
    trainer = Trainer(params, loss_fn, make_batch, len(examples), tcfg, out_dir, desc="tagi teachers", model=model)
    if trainer.train(resume, stop_at) < tcfg.steps:
        return None
    bank.requires_grad_(False)
    if shared is not None:
        shared.requires_grad_(False)
    teachers.save(
        out_dir,
        {"target_modules": cfg.target_modules, "setting": cfg.setting, "model": cfg.model, "train": asdict(tcfg)},
    )
    return teachers

"""TAGI's training recipe: teachers, then (1) hypernetwork pretraining, then (2) distillation finetuning.

Each stage runs through the shared Trainer in its own folder of ``run_dir`` (``teachers/``, ``pretrain/``,
``finetune/``), is resumable, and is skipped when it has finished before (TAGI, Liao et al. NeurIPS 2024)::

    method = train_tagi(load_config(TagiConfig, "configs/tagi.yaml"), "runs/tagi")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt import distributed
from hyperadapt.config import to_dict
from hyperadapt.core import LoraConditioning, conditioned, inject
from hyperadapt.data import load_tasks
from hyperadapt.data.schema import Task
from hyperadapt.errors import InputNotFound
from hyperadapt.methods.tagi.batches import (
    batch_maker,
    encode_examples,
    file_passages,
    segment_examples,
    task_passages,
)
from hyperadapt.methods.tagi.config import TagiConfig
from hyperadapt.methods.tagi.hypernet import TagiHypernetwork
from hyperadapt.methods.tagi.instructions import InstructionVectors
from hyperadapt.methods.tagi.losses import align_weight, alignment_per_example, distill_kl
from hyperadapt.methods.tagi.method import (
    HYPERNET_DIR,
    TagiMethod,
    build_hypernet,
    build_vectors,
    load_hypernet_weights,
    make_method,
    save_hypernet,
)
from hyperadapt.methods.tagi.teachers import Teachers, teacher_logits, train_teachers
from hyperadapt.models import load_base_model, shard_base
from hyperadapt.runs import RunDir
from hyperadapt.training import (
    Batch,
    Loss,
    TrainConfig,
    Trainer,
    answer_logits,
    answer_targets,
    latest_checkpoint,
)


@dataclass(frozen=True)
class Student:
    """What the student's losses read: the config, the frozen model (its target modules injected) and the
    hypernetwork (``benchmarks/scale.py`` times stage 2's step on these alone)."""

    cfg: TagiConfig
    model: torch.nn.Module
    hypernet: TagiHypernetwork


@dataclass
class Context:
    """What every stage works on."""

    cfg: TagiConfig
    model: torch.nn.Module
    tokenizer: Any  # Any, as on the method objects
    tasks: list[Task]
    hypernet: TagiHypernetwork
    vectors: InstructionVectors
    run_dir: Path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def student(self) -> Student:
        return Student(self.cfg, self.model, self.hypernet)


def student_logits(student: Student, batch: Batch) -> tuple[Tensor, LoraConditioning]:
    """Generate each example's adapter and return (answer logits [n, V], the adapters)."""
    lora = student.hypernet(batch["vectors"], batch["instruction_index"])
    with conditioned(student.model, lora=lora):
        logits = answer_logits(student.model, batch["input_ids"], batch["attention_mask"], batch["labels"])  # [n, V]
    return logits, lora


def stage1_dir(cfg: TagiConfig, run_dir: Path) -> Path:
    """Where the stage-1 hypernetwork is: ``pretrain.path`` (another run's), else this run's own."""
    return Path(cfg.pretrain.path) if cfg.pretrain.path else run_dir / "pretrain" / HYPERNET_DIR


def pretrain(ctx: Context, resume: bool, stop_at: int | None) -> bool:
    """Stage 1: the hypernetwork reads segment a; the model, conditioned on it, reads b and predicts c.

    With ``pretrain.path`` the stage-1 hypernetwork of another run is used (stage 1 does not depend on the
    stage-2 losses or on fusion, so ablations can share it); nothing is trained here then.
    """
    pcfg, out = ctx.cfg.pretrain, ctx.run_dir / "pretrain"
    if pcfg.path:
        if not (Path(pcfg.path) / "hypernet.safetensors").exists():
            raise InputNotFound(f"pretrain.path {pcfg.path} holds no stage-1 hypernetwork (hypernet.safetensors)")
        return True
    passages = file_passages(pcfg.text_file) if pcfg.text_file else task_passages(ctx.tasks, pcfg.train.seed)
    examples = segment_examples(ctx.tokenizer, passages, (pcfg.a_tokens, pcfg.b_tokens, pcfg.c_tokens))
    make_batch = batch_maker(examples, ctx.vectors, ctx.tokenizer.pad_token_id, ctx.device)

    def loss_fn(batch: Batch, step: int) -> Tensor:
        logits, _ = student_logits(ctx.student, batch)
        return F.cross_entropy(logits.float(), answer_targets(batch["labels"]))

    # the shared adapter (if any) stays frozen at ΔW = 0 here: stage 1 teaches reading text, not the tasks
    params = ctx.hypernet.generated_parameters()
    frozen = [p for k, p in ctx.hypernet.named_parameters() if k not in params]
    for p in frozen:
        p.requires_grad_(False)
    try:
        return run_stage(
            ctx, out, loss_fn, make_batch, len(examples), pcfg.train, resume, stop_at, "tagi pretrain", params=params
        )
    finally:
        for p in frozen:
            p.requires_grad_(True)


def finetune_loss(
    student: Student, teachers: Teachers | None, batch: Batch
) -> tuple[Loss, dict[str, Tensor], dict[str, Tensor | float]]:
    """Stage 2's loss on one batch, its terms and their weights. CE and KL are means over answer tokens, the
    alignment a mean over examples: the loop weights each by its own share of the step, so several processes
    or micro-batches give the one-batch loss."""
    cfg = student.cfg
    logits, lora = student_logits(student, batch)
    terms = {"ce": F.cross_entropy(logits.float(), answer_targets(batch["labels"]))}
    weights: dict[str, Tensor | float] = {"ce": 1.0}
    if cfg.losses.uses_kl:
        terms["kl"] = distill_kl(logits, teacher_logits(student.model, _given(teachers), batch), cfg.losses.temperature)
        weights["kl"] = cfg.losses.kl_weight
    per_example: Tensor | float = 0.0
    if cfg.losses.uses_align:
        teacher = _given(teachers).conditioning(batch["teacher"])
        aligned = alignment_per_example(lora, teacher, len(batch["input_ids"]))
        terms["align"] = aligned.mean()
        weights["align"] = align_weight(cfg.losses.align_weight, global_mean(aligned))
        per_example = weights["align"] * terms["align"]
    per_token = cast(Tensor, sum(weights[k] * terms[k] for k in terms if k != "align"))  # "ce" is always there
    return Loss(per_token, per_example), terms, weights


def _given(teachers: Teachers | None) -> Teachers:
    """The teachers the KL and alignment losses read; ``train_tagi`` loads or trains them for those losses."""
    if teachers is None:
        raise ValueError("the KL and alignment losses need teachers: none were loaded or trained")
    return teachers


def finetune(ctx: Context, teachers: Teachers | None, resume: bool, stop_at: int | None) -> bool:
    """Stage 2: CE + λ1·T²·KL(teacher ‖ student) + λ2·‖ΔW_s − ΔW_t‖² over the training tasks."""
    cfg, out = ctx.cfg, ctx.run_dir / "finetune"
    examples = encode_examples(
        ctx.tokenizer, ctx.tasks, cfg.setting, cfg.student_setting, cfg.train.max_length, cfg.train.seed
    )
    groups = teachers.indices(ctx.tasks) if teachers is not None else None
    make_batch = batch_maker(examples, ctx.vectors, ctx.tokenizer.pad_token_id, ctx.device, groups)
    log = TermLog(out / "loss_terms.jsonl", cfg.train.log_every)

    def loss_fn(batch: Batch, step: int) -> Loss:
        loss, terms, weights = finetune_loss(ctx.student, teachers, batch)
        log.record(step, terms, weights)
        return loss

    if not resume or latest_checkpoint(out) is None:  # what the Trainer resumes from; else it starts here
        init = stage1_dir(cfg, ctx.run_dir)
        if cfg.pretrain.enabled and (init / "hypernet.safetensors").exists():
            load_hypernet_weights(ctx.hypernet, init)
        if cfg.shared_adapter and teachers is not None and teachers.shared is not None:
            ctx.hypernet.set_shared(teachers.shared.adapter(0))  # start where the teachers' common part is
    return run_stage(ctx, out, loss_fn, make_batch, len(examples), cfg.train, resume, stop_at, "tagi finetune")


def global_mean(values: Tensor) -> Tensor:
    """The mean of per-example ``values`` [B] over the global micro-batch (every process's examples), as a
    constant: what λ2 = sigmoid(L_param) is computed from, so that it does not depend on the process count."""
    total = distributed.all_sum(float(values.detach().sum()))
    return torch.tensor(total / distributed.all_sum(float(len(values))))


class TermLog:
    """Appends each loss term and its weight to a JSONL file every ``every`` steps."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every

    def record(self, step: int, terms: dict[str, Tensor], weights: dict[str, Tensor | float]) -> None:
        if not self.every or step % self.every or not distributed.is_main():
            return
        row = {
            "step": step,
            **{k: float(v.detach()) for k, v in terms.items()},
            **{f"w_{k}": float(torch.as_tensor(w)) for k, w in weights.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def run_stage(
    ctx: Context,
    out: Path,
    loss_fn: Callable[[Batch, int], Tensor | Loss],
    make_batch: Callable[[list[int]], Batch],
    n: int,
    tcfg: TrainConfig,
    resume: bool,
    stop_at: int | None,
    desc: str,
    params: dict[str, torch.nn.Parameter] | None = None,
) -> bool:
    """Train the hypernetwork (``params``: a subset of its parameters) in ``out``; save it to ``out/hypernet``
    when done. True when finished."""
    done = out / HYPERNET_DIR
    if resume and (done / "hypernet.safetensors").exists():
        load_hypernet_weights(ctx.hypernet, done)
        return True
    params = dict(ctx.hypernet.named_parameters()) if params is None else params
    ctx.hypernet.train()
    step = Trainer(params, loss_fn, make_batch, n, tcfg, out, desc=desc, model=ctx.model).train(resume, stop_at)
    ctx.hypernet.eval()
    if step < tcfg.steps:
        return False
    save_hypernet(ctx.hypernet, done)
    return True


def get_teachers(ctx: Context, resume: bool, stop_at: int | None) -> Teachers | None:
    """Load the teachers from ``teachers.path`` or a finished ``teachers/``, else train them."""
    cfg = ctx.cfg
    path = Path(cfg.teachers.path) if cfg.teachers.path else ctx.run_dir / "teachers"
    if cfg.teachers.path or (resume and (path / "teachers.json").exists()):
        teachers = Teachers.load(path, device=ctx.device)
        teachers.indices(ctx.tasks)
        return teachers
    return train_teachers(ctx.model, ctx.tokenizer, ctx.tasks, cfg, path, resume, stop_at)


def train_tagi(
    cfg: TagiConfig,
    run_dir: str | Path,
    resume: bool = True,
    model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None,
    stop_at: int | None = None,
    name: str = "tagi",
) -> TagiMethod:
    """Train TAGI into ``run_dir`` (resumable stage by stage) and return it ready for evaluation.

    ``stop_at`` stops the running stage after that many steps (for tests); the returned method then holds
    the hypernetwork as it is.
    """
    run_dir = Path(run_dir)
    model, tokenizer = model_and_tokenizer or load_base_model(cfg.model)
    inject(model, cfg.target_modules, gating=False)
    shard_base(model)
    tasks = load_tasks(cfg.data, cfg.split)
    with RunDir(run_dir).begin(name, to_dict(cfg), model) as run:
        vectors = build_vectors(cfg, model, tokenizer)
        torch.manual_seed(cfg.train.seed)
        hypernet = build_hypernet(cfg, model, vectors.dim)
        ctx = Context(cfg, model, tokenizer, tasks, hypernet, vectors, run_dir)
        method = make_method(name, cfg, model, tokenizer, hypernet, vectors, run_dir)
        teachers = get_teachers(ctx, resume, stop_at) if cfg.needs_teachers else None
        if cfg.needs_teachers and teachers is None:
            return method
        if cfg.pretrain.enabled and not pretrain(ctx, resume, stop_at):
            return method
        if finetune(ctx, teachers, resume, stop_at):
            save_hypernet(hypernet, run_dir / HYPERNET_DIR)
            run.finish()
    hypernet.eval()
    return method

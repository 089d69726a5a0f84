"""Multi-task LoRA with the instruction in the prompt ("Tk-Instruct style", Wang et al. 2022).

One PEFT LoRA trained on the instances of all training tasks, each prompt carrying its task's
instruction. It is TAGI's teacher recipe and its strongest baseline.

The caller's model is never left changed in behaviour: PEFT wraps it only while training and is removed
afterwards; the trained adapter then runs through the shared core (``inject`` + ``conditioned``), so the
same model still answers as the base model outside the method's ``conditioning``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.config import to_dict
from hyperadapt.core import AdapterBank, bank_from_peft, conditioned, inject, peft_wrapping, remove
from hyperadapt.core.inject import injected_targets
from hyperadapt.core.rows import RowCondition, ServesAs, bank_row
from hyperadapt.data import load_tasks
from hyperadapt.data.prompts import Encoded, encode_tasks
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.evaluation.harness import Query
from hyperadapt.io import write_dir_atomic
from hyperadapt.methods.baselines.lora_config import LoraTrainingConfig
from hyperadapt.models import load_base_model, shard_base
from hyperadapt.runs import Run, RunDir
from hyperadapt.training import Batch, Trainer, answer_loss, pad_batch

METHOD = "multitask-lora"
ADAPTER_DIR = "adapter"  # a plain PEFT folder


@dataclass
class MultiTaskLoraConfig(LoraTrainingConfig):
    """A LoRA trained on all training tasks with the instruction in the prompt (PEFT, with dropout)."""

    dropout: float = field(default=0.0, metadata={"help": "PEFT's lora_dropout"})

    def lora_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # PEFT annotates an int; it scales by any number
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )


@dataclass
class AdapterMethod:
    """A model answering with one LoRA (a PEFT folder) applied only inside ``conditioning``; outside it the
    model is the base model."""

    name: str
    model: Any
    tokenizer: Any
    bank: AdapterBank
    setting: str = "def"
    info: dict[str, Any] = field(default_factory=dict)

    serves_as: ClassVar[ServesAs] = "fixed"  # hyperadapt.core.rows.Servable

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager[object]:
        return conditioned(self.model, lora=self.bank.conditioning([0] * len(queries)))

    def serve_row(self, condition: str | None, text: str) -> RowCondition:
        """Serving (``hyperadapt.core.rows.Servable``, ``fixed``): its one LoRA for every request."""
        return bank_row(self.bank, 0, route="adapter")


def adapter_method(
    model: PreTrainedModel, tokenizer: Tokenizer, adapter: Path, setting: str, info: dict[str, Any]
) -> AdapterMethod:
    """The multi-task LoRA in ``adapter`` (a PEFT folder) on ``model``, through the shared core."""
    inject(model, gating=False)
    return AdapterMethod(METHOD, model, tokenizer, bank_from_peft(model, [adapter]), setting, info)


def train_multitask_lora(
    cfg: MultiTaskLoraConfig,
    run_dir: str | Path,
    resume: bool = True,
    model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None,
    stop_at: int | None = None,
) -> AdapterMethod:
    """Train the baseline into ``run_dir`` (resumable) and return it ready for evaluation.

    A given ``model_and_tokenizer`` is shared, not taken over: PEFT wraps the model only while training,
    and afterwards it answers as before (the LoRA applies inside the returned method's ``conditioning``).
    """
    run_dir = Path(run_dir)
    model, tokenizer = model_and_tokenizer or load_base_model(cfg.model)
    if resume and RunDir(run_dir).finished(METHOD, to_dict(cfg), run_dir / ADAPTER_DIR / "adapter_config.json"):
        return load_multitask_lora(run_dir, (model, tokenizer))
    tasks = load_tasks(cfg.data, cfg.split)
    examples = encode_tasks(tokenizer, tasks, cfg.setting, cfg.train.max_length, cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    was_injected = injected_targets(model)
    remove(model)  # PEFT wraps plain linears; our wrappers come back below
    try:
        _train_peft(cfg, model, tokenizer, examples, run_dir, resume, stop_at)
    finally:
        if was_injected[0] or was_injected[1]:
            inject(model, was_injected[0] or (), gating=was_injected[1])
    return adapter_method(model, tokenizer, run_dir / ADAPTER_DIR, cfg.setting, {"run": str(run_dir), **to_dict(cfg)})


def _train_peft(
    cfg: MultiTaskLoraConfig,
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    examples: list[Encoded],
    run_dir: Path,
    resume: bool,
    stop_at: int | None,
) -> None:
    """Train a PEFT LoRA on ``model`` and save it to ``run_dir/adapter``; PEFT is removed again after."""
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    with peft_wrapping():
        peft_model = get_peft_model(shard_base(model), cfg.lora_config())
    try:
        _fit(cfg, peft_model, tokenizer, examples, run_dir, resume, stop_at)
    finally:
        peft_model.unload()  # the original linears go back into the caller's model
        model.__dict__.pop("peft_config", None)
        model.eval()  # type: ignore[no-untyped-call]  # transformers' override of Module.eval is unannotated
        for name, param in model.named_parameters():
            param.requires_grad_(trainable.get(name, False))


def _fit(
    cfg: MultiTaskLoraConfig,
    peft_model: PeftModel,
    tokenizer: Tokenizer,
    examples: list[Encoded],
    run_dir: Path,
    resume: bool,
    stop_at: int | None,
) -> None:
    params = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}

    def make_batch(indices: list[int]) -> Batch:
        batch = pad_batch([(examples[i].input_ids, examples[i].labels) for i in indices], tokenizer.pad_token_id)
        return {k: v.to(peft_model.device) for k, v in batch.items()}

    def loss_fn(batch: Batch, step: int) -> torch.Tensor:
        return answer_loss(peft_model, batch)

    with RunDir(run_dir).begin(METHOD, to_dict(cfg), peft_model) as run:
        peft_model.train()
        step = Trainer(
            params,
            loss_fn,
            make_batch,
            len(examples),
            cfg.train,
            run_dir,
            desc=METHOD,
            model=peft_model.get_base_model(),
        ).train(resume, stop_at)
        peft_model.eval()
        # The embeddings are frozen: say so, rather than let PEFT look the base model up on the hub.
        write_dir_atomic(
            run_dir / ADAPTER_DIR, lambda d: peft_model.save_pretrained(str(d), save_embedding_layers=False)
        )
        if step >= cfg.train.steps:  # a run stopped early keeps its status "running"
            run.finish(steps=step)


def load_multitask_lora(
    run: Run | str | Path, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> AdapterMethod:
    """The trained baseline from ``run`` (a :class:`~hyperadapt.runs.Run` or its folder; its ``adapter/``
    folder is a plain PEFT adapter), on the run's own base model."""
    run = Run.of(run)
    if run.method != METHOD:
        raise UserError(f"{run.path} is a {run.method!r} run, not a {METHOD} run")
    adapter = run.path / ADAPTER_DIR
    if not (adapter / "adapter_config.json").exists():
        raise InputNotFound(f"{run.path} has no trained adapter yet: train it (or resume) first")
    model, tokenizer = run.model_and_tokenizer(model_and_tokenizer)
    cfg = run.config_dict
    return adapter_method(model, tokenizer, adapter, cfg["setting"], {"run": str(run.path), **cfg})

"""The machinery every continual method shares: the task stream, LoRA training on the one training loop,
and evaluation through an adapter bank with an answer cache (the adapter files: ``store.py``).

A run directory holds ``run.json`` (``kind: continual``), ``state.json`` (progress, rows of the accuracy
matrix), ``adapters/NNN-<task>/`` (one LoRA folder per task in PEFT's layout, never rewritten, with ``task.json``),
``adapters/manifest.json``, ``answers.jsonl`` (cached answers of frozen adapters), ``train/`` (logs and
checkpoints of the task in progress), ``answering/`` (the answers of the stage in progress), ``progress.md``
while unfinished and, at the end, ``results.json`` with its plots.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Final

import torch
from torch import Tensor
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.core import BASE, AdapterBank, LoraConditioning, conditioned, inject
from hyperadapt.core.rows import RowCondition, ServesAs, bank_row
from hyperadapt.data import load_tasks, parse_spec
from hyperadapt.data.loaders import load_cl_stream, load_task_file
from hyperadapt.data.prompts import Encoded, TruncationStats, encode_tasks
from hyperadapt.data.schema import Task
from hyperadapt.data.synthetic import synthetic_stream
from hyperadapt.errors import UserError
from hyperadapt.evaluation.harness import (
    AnswerLog,
    EvalConfig,
    Query,
    answer,
    answer_identity,
    make_queries,
    prompt_budget,
)
from hyperadapt.evaluation.metrics import score_predictions
from hyperadapt.io import load_json, safe_name
from hyperadapt.methods.continual.config import ContinualConfig
from hyperadapt.runs import RunDir
from hyperadapt.training import Batch, Trainer, answer_loss, pad_batch

RUN_KIND: Final = "continual"
ADAPTERS = "adapters"  # the adapter store: one LoRA folder per task
ANSWERING = "answering"  # answers of the stage in progress (see ``answer_plan``)
ANSWER_LOGS = "answer_logs"  # every finished stage's answers, ``after-NNN.answers.jsonl`` (see ``run_stage``)

log = logging.getLogger(__name__)


@dataclass
class StreamTask:
    """One task of the stream: the data its adapter is trained on, the data it is judged on, and its dev split
    (``cl:`` streams; None elsewhere), disjoint from both, where the switch's threshold may be calibrated."""

    name: str
    train: Task
    test: Task
    dev: Task | None = None


def load_stream(cfg: ContinualConfig) -> list[StreamTask]:
    """The tasks of ``cfg.stream`` in order (training instances cut to ``cfg.limit_train``)."""
    kind, arg = parse_spec(cfg.stream)
    if kind == "synthetic":
        return [
            StreamTask(tr.name, tr.head(cfg.limit_train), te)
            for tr, te in synthetic_stream(int(arg) if arg else 0, cfg.n_tasks)
        ]
    path, _, order = arg.partition("#")
    stream = load_cl_stream(path, int(order or 1))
    return [StreamTask(n, stream.train[n].head(cfg.limit_train), stream.test[n], stream.dev[n]) for n in stream.names]


def load_unseen(cfg: ContinualConfig, stream: Collection[str] = ()) -> list[Task]:
    """Tasks the stream never has (``cfg.unseen``, less any task named in ``stream``): SwitchCIT measures its
    reject option on them."""
    spec = cfg.unseen
    if spec == "auto":
        spec = "synthetic@unseen" if cfg.stream.startswith("synthetic") else ""
    if not spec:
        return []
    data, _, split = spec.rpartition("@")
    tasks = [t.head(cfg.unseen_limit) for t in load_tasks(data, split)]
    overlap = [t.name for t in tasks if t.name in stream]
    if overlap:  # a task of the stream is not unseen
        log.warning(
            "%d unseen task(s) are part of the stream and are left out: %s", len(overlap), ", ".join(overlap[:5])
        )
    return [t for t in tasks if t.name not in stream]


# ---------------------------------------------------------------------------------------------------------
# Context: everything a learner needs


@dataclass
class StreamContext:
    """The frozen model (wrapped for per-example LoRA), the stream, and the run directory."""

    cfg: ContinualConfig
    run_dir: Path
    model: PreTrainedModel
    tokenizer: Tokenizer
    tasks: list[StreamTask]
    unseen: list[Task] = field(default_factory=list)
    _encoded: dict[str, list[Encoded]] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def encoded(self, k: int) -> list[Encoded]:
        """Training examples of task ``k`` (instruction in the prompt, per ``cfg.setting``)."""
        task = self.tasks[k].train
        if task.name not in self._encoded:
            cfg = self.cfg
            self._encoded[task.name] = encode_tasks(
                self.tokenizer, [task], cfg.setting, cfg.train.max_length, cfg.seed + k
            )
        return self._encoded[task.name]

    def new_bank(self, seed: int, rank: int | None = None, alpha: float | None = None) -> AdapterBank:
        """A fresh one-adapter bank over ``cfg.lora.target_modules``, initialised from ``seed``."""
        spec = self.cfg.lora
        torch.manual_seed(seed)
        return AdapterBank.for_model(self.model, 1, rank or spec.rank, spec.target_modules, alpha or spec.alpha)


def added_folder(run_dir: Path, name: str) -> Path:
    """``added/<name>/`` of a run, with ``name`` mapped to a safe folder name (``run.json`` keeps the real one)."""
    return Path(run_dir) / "added" / safe_name(name, "task name")


def with_added_tasks(ctx: StreamContext) -> StreamContext:
    """``ctx`` with the tasks appended to its run by ``continual add`` (``run.json``'s ``added``, each read back
    from ``added/<name>/``), after the stream's own; none for a fresh run."""
    run = RunDir(ctx.run_dir).read() or {}
    have = {task.name for task in ctx.tasks}
    for name in run.get("added", []):
        if name not in have:
            folder = added_folder(ctx.run_dir, name)
            ctx.tasks.append(
                StreamTask(
                    name, load_task_file(folder / "train.json", name), load_task_file(folder / "test.json", name)
                )
            )
    return ctx


def make_context(
    cfg: ContinualConfig, run_dir: str | Path, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> StreamContext:
    from hyperadapt.models import load_base_model

    model, tokenizer = model_and_tokenizer or load_base_model(cfg.model)
    inject(model, cfg.lora.target_modules, gating=False)
    tasks = load_stream(cfg)
    return StreamContext(cfg, Path(run_dir), model, tokenizer, tasks, load_unseen(cfg, {t.name for t in tasks}))


# ---------------------------------------------------------------------------------------------------------
# Training one LoRA on the one training loop


def fit_lora(
    ctx: StreamContext,
    examples: Sequence[Encoded],
    params: dict[str, torch.nn.Parameter],
    lora_fn: Callable[[], LoraConditioning],
    folder: Path,
    seed: int,
    extra_loss: Callable[[], Tensor] | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Train ``params`` (the factors behind ``lora_fn()``) on ``examples``; resumable from ``folder``.

    Returns ``steps``, ``examples`` and ``resumed_seconds``: the training seconds that earlier processes spent
    on the steps the checkpoint it resumed from holds (0.0 when it started fresh), which this process did not
    see."""
    if not examples:
        raise UserError("no training examples for this task")
    model, pad = ctx.model, ctx.tokenizer.pad_token_id
    tcfg = replace(ctx.cfg.train, seed=seed, steps=steps or ctx.cfg.train.steps)

    def make_batch(indices: list[int]) -> Batch:
        batch = pad_batch([(examples[i].input_ids, examples[i].labels) for i in indices], pad)
        return {k: v.to(model.device) for k, v in batch.items()}

    def loss_fn(batch: Batch, step: int) -> Tensor:
        with conditioned(model, lora=lora_fn()):
            loss = answer_loss(model, batch)
        return loss + extra_loss() if extra_loss is not None else loss

    trainer = Trainer(params, loss_fn, make_batch, len(examples), tcfg, folder, desc=folder.name, model=model)
    trainer.train(resume=True)
    return {"steps": trainer.step, "examples": len(examples), "resumed_seconds": round(trainer.clock.before, 2)}


def bank_params(bank: AdapterBank) -> dict[str, torch.nn.Parameter]:
    return dict(bank.named_parameters())


def clear_checkpoints(folder: Path) -> None:
    """Drop a finished task's optimiser checkpoints (its adapter folder is the artefact)."""
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Evaluation through a bank, with cached answers for adapters that never change


@dataclass
class BankMethod:
    """A harness method that runs example b with adapter ``route_fn(queries)[b]`` of ``bank`` (-1: base),
    all in one forward pass (per-example LoRA)."""

    name: str
    model: Any
    tokenizer: Any
    bank: AdapterBank | None
    route_fn: Callable[[list[Query]], list[int]]
    setting: str = "def"
    info: dict[str, Any] = field(default_factory=dict)

    serves_as: ClassVar[ServesAs] = "fixed"  # hyperadapt.core.rows.Servable

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager[object]:
        routes = self.route_fn(queries)
        if self.bank is None or all(r == BASE for r in routes):
            return contextlib.nullcontext()
        return conditioned(self.model, lora=self.bank.conditioning(routes))

    def serve_row(self, condition: str | None, text: str) -> RowCondition:
        """Serving (``hyperadapt.core.rows.Servable``, ``fixed``): adapter 0 of its bank for every request (the
        LoRA a single-LoRA stream ends with, see ``load_final_adapter``)."""
        if self.bank is None:
            raise ValueError(f"{self.name} has no adapter to serve: it answers with the base model")
        return bank_row(self.bank, 0, route="adapter")


@dataclass
class EvalPlan:
    """How a learner answers after a task: its bank, the adapter of each query, and a cache key per adapter
    (``None``: the adapter changes from row to row, so its answers are not cached)."""

    bank: AdapterBank | None
    routes: list[int]
    keys: list[str | None]
    stats: dict[str, Any] = field(default_factory=dict)


class AnswerCache:
    """Answers keyed by (task, instance id, prompt hash, adapter key), kept in the run's ``answers.jsonl`` in the
    harness's answer-log format (:class:`~hyperadapt.evaluation.harness.AnswerLog`: its header holds the
    stream's evaluation settings and whose answers they are, the base model and its weights' hash) and
    rewritten whole when a stage is saved (``save``). A cache of another base model is not reused (one
    warning). A run started before keeps ``answers.json`` (key -> answer): it is read as this run's own (its
    config, base model included, was checked when it resumed) and replaced by ``answers.jsonl`` at the first save.

    The prompt hash (of the rendered, budget-cut prompt) keeps answers to one prompt from being served for
    another: a run with another prompt budget or setting never reuses them. The adapter key is last, so
    ``key.endswith("\tbase")`` picks the base model's answers.
    """

    FILE = "answers.jsonl"
    OLD_FILE = "answers.json"  # written before the cache took the answer-log format

    def __init__(self, run_dir: Path, fingerprint: str, identity: dict[str, str | None]) -> None:
        self.run_dir, self.fingerprint, self.identity = run_dir, fingerprint, identity
        self.data = self.read(run_dir, fingerprint, identity)

    @classmethod
    def read(
        cls, run_dir: Path, fingerprint: str | None = None, identity: dict[str, str | None] | None = None
    ) -> dict[str, str]:
        """The cached answers of the run ``run_dir`` (none when it has no cache, or, with ``fingerprint`` and
        ``identity``, when its cache was written under others)."""
        if (run_dir / cls.FILE).exists():
            if fingerprint is None or identity is None:
                return AnswerLog.read(run_dir / cls.FILE)[1]
            return AnswerLog.load(run_dir / cls.FILE, (fingerprint,), identity) or {}
        if (run_dir / cls.OLD_FILE).exists():
            return {str(k): str(v) for k, v in load_json(run_dir / cls.OLD_FILE, "answer cache").items()}
        return {}

    @staticmethod
    def key(query: Query, adapter: str) -> str:
        digest = hashlib.sha1(query.prompt.encode("utf-8")).hexdigest()[:16]
        return f"{query.task.name}\t{query.instance.id}\t{digest}\t{adapter}"

    def save(self) -> None:
        AnswerLog.write_answers(self.run_dir / self.FILE, self.fingerprint, self.identity, self.data)
        (self.run_dir / self.OLD_FILE).unlink(missing_ok=True)


def open_cache(ctx: StreamContext) -> AnswerCache:
    """The answer cache of the stream's run, for its evaluation settings and base model."""
    return AnswerCache(
        ctx.run_dir, json.dumps({"eval": vars(eval_config(ctx))}, sort_keys=True), stream_identity(ctx, None)
    )


def answer_plan(
    ctx: StreamContext, name: str, queries: list[Query], plan: EvalPlan, cache: AnswerCache, stage: str | None = None
) -> list[str]:
    """The answer to each query under ``plan``; cached answers are reused, the rest generated in batches.

    With ``stage`` (a name unique within the run, e.g. ``"after-003"``), the generated answers are also
    appended to ``answering/<stage>.jsonl`` as each batch finishes, so that a stage interrupted while it
    answers continues where it stopped (the runner removes the folder once the stage is saved)."""
    keys = [None if k is None else cache.key(q, k) for q, k in zip(queries, plan.keys, strict=True)]
    todo = [i for i, k in enumerate(keys) if k is None or k not in cache.data]
    route_of = {id(queries[i]): plan.routes[i] for i in todo}
    method = BankMethod(
        name, ctx.model, ctx.tokenizer, plan.bank, lambda qs: [route_of[id(q)] for q in qs], ctx.cfg.setting
    )
    ecfg = eval_config(ctx)
    log_to = None
    if stage is not None and todo:
        log_to = AnswerLog(
            answering_log(ctx, stage), stage_fingerprint(ctx, name, stage), stream_identity(ctx, plan.bank)
        )
    try:
        fresh = answer(method, [queries[i] for i in todo], ecfg, desc=name, log_to=log_to)
    finally:
        if log_to is not None:
            log_to.close()
    out = [
        fresh[id(q)] if k is None or k not in cache.data else cache.data[k]  # generated now: the todo ones
        for q, k in zip(queries, keys, strict=True)
    ]
    for i in todo:
        key = keys[i]
        if key is not None:
            cache.data[key] = out[i]
    return out


def answering_log(ctx: StreamContext, stage: str) -> Path:
    """Where ``answer_plan`` appends the answers of ``stage`` while it is in progress."""
    return ctx.run_dir / ANSWERING / f"{safe_name(stage, 'stage')}.jsonl"


def score_tasks(queries: list[Query], answers: list[str]) -> dict[str, dict[str, float]]:
    """Per task: ``rougeL``, ``em`` and ``n``."""
    by_task: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_task.setdefault(q.task.name, []).append(i)
    return {
        name: score_predictions([answers[i] for i in idx], [list(queries[i].instance.outputs) for i in idx])
        for name, idx in by_task.items()
    }


def stream_identity(ctx: StreamContext, bank: AdapterBank | None) -> dict[str, str | None]:
    """Whose answers these are (:func:`~hyperadapt.evaluation.harness.answer_identity`): the base model and
    its weights, and the weights of ``bank`` (None: the base model's own answers)."""
    return answer_identity(BankMethod("stream", ctx.model, ctx.tokenizer, bank, lambda qs: [], ctx.cfg.setting))


def stage_fingerprint(ctx: StreamContext, method: str, stage: str) -> str:
    """What produced a stage's answers (method, stage, evaluation settings): the header of its answer logs."""
    return json.dumps({"method": method, "stage": stage, "eval": vars(eval_config(ctx))}, sort_keys=True)


def eval_config(ctx: StreamContext) -> EvalConfig:
    """The harness settings of the stream's evaluation (``cfg.eval``)."""
    e = ctx.cfg.eval
    return EvalConfig(
        setting=ctx.cfg.setting,
        limit=e.limit,
        batch_size=e.batch_size,
        max_new_tokens=e.max_new_tokens,
        max_prompt_tokens=e.max_prompt_tokens,
    )


def test_queries(ctx: StreamContext) -> list[Query]:
    """The evaluation queries of every task of the stream (first ``eval.limit`` test instances), each prompt
    within the prompt budget (``eval.max_prompt_tokens``, else the model's context minus the answer budget)
    by the one truncation rule, with one warning when any was cut. Raises ``ValueError`` when the budget
    plus ``eval.max_new_tokens`` exceed the model's context."""
    tasks = [t.test for t in ctx.tasks]
    probe = BankMethod("queries", ctx.model, ctx.tokenizer, None, lambda qs: [], ctx.cfg.setting)
    stats = TruncationStats()
    budget = prompt_budget(ctx.model, eval_config(ctx), tasks)
    queries = make_queries(probe, tasks, ctx.cfg.setting, ctx.cfg.eval.limit, budget, stats)
    stats.warn("evaluation prompts of the stream")
    return queries

"""The machinery every continual method shares: the task stream, per-task adapter files, LoRA training on
the one training loop, and evaluation through an adapter bank with an answer cache.

A run directory holds ``run.json`` (``kind: continual``), ``state.json`` (progress, rows of the accuracy
matrix), ``adapters/NNN-<task>/`` (one PEFT LoRA folder per task, never rewritten, with ``task.json``),
``adapters/manifest.json``, ``answers.json`` (cached answers of frozen adapters), ``train/`` (logs and
checkpoints of the task in progress) and, at the end, ``results.json`` with its plots.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.core import BASE, AdapterBank, LoraConditioning, conditioned, export_peft, inject, load_peft
from hyperadapt.data import load_tasks, parse_spec
from hyperadapt.data.loaders import load_cl_stream
from hyperadapt.data.prompts import Encoded, TruncationStats, encode_tasks, user_message
from hyperadapt.data.schema import Task
from hyperadapt.data.synthetic import synthetic_stream
from hyperadapt.evaluation.harness import EvalConfig, Query, answer, make_queries, prompt_budget
from hyperadapt.evaluation.metrics import score_predictions
from hyperadapt.io import atomic_write_text, load_json, safe_name, save_json, write_dir_atomic
from hyperadapt.methods.switch.config import SwitchConfig
from hyperadapt.training import Trainer, pad_batch

RUN_KIND = "continual"
MANIFEST = "manifest.json"

log = logging.getLogger(__name__)


@dataclass
class StreamTask:
    """One task of the stream: the data its adapter is trained on, the data it is judged on, and its dev split
    (``cl:`` streams; None elsewhere), disjoint from both, where the switch's threshold may be calibrated."""

    name: str
    train: Task
    test: Task
    dev: Task | None = None


def load_stream(cfg: SwitchConfig) -> list[StreamTask]:
    """The tasks of ``cfg.stream`` in order (training instances cut to ``cfg.limit_train``)."""
    kind, arg = parse_spec(cfg.stream)
    if kind == "synthetic":
        return [StreamTask(tr.name, tr.head(cfg.limit_train), te)
                for tr, te in synthetic_stream(int(arg) if arg else 0, cfg.n_tasks)]
    path, _, order = arg.partition("#")
    stream = load_cl_stream(path, int(order or 1))
    return [StreamTask(n, stream.train[n].head(cfg.limit_train), stream.test[n], stream.dev[n]) for n in stream.names]


def calibration_source(cfg: SwitchConfig, task: StreamTask) -> str:
    """Where the switch's reject threshold takes ``task``'s calibration inputs from: ``dev`` (its dev split)
    or ``train`` (inputs held out of its training data), per ``router.calibrate_on`` (``auto``: dev when the
    task has a dev split, else train). Raises ``ValueError`` when ``dev`` is asked and the task has none."""
    has_dev = task.dev is not None and bool(task.dev.instances)
    if cfg.router.calibrate_on == "dev" and not has_dev:
        raise ValueError(f"router.calibrate_on is 'dev' but task {task.name!r} has no dev split: use 'auto' "
                         "(its training inputs then calibrate) or 'train'")
    if cfg.router.calibrate_on == "auto":
        return "dev" if has_dev else "train"
    return cfg.router.calibrate_on


def load_unseen(cfg: SwitchConfig, stream: Collection[str] = ()) -> list[Task]:
    """Tasks the switch never sees (``cfg.unseen``, less any task named in ``stream``), to measure the reject
    option on."""
    spec = cfg.unseen
    if spec == "auto":
        spec = "synthetic@unseen" if cfg.stream.startswith("synthetic") else ""
    if not spec:
        return []
    data, _, split = spec.rpartition("@")
    tasks = [t.head(cfg.unseen_limit) for t in load_tasks(data, split)]
    overlap = [t.name for t in tasks if t.name in stream]
    if overlap:  # a task of the stream is not unseen
        log.warning("%d unseen task(s) are part of the stream and are left out: %s", len(overlap),
                    ", ".join(overlap[:5]))
    return [t for t in tasks if t.name not in stream]


def data_hash(task: Task) -> str:
    """SHA-256 of a task's instruction and instances: what its adapter was trained on."""
    payload = [task.instruction, *[(i.id, i.input, list(i.outputs)) for i in task.instances]]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def task_record(task: Task) -> dict:
    """``task`` in the Super-NaturalInstructions schema (read back by ``load_task_file``)."""
    return {
        "Definition": task.instructions,
        "Categories": task.categories,
        "Positive Examples": [{"input": e.input, "output": e.output} for e in task.positive_examples],
        "Instances": [{"id": i.id, "input": i.input, "output": list(i.outputs)} for i in task.instances],
    }


def router_texts(task: Task, setting: str, seed: int) -> list[str]:
    """The user text of every instance (instruction drawn among the task's wordings): what the switch reads."""
    rng = torch.Generator().manual_seed(seed)
    wordings = task.instructions
    picks = torch.randint(len(wordings), (len(task.instances),), generator=rng).tolist()
    return [user_message(wordings[p], i.input, setting, task.positive_examples)
            for p, i in zip(picks, task.instances, strict=True)]


def query_text(query: Query, setting: str) -> str:
    """The user text of an evaluation query (what the switch reads)."""
    return user_message(query.task.instruction, query.instance.input, setting, query.task.positive_examples)


# ---------------------------------------------------------------------------------------------------------
# Context: everything a learner needs


@dataclass
class StreamContext:
    """The frozen model (wrapped for per-example LoRA), the stream, and the run directory."""

    cfg: SwitchConfig
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
            self._encoded[task.name] = encode_tasks(self.tokenizer, [task], cfg.setting, cfg.train.max_length,
                                                    cfg.seed + k)
        return self._encoded[task.name]

    def new_bank(self, seed: int, rank: int | None = None, alpha: float | None = None) -> AdapterBank:
        """A fresh one-adapter bank over ``cfg.lora.targets``, initialised from ``seed``."""
        spec = self.cfg.lora
        torch.manual_seed(seed)
        return AdapterBank.for_model(self.model, 1, rank or spec.rank, spec.targets, alpha or spec.alpha)


def make_context(cfg: SwitchConfig, run_dir: str | Path, model_and_tokenizer=None) -> StreamContext:
    from hyperadapt.models import load_base_model

    model, tokenizer = model_and_tokenizer or load_base_model(cfg.model)
    inject(model, cfg.lora.targets, gating=False)
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
) -> dict:
    """Train ``params`` (the factors behind ``lora_fn()``) on ``examples``; resumable from ``folder``."""
    if not examples:
        raise ValueError("no training examples for this task")
    model, pad = ctx.model, ctx.tokenizer.pad_token_id
    tcfg = replace(ctx.cfg.train, seed=seed, steps=steps or ctx.cfg.train.steps)

    def make_batch(indices: list[int]) -> dict:
        batch = pad_batch([(examples[i].input_ids, examples[i].labels) for i in indices], pad)
        return {k: v.to(model.device) for k, v in batch.items()}

    def loss_fn(batch: dict, step: int) -> Tensor:
        with conditioned(model, lora=lora_fn()):
            loss = model(**batch).loss
        return loss + extra_loss() if extra_loss is not None else loss

    trainer = Trainer(params, loss_fn, make_batch, len(examples), tcfg, folder, desc=folder.name)
    trainer.train(resume=True)
    return {"steps": trainer.step, "examples": len(examples)}


def bank_params(bank: AdapterBank) -> dict[str, torch.nn.Parameter]:
    return dict(bank.named_parameters())


def clear_checkpoints(folder: Path) -> None:
    """Drop a finished task's optimiser checkpoints (its adapter folder is the artefact)."""
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Adapter files: one PEFT folder per task, never rewritten


class AdapterStore:
    """``adapters/NNN-<task>/``: one PEFT LoRA folder per task, written once, plus ``manifest.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, index: int, name: str) -> Path:
        return self.root / f"{index:03d}-{safe_name(name, 'task name')}"

    def has(self, index: int, name: str) -> bool:
        return (self.folder(index, name) / "adapter_model.safetensors").exists()

    def write(self, index: int, task: Task, model: PreTrainedModel, lora: LoraConditioning) -> Path:
        """Export ``lora`` for ``task`` once; refuse to overwrite an existing adapter."""
        target = self.folder(index, task.name)
        if self.has(index, task.name):
            raise ValueError(f"adapter {target} already exists: adapters are never rewritten")
        meta = {"index": index, "task": task.name, "instruction": task.instruction, "data_hash": data_hash(task),
                "n_train": len(task.instances), "date": datetime.now(UTC).isoformat(timespec="seconds")}

        def write(tmp: Path) -> None:
            export_peft(model, lora, tmp)
            (tmp / "task.json").write_text(json.dumps(meta, indent=2) + "\n")

        write_dir_atomic(target, write)
        self.write_manifest()
        return target

    def entries(self) -> list[dict]:
        """The ``task.json`` of every adapter folder, in index order."""
        found = sorted(self.root.glob("[0-9][0-9][0-9]-*/task.json"))
        return [{**json.loads(p.read_text()), "path": p.parent.name, "bytes": folder_bytes(p.parent)} for p in found]

    def write_manifest(self) -> None:
        save_json({"adapters": self.entries()}, self.root / MANIFEST)

    def load(self, index: int, name: str) -> LoraConditioning:
        return load_peft(self.folder(index, name))

    def bank(self, model: PreTrainedModel, names: Sequence[str]) -> AdapterBank:
        """All adapters of ``names`` (in order) as one bank, for per-example routing."""
        from hyperadapt.core import bank_from_peft

        return bank_from_peft(model, [self.folder(i, n) for i, n in enumerate(names)])


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


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
    info: dict = field(default_factory=dict)

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager:
        routes = self.route_fn(queries)
        if self.bank is None or all(r == BASE for r in routes):
            return contextlib.nullcontext()
        return conditioned(self.model, lora=self.bank.conditioning(routes))


@dataclass
class EvalPlan:
    """How a learner answers after a task: its bank, the adapter of each query, and a cache key per adapter
    (``None``: the adapter changes from row to row, so its answers are not cached)."""

    bank: AdapterBank | None
    routes: list[int]
    keys: list[str | None]
    stats: dict = field(default_factory=dict)


class AnswerCache:
    """Answers keyed by (task, instance id, prompt hash, adapter key), persisted in ``answers.json``.

    The prompt hash (of the rendered, budget-cut prompt) keeps answers to one prompt from being served for
    another: a run with another prompt budget or setting never reuses them. The adapter key is last, so
    ``key.endswith("\tbase")`` picks the base model's answers.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, str] = load_json(path, "answer cache") if path.exists() else {}

    @staticmethod
    def key(query: Query, adapter: str) -> str:
        digest = hashlib.sha1(query.prompt.encode("utf-8")).hexdigest()[:16]
        return f"{query.task.name}\t{query.instance.id}\t{digest}\t{adapter}"

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data))


def answer_plan(ctx: StreamContext, name: str, queries: list[Query], plan: EvalPlan, cache: AnswerCache) -> list[str]:
    """The answer to each query under ``plan``; cached answers are reused, the rest generated in batches."""
    keys = [None if k is None else cache.key(q, k) for q, k in zip(queries, plan.keys, strict=True)]
    todo = [i for i, k in enumerate(keys) if k is None or k not in cache.data]
    route_of = {id(queries[i]): plan.routes[i] for i in todo}
    method = BankMethod(name, ctx.model, ctx.tokenizer, plan.bank, lambda qs: [route_of[id(q)] for q in qs],
                        ctx.cfg.setting)
    fresh = answer(method, [queries[i] for i in todo], eval_config(ctx), desc=name)
    out = [cache.data.get(k) if k is not None else None for k in keys]
    for i in todo:
        out[i] = fresh[id(queries[i])]
        if keys[i] is not None:
            cache.data[keys[i]] = out[i]
    return out


def score_tasks(queries: list[Query], answers: list[str]) -> dict[str, dict]:
    """Per task: ``rougeL``, ``em`` and ``n``."""
    by_task: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_task.setdefault(q.task.name, []).append(i)
    return {name: score_predictions([answers[i] for i in idx], [list(queries[i].instance.outputs) for i in idx])
            for name, idx in by_task.items()}


def eval_config(ctx: StreamContext) -> EvalConfig:
    """The harness settings of the stream's evaluation (``cfg.eval``)."""
    e = ctx.cfg.eval
    return EvalConfig(setting=ctx.cfg.setting, limit=e.limit, batch_size=e.batch_size,
                      max_new_tokens=e.max_new_tokens, max_prompt_tokens=e.max_prompt_tokens)


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


# ---------------------------------------------------------------------------------------------------------
# One frozen adapter per task (SwitchCIT's adapters; with the oracle task id, the switch's upper bound)


def train_and_store(
    ctx: StreamContext, store: AdapterStore, k: int, examples: list[Encoded], init: LoraConditioning | None = None
) -> dict:
    """Train task ``k``'s adapter on ``examples`` (from ``init``, else fresh) and export it, unless its
    folder already exists (resume)."""
    task = ctx.tasks[k]
    if store.has(k, task.name):
        return {"reused": True}
    bank = ctx.new_bank(ctx.cfg.seed + k)
    if init is not None:
        bank.set_adapter(0, init)
    folder = ctx.run_dir / "train" / f"{k:03d}-{safe_name(task.name, 'task name')}"
    stats = fit_lora(ctx, examples, bank_params(bank), lambda: bank.adapter(0), folder, ctx.cfg.train.seed + k)
    store.write(k, task.train, ctx.model, bank.adapter(0))
    clear_checkpoints(folder)
    return stats


class PerTaskLearner:
    """A fresh LoRA per task, trained when its task arrives and never touched again; routed by the true
    task id (the oracle; ``SwitchLearner`` routes with the switch instead)."""

    name = "oracle"
    single_stage = False

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.store = AdapterStore(ctx.run_dir / "adapters")
        self._bank: tuple[int, AdapterBank] | None = None

    def learn(self, k: int) -> dict:
        """Train task ``k``'s adapter and export it, unless its folder already exists (resume)."""
        return train_and_store(self.ctx, self.store, k, self.ctx.encoded(k))

    def bank(self, k: int) -> AdapterBank:
        """Adapters 0..k as one bank (rebuilt only when a task was added)."""
        if self._bank is None or self._bank[0] != k:
            self._bank = (k, self.store.bank(self.ctx.model, self.ctx.names[: k + 1]))
        return self._bank[1]

    def routes(self, k: int, queries: list[Query]) -> tuple[list[int], dict]:
        index = {n: i for i, n in enumerate(self.ctx.names[: k + 1])}
        return [index.get(q.task.name, BASE) for q in queries], {}

    def plan(self, k: int, queries: list[Query]) -> EvalPlan:
        routes, stats = self.routes(k, queries)
        names = self.ctx.names
        keys: list[str | None] = ["base" if r == BASE else f"adapter:{names[r]}" for r in routes]
        return EvalPlan(self.bank(k), routes, keys, stats)

    def report(self) -> dict:
        return {"storage": {"per_task_bytes": {e["task"]: e["bytes"] for e in self.store.entries()}}}

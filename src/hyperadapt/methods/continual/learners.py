"""The continual learners, all on the one stream runner and the same per-task budget, and the table of
them by name.

- ``oracle``: a fresh LoRA per task, frozen once trained, routed by the true task id (SwitchCIT's adapters
  with a perfect switch: the switch's upper bound);
- ``sequential``: one LoRA finetuned on task after task (the forgetting SwitchCIT removes);
- ``replay``: sequential, with a share (1 %) of every earlier task's training data mixed in (rehearsal);
- ``olora``: a new LoRA per task kept orthogonal to the earlier ones, all summed (O-LoRA, Wang et al. 2023);
- ``multitask``: one LoRA on all tasks at once, the budget of all tasks (the upper bound, one stage).

SwitchCIT (``methods/switch``) is the oracle's adapters routed by a learned switch; that package adds its
learner to :data:`LEARNERS` with :func:`register_learner`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from hyperadapt.core import BASE, AdapterBank, LoraConditioning
from hyperadapt.data.prompts import Encoded
from hyperadapt.data.schema import Task
from hyperadapt.errors import UserError
from hyperadapt.evaluation.harness import Query
from hyperadapt.io import safe_name
from hyperadapt.methods.continual.store import AdapterStore
from hyperadapt.methods.continual.stream import (
    ADAPTERS,
    EvalPlan,
    StreamContext,
    bank_params,
    clear_checkpoints,
    fit_lora,
)


class StreamLearner(Protocol):
    """What the runner drives: ``learn(k)`` trains on task k and writes its files (idempotently, so a run
    resumes), ``plan(k, queries)`` says how the learner answers after task k, ``report()`` adds to the
    results."""

    name: str
    single_stage: bool  # True: one stage after the whole stream (the multi-task upper bound)
    per_task_adapters: bool  # True: one fresh LoRA per task, which every such learner trains alike

    def __init__(self, ctx: StreamContext) -> None: ...

    def learn(self, k: int) -> dict[str, Any]: ...

    def plan(self, k: int, queries: list[Query]) -> EvalPlan: ...

    def report(self) -> dict[str, Any]: ...


# ---------------------------------------------------------------------------------------------------------
# One frozen adapter per task (SwitchCIT's adapters; with the true task id, the oracle)


def train_and_store(
    ctx: StreamContext, store: AdapterStore, k: int, examples: list[Encoded], init: LoraConditioning | None = None
) -> dict[str, Any]:
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


class LearnerBase:
    """What every learner here has: the stream's context, the run's adapter store, and the storage report."""

    name: str
    single_stage = False
    per_task_adapters = False

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.store = AdapterStore(ctx.run_dir / ADAPTERS, ctx.cfg.lora.storage_dtype)

    def report(self) -> dict[str, Any]:
        return {"storage": {"per_task_bytes": {e["task"]: e["bytes"] for e in self.store.entries()}}}


class PerTaskLearner(LearnerBase):
    """A fresh LoRA per task, trained when its task arrives and never touched again; routed by the true
    task id (the oracle; ``SwitchLearner`` routes with the switch instead)."""

    name = "oracle"
    per_task_adapters = True

    def __init__(self, ctx: StreamContext) -> None:
        super().__init__(ctx)
        self._bank: tuple[int, AdapterBank] | None = None

    def learn(self, k: int) -> dict[str, Any]:
        """Train task ``k``'s adapter and export it, unless its folder already exists (resume)."""
        return train_and_store(self.ctx, self.store, k, self.ctx.encoded(k))

    def bank(self, k: int) -> AdapterBank:
        """Adapters 0..k as one bank (rebuilt only when a task was added)."""
        if self._bank is None or self._bank[0] != k:
            self._bank = (k, self.store.bank(self.ctx.model, self.ctx.names[: k + 1]))
        return self._bank[1]

    def routes(self, k: int, queries: list[Query]) -> tuple[list[int], dict[str, Any]]:
        index = {n: i for i, n in enumerate(self.ctx.names[: k + 1])}
        return [index.get(q.task.name, BASE) for q in queries], {}

    def plan(self, k: int, queries: list[Query]) -> EvalPlan:
        routes, stats = self.routes(k, queries)
        names = self.ctx.names
        keys: list[str | None] = ["base" if r == BASE else f"adapter:{names[r]}" for r in routes]
        return EvalPlan(self.bank(k), routes, keys, stats)


def bank_of(lora: LoraConditioning, model: torch.nn.Module) -> AdapterBank:
    """A one-adapter bank holding ``lora`` (any rank), to run through the per-example path."""
    shapes = {name: (a.shape[2], b.shape[1]) for name, (a, b) in lora.factors.items()}
    rank = max(a.shape[1] for a, _ in lora.factors.values())
    bank = AdapterBank(shapes, 1, rank, alpha=rank * float(lora.scale), device=next(model.parameters()).device)
    bank.set_adapter(0, lora)
    return bank


def concat(loras: list[LoraConditioning]) -> LoraConditioning:
    """The sum of several single adapters as one adapter of the summed rank (scales folded into B)."""
    factors = {}
    for name in loras[-1].factors:
        a = torch.cat([lora.factors[name][0] for lora in loras], dim=1)  # [1, Σr, in]
        b = torch.cat([lora.factors[name][1] * float(lora.scale) for lora in loras], dim=2)  # [1, out, Σr]
        factors[name] = (a, b)
    return LoraConditioning(factors, 1.0)


class SequentialLearner(LearnerBase):
    """One LoRA finetuned on each task in turn (sequential finetuning); a snapshot is kept after each task."""

    name = "sequential"

    def examples(self, k: int) -> list[Encoded]:
        return self.ctx.encoded(k)

    def learn(self, k: int) -> dict[str, Any]:
        init = self.store.load(k - 1, self.ctx.names[k - 1]) if k else None
        return train_and_store(self.ctx, self.store, k, self.examples(k), init)

    @staticmethod
    def final(store: AdapterStore, names: list[str], k: int) -> LoraConditioning:
        """The one LoRA the model runs with after task ``k`` (``names``: the stream's tasks), from the store."""
        return store.load(k, names[k])

    def current(self, k: int) -> LoraConditioning:
        return self.final(self.store, self.ctx.names, k)

    def plan(self, k: int, queries: list[Query]) -> EvalPlan:
        return EvalPlan(bank_of(self.current(k), self.ctx.model), [0] * len(queries), [None] * len(queries))


class ReplayLearner(SequentialLearner):
    """Sequential finetuning with ``baselines.replay_fraction`` of each earlier task's data mixed in (rehearsal)."""

    name = "replay"

    def examples(self, k: int) -> list[Encoded]:
        ctx, share = self.ctx, self.ctx.cfg.baselines.replay_fraction
        out = list(ctx.encoded(k))
        for i in range(k):
            earlier = ctx.encoded(i)
            out += random.Random(f"{ctx.cfg.seed}:{k}:{i}").sample(earlier, max(1, math.ceil(share * len(earlier))))
        return out


class OLoraLearner(SequentialLearner):
    """O-LoRA (Wang et al. 2023): a new LoRA per task whose A rows stay orthogonal to the earlier tasks'
    (loss λ Σ ||A_new A_oldᵀ||²); the model runs with the sum of all of them."""

    name = "olora"

    def pieces(self, k: int) -> list[LoraConditioning]:
        return [self.store.load(i, self.ctx.names[i]) for i in range(k)]

    @staticmethod
    def final(store: AdapterStore, names: list[str], k: int) -> LoraConditioning:
        return concat([store.load(i, names[i]) for i in range(k + 1)])

    def learn(self, k: int) -> dict[str, Any]:
        ctx, task = self.ctx, self.ctx.tasks[k]
        if self.store.has(k, task.name):
            return {"reused": True}
        bank = ctx.new_bank(ctx.cfg.seed + k)
        old = self.pieces(k)
        folder = ctx.run_dir / "train" / f"{k:03d}-{safe_name(task.name, 'task name')}"
        extra = orthogonality_loss(bank, old, ctx.cfg.baselines.olora_lambda) if old else None
        stats = fit_lora(
            ctx,
            self.examples(k),
            bank_params(bank),
            lambda: concat([*old, bank.adapter(0)]),
            folder,
            ctx.cfg.train.seed + k,
            extra_loss=extra,
        )
        self.store.write(k, task.train, ctx.model, bank.adapter(0))
        clear_checkpoints(folder)
        return stats


def orthogonality_loss(bank: AdapterBank, old: list[LoraConditioning], weight: float) -> Callable[[], Tensor]:
    """λ Σ_modules ||A_new A_oldᵀ||²_F over the earlier tasks' A rows (O-LoRA, Wang et al. 2023)."""
    old_a = {
        name: torch.cat([lora.factors[name][0][0] for lora in old]).detach()  # [k r, in]
        for name in bank.module_names
    }

    def loss() -> Tensor:
        total: Tensor = sum(
            ((a[0] @ old_a[name].T) ** 2).sum() for name, a in zip(bank.module_names, bank.lora_A, strict=True)
        )  # a[0]: [r, in]
        return weight * total

    return loss


class MultitaskLearner(SequentialLearner):
    """One LoRA on every task of the stream at once, with the budget of all tasks (the upper bound)."""

    name = "multitask"
    single_stage = True

    def examples(self, k: int) -> list[Encoded]:
        return [e for i in range(k + 1) for e in self.ctx.encoded(i)]

    def learn(self, k: int) -> dict[str, Any]:
        ctx = self.ctx
        every = [t.train for t in ctx.tasks[: k + 1]]
        task = Task("all-tasks", "; ".join(t.instruction for t in every), [i for t in every for i in t.instances])
        if self.store.has(0, task.name):
            return {"reused": True}
        bank = ctx.new_bank(ctx.cfg.seed)
        folder = ctx.run_dir / "train" / "all-tasks"
        stats = fit_lora(
            ctx,
            self.examples(k),
            bank_params(bank),
            lambda: bank.adapter(0),
            folder,
            ctx.cfg.train.seed,
            steps=ctx.cfg.train.steps * (k + 1),
        )
        self.store.write(0, task, ctx.model, bank.adapter(0))
        clear_checkpoints(folder)
        return stats

    @staticmethod
    def final(store: AdapterStore, names: list[str], k: int) -> LoraConditioning:
        return store.load(0, "all-tasks")


# ---------------------------------------------------------------------------------------------------------
# The learners by name: what run_stream(method=...) takes and run.json's "method" records

LEARNERS: dict[str, type[StreamLearner]] = {
    "sequential": SequentialLearner,
    "replay": ReplayLearner,
    "olora": OLoraLearner,
    "multitask": MultitaskLearner,
    "oracle": PerTaskLearner,
}  # and "switchcit": methods/switch registers it (importing hyperadapt.methods imports that package)


def single_lora_methods() -> list[str]:
    """The continual methods whose stream ends with one LoRA for every input (sequential finetuning and its
    kin: what ``SequentialLearner.final`` returns), in ``LEARNERS`` order."""
    return list(single_lora_learners())


def single_lora_learners() -> dict[str, type[SequentialLearner]]:
    """The learner classes of :func:`single_lora_methods`, by name."""
    return {name: cls for name, cls in LEARNERS.items() if issubclass(cls, SequentialLearner)}


def register_learner(cls: type[StreamLearner]) -> type[StreamLearner]:
    """Add a learner class to :data:`LEARNERS` under its ``name`` (a class decorator for the method packages
    that build on this one)."""
    LEARNERS[cls.name] = cls
    return cls


def learner_class(method: str) -> type[StreamLearner]:
    """The learner class of continual method ``method`` (a ``ValueError`` naming the known ones otherwise)."""
    if method not in LEARNERS:
        raise UserError(f"unknown continual method {method!r}: use one of {', '.join(LEARNERS)}")
    return LEARNERS[method]

"""SwitchCIT: one frozen LoRA per task and a switch network that routes every input to its task's adapter
(Wu et al. 2024), with a calibrated reject option; plus the entry points the CLI calls.

``SwitchLearner`` registers itself as ``switchcit`` among the continual learners, so the continual runner
runs it: ``run_stream(cfg, run_dir, "switchcit")`` (``hyperadapt.methods.continual``).
``add_task(run_dir, train, test)`` adds one more task to a finished run without touching earlier adapters;
``load_switch(run_dir)`` is the harness method (``hyperadapt.methods.inputs.answer_inputs`` routes and answers
free-form inputs with it).
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.core import BASE, AdapterBank, conditioned, inject
from hyperadapt.core.rows import RowCondition, ServesAs, bank_row
from hyperadapt.data.loaders import load_jsonl, load_task_file
from hyperadapt.data.prompts import user_message
from hyperadapt.data.schema import Task, TaskDataError
from hyperadapt.encoders import CachedEncoder
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.evaluation.harness import Query
from hyperadapt.evaluation.metrics import auroc
from hyperadapt.io import load_tensors, safe_name, save_json, write_dir_atomic
from hyperadapt.methods.continual.learners import PerTaskLearner, learner_class, register_learner
from hyperadapt.methods.continual.runner import (
    check_run_dir,
    complete_stage,
    ensure_zero_shot,
    load_state,
    write_results,
)
from hyperadapt.methods.continual.store import AdapterStore, folder_bytes
from hyperadapt.methods.continual.stream import (
    ADAPTERS,
    StreamContext,
    StreamTask,
    added_folder,
    make_context,
    open_cache,
    test_queries,
    with_added_tasks,
)
from hyperadapt.methods.switch.config import RouterConfig, SwitchConfig
from hyperadapt.methods.switch.router import (
    FEATURES,
    LEGACY_ROUTER,
    RETENTION,
    RetentionBuffer,
    Routing,
    SwitchRouter,
    kept_inputs,
    make_router_encoder,
    save_switch,
    train_router,
)
from hyperadapt.runs import Run, RunDir

METHOD = "switchcit"


def router_texts(task: Task, setting: str, seed: int) -> list[str]:
    """The user text of every instance (instruction drawn among the task's wordings): what the switch reads."""
    rng = torch.Generator().manual_seed(seed)
    wordings = task.instructions
    picks = torch.randint(len(wordings), (len(task.instances),), generator=rng).tolist()
    return [
        user_message(wordings[p], i.input, setting, task.positive_examples)
        for p, i in zip(picks, task.instances, strict=True)
    ]


def query_text(query: Query, setting: str) -> str:
    """The user text of an evaluation query (what the switch reads)."""
    return user_message(query.task.instruction, query.instance.input, setting, query.task.positive_examples)


def calibration_source(cfg: SwitchConfig, task: StreamTask) -> str:
    """Where the switch's reject threshold takes ``task``'s calibration inputs from: ``dev`` (its dev split)
    or ``train`` (inputs held out of its training data), per ``router.calibrate_on`` (``auto``: dev when the
    task has a dev split, else train). Raises ``ValueError`` when ``dev`` is asked and the task has none."""
    has_dev = task.dev is not None and bool(task.dev.instances)
    if cfg.router.calibrate_on == "dev" and not has_dev:
        raise UserError(
            f"router.calibrate_on is 'dev' but task {task.name!r} has no dev split: use 'auto' "
            "(its training inputs then calibrate) or 'train'"
        )
    if cfg.router.calibrate_on == "auto":
        return "dev" if has_dev else "train"
    return cfg.router.calibrate_on


def retain_task(buffer: RetentionBuffer, cfg: SwitchConfig, task: StreamTask, k: int) -> tuple[int, str, list[str]]:
    """Add task ``k`` of the stream to ``buffer`` as the switch does after training its adapter; returns its
    label, where its calibration inputs came from (``dev`` or ``train``) and the training inputs whose
    features the reject score keeps (``router.reject_bank``)."""
    source = calibration_source(cfg, task)
    held = router_texts(task.dev, cfg.setting, cfg.seed + k) if source == "dev" and task.dev else None
    inputs = router_texts(task.train, cfg.setting, cfg.seed + k)
    label = buffer.add(task.name, inputs, cfg.router, cfg.seed, calibration=held)
    return label, source, kept_inputs(task.name, inputs, cfg.router, cfg.seed, held is None)


def reject_texts(cfg: SwitchConfig, tasks: list[StreamTask], unseen: list[Task]) -> tuple[list[str], list[str]]:
    """The inputs the reject option is judged on: held-out inputs of the seen tasks (their first ``eval.limit``
    test inputs, which neither train nor calibrate the switch) and the inputs of the ``unseen`` tasks."""
    seen = [
        user_message(t.test.instruction, i.input, cfg.setting, t.test.positive_examples)
        for t in tasks
        for i in t.test.head(cfg.eval.limit).instances
    ]
    return seen, [text for t in unseen for text in router_texts(t, cfg.setting, 0)]


def reject_stats(router: SwitchRouter, seen: Tensor, unseen: Tensor) -> dict[str, Any]:
    """How well ``router``'s reject score separates the features of held-out seen inputs ``seen`` [N, dim]
    (positives) from those of unseen tasks' inputs ``unseen`` [M, dim] (negatives; may be empty):
    ``reject_auroc`` (None without negatives) and the rejection rates at the calibrated threshold."""
    on_seen = router.route(seen)
    on_unseen = router.route(unseen) if len(unseen) else None
    return {
        "unseen_reject_rate": on_unseen.reject_rate if on_unseen else None,
        "reject_rate_seen": on_seen.reject_rate,
        "reject_auroc": auroc(on_seen.confidence, on_unseen.confidence) if on_unseen else None,
        "threshold": router.threshold,
        "task_thresholds": router.task_thresholds,
    }


@register_learner
class SwitchLearner(PerTaskLearner):
    """SwitchCIT (Wu et al. 2024): per-task adapters plus a switch retrained on a retention buffer after each task."""

    name = METHOD

    def __init__(self, ctx: StreamContext) -> None:
        super().__init__(ctx)
        if not isinstance(ctx.cfg, SwitchConfig):
            raise UserError(f"{METHOD} needs a SwitchCIT config (one with a router section), not a continual one")
        self.cfg = ctx.cfg
        self.encoder = make_router_encoder(self.cfg.router.encoder, ctx.model, ctx.tokenizer)
        self.router_dir = ctx.run_dir / "router"
        self.router: SwitchRouter | None = None

    def learn(self, k: int) -> dict[str, Any]:
        stats = super().learn(k)
        cfg, task = self.cfg, self.ctx.tasks[k]
        buffer, feats, calib, bank = self.retained(k)
        label, source, bank_texts = retain_task(buffer, cfg, task, k)
        feats = torch.cat([feats, self.encoder.encode(buffer.texts[len(feats) :])])  # [N, dim]
        calib = torch.cat([calib, self.encoder.encode(buffer.calib_texts[len(calib) :])])
        if cfg.router.reject_bank:
            new = self.encoder.encode(bank_texts)
            bank = torch.cat([bank[0], new]), torch.cat([bank[1], torch.full((len(new),), label)])  # [K, dim], [K]
        router, router_stats = train_router(
            buffer, feats, calib, cfg.router, cfg.seed + k, bank if cfg.router.reject_bank else None
        )
        self.router = router

        write_dir_atomic(self.router_dir, lambda tmp: save_switch(tmp, router, buffer, feats, calib))
        return {**stats, "router": {**router_stats, "calibrated_on": source}, "retained": buffer.count(label)}

    def retained(self, k: int) -> tuple[RetentionBuffer, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The buffer of tasks 0..k-1, the stored features of its inputs and calibration inputs, and the kept
        features of the reject score with their labels (``router.reject_bank``, kept once, as the saved
        switch's keys; empty without), so that a resumed run sees the very same features as an uninterrupted
        one."""
        dim = self.encoder.dim
        if not k:
            return (
                RetentionBuffer(),
                torch.zeros(0, dim),
                torch.zeros(0, dim),
                (torch.zeros(0, dim), torch.zeros(0, dtype=torch.long)),
            )
        buffer = RetentionBuffer.load(self.router_dir / RETENTION)
        buffer.keep_first(k)
        stored = load_tensors(self.router_dir / FEATURES, "stored features")
        bank = torch.zeros(0, dim), torch.zeros(0, dtype=torch.long)
        if self.cfg.router.reject_bank:
            saved = SwitchRouter.load(self.router_dir)
            bank = saved.keys[saved.key_labels < k], saved.key_labels[saved.key_labels < k]
        texts, calib = stored["texts"].float(), stored["calib"].float()
        return buffer, texts[: len(buffer.texts)], calib[: len(buffer.calib_texts)], bank

    def switch(self) -> SwitchRouter:
        if self.router is None:
            self.router = SwitchRouter.load(self.router_dir)
        return self.router

    def routes(self, k: int, queries: list[Query]) -> tuple[list[int], dict[str, Any]]:
        texts = [query_text(q, self.ctx.cfg.setting) for q in queries]
        routing = self.switch().route(self.encoder.encode(texts))
        return routing.adapter, routing_stats(self.ctx.names, k, queries, routing)

    def report(self) -> dict[str, Any]:
        out = super().report()
        out["storage"].update(router_bytes=folder_bytes(self.router_dir))
        out["switch"] = {**self.reject_quality(), **self.overhead()}
        return out

    def reject_quality(self) -> dict[str, Any]:
        """How well the final switch's confidence separates inputs of tasks it never saw (``cfg.unseen``) from
        held-out inputs of the seen tasks (their first ``eval.limit`` test inputs, which neither train nor
        calibrate it): ``reject_auroc`` (seen inputs as positives; None without unseen inputs), and the
        rejection rates on both at the calibrated threshold (``reject_rate_seen``, ``unseen_reject_rate``)."""
        cfg = self.cfg
        seen, unseen = reject_texts(cfg, self.ctx.tasks, self.ctx.unseen)
        quality = reject_stats(self.switch(), self.encoder.encode(seen), self.encoder.encode(unseen))
        sources = sorted({calibration_source(cfg, t) for t in self.ctx.tasks})
        return {
            **quality,
            "n_seen": len(seen),
            "n_unseen": len(unseen),
            "n_unseen_tasks": len(self.ctx.unseen),
            "calibrated_on": "+".join(sources),
            "rule": reject_rule(cfg.router),
        }

    def overhead(self, n: int = 64) -> dict[str, float]:
        """Routing cost per example (encoder + switch), measured on uncached inputs.

        One warm-up call on other texts comes first, so that a freshly loaded encoder's first-call
        set-up (a re-read of a finished run) is not timed as routing.
        """
        tasks = [t.test for t in self.ctx.tasks]
        texts = [f"{text} " for t in tasks for text in router_texts(t, self.ctx.cfg.setting, 1)]
        texts = random.Random(0).sample(texts, min(n, len(texts)))
        self.switch().route(self.encoder.encode([f"{text}  " for text in texts[:4]]))
        t0 = time.perf_counter()
        self.switch().route(self.encoder.encode(texts))
        return {"routing_ms_per_example": 1000 * (time.perf_counter() - t0) / max(1, len(texts))}


def reject_rule(cfg: RouterConfig) -> str:
    """The reject rule of a router config in one name: ``sentence/mahalanobis/global/bank200/calib100/q0.02/fp16``
    for the defaults (no ``/fp16`` where the switch keeps its features in float32)."""
    score = f"knn{cfg.knn_k}" if cfg.confidence == "knn" else cfg.confidence
    return (
        f"{cfg.encoder}/{score}/{cfg.calibrate_per}/bank{cfg.reject_bank}/calib{cfg.calibration}/"
        f"q{cfg.reject_quantile:g}" + ("/fp16" if cfg.feature_dtype == "float16" else "")
    )


def routing_stats(names: list[str], k: int, queries: list[Query], routing: Routing) -> dict[str, Any]:
    """Switch accuracy per seen task, reject rate on seen tasks and on tasks not trained yet."""
    index = {n: i for i, n in enumerate(names)}
    per_task: dict[str, list[bool]] = {}
    seen_rejects, future_rejects = [], []
    for q, choice, rejected in zip(queries, routing.choice, routing.rejected, strict=True):
        i = index[q.task.name]
        if i <= k:
            per_task.setdefault(q.task.name, []).append(choice == i)
            seen_rejects.append(rejected)
        else:
            future_rejects.append(rejected)
    accuracy = {n: 100 * sum(v) / len(v) for n, v in per_task.items()}
    return {
        "switch_accuracy": accuracy,
        "switch_accuracy_mean": sum(accuracy.values()) / len(accuracy),
        "reject_rate_seen": _rate(seen_rejects),
        "reject_rate_future": _rate(future_rejects),
    }


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


# ---------------------------------------------------------------------------------------------------------
# Adding a task to a finished run


# What a continual run saved before ``lora.storage_dtype`` existed stored: float32 adapters.
LEGACY_LORA = {"storage_dtype": "float32"}


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A continual run's saved config with the router and LoRA keys it predates at the values that run used
    (``LEGACY_ROUTER``, ``LEGACY_LORA``), not today's defaults (the registry's ``upgrade_config`` hook, read by
    ``Run.config``)."""
    upgraded = dict(config)
    if isinstance(config.get("router"), dict):
        upgraded["router"] = {**LEGACY_ROUTER, **config["router"]}
    if isinstance(config.get("lora"), dict):
        upgraded["lora"] = {**LEGACY_LORA, **config["lora"]}
    return upgraded


def load_run_context(
    run_dir: str | Path, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> tuple[Run, StreamContext]:
    """The run and the context of a continual run, with the tasks added after the stream."""
    run = check_run_dir(run_dir)
    cfg = run.config
    return run, with_added_tasks(make_context(cfg, run_dir, model_and_tokenizer))


def add_task(
    run_dir: str | Path,
    train: Task,
    test: Task | None = None,
    model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None,
) -> dict[str, Any]:
    """Add one more task to a finished SwitchCIT (or oracle) run: train its adapter, retrain the switch,
    and add a row to the accuracy matrix. Earlier adapters are never rewritten.

    Without ``test``, the last tenth of ``train``'s instances is held out to judge it.
    """
    run = check_run_dir(run_dir)
    if not learner_class(run.method).per_task_adapters:
        raise UserError(
            f"tasks can be added to a run with one adapter per task ({METHOD} or oracle); {run_dir} is "
            f"a {run.method!r} run"
        )
    safe_name(train.name, "task name")
    train, test = _split_new_task(train, test)
    existing = run.tasks
    if train.name in existing:
        raise UserError(f"task {train.name!r} already exists in {run_dir}: give the new task another name")
    with RunDir(run_dir).lock():  # not while another process runs or extends this stream
        state = load_state(run_dir)
        if state["completed"] != len(existing):
            raise UserError(
                f"{run_dir} has not finished its stream ({state['completed']}/{len(existing)} tasks): "
                f"resume it first: `{run.resume_command()}`"
            )
        ctx = _stream_context(run, model_and_tokenizer)  # the model and the stream's data, before anything is written
        _save_added(run, train, test)
        ctx = with_added_tasks(ctx)
        learner = learner_class(run.method)(ctx)
        cache = open_cache(ctx)
        queries = test_queries(ctx)
        ensure_zero_shot(ctx, state, queries, cache)
        k = len(ctx.tasks) - 1
        complete_stage(learner, ctx, k, queries, cache, state)
        return write_results(ctx, learner, state)


def _stream_context(run: Run, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None) -> StreamContext:
    """The run's stream context (its base model, checked, and its stream's tasks). A stream given by a relative
    path is read from the current folder: when it is not found here, the error says so (``FileNotFoundError``)."""
    cfg = run.config
    given = run.model_and_tokenizer(model_and_tokenizer)
    relative = [
        spec
        for spec in (cfg.stream, cfg.unseen)
        if ":" in spec and not Path(spec.partition(":")[2].partition("#")[0]).expanduser().is_absolute()
    ]
    where = (
        f"{run.path} reads its data from {' and '.join(map(repr, relative))}, a path relative to the folder it was "
        f"trained from, not {Path.cwd()}: run this command from that folder (nothing was changed)"
    )
    try:
        ctx = make_context(cfg, run.path, given)
    except FileNotFoundError as err:
        if not relative:
            raise
        raise InputNotFound(f"{err}: {where}") from err
    found, recorded = [task.name for task in ctx.tasks], run.record.get("tasks")
    if isinstance(recorded, list) and found != recorded:  # another stream at the same relative path
        shown = ", ".join(found[:4]) + (" ..." if len(found) > 4 else "")
        raise UserError(
            f"the stream read from {cfg.stream!r} here holds the tasks [{shown}], not the {len(recorded)} tasks "
            f"{run.path} was trained on: "
            + (where if relative else "give the run its own stream (nothing was changed)")
        )
    return with_added_tasks(ctx)


def _split_new_task(train: Task, test: Task | None) -> tuple[Task, Task]:
    if not train.instances:
        raise UserError(f"task {train.name!r} is empty: it has no training instances")
    if test is not None:
        if not test.instances:
            raise UserError(f"the test set of task {train.name!r} is empty")
        return train, test
    if len(train.instances) < 2:
        raise UserError(f"task {train.name!r} needs at least 2 instances (one to train, one to test) or a test set")
    cut = len(train.instances) - max(1, len(train.instances) // 10)
    return train.with_instances(train.instances[:cut]), train.with_instances(train.instances[cut:])


def task_record(task: Task) -> dict[str, Any]:
    """``task`` in the Super-NaturalInstructions schema (read back by ``load_task_file``)."""
    return {
        "Definition": task.instructions,
        "Categories": task.categories,
        "Positive Examples": [{"input": e.input, "output": e.output} for e in task.positive_examples],
        "Instances": [{"id": i.id, "input": i.input, "output": list(i.outputs)} for i in task.instances],
    }


def _save_added(run: Run, train: Task, test: Task) -> None:
    folder = added_folder(run.path, train.name)
    save_json(task_record(train), folder / "train.json")
    save_json(task_record(test), folder / "test.json")
    RunDir(run.path).update(added=[*run.record.get("added", []), train.name], status="running")


def load_task_spec(spec: str) -> tuple[Task, Task | None]:
    """A task to add, as (train, test; None: ``add_task`` holds out the last tenth): a folder with ``train.json``
    (+ ``test.json``), an SNI task file, ``jsonl:PATH`` or ``synthetic:NAME`` (a synthetic task).

    ``jsonl:PATH`` holds one task; a row's optional ``split`` field ``test`` makes it a test row, every other row
    (``split`` ``train`` or none) trains the task."""
    if spec.startswith("synthetic:"):
        return _synthetic_task(spec.partition(":")[2])
    if spec.startswith("jsonl:"):
        return _jsonl_task(spec.partition(":")[2])
    path = Path(spec)
    if path.is_dir():
        test = path / "test.json"
        return load_task_file(path / "train.json", path.name), (
            load_task_file(test, path.name) if test.exists() else None
        )
    if path.suffix == ".json":
        return load_task_file(path), None
    raise UserError(f"cannot read task {spec!r}: give a task folder, a .json task file, jsonl:PATH or synthetic:NAME")


def _jsonl_task(path: str) -> tuple[Task, Task | None]:
    """One task from JSONL rows: the rows with ``split: test`` judge it, all others train it."""
    tasks = load_jsonl(path)
    if len(tasks) != 1:
        raise UserError(
            f"{path} must hold exactly one task (one value of 'task'), found {len(tasks)}: "
            f"{', '.join(t.name for t in tasks[:5])}"
        )
    try:
        test = load_jsonl(path, "test")[0]
    except TaskDataError:  # no row has split 'test'
        return tasks[0], None
    held_out = set(test.instances)
    train = replace(tasks[0], instances=[i for i in tasks[0].instances if i not in held_out])
    return train, test


def _synthetic_task(name: str) -> tuple[Task, Task]:
    from hyperadapt.data.synthetic import synthetic_suite

    suite = synthetic_suite()
    names: set[str] = set()
    for train_split, test_split in (("train", "seen"), ("unseen_train", "unseen"), ("unseen_train", "unseen_type")):
        pairs = {t.name: t for t in suite[train_split]}, {t.name: t for t in suite[test_split]}
        if name in pairs[0] and name in pairs[1]:
            return pairs[0][name], pairs[1][name]
        names |= pairs[0].keys() & pairs[1].keys()
    raise UserError(f"no synthetic task named {name!r}: use one of {', '.join(sorted(names))}")


# ---------------------------------------------------------------------------------------------------------
# Serving: the harness method and generation


class SwitchMethod:
    """The harness method of a SwitchCIT run: each example of a batch is routed by the switch and runs with
    its task's adapter in one forward pass through the bank; rejected inputs are counted (Wu et al. 2024)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        bank: AdapterBank,
        router: SwitchRouter,
        encoder: CachedEncoder,
        tasks: list[str],
        setting: str = "def",
        info: dict[str, Any] | None = None,
    ) -> None:
        self.name, self.model, self.tokenizer, self.setting = METHOD, model, tokenizer, setting
        self.bank, self.router, self.encoder, self.tasks = bank, router, encoder, tasks
        self.info = info or {}
        self.routed = self.rejected = 0
        self.last_routing: Routing | None = None

    def route_texts(self, texts: list[str]) -> Routing:
        routing = self.router.route(self.encoder.encode(texts))
        self.last_routing = routing
        self.routed += len(texts)
        self.rejected += sum(routing.rejected)
        return routing

    def lora_context(self, adapters: list[int]) -> contextlib.AbstractContextManager[object]:
        if all(a == BASE for a in adapters):
            return contextlib.nullcontext()
        return conditioned(self.model, lora=self.bank.conditioning(adapters))

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager[object]:
        routing = self.route_texts([query_text(q, q.setting or self.setting) for q in queries])
        return self.lora_context(routing.adapter)

    def routes(self, texts: list[str]) -> list[str | None]:
        """The task each user turn is routed to, None where the switch rejects it (not counted in
        ``routed``/``rejected``: the answers' own routing was)."""
        routing = self.router.route(self.encoder.encode(texts))
        return [None if r else self.tasks[c] for c, r in zip(routing.choice, routing.rejected, strict=True)]

    # -- serving (hyperadapt.core.rows.Servable, "input")

    serves_as: ClassVar[ServesAs] = "input"

    @functools.cached_property
    def _rows(self) -> list[RowCondition]:
        return [bank_row(self.bank, i, route=task) for i, task in enumerate(self.tasks)]

    def serve_row(self, condition: str | None, text: str) -> RowCondition:
        """The adapter the switch picks for ``text`` (the whole user turn), or the base model when it rejects it."""
        adapter = self.route_texts([text]).adapter[0]
        self.encoder.clear_cache()  # the server holds no per-input state
        return RowCondition(route="rejected->base") if adapter == BASE else self._rows[adapter]


def load_switch(
    run: Run | str | Path, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> SwitchMethod:
    """The SwitchCIT method of a run (a :class:`~hyperadapt.runs.Run` or its folder), ready for ``evaluate``,
    ``generate`` or ``serve``, on the run's own base model."""
    run = check_run_dir(run)
    if run.method != METHOD:
        raise UserError(f"{run.path} is a {run.method!r} run, not a {METHOD} run")
    cfg = run.config
    model, tokenizer = run.model_and_tokenizer(model_and_tokenizer)
    inject(model, cfg.lora.target_modules, gating=False)
    names = run.tasks
    store = AdapterStore(run.path / ADAPTERS)
    if not all(store.has(i, n) for i, n in enumerate(names)):
        raise InputNotFound(f"{run.path} has not finished its stream: resume it first: `{run.resume_command()}`")
    router = SwitchRouter.load(run.path / "router")
    encoder = make_router_encoder(cfg.router.encoder, model, tokenizer)
    return SwitchMethod(
        model, tokenizer, store.bank(model, names), router, encoder, names, cfg.setting, info={"run": str(run.path)}
    )

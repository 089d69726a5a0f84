"""The one stream runner: train on task 1, judge every task, train on task 2, ... resumable after any task.

Every continual method (SwitchCIT and the baselines) is a learner (``learners.py``) with ``learn(k)``
(train on task k and write its files, idempotently) and ``plan(k, queries)`` (how it answers after task
k); the runner fills the accuracy matrix a[j][i] (score on task i after training through task j) and
writes the report. ``run_stream(cfg, run_dir, method)`` is the entry point.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any, Final, NotRequired, TypedDict, cast

from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.clock import Stopwatch
from hyperadapt.config import to_dict, upgrade_saved
from hyperadapt.core import BASE, inject
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.evaluation.harness import AnswerLog, Query
from hyperadapt.evaluation.metrics import continual_metrics
from hyperadapt.io import atomic_write_text, load_json, save_json
from hyperadapt.methods.continual.config import ContinualConfig
from hyperadapt.methods.continual.learners import (
    LEARNERS,
    StreamLearner,
    bank_of,
    learner_class,
    single_lora_learners,
)
from hyperadapt.methods.continual.store import AdapterStore
from hyperadapt.methods.continual.stream import (
    ADAPTERS,
    ANSWER_LOGS,
    ANSWERING,
    RUN_KIND,
    AnswerCache,
    BankMethod,
    EvalPlan,
    StreamContext,
    answer_plan,
    answering_log,
    make_context,
    open_cache,
    score_tasks,
    stage_fingerprint,
    stream_identity,
    test_queries,
    with_added_tasks,
)
from hyperadapt.report.tables import markdown_table
from hyperadapt.runs import (
    LOCK_FILE,
    RUN_FILE,
    Run,
    RunDir,
    RunRecord,
    continual_resume_command,
    is_run,
    new_record,
    newest_checkpoint,
    resumable,
    stopped_at,
)

STATE = "state.json"
RESULTS = "results.json"
LEARNED: Final = "learned"  # state key: the stage trained but not yet answered (its training statistics and seconds)
PROGRESS = "progress.md"  # while a stream runs: the matrix so far and the time left (results.md replaces it)
START_HINT = "hyperadapt continual --config CONFIG --method METHOD --out RUN"

Scores = dict[str, dict[str, float]]  # task -> ``rougeL``, ``em`` and ``n`` (``score_tasks``)


class StageRow(TypedDict):
    """One row of the accuracy matrix: what ``run_stage`` measured after training on task ``after``."""

    after: int
    task: str
    scores: Scores
    train: dict[str, Any]  # the learner's training statistics (``learn``)
    routing: dict[str, Any]  # how it routed the queries (``EvalPlan.stats``)
    seconds: dict[str, float]  # ``train`` and ``eval``


class Learned(TypedDict):
    """A stage trained but not yet answered: its training statistics and seconds."""

    after: int
    train: dict[str, Any]
    seconds: float


class StreamState(TypedDict):
    """``state.json``: the stages completed, the base model's scores and one row per completed stage."""

    completed: int
    zero_shot: Scores | None
    rows: list[StageRow]
    learned: NotRequired[Learned]  # LEARNED


def load_state(run_dir: str | Path) -> StreamState:
    """The ``state.json`` of the continual run ``run_dir``."""
    return cast(StreamState, load_json(Path(run_dir) / STATE, "run state"))  # JSON written by save_state


def check_run_dir(run: Run | str | Path) -> Run:
    """The continual run ``run`` (a :class:`~hyperadapt.runs.Run` or its folder), or a clear error."""
    if not isinstance(run, Run) and not is_run(run):
        raise InputNotFound(f"{run} is not a continual run directory (no {RUN_FILE}): start one with `{START_HINT}`")
    run = Run.of(run)
    if run.kind != RUN_KIND:
        raise UserError(f"{run.path} is not a continual run directory: its run record is for {run.method!r}")
    return run


def stream_extent(run_dir: str | Path, method: str) -> str | None:
    """How far the ``method`` continual run in ``run_dir`` got, in words ("3 of 5 tasks done, 1 added"); None
    when ``run_dir`` holds no such run, or another process runs it (``run_stream`` then says why it stops)."""
    try:
        run = check_run_dir(run_dir)
        state = Path(run_dir) / STATE
        done = load_json(state, "run state")["completed"] if state.exists() else 0
    except (ValueError, KeyError, TypeError, FileNotFoundError):
        return None
    if run.method != method or RunDir(run_dir).owner() is not None:
        return None
    added = len(run.record.get("added", []))
    return f"{done} of {len(run.tasks)} tasks done" + (f", {added} added" if added else "")


def stream_stopped_at(run_dir: str | Path, method: str) -> str:
    """Where a stream stopped early stands, in words: how far it got (:func:`stream_extent`) and how much of
    the task in progress was saved (its checkpoint, or the answers it had logged)."""
    extent = stream_extent(run_dir, method)
    if extent is None:
        return stopped_at(run_dir)
    checkpoint = newest_checkpoint(run_dir)
    logged = sum(
        max(0, len(f.read_text(encoding="utf-8").splitlines()) - 1) for f in (Path(run_dir) / ANSWERING).glob("*.jsonl")
    )
    now = (
        f"its last checkpoint is {checkpoint}"
        if checkpoint
        else f"{logged} of its answers are logged"
        if logged
        else "nothing of it saved yet"
    )
    return f"{extent}; the task in progress: {now}"


def start_run(
    ctx: StreamContext, method: str, resume: bool, seed_from: Path | None = None, shareable: Collection[str] = ()
) -> StreamState:
    """The saved state to continue from (``resume``), or a fresh run directory (seeded from ``seed_from``)."""
    run_dir = ctx.run_dir
    if is_run(run_dir):
        run = check_run_dir(run_dir)
        if run.method != method:
            raise UserError(f"{run_dir} holds a {run.method!r} run, not {method!r}: use another directory")
        if resume and (run_dir / STATE).exists():
            saved = run.entry.upgrade_config(run.config_dict)  # keys the run predates at the values it used
            differ = [k for k in config_differences(saved, to_dict(ctx.cfg)) if not resumable(k)]
            if differ:
                resume_it = continual_resume_command(method, run_dir)
                raise UserError(
                    f"{run_dir} was started with another config (it differs in {', '.join(differ)}): "
                    f"resume it with its own config (`{resume_it}`), or start over with --no-resume "
                    "(which deletes it) or another --out"
                )
            RunDir(run_dir).update(status="running")
            return load_state(run_dir)
        for item in run_dir.iterdir():  # start over, keeping this process's lock
            if item.name != LOCK_FILE:
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    elif run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise UserError(f"{run_dir} exists and is not a continual run directory: choose an empty or new one")
    record = new_record(RUN_KIND, method, to_dict(ctx.cfg), ctx.model, tasks=ctx.names, added=[])
    RunDir(run_dir).write(record)
    if seed_from is not None:
        seed_run(Path(seed_from), run_dir, record, shareable)
    return {"completed": 0, "zero_shot": None, "rows": []}


def load_final_adapter(
    run: Run | str | Path, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> BankMethod:
    """The LoRA a finished sequential, replay, O-LoRA or multi-task stream ends with, as a harness method
    that answers every input with it (a ``BankMethod`` of one adapter): what ``hyperadapt eval --run``
    evaluates on any task set. ``FileNotFoundError`` for an unfinished stream (with the command that resumes
    it), ``ValueError`` for another kind of run (SwitchCIT loads with ``load_switch``; the oracle needs each
    input's true task) or a record whose config lacks ``lora.target_modules`` or ``setting``."""
    run = check_run_dir(run)
    learners = single_lora_learners()
    if run.method not in learners:
        raise UserError(
            f"{run.path} is a {run.method!r} run: only a stream that ends with one LoRA "
            f"({', '.join(learners)}) loads as one adapter"
        )
    cls = learners[run.method]
    if not (run.path / RESULTS).exists():
        raise InputNotFound(f"{run.path} has not finished its stream: resume it first: `{run.resume_command()}`")
    cfg = run.config_dict
    lora = cfg.get("lora")
    if (
        not isinstance(lora, dict)
        or not isinstance(lora.get("target_modules"), list)
        or not isinstance(cfg.get("setting"), str)
    ):
        raise UserError(
            f"run file {run.path / RUN_FILE} is damaged: its config needs lora.target_modules (a list) and "
            "setting (a text), as the stream was run with"
        )
    model, tokenizer = run.model_and_tokenizer(model_and_tokenizer)
    inject(model, lora["target_modules"], gating=False)
    names = run.tasks
    lora = cls.final(AdapterStore(run.path / ADAPTERS), names, len(names) - 1)
    return BankMethod(
        run.method,
        model,
        tokenizer,
        bank_of(lora, model),
        lambda queries: [0] * len(queries),
        cfg["setting"],
        info={"run": str(run.path), "tasks": names},
    )


PEFT_DTYPES = ("bfloat16", "float32")


def export_task_adapter(run: Run | str | Path, task: str, out: str | Path, dtype: str = "bfloat16") -> Path:
    """The adapter the continual run ``run`` stores for ``task`` as a plain PEFT LoRA folder ``out`` (weights in
    ``dtype``: bfloat16 or float32), whatever the run stores it in (an int8 adapter is dequantised): the folder
    ``peft.PeftModel.from_pretrained`` and vLLM load. ``task`` is a task of the stream (SwitchCIT and the oracle
    keep its adapter, the sequential learners their snapshot after it) or the name of a stored adapter
    (``all-tasks`` for the multi-task bound): ``adapters/manifest.json`` lists them.

    Raises ``ValueError`` for a name the run stores no adapter for (naming those it does, or the command that
    resumes an unfinished run), a ``dtype`` not in :data:`PEFT_DTYPES` or an ``out`` that exists."""
    import torch

    from hyperadapt.core import dequantize_peft
    from hyperadapt.methods.continual.config import check_choice

    check_choice("--dtype", dtype, PEFT_DTYPES)
    run = check_run_dir(run)
    entries = AdapterStore(run.path / ADAPTERS).entries()
    found = [e for e in entries if e.get("task") == task]
    if not found:
        stored = ", ".join(repr(e.get("task")) for e in entries[:20]) + (" ..." if len(entries) > 20 else "")
        if task in run.tasks and not (run.path / RESULTS).exists():
            raise UserError(
                f"{run.path} has no adapter for {task!r} yet (stored: {stored or 'none'}): resume the run first: "
                f"`{run.resume_command()}`"
            )
        raise UserError(f"{run.path} stores no adapter named {task!r}; it stores: {stored or 'none'}")
    return dequantize_peft(run.path / ADAPTERS / found[-1]["path"], out, getattr(torch, dtype))


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The dotted keys in which two configs (as saved in ``run.json``) differ, compared as JSON (a key renamed
    since ``saved`` was written under its new name)."""
    saved, current = json.loads(json.dumps(upgrade_saved(saved, current))), json.loads(json.dumps(current))
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{sub}" for sub in config_differences(a, b)]
        elif a != b:
            out.append(key)
    return out


SAME_ANSWERS = ("model", "stream", "n_tasks", "setting", "eval", "seed")  # what the base model's answers depend on


def seed_run(source: Path, run_dir: Path, run: RunRecord, shareable: Collection[str]) -> None:
    """Start ``run_dir`` (whose ``run.json`` is ``run``) with the base model's cached answers of the run
    ``source``; when both methods are in ``shareable`` (learners that train one fresh LoRA per task) and the
    configs are equal, also with its adapters and their answers, which this run would train the same."""
    theirs = check_run_dir(source)
    differ = [k for k in SAME_ANSWERS if theirs.config_dict.get(k) != run["config"].get(k)]
    if differ:
        raise UserError(f"cannot seed from {source}: its config differs in {', '.join(differ)}")
    share_adapters = {run["method"], theirs.method} <= set(shareable) and not config_differences(
        theirs.entry.upgrade_config(theirs.config_dict), run["config"]
    )
    answers = AnswerCache.read(source)
    kept = {k: v for k, v in answers.items() if share_adapters or k.endswith("\tbase")}
    if (source / AnswerCache.FILE).exists():  # the same evaluation settings (SAME_ANSWERS) and header
        header = AnswerLog.read(source / AnswerCache.FILE)[0]
        AnswerLog.write_answers(run_dir / AnswerCache.FILE, header["fingerprint"], header["identity"], kept)
    else:
        save_json(kept, run_dir / AnswerCache.OLD_FILE)
    if share_adapters and (source / ADAPTERS).is_dir():
        shutil.copytree(source / ADAPTERS, run_dir / ADAPTERS)


def save_state(ctx: StreamContext, state: StreamState, cache: AnswerCache) -> None:
    """Save the answer cache and the state; the answer log of the stage just saved is no longer needed."""
    cache.save()
    save_json(state, ctx.run_dir / STATE)
    shutil.rmtree(ctx.run_dir / ANSWERING, ignore_errors=True)


def run_learner(
    learner: StreamLearner,
    ctx: StreamContext,
    resume: bool = True,
    stop_after: int | None = None,
    seed_from: Path | None = None,
    shareable: Collection[str] = (),
) -> dict[str, Any]:
    """Run the stream (or continue it); returns the results, or the state when stopped after ``stop_after`` tasks.
    A fresh run may start from another run's cached answers (``seed_from``, see ``seed_run``)."""
    state = start_run(ctx, learner.name, resume, seed_from, shareable)
    with_added_tasks(ctx)  # a resumed run goes on with the tasks ``continual add`` gave it, as the stream's own
    cache = open_cache(ctx)
    queries = test_queries(ctx)
    ensure_zero_shot(ctx, state, queries, cache)
    stages = [len(ctx.tasks) - 1] if learner.single_stage else list(range(len(ctx.tasks)))
    for k in stages:
        if k < state["completed"]:
            continue
        complete_stage(learner, ctx, k, queries, cache, state)
        if k != stages[-1]:
            write_progress(ctx, learner.name, state, len(stages))
        if stop_after is not None and k + 1 >= stop_after and k != stages[-1]:
            return dict(state)
    return write_results(ctx, learner, state)


def run_stream(
    cfg: ContinualConfig,
    run_dir: str | Path,
    method: str,
    resume: bool = True,
    model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None,
    stop_after: int | None = None,
    seed_from: str | Path | None = None,
) -> dict[str, Any]:
    """Run continual method ``method`` (a name in ``LEARNERS``) over the stream of ``cfg`` into ``run_dir``;
    returns ``results.json``'s content.

    Resumable after any task (and inside a task, from the training checkpoints). ``stop_after`` stops
    after that many tasks (for tests and budgets); rerun to continue. ``seed_from``: a finished run of the
    same stream whose base-model answers a fresh run reuses; between learners with the same per-task
    adapters (SwitchCIT and the oracle) also its adapters and their answers, so the two differ only in routing.
    """
    learner = learner_class(method)
    created = not Path(run_dir).exists()
    try:
        with RunDir(run_dir).lock():  # one process at a time (``RunLocked`` while another live one runs it)
            ctx = make_context(cfg, run_dir, model_and_tokenizer)
            seed = Path(seed_from) if seed_from is not None else None
            per_task = [name for name, cls in LEARNERS.items() if cls.per_task_adapters]
            return run_learner(learner(ctx), ctx, resume, stop_after, seed, per_task)
    except BaseException:
        if created and Path(run_dir).is_dir() and not any(Path(run_dir).iterdir()):
            Path(run_dir).rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise


def ensure_zero_shot(ctx: StreamContext, state: StreamState, queries: list[Query], cache: AnswerCache) -> None:
    """Score the base model on every task that has no zero-shot score yet (the row FWT is measured from)."""
    done = state["zero_shot"] or {}
    todo = [q for q in queries if q.task.name not in done]
    if todo:
        plan = EvalPlan(None, [BASE] * len(todo), ["base"] * len(todo))
        answers = answer_plan(ctx, "zero-shot", todo, plan, cache, stage="zero-shot")
        state["zero_shot"] = {**done, **score_tasks(todo, answers)}
        save_state(ctx, state, cache)


def complete_stage(
    learner: StreamLearner, ctx: StreamContext, k: int, queries: list[Query], cache: AnswerCache, state: StreamState
) -> None:
    """Run stage ``k`` (:func:`run_stage`), add its row to ``state`` and save it (the stage is then done)."""
    state["rows"].append(run_stage(learner, ctx, k, queries, cache, state))
    state["completed"] = k + 1
    state.pop(LEARNED, None)
    save_state(ctx, state, cache)


def run_stage(
    learner: StreamLearner, ctx: StreamContext, k: int, queries: list[Query], cache: AnswerCache, state: StreamState
) -> StageRow:
    """Train on task ``k``, then answer every task's queries: one row of the accuracy matrix.

    A resumed stage reports the time it took in all: its training seconds include what an interrupted
    earlier process spent on the steps its last checkpoint holds (``resumed_seconds``), or on the whole
    training when that process was ended while it answered (``state[LEARNED]``, saved between the two: the
    row then keeps that process's training statistics); its answer seconds include what the answers already
    in the stage's answer log took (``AnswerLog.logged_seconds``).
    Every query's answer is kept in ``answer_logs/after-NNN.answers.jsonl`` (the harness's answer-log format),
    so that two methods' rows can be compared per instance: ``hyperadapt bench compare A=<run>/answer_logs/
    after-014.answers.jsonl B=... --data <stream spec> --split test --limit <eval.limit>``."""
    with Stopwatch() as training:
        train = learner.learn(k)
    training.carry(train.get("resumed_seconds", 0.0))
    earlier = state.get(LEARNED)
    if earlier is not None and earlier["after"] == k:  # trained by a process that was ended while it answered
        train = earlier["train"]
        training.carry(earlier["seconds"])
    state[LEARNED] = {"after": k, "train": train, "seconds": training.seconds}
    save_json(state, ctx.run_dir / STATE)  # keeps the answers in progress (``save_state`` would drop them)
    stage = f"after-{k:03d}"
    with Stopwatch(before=AnswerLog.logged_seconds(answering_log(ctx, stage))) as answering:
        plan = learner.plan(k, queries)
        answers = answer_plan(ctx, learner.name, queries, plan, cache, stage=stage)
    AnswerLog.write(
        ctx.run_dir / ANSWER_LOGS / f"{stage}.answers.jsonl",
        stage_fingerprint(ctx, learner.name, stage),
        stream_identity(ctx, plan.bank),
        queries,
        answers,
    )
    return {
        "after": k,
        "task": ctx.names[k],
        "scores": score_tasks(queries, answers),
        "train": train,
        "routing": plan.stats,
        "seconds": {"train": round(training.seconds, 2), "eval": round(answering.seconds, 2)},
    }


# ---------------------------------------------------------------------------------------------------------
# Results


def accuracy_matrix(rows: list[StageRow], names: list[str], metric: str) -> list[list[float | None]]:
    """a[j][i]: the score on task i in row j (None where task i was not evaluated)."""
    return [[row["scores"].get(n, {}).get(metric) for n in names] for row in rows]


def stream_metrics(matrix: list[list[float | None]], zero_shot: list[float]) -> dict[str, Any]:
    """AP over the last row; BWT/Forgetting/FWT (``continual_metrics``) over the largest leading square block
    that was fully measured (the stream before any task was added; none for a one-stage run)."""
    last = [v for v in matrix[-1] if v is not None]
    n = 0
    while n < min(len(matrix), len(matrix[0])) and all(v is not None for row in matrix[: n + 1] for v in row[: n + 1]):
        n += 1
    block = [[v for v in row[:n] if v is not None] for row in matrix[:n]]  # all measured (the loop above)
    metrics = continual_metrics(block, zero_shot[:n]) if n > 1 else {"BWT": None, "Forgetting": None, "FWT": None}
    return {**metrics, "AP": sum(last) / len(last), "over_tasks": n}


def zero_shot_row(state: StreamState, names: list[str], metric: str) -> list[float]:
    """The base model's score on each task of ``names`` (``ensure_zero_shot`` measured them)."""
    scores = state["zero_shot"]
    if scores is None:
        raise ValueError("the stream has no zero-shot scores yet: ensure_zero_shot measures them first")
    return [scores[n][metric] for n in names]


def ap_curve(rows: list[StageRow], names: list[str], metric: str) -> list[float]:
    """AP after each stage: the mean score over the tasks trained on so far."""
    out = []
    for row in rows:
        seen = names[: row["after"] + 1]
        out.append(sum(row["scores"][n][metric] for n in seen) / len(seen))
    return out


def summarize(ctx: StreamContext, learner: StreamLearner, state: StreamState) -> dict[str, Any]:
    names, metric = ctx.names, ctx.cfg.eval.metric
    matrix = accuracy_matrix(state["rows"], names, metric)
    zero_shot = zero_shot_row(state, names, metric)
    return {
        "method": learner.name,
        "model": ctx.cfg.model,
        "stream": ctx.cfg.stream,
        "metric": metric,
        "tasks": names,
        "matrix": matrix,
        "zero_shot": zero_shot,
        "metrics": stream_metrics(matrix, zero_shot),
        "ap_curve": ap_curve(state["rows"], names, metric),
        "after": [r["after"] for r in state["rows"]],
        **learner.report(),
        "seconds": {k: round(sum(r["seconds"][k] for r in state["rows"]), 1) for k in ("train", "eval")},
        "rows": state["rows"],
        "config": to_dict(ctx.cfg),
    }


def write_results(ctx: StreamContext, learner: StreamLearner, state: StreamState) -> dict[str, Any]:
    """``results.json``, ``results.md`` and the plots (heatmap, AP curve) in the run directory."""
    from hyperadapt.report.plots import plot_ap_curve, plot_matrix

    results = summarize(ctx, learner, state)
    save_json(results, ctx.run_dir / RESULTS)
    RunDir(ctx.run_dir).finish()
    (ctx.run_dir / "results.md").write_text(results_table(results))
    (ctx.run_dir / PROGRESS).unlink(missing_ok=True)
    try:
        rows = (
            [f"all {len(results['tasks'])} tasks at once"]
            if learner.single_stage
            else [results["tasks"][a] for a in results["after"]]
        )
        plot_matrix(results["matrix"], results["tasks"], ctx.run_dir / "matrix.png", title=results["method"], rows=rows)
        if not learner.single_stage:  # one stage has one point, not a curve
            plot_ap_curve({results["method"]: results["ap_curve"]}, ctx.run_dir / "ap_curve.png")
    except ImportError:  # matplotlib is optional (the 'plots' extra)
        pass
    return results


def progress(ctx: StreamContext, method: str, state: StreamState, stages: int) -> dict[str, Any]:
    """Where an unfinished stream stands: the accuracy matrix so far (``results_table``'s fields), AP and BWT
    over the tasks trained on so far, and the time left at the mean pace of the finished stages (seconds)."""
    names, metric, rows = ctx.names, ctx.cfg.eval.metric, state["rows"]
    matrix = accuracy_matrix(rows, names, metric)
    zero_shot = zero_shot_row(state, names, metric)
    seen = rows[-1]["after"] + 1
    block = [row[:seen] for row in matrix]
    metrics = stream_metrics(block, zero_shot[:seen])  # AP over the tasks seen, not over the whole row
    spent = [r["seconds"]["train"] + r["seconds"]["eval"] for r in rows]
    return {
        "method": method,
        "stream": ctx.cfg.stream,
        "metric": metric,
        "tasks": names,
        "matrix": matrix,
        "zero_shot": zero_shot,
        "metrics": metrics,
        "after": [r["after"] for r in rows],
        "stages_done": len(rows),
        "stages": stages,
        "seconds_spent": sum(spent),
        "seconds_left": sum(spent) / len(spent) * (stages - len(rows)),
    }


def write_progress(ctx: StreamContext, method: str, state: StreamState, stages: int) -> Path:
    """``progress.md`` in the run directory after every finished stage but the last: ``progress``'s matrix
    and metrics under one line that says how far the run is (rerun the same command to continue)."""
    now = progress(ctx, method, state, stages)
    seen = now["metrics"]["over_tasks"]
    head = (
        f"Unfinished: {now['stages_done']} of {now['stages']} tasks done in {_duration(now['seconds_spent'])}; "
        f"about {_duration(now['seconds_left'])} left at that pace. AP and BWT below are over the {seen} "
        f"task{'s' if seen != 1 else ''} trained on so far; rerun the same command to continue (results.md "
        "replaces this file at the end).\n\n"
    )
    path = ctx.run_dir / PROGRESS
    atomic_write_text(path, head + results_table(now))
    return path


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def results_table(results: dict[str, Any]) -> str:
    """A Markdown summary: the metrics, then the accuracy matrix."""
    m = results["metrics"]
    keys = ["AP", "BWT", "Forgetting", "FWT"]
    lines = [
        f"## {results['method']} on {results['stream']} ({results['metric']})",
        "",
        markdown_table(keys, [[_fmt(m[k]) for k in keys]]),
        "",
    ]
    names = results["tasks"]
    rows = [["zero-shot", *map(_fmt, results["zero_shot"])]]
    rows += [
        [f"{after + 1}: {names[after]}", *map(_fmt, row)]
        for after, row in zip(results["after"], results["matrix"], strict=True)
    ]
    lines.append(markdown_table(["after \\ task", *range(1, len(names) + 1)], rows))
    switch = results.get("switch")
    if switch and "reject_auroc" in switch:
        lines += [
            "",
            f"Reject option (threshold calibrated on {switch['calibrated_on']} inputs): AUROC "
            f"{_fmt(None if switch['reject_auroc'] is None else 100 * switch['reject_auroc'])} (seen "
            f"test inputs vs {switch['n_unseen']} inputs of {switch['n_unseen_tasks']} unseen tasks); "
            f"rejected {_pct(switch['reject_rate_seen'])} of {switch['n_seen']} seen, "
            f"{_pct(switch['unseen_reject_rate'])} of unseen.",
        ]
    return "\n".join(lines) + "\n"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"

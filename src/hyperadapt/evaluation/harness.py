"""One harness that judges every method: build prompts, answer in batches, score, write JSON.

A method is anything with a ``name``, a ``setting`` (how it wants prompts built), ``model``,
``tokenizer`` and a ``conditioning(queries)`` context manager that conditions the model for a batch
(a no-op for prompt-only baselines; generated adapters, routed adapters or β for the methods). Its
weights are its model's and those of every torch module it holds as an attribute (a hypernetwork, an
adapter bank, a router): :func:`answer_identity` hashes them to tell whose answers a log holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from hyperadapt.clock import Stopwatch
from hyperadapt.config import ADDED_KEYS, RENAMED_KEYS
from hyperadapt.data.prompts import TruncationStats, build_prompt, check_setting
from hyperadapt.data.schema import Instance, Task
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.evaluation.destination import source_tag
from hyperadapt.evaluation.generate import generate_batch, option_logprobs
from hyperadapt.evaluation.metrics import (
    METRIC_LANGS,
    accuracy,
    aggregate,
    by_category,
    has_non_latin,
    metric_tokenizer,
    normalize_answer,
    score_predictions,
    xlingual_tokenizer,
)
from hyperadapt.io import atomic_write_text, save_json
from hyperadapt.models import model_name, module_tensors, weights_digest
from hyperadapt.report.tables import task_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    """One instance to answer, with the task it belongs to, its rendered prompt and the prompt setting it was
    rendered in (None: unknown, read as the method's own)."""

    task: Task
    instance: Instance
    prompt: str
    setting: str | None = None


class Method(Protocol):
    name: str
    setting: str
    model: Any
    tokenizer: Any

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager[object]: ...


@dataclass
class PromptMethod:
    """A frozen (or PEFT-wrapped) model answering from its prompt alone: zero-shot, multi-task LoRA."""

    name: str
    model: Any
    tokenizer: Any
    setting: str = "def"
    info: dict[str, Any] = field(default_factory=dict)

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


@dataclass
class EvalConfig:
    """How to evaluate.

    ``max_prompt_tokens``: the prompt budget; over-long prompts are cut by the one rule of
    :func:`hyperadapt.data.prompts.fit_prompt` (input tail, then examples, then definition tail). None:
    the model's context length minus ``max_new_tokens`` (minus the longest option in rank mode).
    ``metric_lang``: ROUGE tokenizer, ``en`` (official English), ``xlingual`` (official cross-lingual) or
    ``auto`` (cross-lingual for tasks whose output language is not English).
    """

    setting: str | None = None  # None: the method's own setting
    limit: int | None = None  # first N instances per task
    batch_size: int = 32
    max_new_tokens: int = 32
    mode: str = "generate"  # or "rank": rank classification over Task.options
    max_prompt_tokens: int | None = None
    metric_lang: str = "auto"

    def __post_init__(self) -> None:
        if self.setting is not None:
            check_setting(self.setting)
        if self.mode not in ("generate", "rank"):
            raise UserError(f"unknown eval mode {self.mode!r}: use 'generate' or 'rank'")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise UserError("batch_size and max_new_tokens must be at least 1")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise UserError(f"limit must be a positive number of instances per task, got {self.limit!r}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise UserError(f"max_prompt_tokens must be at least 1, got {self.max_prompt_tokens}")
        if self.metric_lang not in METRIC_LANGS:
            raise UserError(f"unknown metric language {self.metric_lang!r}: use one of {', '.join(METRIC_LANGS)}")


def context_length(model: Any) -> int | None:
    """The model's context window in tokens (``max_position_embeddings``), or None when it does not say."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def prompt_budget(model: Any, cfg: EvalConfig, tasks: list[Task]) -> int | None:
    """Tokens a prompt may take: ``cfg.max_prompt_tokens``, else the context minus the answer budget.

    Raises ``ValueError`` when the prompt budget plus the answer budget exceeds the model's context.
    """
    context = context_length(model)
    answer = cfg.max_new_tokens
    if cfg.mode == "rank":
        answer = 1 + max((len(o) for t in tasks for o in t.options or ()), default=0)  # characters ≥ tokens
    if cfg.max_prompt_tokens is None:
        return None if context is None else context - answer
    if context is not None and cfg.max_prompt_tokens + answer > context:
        raise UserError(
            f"max_prompt_tokens {cfg.max_prompt_tokens} + {answer} answer tokens exceed the model's context "
            f"of {context} tokens"
        )
    return cfg.max_prompt_tokens


def make_queries(
    method: Method,
    tasks: list[Task],
    setting: str,
    limit: int | None,
    max_prompt_tokens: int | None = None,
    stats: TruncationStats | None = None,
) -> list[Query]:
    """One query per instance (the first ``limit`` of each task), its prompt within ``max_prompt_tokens``."""
    if stats is not None and max_prompt_tokens is not None:
        stats.budgets.add(max_prompt_tokens)
    return [
        Query(
            task,
            inst,
            build_prompt(method.tokenizer, task, inst, setting, max_tokens=max_prompt_tokens, stats=stats),
            setting,
        )
        for task in tasks
        for inst in task.head(limit).instances
    ]


def _tag(spec: str) -> str:
    """``destination.source_tag`` of a data spec or model name, "" for none or one that makes no file name."""
    try:
        return source_tag(spec) if spec else ""
    except UserError:
        return ""


def answer_identity(method: Method) -> dict[str, str | None]:
    """Whose answers these are, beyond the method's name and config: ``model``, the base model's name or
    path; ``weights``, a hash of its weights (every parameter and buffer, :func:`~hyperadapt.models.weights_digest`);
    ``trained``, a hash of the weights the method holds besides (every torch module among its attributes, in
    the order of their names, less the base model's tensors), None for a method that holds none (zero-shot).
    Reads every weight once (about a second for a 135M-parameter model on a CPU)."""
    base = list(module_tensors(method.model))
    seen = {id(t) for _, t in base}
    held = [
        (f"{attr}.{name}", t)
        for attr, value in sorted(vars(method).items())
        if attr != "model" and isinstance(value, torch.nn.Module)
        for name, t in module_tensors(value)
        if id(t) not in seen
    ]
    return {
        "model": model_name(method.model),
        "weights": weights_digest(base),
        "trained": weights_digest(held) if held else None,
    }


class AnswerLog:
    """Answers appended to a JSONL file as batches finish, so that an interrupted evaluation resumes.

    The first line holds a fingerprint of what produces the answers (method, its info, the evaluation
    settings) and ``identity``, whose answers they are (:func:`answer_identity`: the base model and the hashes
    of its and the method's weights). A log of another fingerprint is refused (``fingerprint`` may list several
    that are the same thing: the first is written, any is accepted); a log of another identity (another base
    model, other weights, another dtype), or one written before logs recorded it, is answered again from the
    start with one warning: its answers are not this model's. Each later
    line is one answer keyed by task, instance id and a hash of the prompt and the task's instruction, with the
    seconds its batch took divided among the batch's answers (``seconds``; absent in older logs).
    ``resumed_seconds``: what the answers already in the log took the processes that wrote them (0.0 for a
    new log), so that an evaluation resumed after an interruption reports the time it took in all.
    """

    def __init__(self, path: str | Path, fingerprint: str | tuple[str, ...], identity: dict[str, str | None]) -> None:
        accepted = (fingerprint,) if isinstance(fingerprint, str) else tuple(fingerprint)
        self.path = Path(path)
        self.resumed_seconds = 0.0
        reused = self.load(self.path, accepted, identity) if self.path.exists() and self.path.stat().st_size else None
        if reused is not None:
            self.answers = reused
            self.resumed_seconds = self.logged_seconds(self.path)
            self._fh = self.path.open("a", encoding="utf-8")
        else:
            self.answers = {}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
            self._fh.write(self.header(accepted[0], identity))
            self._fh.flush()

    @classmethod
    def load(cls, path: Path, accepted: tuple[str, ...], identity: dict[str, str | None]) -> dict[str, str] | None:
        """The answers (key -> answer) of the log at ``path`` when they are this method's; None, with one
        warning, when they are another model's or the log does not say whose they are; ``ValueError`` for a
        log of another method or setting (a fingerprint not in ``accepted``) or another kind of file."""
        try:
            header, answers = cls.read(path)
        except ValueError as err:
            raise UserError(f"{err}; delete it to start over") from err
        if header.get("fingerprint") not in accepted:
            raise UserError(f"{path} holds answers of another method or setting; delete it or choose another --out")
        logged = header.get("identity")
        if logged is None:
            log.warning(
                "%s was written before answer logs recorded whose answers they are (its answers may be "
                "another model's): answering again",
                path,
            )
            return None
        if logged != identity:
            log.warning(
                "%s holds answers of another model (%s), not of this one (%s): answering again",
                path,
                _describe(logged),
                _describe(identity),
            )
            return None
        return answers

    @staticmethod
    def header(fingerprint: str, identity: dict[str, str | None]) -> str:
        return json.dumps({"fingerprint": fingerprint, "identity": identity}) + "\n"

    @staticmethod
    def read(path: Path, strict: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
        """The header and the answers (key -> answer) of the log at ``path``. A line cut by an interruption
        is skipped (a resumed evaluation answers it again; appending after a cut line damages that line, so
        it need not be the last). Raises ``ValueError`` for another file or an answer that is not a text, and
        with ``strict`` for a damaged line other than the last (re-scoring must not lose answers silently), and
        naming the file when it is not UTF-8 text."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise UserError(f"{path} is not UTF-8 text (byte {err.start}): not an answer log") from err
        try:
            header = json.loads(lines[0])
        except (IndexError, json.JSONDecodeError) as err:
            raise UserError(f"{path}: not an answer log ({err})") from err
        if not isinstance(header, dict) or "fingerprint" not in header:
            raise UserError(f"{path}: not an answer log (its first line has no fingerprint)")
        answers = {}
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if strict and number < len(lines):
                    raise UserError(f"{path}: line {number} is not JSON (the file is damaged)") from None
                continue
            if not isinstance(row, dict) or not isinstance(row.get("key"), str) or "answer" not in row:
                raise UserError(f"{path}: line {number} is not an answer (no 'key' and 'answer')")
            if not isinstance(row["answer"], str):
                raise UserError(f"{path}: line {number}: answer {_shown(row['answer'])} is not a text (a JSON string)")
            answers[row["key"]] = row["answer"]
        return header, answers

    @staticmethod
    def logged_seconds(path: Path) -> float:
        """The seconds recorded in the log at ``path`` (the sum of its answers' ``seconds``; 0.0 for a log
        that records none or for no file). Lines that are not JSON are skipped, as :meth:`read` does."""
        if not path.exists():
            return 0.0
        total = 0.0
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("seconds"), int | float):
                total += row["seconds"]
        return total

    @staticmethod
    def key(query: Query) -> str:
        # the instruction too: a method may read it outside the prompt (a hypernetwork's condition)
        text = f"{query.prompt}\0{query.task.instruction}"
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
        return f"{query.task.name}\t{query.instance.id}\t{digest}"

    def get(self, query: Query) -> str | None:
        return self.answers.get(self.key(query))

    @staticmethod
    def _line(key: str, answer: str, seconds: float | None = None) -> str:
        row: dict[str, Any] = {"key": key, "answer": answer}
        if seconds is not None:
            row["seconds"] = round(seconds, 4)
        return json.dumps(row, ensure_ascii=False) + "\n"

    def add(self, queries: list[Query], outs: list[str], seconds: float | None = None) -> None:
        """Append one batch's answers; ``seconds``: what the batch took (recorded split evenly among them)."""
        share = seconds / len(queries) if seconds is not None and queries else None
        for q, o in zip(queries, outs, strict=True):
            self.answers[self.key(q)] = o
            self._fh.write(self._line(self.key(q), o, share))
        self._fh.flush()

    @classmethod
    def write(
        cls, path: str | Path, fingerprint: str, identity: dict[str, str | None], queries: list[Query], outs: list[str]
    ) -> Path:
        """Write a complete log of ``outs`` (one answer per query) at ``path`` at once (atomically, replacing
        any file there): what ``bench compare`` and :func:`score_answer_log` read. Returns the path."""
        return cls.write_answers(
            path, fingerprint, identity, {cls.key(q): o for q, o in zip(queries, outs, strict=True)}
        )

    @classmethod
    def write_answers(
        cls, path: str | Path, fingerprint: str, identity: dict[str, str | None], answers: dict[str, str]
    ) -> Path:
        """Write a complete log of ``answers`` (key -> answer) at ``path`` atomically. Returns the path."""
        lines = [cls.header(fingerprint, identity), *(cls._line(k, a) for k, a in answers.items())]
        return atomic_write_text(path, "".join(lines))  # makes the folder

    def close(self) -> None:
        self._fh.close()


def _describe(identity: Mapping[str, str | None]) -> str:
    parts = [f"model {identity.get('model') or '(built in code)'!r}", f"weights {identity.get('weights')}"]
    if identity.get("trained"):
        parts.append(f"trained weights {identity['trained']}")
    return ", ".join(parts)


def fingerprint(method: Method, cfg: EvalConfig, setting: str) -> tuple[str, ...]:
    """Hashes of what determines the answers: method name and info, setting and evaluation settings.

    The first is this version's; the others hash the same with config keys under their old names
    (``config.RENAMED_KEYS``) and without options added later that are at their default
    (``config.ADDED_KEYS``), so that answers logged before a rename or an addition are still reused.
    """
    what = {
        "method": method.name,
        "info": getattr(method, "info", {}),
        "setting": setting,
        "mode": cfg.mode,
        "max_new_tokens": cfg.max_new_tokens,
        "max_prompt_tokens": cfg.max_prompt_tokens,
    }
    old_names = {new: old for old, new in RENAMED_KEYS.items()}

    def with_old_names(value: Any) -> Any:
        if isinstance(value, dict):
            return {old_names.get(k, k): with_old_names(v) for k, v in value.items()}
        return value

    def without_added(value: dict[str, Any]) -> dict[str, Any]:
        info = json.loads(json.dumps(value["info"], default=str))
        for key, default in ADDED_KEYS.items():
            *parents, last = key.split(".")
            section = info
            for p in parents:
                section = section.get(p) if isinstance(section, dict) else None
            if isinstance(section, dict) and last in section and section[last] == default:
                del section[last]
        return {**value, "info": info}

    variants = (what, with_old_names(what), without_added(what), with_old_names(without_added(what)))
    hashes = [hashlib.sha1(json.dumps(w, sort_keys=True, default=str).encode()).hexdigest() for w in variants]
    return tuple(dict.fromkeys(hashes))


def _batches(queries: list[Query], size: int) -> Iterator[list[Query]]:
    """Batches of similar prompt length (less padding), in a fixed order."""
    ordered = sorted(queries, key=lambda q: len(q.prompt))
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


def answer(
    method: Method, queries: list[Query], cfg: EvalConfig, desc: str = "eval", log_to: AnswerLog | None = None
) -> dict[int, str]:
    """Answers keyed by ``id(query)``, with a progress bar; with ``log_to``, answers already logged are
    reused and new ones appended as each batch finishes, with the seconds the batch took."""
    answers: dict[int, str] = {}
    todo = queries
    if log_to is not None:
        for q in queries:
            done = log_to.get(q)
            if done is not None:
                answers[id(q)] = done
        todo = [q for q in queries if id(q) not in answers]
    with tqdm(
        total=len(queries), initial=len(queries) - len(todo), desc=f"{desc} [{method.name}]", unit="ex", leave=False
    ) as bar:
        for batch in _batches(todo, cfg.batch_size):
            batch_clock = Stopwatch().start()
            prompts = [q.prompt for q in batch]
            with method.conditioning(batch):
                if cfg.mode == "rank":
                    options = [_options(q.task) for q in batch]
                    scores = option_logprobs(method.model, method.tokenizer, prompts, options)
                    outs = [o[max(range(len(s)), key=s.__getitem__)] for o, s in zip(options, scores, strict=True)]
                else:
                    outs = generate_batch(method.model, method.tokenizer, prompts, cfg.max_new_tokens)
            answers.update({id(q): o for q, o in zip(batch, outs, strict=True)})
            if log_to is not None:
                log_to.add(batch, outs, batch_clock.stop())
            bar.update(len(batch))
    return answers


def _options(task: Task) -> list[str]:
    if not task.options:
        raise UserError(f"task {task.name!r} has no options: rank classification needs Task.options")
    return task.options


def evaluate(
    method: Method,
    tasks: list[Task],
    cfg: EvalConfig,
    model: str = "",
    data: str = "",
    split: str = "",
    answers_path: str | Path | None = None,
) -> dict[str, Any]:
    """Score ``method`` on ``tasks``; returns the results dict (see ``write_results``).

    ``model``, ``data`` and ``split`` are recorded in the result to say what was evaluated. With
    ``answers_path``, answers are appended to that JSONL file as they come and a rerun with the same
    method, settings and weights continues where the last one stopped (:class:`AnswerLog`); ``seconds`` then includes
    what the earlier runs spent on the answers it reuses. The headline ``mean`` is the official instance
    mean; ``mean["task_mean"]`` the mean over tasks.
    """
    if not tasks:
        raise UserError("no tasks to evaluate")
    setting = cfg.setting or method.setting
    clock = Stopwatch().start()
    stats = TruncationStats()
    budget = prompt_budget(method.model, cfg, tasks)
    queries = make_queries(method, tasks, setting, cfg.limit, budget, stats)
    stats.warn("evaluation prompts")
    log_to = None
    if answers_path:
        log_to = AnswerLog(answers_path, fingerprint(method, cfg, setting), answer_identity(method))
        clock.carry(log_to.resumed_seconds)
    try:
        answers = answer(method, queries, cfg, desc=split or "eval", log_to=log_to)
    finally:
        if log_to is not None:
            log_to.close()
    per_task, predictions = {}, []
    english_on_non_latin = []
    for task in tasks:
        qs = [q for q in queries if q.task is task]
        preds = [answers[id(q)] for q in qs]
        refs = [list(q.instance.outputs) for q in qs]
        rouge_tok = metric_tokenizer(cfg.metric_lang, task.output_language)
        if rouge_tok is None and any(has_non_latin(r) for rs in refs for r in rs):
            english_on_non_latin.append(task.name)
        scores = score_predictions(preds, refs, rouge_tok)
        per_task[task.name] = {
            **scores,
            "category": task.category,
            "condition_type": task.condition_type,
            "metric": "en" if rouge_tok is None else "xlingual",
        }
        if task.options:  # classification: the share of answers that are exactly the label
            labels = [normalize_answer(q.instance.outputs[0]) for q in qs]
            per_task[task.name]["accuracy"] = accuracy([normalize_answer(p) for p in preds], labels)
        predictions += [
            {"task": task.name, "id": q.instance.id, "prediction": p, "references": list(q.instance.outputs)}
            for q, p in zip(qs, preds, strict=True)
        ]
    if english_on_non_latin:
        log.warning(
            "English ROUGE drops non-Latin characters, and %d task(s) have non-Latin references (%s): score "
            "them with metric_lang='xlingual' (--metric-lang xlingual)",
            len(english_on_non_latin),
            ", ".join(english_on_non_latin[:5]),
        )
    xlingual = [t for t, s in per_task.items() if s["metric"] == "xlingual"]
    return {
        "method": method.name,
        "model": model,
        "data": data,
        "split": split,
        # data and model as identified where this ran (a relative path means another folder elsewhere)
        "sources": {"data": _tag(data), "model": _tag(model)},
        "setting": setting,
        "mode": cfg.mode,
        "tasks": per_task,
        "mean": aggregate(per_task),
        "by_category": by_category(per_task),
        "seconds": round(clock.seconds, 2),
        "truncation": {**stats.as_dict(), "max_prompt_tokens": budget},
        "metric": {
            "lang": cfg.metric_lang,
            "xlingual_tasks": xlingual,
            "xlingual_tokenizer": xlingual_tokenizer().name if xlingual else None,
        },
        "config": {"eval": asdict(cfg), "method": getattr(method, "info", {})},
        "predictions": predictions,
    }


def _shown(value: Any) -> str:
    """``value`` as JSON writes it, cut to 40 characters, for an error that names a wrong value."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_answers(path: str | Path) -> dict[tuple[str, ...], str]:
    """``(task name, instance id) -> answer`` from an answer log (:class:`AnswerLog`, written while an
    evaluation runs) or a results file's predictions (``R.predictions.jsonl`` beside ``R.json``: one
    ``{"task", "id", "prediction"}`` per line). Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for a file that is neither (not UTF-8 text, or a line whose answer is not a text)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: give the answers file (R.predictions.jsonl or *.answers.jsonl)")
    if not path.is_file():
        raise InputNotFound(f"no answer log at {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (byte {err.start}): not an answer log or predictions file") from err
    first = lines[0] if lines else ""
    if not first.strip():
        raise UserError(f"{path} is empty: not an answer log or predictions file")
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    answers: dict[tuple[str, ...], str] = {}
    if isinstance(head, dict) and "prediction" in head and "fingerprint" not in head:
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict) or not {"task", "id", "prediction"} <= set(row):
                raise UserError(f"{path}: line {number} is not a prediction (no 'task', 'id' and 'prediction')")
            if not isinstance(row["prediction"], str):
                raise UserError(
                    f"{path}: line {number}: prediction {_shown(row['prediction'])} is not a text (a JSON string)"
                )
            task, instance = row["task"], row["id"]
            if not isinstance(task, str) or isinstance(instance, bool) or not isinstance(instance, str | int):
                raise UserError(
                    f"{path}: line {number}: task {_shown(task)} / id {_shown(instance)} are not a task name (a JSON "
                    "string) and an instance id (a string or an integer)"
                )
            key = (task, str(instance))
            if key in answers:
                raise UserError(f"{path}: line {number} answers {key[0]} instance {key[1]} a second time")
            answers[key] = row["prediction"]
        return answers
    if not isinstance(head, dict) or "fingerprint" not in head:
        raise UserError(
            f"{path}: neither an answer log nor predictions (for an evaluation's R.json, give R.predictions.jsonl)"
        )
    for logged_key, text in AnswerLog.read(path, strict=True)[1].items():
        pair = tuple(logged_key.split("\t")[:2])
        if pair in answers:
            raise UserError(f"{path} answers {pair[0]} instance {pair[1]} twice (prompts of two settings?)")
        answers[pair] = text
    return answers


def score_answer_log(
    path: str | Path, tasks: list[Task], limit: int | None = None, metric_lang: str = "auto"
) -> dict[str, dict[str, Any]]:
    """Per task, ROUGE-L / EM / n of the answers in an answer log or predictions file (:func:`read_answers`)
    on the first ``limit`` instances of each task, without the model: e.g. two methods' answers on the
    instances an ablation used.

    Answers are matched by task name and instance id (a log holds one method and setting, so one prompt per
    instance). Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for another kind of file or
    naming the first instance the file has no answer for.
    """
    answers = read_answers(path)
    per_task = {}
    for task in tasks:
        chosen = task.instances[:limit] if limit else task.instances
        missing = [x.id for x in chosen if (task.name, x.id) not in answers]
        if missing:
            raise UserError(f"{path} has no answer for {task.name} instance {missing[0]}")
        preds = [answers[(task.name, x.id)] for x in chosen]
        scores = score_predictions(
            preds, [list(x.outputs) for x in chosen], metric_tokenizer(metric_lang, task.output_language)
        )
        per_task[task.name] = {**scores, "category": task.category}
    return per_task


def write_results(result: dict[str, Any], out: str | Path) -> Path:
    """Write ``result`` as JSON (predictions in a JSONL beside it) and a Markdown table; return the path."""
    out = Path(out)
    if out.suffix != ".json":
        out = out / f"{result['method']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    preds = result.get("predictions", [])
    body = {k: v for k, v in result.items() if k != "predictions"}
    save_json(body, out)
    with out.with_suffix(".predictions.jsonl").open("w") as fh:
        fh.writelines(json.dumps(p) + "\n" for p in preds)
    out.with_suffix(".md").write_text(task_table(body))
    return out

"""Answer free-form inputs with any trained run or loaded method: the one free-form generation path.

``hyperadapt generate``, the demo and the Python API (``answer_inputs`` for a run, ``answer_texts`` for a
method in hand) all come here; the server answers through its own engine (``serve/``), which batches requests
as they arrive. It lives with the methods, not in ``evaluation/``: the evaluation layer knows no method, and
this is where a run directory becomes a method (:meth:`~hyperadapt.runs.Run.load`). The answers are those of
the harness (:func:`hyperadapt.evaluation.harness.answer`: greedy, batched by prompt length).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

from hyperadapt.data.prompts import TruncationStats
from hyperadapt.data.schema import Instance, Task
from hyperadapt.errors import UserError
from hyperadapt.evaluation.harness import EvalConfig, Method, answer, make_queries, prompt_budget
from hyperadapt.registry import method_entry, method_names
from hyperadapt.runs import Run


class RoutesInputs(Protocol):
    """A method that routes each input itself (``serves_as="input"``)."""

    def routes(self, texts: list[str]) -> list[str | None]:
        """The task each text is routed to, None where it is rejected (to the base model)."""
        ...


class Answered(NamedTuple):
    """One free-form answer and what it was produced under: ``route`` is ``condition: TEXT`` for a
    conditioned method, ``task: NAME`` or ``rejected`` (answered by the base model) for a routed one."""

    input: str
    answer: str
    route: str


def answer_texts(
    method: Method,
    inputs: list[str],
    conditions: Sequence[str] = (),
    setting: str | None = None,
    max_new_tokens: int = 64,
    max_prompt_tokens: int | None = None,
    batch_size: int = 32,
) -> list[Answered]:
    """Greedy answers of a loaded ``method`` to ``inputs``, in their order.

    Any harness method (:class:`~hyperadapt.evaluation.harness.Method`, registered or your own) answers. A
    method that routes each input itself (registry ``serves_as="input"``: SwitchCIT) reads each input as the
    whole user turn (put the task's definition in it) and refuses ``conditions``; any other is conditioned on
    ``conditions`` (one for all inputs, or one per input), each prompt rendered in ``setting`` (default: the
    method's own) and fitted to ``max_prompt_tokens`` (default: the model's context minus ``max_new_tokens``)
    by the one truncation rule of :func:`hyperadapt.data.prompts.fit_prompt`, with one warning when any was cut.
    Raises :class:`~hyperadapt.errors.UserError` for no inputs, conditions given to a routed method, a
    mismatched number of conditions, an empty condition, or budgets beyond the model's context."""
    # a method of your own (not registered) is conditioned like TAGI's
    routed = method.name in method_names() and method_entry(method.name).serves_as == "input"
    conds = check_request(routed, inputs, conditions, method.name)
    if routed:
        setting = "none"  # the switch reads the whole turn
    cfg = EvalConfig(max_new_tokens=max_new_tokens, max_prompt_tokens=max_prompt_tokens, batch_size=batch_size)
    tasks = [
        Task(f"input-{i}", c, [Instance(str(i), x, ("",))]) for i, (c, x) in enumerate(zip(conds, inputs, strict=True))
    ]
    stats = TruncationStats()
    budget = prompt_budget(method.model, cfg, tasks)
    queries = make_queries(method, tasks, setting or method.setting, None, budget, stats)
    stats.warn("inputs")
    answers = answer(method, queries, cfg, desc="generate")
    if routed:
        chosen = cast(RoutesInputs, method).routes(inputs)
        routes = [f"task: {t}" if t is not None else "rejected" for t in chosen]
    else:
        routes = [f"condition: {c}" for c in conds]
    return [Answered(x, answers[id(q)], r) for x, q, r in zip(inputs, queries, routes, strict=True)]


def check_request(routed: bool, inputs: Sequence[str], conditions: Sequence[str], who: str) -> list[str]:
    """One condition per input: ``conditions`` (one given for all is repeated), or for a method that routes
    each input itself (``routed``) the inputs themselves (the switch reads the whole turn). Raises
    ``UserError`` for no inputs, conditions given to a routed method (``who`` names it), another number of
    conditions, or an empty one."""
    if not inputs:
        raise UserError("give at least one --input")
    if routed:
        if conditions:
            raise UserError(
                f"{who} routes each input to its task's adapter itself, so --condition is not used; "
                "put the task's definition in the --input"
            )
        return list(inputs)
    if len(conditions) not in (1, len(inputs)):
        raise UserError(
            f"give one --condition for all inputs or one per input; got {len(conditions)} for {len(inputs)} inputs"
        )
    conds = list(conditions) * len(inputs) if len(conditions) == 1 else list(conditions)
    blank = [i for i, c in enumerate(conds, start=1) if not c.strip()]
    if blank:
        raise UserError(f"--condition is empty (for input {blank[0]}): give the instruction or style to follow")
    return conds


def answer_inputs(
    run: Run | str | Path,
    inputs: list[str],
    conditions: Sequence[str],
    max_new_tokens: int = 64,
    max_prompt_tokens: int | None = None,
    model_and_tokenizer: Any = None,
) -> list[Answered]:
    """:func:`answer_texts` with the method of a trained run (a :class:`~hyperadapt.runs.Run` or its folder),
    loaded on its own base model, its prompts rendered in the run's own prompt style
    (:attr:`Run.prompt_style`). The inputs and conditions are checked before anything loads."""
    run = Run.of(run)
    run.check_loadable()
    routed = run.entry.serves_as == "input"
    check_request(routed, inputs, conditions, f"{run.path} (a continual run)")  # before anything loads
    setting = None if routed else run.prompt_style.setting
    return answer_texts(run.load(model_and_tokenizer), inputs, conditions, setting, max_new_tokens, max_prompt_tokens)

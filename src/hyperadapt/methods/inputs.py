"""Answer free-form inputs with any trained run (what ``hyperadapt generate`` calls).

It lives with the methods, not in ``evaluation/``: the evaluation layer knows no method, and this is where
a run directory becomes a method (``load_run``).
"""

from __future__ import annotations

from pathlib import Path

from hyperadapt.data.prompts import TruncationStats
from hyperadapt.data.schema import Instance, Task
from hyperadapt.errors import UserError
from hyperadapt.evaluation.harness import EvalConfig, answer, make_queries, prompt_budget
from hyperadapt.runs import Run


def answer_inputs(
    run: Run | str | Path,
    inputs: list[str],
    conditions: list[str],
    max_new_tokens: int = 64,
    max_prompt_tokens: int | None = None,
    model_and_tokenizer=None,
) -> list[tuple[str, str, str]]:
    """(input, answer, route) per input: what each answer was produced under. Runs that route each input
    (SwitchCIT: route = ``task: NAME``, or ``rejected``) refuse ``conditions``; other runs (a sequential,
    replay, O-LoRA or multi-task stream answers with the LoRA it ends with) are conditioned on
    ``conditions`` (one for all inputs, or one per input; route = ``condition: TEXT``), each prompt rendered
    in the run's own prompt style (:attr:`Run.prompt_style`) and fitted to ``max_prompt_tokens`` (default: the
    model's context minus ``max_new_tokens``) by the one truncation rule of
    :func:`hyperadapt.data.prompts.fit_prompt`, with one warning when any was cut. Raises ``ValueError``
    for a run that cannot generate, a mismatched number of conditions, or budgets beyond the context."""
    if not inputs:
        raise UserError("give at least one --input")
    run = Run.of(run)
    run.check_loadable()
    if run.entry.serves_as == "input":
        from hyperadapt.methods.switch import generate

        if conditions:
            raise UserError(
                f"{run.path} is a continual run: it routes each input to its task's adapter itself, so "
                "--condition is not used; put the task's definition in the --input"
            )
        answers = generate(run.load(model_and_tokenizer), inputs, max_new_tokens, max_prompt_tokens=max_prompt_tokens)
        return [(x, a, f"task: {t}" if t else "rejected") for x, (a, t) in zip(inputs, answers, strict=True)]
    if len(conditions) not in (1, len(inputs)):
        raise UserError(
            f"give one --condition for all inputs or one per input; got {len(conditions)} for {len(inputs)} inputs"
        )
    conds = conditions * len(inputs) if len(conditions) == 1 else conditions
    blank = [i for i, c in enumerate(conds, start=1) if not c.strip()]
    if blank:  # before loading anything
        raise UserError(f"--condition is empty (for input {blank[0]}): give the instruction or style to follow")
    method = run.load(model_and_tokenizer)
    cfg = EvalConfig(max_new_tokens=max_new_tokens, max_prompt_tokens=max_prompt_tokens)
    tasks = [
        Task(f"input-{i}", c, [Instance(str(i), x, ("",))]) for i, (c, x) in enumerate(zip(conds, inputs, strict=True))
    ]
    stats = TruncationStats()
    budget = prompt_budget(method.model, cfg, tasks)
    queries = make_queries(method, tasks, run.prompt_style.setting, None, budget, stats)
    stats.warn("inputs")
    answers = answer(method, queries, cfg, desc="generate")
    return [(q.instance.input, answers[id(q)], f"condition: {q.task.instruction}") for q in queries]

"""Answer free-form inputs with any trained run (what ``hyperadapt generate`` calls).

It lives with the methods, not in ``evaluation/``: the evaluation layer knows no method, and this is where
a run directory becomes a method (``load_run``).
"""

from __future__ import annotations

from pathlib import Path

from hyperadapt.data.prompts import TruncationStats
from hyperadapt.data.schema import Instance, Task
from hyperadapt.evaluation.harness import EvalConfig, answer, make_queries, prompt_budget
from hyperadapt.io import load_json


def answer_inputs(
    run_dir: str | Path, inputs: list[str], conditions: list[str], max_new_tokens: int = 64,
    max_prompt_tokens: int | None = None,
) -> list[tuple[str, str, str]]:
    """(input, answer, route) per input: what each answer was produced under. SwitchCIT runs route each input
    (route = ``task: NAME``, or ``rejected``) and refuse ``conditions``; other runs (a sequential,
    replay, O-LoRA or multi-task stream answers with the LoRA it ends with) are conditioned on
    ``conditions`` (one for all inputs, or one per input; route = ``condition: TEXT``). Each prompt is fitted
    to ``max_prompt_tokens`` (default: the model's context minus ``max_new_tokens``) by the one truncation rule
    of :func:`hyperadapt.data.prompts.fit_prompt`, with one warning when any was cut. Raises ``ValueError``
    for a run that cannot generate, a mismatched number of conditions, or budgets beyond the context."""
    if not inputs:
        raise ValueError("give at least one --input")
    from hyperadapt.methods import LOADABLE, load_run, single_lora_methods

    run = load_json(Path(run_dir) / "run.json", "run file")
    method_name = run.get("method")
    if run.get("kind") == "continual" and method_name not in single_lora_methods():
        from hyperadapt.methods.switch import generate

        if conditions:
            raise ValueError(f"{run_dir} is a continual run: it routes each input to its task's adapter itself, so "
                             "--condition is not used; put the task's definition in the --input")
        answers = generate(run_dir, inputs, max_new_tokens, max_prompt_tokens=max_prompt_tokens)
        return [(x, a, f"task: {t}" if t else "rejected") for x, (a, t) in zip(inputs, answers, strict=True)]
    if method_name not in LOADABLE and method_name not in single_lora_methods():
        raise ValueError(f"{run_dir} is a {method_name!r} run: generate supports {sorted(LOADABLE)} and continual runs")
    if len(conditions) not in (1, len(inputs)):
        raise ValueError(f"give one --condition for all inputs or one per input; got {len(conditions)} "
                         f"for {len(inputs)} inputs")
    conds = conditions * len(inputs) if len(conditions) == 1 else conditions
    blank = [i for i, c in enumerate(conds, start=1) if not c.strip()]
    if blank:  # before loading anything
        raise ValueError(f"--condition is empty (for input {blank[0]}): give the instruction or style to follow")
    method = load_run(run_dir)
    cfg = EvalConfig(max_new_tokens=max_new_tokens, max_prompt_tokens=max_prompt_tokens)
    tasks = [Task(f"input-{i}", c, [Instance(str(i), x, ("",))]) for i, (c, x) in enumerate(zip(conds, inputs,
                                                                                                strict=True))]
    stats = TruncationStats()
    queries = make_queries(method, tasks, method.setting, None, prompt_budget(method.model, cfg, tasks), stats)
    stats.warn("inputs")
    answers = answer(method, queries, cfg, desc="generate")
    return [(q.instance.input, answers[id(q)], f"condition: {q.task.instruction}") for q in queries]

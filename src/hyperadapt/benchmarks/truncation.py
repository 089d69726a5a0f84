r"""How many training examples lose part of their definition: the old left cut vs the one truncation rule.

For each budget (``max_length``), every training example (first reference as the answer) is encoded the old
way (the prompt cut from the left so that the answer survives: it loses the chat header, the system text,
then the definition) and by :func:`hyperadapt.data.prompts.encode_instance` (input tail, then examples,
then definition tail). An example "loses its definition" when the kept prompt no longer holds the whole
``Definition: ...`` line. Tokenizer only, no model: a minute on one CPU core.

    hyperadapt bench truncation --data sni:../shared/data/sni --split train --limit 20 \
        --out docs/results/truncation_sni.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TypedDict

from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.benchmarks import Parser, command
from hyperadapt.data import load_tasks
from hyperadapt.data.prompts import (
    TruncationStats,
    answer_ids,
    build_prompt,
    encode_instance,
    prompt_ids,
    user_message,
)
from hyperadapt.data.schema import Task
from hyperadapt.io import check_out_file, save_json
from hyperadapt.models import resolve_model_path


def old_left_cut(tokenizer: Tokenizer, prompt: str, output: str, max_length: int) -> list[int]:
    """The kept prompt ids of the rule before the fix (``encode_pair`` cut the prompt from the left)."""
    ids = prompt_ids(tokenizer, prompt)
    answer = answer_ids(tokenizer, output)[: max_length - 1]
    return ids[-(max_length - len(answer)) :]


class BudgetRow(TypedDict):
    """What one budget (``max_length``) does to the examples: counts and shares under the old and the new rule."""

    examples: int
    old_lose_definition: int
    old_share: float
    new_lose_definition: int
    new_share: float
    old_lose_first_words: int
    new_lose_first_words: int
    new_cuts: dict[str, int]


def measure(tokenizer: Tokenizer, tasks: list[Task], setting: str, budgets: list[int]) -> dict[str, BudgetRow]:
    rows: dict[str, BudgetRow] = {}
    for budget in budgets:
        old = new = old_start = new_start = total = 0
        stats = TruncationStats()
        for task in tasks:
            definition = user_message(task.instruction, "", setting).split("\n\nInput:")[0]
            start = " ".join(definition.split()[:9])  # "Definition:" and the first eight words
            for inst in task.instances:
                total += 1
                prompt = build_prompt(tokenizer, task, inst, setting)
                kept = str(tokenizer.decode(old_left_cut(tokenizer, prompt, inst.outputs[0], budget)))
                old += definition not in kept
                old_start += start not in " ".join(kept.split())
                ids, labels = encode_instance(tokenizer, task, inst, setting, budget, stats=stats)
                n_prompt = sum(label == -100 for label in labels)
                kept = str(tokenizer.decode(ids[:n_prompt]))
                new += definition not in kept
                new_start += start not in " ".join(kept.split())
        rows[str(budget)] = {
            "examples": total,
            "old_lose_definition": old,
            "old_share": old / total,
            "new_lose_definition": new,
            "new_share": new / total,
            "old_lose_first_words": old_start,
            "new_lose_first_words": new_start,
            "new_cuts": stats.as_dict(),
        }
        print(
            f"max_length {budget}: {total} examples; lose part of the definition: old rule {old} "
            f"({100 * old / total:.1f} %), new rule {new} ({100 * new / total:.1f} %); lose its first words: "
            f"old {old_start}, new {new_start}; new rule cut "
            f"{stats.affected} ({stats.input_cut} input, {stats.examples_dropped} examples, "
            f"{stats.definition_cut} definition)",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = Parser(
        prog="hyperadapt bench truncation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="sni:../shared/data/sni")
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=20, help="first N instances per task")
    ap.add_argument("--setting", default="def")
    ap.add_argument("--budgets", type=int, nargs="+", default=[128, 256, 384])
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    check_out_file(args.out, "--out")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.model))
    tasks = [t.head(args.limit) for t in load_tasks(args.data, args.split)]
    budgets = measure(tokenizer, tasks, args.setting, args.budgets)
    result = {
        "data": args.data,
        "split": args.split,
        "limit": args.limit,
        "setting": args.setting,
        "model": args.model,
        "budgets": budgets,
        "command": command("truncation", argv),
    }
    save_json(result, args.out)
    print(json.dumps({k: v["old_share"] for k, v in budgets.items()}))


if __name__ == "__main__":
    main()

"""Turn a task instance into a prompt and a training target.

Settings: ``def`` (instruction + input), ``def2pos`` (instruction + two positive examples + input),
``none`` (input only: what a method that conditions through weights sees). Prompts use the tokenizer's
chat template when it has one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.data.schema import Example, Instance, Task
from hyperadapt.models import end_of_turn_ids

Setting = Literal["def", "def2pos", "none"]
SETTINGS: tuple[str, ...] = ("def", "def2pos", "none")


def check_setting(setting: str) -> None:
    if setting not in SETTINGS:
        raise ValueError(f"unknown prompt setting {setting!r}: use one of {', '.join(SETTINGS)}")


def user_message(instruction: str, input_text: str, setting: str, examples: list[Example] = ()) -> str:
    """The text of the user turn for one instance."""
    check_setting(setting)
    if setting == "none":
        return input_text
    parts = [f"Definition: {instruction.strip()}"]
    if setting == "def2pos":
        for i, ex in enumerate(examples[:2], 1):
            parts.append(f"Positive Example {i}\nInput: {ex.input}\nOutput: {ex.output}")
        parts.append("Now complete the following example.")
    parts.append(f"Input: {input_text}")
    return "\n\n".join(parts)


def render(tokenizer: Tokenizer, user_text: str) -> str:
    """The full prompt string, ending where the model's answer begins."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": user_text}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"{user_text}\nOutput: "


def build_prompt(
    tokenizer: Tokenizer, task: Task, instance: Instance, setting: str, instruction: str | None = None
) -> str:
    """Prompt for ``instance`` of ``task``; ``instruction`` overrides the task's own (paraphrases)."""
    text = user_message(instruction or task.instruction, instance.input, setting, task.positive_examples)
    return render(tokenizer, text)


def encode_pair(
    tokenizer: Tokenizer, prompt: str, output: str, max_length: int
) -> tuple[list[int], list[int]]:
    """Token ids of prompt + output + end of turn, and labels that mask the prompt with -100.

    When too long, the prompt is cut from the left so that the answer always survives.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(output, add_special_tokens=False).input_ids + end_of_turn_ids(tokenizer)[:1]
    answer_ids = answer_ids[:max_length - 1]
    prompt_ids = prompt_ids[-(max_length - len(answer_ids)):]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


@dataclass(frozen=True)
class Encoded:
    """A tokenised training example and the index of its task in the task list."""

    task_index: int
    input_ids: list[int]
    labels: list[int]


def encode_tasks(
    tokenizer: Tokenizer, tasks: list[Task], setting: str, max_length: int, seed: int = 0
) -> list[Encoded]:
    """Every instance of every task as a training example (first reference as the target).

    Each example gets one of its task's instructions (the instruction or a paraphrase), drawn with
    ``seed``, so that training sees every wording the task offers.
    """
    rng = random.Random(seed)
    out = []
    for t_idx, task in enumerate(tasks):
        for inst in task.instances:
            prompt = build_prompt(tokenizer, task, inst, setting, instruction=rng.choice(task.instructions))
            ids, labels = encode_pair(tokenizer, prompt, inst.outputs[0], max_length)
            out.append(Encoded(t_idx, ids, labels))
    return out

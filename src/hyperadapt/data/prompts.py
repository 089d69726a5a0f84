"""Turn a task instance into a prompt and a training target, within a token budget.

Settings: ``def`` (instruction + input), ``def2pos`` (instruction + two positive examples + input),
``none`` (input only: what a method that conditions through weights sees). Prompts use the tokenizer's
chat template when it has one.

**One truncation rule** (:func:`fit_prompt`), used by training (:func:`encode_example`) and evaluation
alike, so that both see the same prompt. The template (chat header and system text, the ``Definition:``
label, the ``Input:`` line and the answer cue) is always kept; when the prompt is over budget, what is cut
is, in this order: the tail of the instance input (down to a floor of ``max(16, budget // 8)`` tokens,
marked with :data:`CUT_MARKER`), the positive examples (last first), and only then the tail of the
definition (marked too). The rest of the input then goes as well, down to nothing, before
:class:`PromptTooLong` is raised: the template and the first words of the definition must fit.
:class:`TruncationStats` counts what was cut, and its ``warn`` logs one line per run.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.data.schema import Example, Instance, Task
from hyperadapt.models import end_of_turn_ids

log = logging.getLogger(__name__)

Setting = Literal["def", "def2pos", "none"]
SETTINGS: tuple[str, ...] = ("def", "def2pos", "none")
CUT_MARKER = " [...]"  # appended to a cut input or definition
MIN_DEFINITION_TOKENS = 8  # the first words of a definition always survive


class PromptTooLong(ValueError):
    """Even the kept parts of a prompt (template, first words of the definition) exceed the budget."""


def check_setting(setting: str) -> None:
    if setting not in SETTINGS:
        raise ValueError(f"unknown prompt setting {setting!r}: use one of {', '.join(SETTINGS)}")


def user_message(instruction: str, input_text: str, setting: str, examples: Sequence[Example] = ()) -> str:
    """The text of the user turn for one instance."""
    check_setting(setting)
    if setting == "none":
        return input_text
    parts = [f"Definition: {instruction.strip()}"]
    if setting == "def2pos" and examples:
        for i, ex in enumerate(examples[:2], 1):
            parts.append(f"Positive Example {i}\nInput: {ex.input}\nOutput: {ex.output}")
        parts.append("Now complete the following example.")
    parts.append(f"Input: {input_text}")
    return "\n\n".join(parts)


def render(tokenizer: Tokenizer, user_text: str) -> str:
    """The full prompt string, ending where the model's answer begins."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": user_text}]
        return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return f"{user_text}\nOutput: "


@dataclass
class TruncationStats:
    """How many prompts a run fitted, and how many lost part of their input, examples or definition."""

    prompts: int = 0
    affected: int = 0  # prompts that lost anything
    input_cut: int = 0
    examples_dropped: int = 0
    definition_cut: int = 0
    budgets: set[int] = field(default_factory=set)  # the token limits the caller fitted to

    def record(self, input_cut: bool, examples_dropped: bool, definition_cut: bool) -> None:
        self.prompts += 1
        self.input_cut += input_cut
        self.examples_dropped += examples_dropped
        self.definition_cut += definition_cut
        self.affected += input_cut or examples_dropped or definition_cut

    def as_dict(self) -> dict[str, int]:
        return {"prompts": self.prompts, "affected": self.affected, "input_cut": self.input_cut,
                "examples_dropped": self.examples_dropped, "definition_cut": self.definition_cut}

    def summary(self, what: str = "prompts") -> str:
        budget = "/".join(str(b) for b in sorted(self.budgets)) or "?"
        return (
            f"{self.affected} of {self.prompts} {what} did not fit in {budget} tokens and were cut: "
            f"{self.input_cut} lost the tail of their input, {self.examples_dropped} positive examples, "
            f"{self.definition_cut} the tail of their definition"
        )

    def warn(self, what: str = "prompts") -> None:
        """Log one warning for the whole run when anything was cut (nothing otherwise)."""
        if self.affected:
            log.warning(self.summary(what))


def _count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def _head(tokenizer: Tokenizer, text: str, tokens: int) -> str:
    """The first ``tokens`` tokens of ``text`` as text, with the cut marker (empty text for 0 tokens)."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if tokens >= len(ids):
        return text
    if tokens <= 0:
        return ""
    return str(tokenizer.decode(ids[:tokens])).rstrip() + CUT_MARKER


def fit_prompt(
    tokenizer: Tokenizer,
    instruction: str,
    input_text: str,
    setting: str,
    examples: Sequence[Example] = (),
    max_tokens: int | None = None,
    stats: TruncationStats | None = None,
) -> str:
    """The rendered prompt of one instance within ``max_tokens`` tokens, cut by the module's rule.

    ``max_tokens=None`` means no budget (the prompt as it is). Raises :class:`PromptTooLong` when the
    template and the first :data:`MIN_DEFINITION_TOKENS` tokens of the definition cannot fit, and
    ``ValueError`` for an unknown setting or a budget below 1.
    """
    check_setting(setting)
    examples = list(examples[:2]) if setting == "def2pos" else []

    def build(definition: str, text: str, demos: Sequence[Example]) -> str:
        return render(tokenizer, user_message(definition, text, setting, demos))

    prompt = build(instruction, input_text, examples)
    if max_tokens is None:
        return prompt
    if max_tokens < 1:
        raise ValueError(f"the prompt budget must be at least 1 token, got {max_tokens}")
    cut = {"input_cut": False, "examples_dropped": False, "definition_cut": False}

    def done(text: str) -> str:
        if stats is not None:
            stats.record(**cut)
        return text

    if _count(tokenizer, prompt) <= max_tokens:
        return done(prompt)
    input_len = _count(tokenizer, input_text)
    floor = min(input_len, max(16, max_tokens // 8))

    def fit_input(definition: str, demos: Sequence[Example], least: int) -> str | None:
        """The prompt with as much of the input as fits (at least ``least`` tokens), or None."""
        room = max_tokens - _count(tokenizer, build(definition, "", demos)) - _count(tokenizer, CUT_MARKER)
        keep = min(input_len, room)
        while keep >= least:
            text = build(definition, _head(tokenizer, input_text, keep), demos)
            if _count(tokenizer, text) <= max_tokens:
                return text
            keep -= max(1, (_count(tokenizer, text) - max_tokens))
        return None

    # 1. the tail of the input, down to its floor
    cut["input_cut"] = True
    text = fit_input(instruction, examples, floor)
    if text is not None:
        return done(text)
    # 2. the positive examples, last first
    while examples:
        examples = examples[:-1]
        cut["examples_dropped"] = True
        text = fit_input(instruction, examples, floor)
        if text is not None:
            return done(text)
    # 3. the tail of the definition (the input at its floor), then the rest of the input
    if setting != "none":
        cut["definition_cut"] = True
        def_ids = tokenizer(instruction, add_special_tokens=False).input_ids
        least_def = min(len(def_ids), MIN_DEFINITION_TOKENS)
        for least_input in (floor, 0):
            kept_input = _head(tokenizer, input_text, least_input)
            over = _count(tokenizer, build(instruction, kept_input, [])) - max_tokens
            keep = len(def_ids) - over - _count(tokenizer, CUT_MARKER)
            while keep >= least_def:
                text = build(_head(tokenizer, instruction, keep), kept_input, [])
                excess = _count(tokenizer, text) - max_tokens
                if excess <= 0:
                    return done(text)
                keep -= max(1, excess)
    else:
        text = fit_input(instruction, [], 0)
        if text is not None:
            return done(text)
    kept = "the chat template" if setting == "none" else (
        f"the chat template and the first {MIN_DEFINITION_TOKENS} tokens of the definition")
    raise PromptTooLong(
        f"a prompt budget of {max_tokens} tokens cannot hold {kept}: raise the budget "
        "(train.max_length, or --max-prompt-tokens for evaluation)"
    )


def build_prompt(
    tokenizer: Tokenizer, task: Task, instance: Instance, setting: str, instruction: str | None = None,
    max_tokens: int | None = None, stats: TruncationStats | None = None,
) -> str:
    """Prompt for ``instance`` of ``task`` within ``max_tokens`` (see :func:`fit_prompt`); ``instruction``
    overrides the task's own (paraphrases)."""
    return fit_prompt(tokenizer, instruction or task.instruction, instance.input, setting,
                      task.positive_examples, max_tokens, stats)


def answer_ids(tokenizer: Tokenizer, output: str) -> list[int]:
    """The tokens a model is trained to produce for ``output``: its stripped text, then the end of turn.

    Evaluation decodes an answer up to the end of turn and strips it, so these are exactly the tokens
    whose decoded text is compared with the reference.
    """
    ids: list[int] = tokenizer(output.strip(), add_special_tokens=False).input_ids
    return ids + end_of_turn_ids(tokenizer)[:1]


def encode_example(
    tokenizer: Tokenizer,
    output: str,
    max_length: int,
    *,
    instruction: str,
    input_text: str,
    setting: str,
    examples: Sequence[Example] = (),
    stats: TruncationStats | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer + end of turn, and labels that mask the prompt with -100.

    The answer (:func:`answer_ids`) is kept whole up to half of ``max_length`` tokens (a longer one keeps
    its first half-budget of tokens); the prompt gets the rest of ``max_length`` by :func:`fit_prompt`'s
    rule. Raises :class:`PromptTooLong` when the prompt's kept parts do not fit in the rest.
    """
    target = answer_ids(tokenizer, output)[: max(1, max_length // 2)]
    if stats is not None:
        stats.budgets.add(max_length)
    prompt = fit_prompt(tokenizer, instruction, input_text, setting, examples, max_length - len(target), stats)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    return prompt_ids + target, [-100] * len(prompt_ids) + target


def encode_instance(
    tokenizer: Tokenizer, task: Task, instance: Instance, setting: str, max_length: int,
    instruction: str | None = None, stats: TruncationStats | None = None,
) -> tuple[list[int], list[int]]:
    """:func:`encode_example` for ``instance`` of ``task`` with its first reference as the target."""
    return encode_example(tokenizer, instance.outputs[0], max_length, instruction=instruction or task.instruction,
                          input_text=instance.input, setting=setting, examples=task.positive_examples,
                          stats=stats)


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
    ``seed``, so that training sees every wording the task offers. Over-long prompts are cut by
    :func:`fit_prompt`'s rule, with one warning for the whole call.
    """
    rng = random.Random(seed)
    stats = TruncationStats()
    out = []
    for t_idx, task in enumerate(tasks):
        for inst in task.instances:
            ids, labels = encode_instance(tokenizer, task, inst, setting, max_length,
                                          instruction=rng.choice(task.instructions), stats=stats)
            out.append(Encoded(t_idx, ids, labels))
    stats.warn("training examples")
    return out

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

**User text is text.** Only the chat template produces the model's control tokens: the user's text and the
task's data are tokenised literally (:func:`literal_ids`), so a ``<|im_end|>`` typed into an input or found in
a training output is the characters ``<|im_end|>``, never an end of turn. Every prompt rendered here is
tokenised by :func:`prompt_ids` (a chat by :func:`chat_ids`), and every answer by :func:`answer_ids`.
"""

from __future__ import annotations

import logging
import random
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.data.schema import Example, Instance, Task
from hyperadapt.errors import UserError
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
        raise UserError(f"unknown prompt setting {setting!r}: use one of {', '.join(SETTINGS)}")


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
    """The full prompt string, ending where the model's answer begins (tokenise it with :func:`prompt_ids`)."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": user_text}]
        return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return f"{user_text}\nOutput: "


def literal_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` read as plain text: a control token's string in it (``<|im_end|>``) becomes the
    tokens of its characters, not the control token."""
    ids: list[int] = tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids
    return ids


def _whole_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` tokenised whole, control tokens included."""
    ids: list[int] = tokenizer(text, add_special_tokens=False).input_ids
    return ids


def _control_strings(tokenizer: Tokenizer) -> list[str]:
    return [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]


_FRAMES: weakref.WeakKeyDictionary[Tokenizer, tuple[str | None, str, str]] = weakref.WeakKeyDictionary()
_SLOT = "\ue000{}\ue001"  # a message's content while the template renders (private-use characters)


def _frame(tokenizer: Tokenizer) -> tuple[str, str]:
    """The text :func:`render` puts before and after the user's text."""
    template = getattr(tokenizer, "chat_template", None)
    cached = _FRAMES.get(tokenizer)
    if cached is None or cached[0] != template:
        before, _, after = render(tokenizer, _SLOT.format(0)).partition(_SLOT.format(0))
        cached = _FRAMES[tokenizer] = (template, before, after)
    return cached[1], cached[2]


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt made by :func:`render` (or :func:`fit_prompt`): the template's control tokens
    are control tokens, the user's text in it is read literally (:func:`literal_ids`).

    A prompt whose user text holds no control token's string gets exactly the ids of tokenising it whole.
    A string that :func:`render` did not make is tokenised whole, control tokens included (its caller wrote
    the template).
    """
    before, after = _frame(tokenizer)
    if not (prompt.startswith(before) and prompt.endswith(after) and len(prompt) >= len(before) + len(after)):
        return _whole_ids(tokenizer, prompt)
    user = prompt[len(before) : len(prompt) - len(after)]
    if not any(c in user for c in _control_strings(tokenizer)):
        return _whole_ids(tokenizer, prompt)
    return _whole_ids(tokenizer, before) + literal_ids(tokenizer, user) + _whole_ids(tokenizer, after)


def chat_ids(tokenizer: Tokenizer, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of ``messages`` (``{"role", "content"}``) under the tokenizer's chat template, with every
    message's content read literally: only the template makes control tokens. Raises ``ValueError`` when the
    template does not place each content exactly once (it rewrites contents), and jinja's errors when it
    refuses the messages."""
    slots = [{**m, "content": _SLOT.format(i)} for i, m in enumerate(messages)]
    rendered = str(tokenizer.apply_chat_template(slots, add_generation_prompt=add_generation_prompt, tokenize=False))
    parts = re.split("\ue000(\\d+)\ue001", rendered)  # template, index, template, index, ..., template
    if sorted(int(i) for i in parts[1::2]) != list(range(len(messages))):
        raise ValueError("the chat template rewrites or repeats message contents: cannot keep user text literal")
    ids: list[int] = []
    for k, part in enumerate(parts):
        if k % 2:
            ids += literal_ids(tokenizer, messages[int(part)]["content"])
        elif part:
            ids += tokenizer(part, add_special_tokens=False).input_ids
    return ids


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
        return {
            "prompts": self.prompts,
            "affected": self.affected,
            "input_cut": self.input_cut,
            "examples_dropped": self.examples_dropped,
            "definition_cut": self.definition_cut,
        }

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


def _count(tokenizer: Tokenizer, prompt: str) -> int:
    """Tokens of a rendered prompt, read as :func:`prompt_ids` reads it."""
    return len(prompt_ids(tokenizer, prompt))


def _head(tokenizer: Tokenizer, text: str, tokens: int) -> str:
    """The first ``tokens`` tokens of ``text`` as text, with the cut marker (empty text for 0 tokens)."""
    ids = literal_ids(tokenizer, text)
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
        raise UserError(f"the prompt budget must be at least 1 token, got {max_tokens}")
    cut = {"input_cut": False, "examples_dropped": False, "definition_cut": False}

    def done(text: str) -> str:
        if stats is not None:
            stats.record(**cut)
        return text

    if _count(tokenizer, prompt) <= max_tokens:
        return done(prompt)
    input_len = len(literal_ids(tokenizer, input_text))
    floor = min(input_len, max(16, max_tokens // 8))

    def fit_input(definition: str, demos: Sequence[Example], least: int) -> str | None:
        """The prompt with as much of the input as fits (at least ``least`` tokens), or None."""
        room = max_tokens - _count(tokenizer, build(definition, "", demos)) - len(literal_ids(tokenizer, CUT_MARKER))
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
        def_ids = literal_ids(tokenizer, instruction)
        least_def = min(len(def_ids), MIN_DEFINITION_TOKENS)
        for least_input in (floor, 0):
            kept_input = _head(tokenizer, input_text, least_input)
            over = _count(tokenizer, build(instruction, kept_input, [])) - max_tokens
            keep = len(def_ids) - over - len(literal_ids(tokenizer, CUT_MARKER))
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
    kept = (
        "the chat template"
        if setting == "none"
        else (f"the chat template and the first {MIN_DEFINITION_TOKENS} tokens of the definition")
    )
    raise PromptTooLong(
        f"a prompt budget of {max_tokens} tokens cannot hold {kept}: raise the budget "
        "(train.max_length, or --max-prompt-tokens for evaluation)"
    )


@dataclass(frozen=True)
class PromptStyle:
    """How a run's prompts are built, recorded in its ``run.json`` as litgpt records a ``prompt_style``: the
    user turn of ``setting`` (:func:`user_message`: ``Definition: {condition}\n\nInput: {input}`` for ``def``,
    the input alone for ``none``) through the model's chat template (:func:`render`), cut by :func:`fit_prompt`."""

    setting: str = "def"

    def __post_init__(self) -> None:
        check_setting(self.setting)

    def user_text(self, condition: str, input_text: str) -> str:
        """The user turn of ``input_text`` under ``condition`` (what a router reads)."""
        return user_message(condition, input_text, self.setting)

    def prompt(
        self,
        tokenizer: Tokenizer,
        condition: str,
        input_text: str,
        max_tokens: int | None = None,
        stats: TruncationStats | None = None,
    ) -> str:
        """The rendered prompt, within ``max_tokens`` (see :func:`fit_prompt`)."""
        return fit_prompt(tokenizer, condition, input_text, self.setting, (), max_tokens, stats)

    def to_dict(self) -> dict[str, str]:
        return {"setting": self.setting}


def build_prompt(
    tokenizer: Tokenizer,
    task: Task,
    instance: Instance,
    setting: str,
    instruction: str | None = None,
    max_tokens: int | None = None,
    stats: TruncationStats | None = None,
) -> str:
    """Prompt for ``instance`` of ``task`` within ``max_tokens`` (see :func:`fit_prompt`); ``instruction``
    overrides the task's own (paraphrases)."""
    return fit_prompt(
        tokenizer, instruction or task.instruction, instance.input, setting, task.positive_examples, max_tokens, stats
    )


def answer_ids(tokenizer: Tokenizer, output: str) -> list[int]:
    """The tokens a model is trained to produce for ``output``: its stripped text, then the end of turn.

    Evaluation decodes an answer up to the end of turn and strips it, so these are exactly the tokens
    whose decoded text is compared with the reference. ``output`` is read literally: a ``<|im_end|>`` in it
    is text, so the one end of turn is the last label.
    """
    return literal_ids(tokenizer, output.strip()) + end_of_turn_ids(tokenizer)[:1]


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
    ids = prompt_ids(tokenizer, prompt)
    return ids + target, [-100] * len(ids) + target


def encode_instance(
    tokenizer: Tokenizer,
    task: Task,
    instance: Instance,
    setting: str,
    max_length: int,
    instruction: str | None = None,
    stats: TruncationStats | None = None,
) -> tuple[list[int], list[int]]:
    """:func:`encode_example` for ``instance`` of ``task`` with its first reference as the target."""
    return encode_example(
        tokenizer,
        instance.outputs[0],
        max_length,
        instruction=instruction or task.instruction,
        input_text=instance.input,
        setting=setting,
        examples=task.positive_examples,
        stats=stats,
    )


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
            ids, labels = encode_instance(
                tokenizer, task, inst, setting, max_length, instruction=rng.choice(task.instructions), stats=stats
            )
            out.append(Encoded(t_idx, ids, labels))
    stats.warn("training examples")
    return out

"""Training examples of TAGI's stages: teacher/student prompts per instance, and a/b/c text segments.

Stage 2 example: the instruction the hypernetwork reads, the student's tokens (instruction in the prompt
with fusion, input only without) and the teacher's tokens (instruction always in the prompt), with the
same answer tokens. Stage 1 example (TAGI's pretraining): a window of plain text split into segments a,
b, c; the hypernetwork reads a, the model reads b and predicts c.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt import distributed
from hyperadapt.data.prompts import TruncationStats, encode_instance, literal_ids
from hyperadapt.data.schema import Task
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.methods.tagi.instructions import InstructionVectors, instruction_text
from hyperadapt.training import Batch, pad_batch


@dataclass(frozen=True)
class TaskExample:
    """One instance as teacher and student see it."""

    task_index: int
    instruction: str
    student: tuple[list[int], list[int]]
    teacher: tuple[list[int], list[int]]


@dataclass(frozen=True)
class SegmentExample:
    """Pretraining: segment a as text (for the hypernetwork), b + c as tokens with labels on c only."""

    instruction: str
    student: tuple[list[int], list[int]]


def encode_examples(
    tokenizer: Tokenizer, tasks: list[Task], setting: str, student_setting: str, max_length: int, seed: int
) -> list[TaskExample]:
    """Every instance of every task; each draws one wording of its task's instruction with ``seed``."""
    rng = random.Random(seed)
    stats = TruncationStats()
    out = []
    for t_idx, task in enumerate(tasks):
        for inst in task.instances:
            wording = rng.choice(task.instructions)
            teacher = encode_instance(tokenizer, task, inst, setting, max_length, wording, stats)
            student = teacher
            if student_setting != setting:
                student = encode_instance(tokenizer, task, inst, student_setting, max_length, wording, stats)
            out.append(TaskExample(t_idx, instruction_text(task, setting, wording), student, teacher))
    stats.warn("teacher and student prompts")
    return out


def task_passages(tasks: list[Task], seed: int) -> list[str]:
    """TAGI's default pretraining text: per task, its instances' inputs and outputs in a shuffled order."""
    rng = random.Random(seed)
    passages = []
    for task in tasks:
        lines = [f"{inst.input}\n{inst.outputs[0]}" for inst in task.instances]
        rng.shuffle(lines)
        passages.append("\n\n".join(lines))
    return passages


def file_passages(path: str | Path) -> list[str]:
    """Passages of a plain-text file: blocks separated by blank lines."""
    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"pretraining text file not found: {path}")
    passages = [p.strip() for p in path.read_text().split("\n\n") if p.strip()]
    if not passages:
        raise UserError(f"pretraining text file {path} is empty")
    return passages


def segment_examples(
    tokenizer: Tokenizer, passages: Sequence[str], lengths: tuple[int, int, int], windows_per_passage: int = 64
) -> list[SegmentExample]:
    """Consecutive windows of a+b+c tokens of each passage (at most ``windows_per_passage`` each)."""
    la, lb, lc = lengths
    width = la + lb + lc
    out = []
    for text in passages:
        ids = literal_ids(tokenizer, text)
        for start in range(0, min(len(ids) - width + 1, windows_per_passage * width), width):
            a, b, c = ids[start : start + la], ids[start + la : start + la + lb], ids[start + la + lb : start + width]
            out.append(SegmentExample(str(tokenizer.decode(a)), (b + c, [-100] * lb + c)))
    if not out:
        raise UserError(
            f"no pretraining window of {width} tokens (a={la}, b={lb}, c={lc}) fits in the passages: "
            "use shorter segments or longer texts"
        )
    return out


def batch_maker(
    examples: Sequence[TaskExample | SegmentExample],
    vectors: InstructionVectors,
    pad_id: int,
    device: torch.device,
    teacher_groups: Sequence[int] | None = None,
) -> Callable[[list[int]], Batch]:
    """``make_batch(indices)`` for the Trainer: student tokens, instruction vectors of the batch's distinct
    instructions (``vectors [U, D]``, ``instruction_index [B]``) and, with ``teacher_groups`` (a teacher
    index per task), the teacher's tokens and ``teacher [B]``."""

    if distributed.launched():
        # every process encodes every instruction now, in one order: the encoder may be the (sharded) base
        # model, whose forwards must run on all processes together
        vectors(list(dict.fromkeys(ex.instruction for ex in examples)))

    def make_batch(indices: list[int]) -> Batch:
        chosen = [examples[i] for i in indices]
        texts = list(dict.fromkeys(ex.instruction for ex in chosen))
        batch = pad_batch([ex.student for ex in chosen], pad_id)
        batch["vectors"] = vectors(texts)  # [U, D]
        batch["instruction_index"] = torch.tensor([texts.index(ex.instruction) for ex in chosen])  # [B]
        if teacher_groups is not None:
            taught = _task_examples(chosen)
            teacher = pad_batch([ex.teacher for ex in taught], pad_id)
            batch.update({f"teacher_{k}": v for k, v in teacher.items()})
            batch["teacher"] = torch.tensor([teacher_groups[ex.task_index] for ex in taught])  # [B]
        return {k: v.to(device) for k, v in batch.items()}

    return make_batch


def _task_examples(examples: list[TaskExample | SegmentExample]) -> list[TaskExample]:
    """``examples``, which must all be task examples: only those have a teacher."""
    tasks = [ex for ex in examples if isinstance(ex, TaskExample)]
    if len(tasks) != len(examples):
        raise ValueError("teacher_groups need task examples: pretraining segments have no teacher")
    return tasks

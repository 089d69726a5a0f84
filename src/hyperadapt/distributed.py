"""Several training processes on Hugging Face Accelerate (``accelerate launch -m hyperadapt train ...``).

Data parallel over whatever the launcher starts (gloo on CPUs, NCCL on GPUs): every process holds the frozen
base model and the trainable parameters; the training loop gives each process its share of every global
micro-batch (``shard``), weights its loss by its share of the batch's answer tokens, and averages the gradients
(``average_gradients``), so a step equals the single-process step on the same global batch. Only the main
process writes files (``hyperadapt.io`` calls :func:`main_writes`); the others wait for it at a barrier.
Without a launcher (one process) every function here is a no-op.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import torch

from hyperadapt.errors import UserError

T = TypeVar("T")


def launched() -> bool:
    """True when a launcher started more than one process (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@functools.lru_cache(maxsize=1)
def _state():
    from accelerate import PartialState

    # joins the process group (gloo on CPUs, NCCL on GPUs) and sets this process's device
    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    return _state().num_processes if launched() else 1


def rank() -> int:
    return _state().process_index if launched() else 0


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device | None:
    """This process's device under a launcher (``cuda:LOCAL_RANK`` or the CPU), else None."""
    return _state().device if launched() else None


def barrier() -> None:
    if launched():
        _state().wait_for_everyone()


def shard(indices: Sequence[T]) -> list[T]:
    """This process's share of a global micro-batch: every ``world_size``-th example from its rank."""
    if not launched():
        return list(indices)
    if len(indices) < world_size():
        raise UserError(f"train.batch_size={len(indices)} is smaller than the {world_size()} processes: "
                         "give every process at least one example")
    return list(indices)[rank() :: world_size()]


def all_sum(value: float) -> float:
    """The sum of ``value`` over processes."""
    if not launched():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_reduce_device())
    torch.distributed.all_reduce(t)
    return float(t.item())


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace every gradient by its mean over processes (a parameter without a gradient counts as zeros)."""
    if not launched():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)
        p.grad /= world_size()


_writing = [0]  # depth of main_writes calls on this process: nested writes do not wait again


def main_writes(write: Callable[[], T]) -> T | None:
    """Run ``write()`` on the main process only, then let every process continue together."""
    if _writing[0] or not launched():
        return write()
    _writing[0] += 1
    try:
        result = write() if is_main() else None
    finally:
        _writing[0] -= 1
    barrier()
    return result


def _reduce_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" \
        else torch.device("cpu")

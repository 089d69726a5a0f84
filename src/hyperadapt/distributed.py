"""Several training processes on Hugging Face Accelerate (``accelerate launch -m hyperadapt train ...``).

Data parallel over whatever the launcher starts (gloo on CPUs, NCCL on GPUs): every process holds the frozen
base model and the trainable parameters; the training loop gives each process its share of every global
micro-batch (``shard``), weights its loss by its share of the batch's answer tokens, and averages the gradients
(``average_gradients``), so a step equals the single-process step on the same global batch. Only the main
process writes files (``hyperadapt.io`` calls :func:`main_writes`); the others wait for it at a barrier.
Without a launcher (one process) every function here is a no-op.

Under ``accelerate launch --use_fsdp --fsdp_version 2`` the frozen base model is also sharded
(:func:`shard_frozen`, PyTorch's FSDP2 ``fully_shard`` on each decoder layer): every process keeps 1/N of
each layer's frozen weights and gathers a layer only while it runs. The trainable parameters (LoRA,
hypernetworks, β networks) stay whole on every process and the loop averages their gradients as under DDP,
so checkpoints, resume and the step's arithmetic are the same for one process, DDP and FSDP.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

import torch

from hyperadapt.errors import UserError

if TYPE_CHECKING:
    from accelerate import PartialState

T = TypeVar("T")


def launched() -> bool:
    """True when a launcher started more than one process (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@functools.lru_cache(maxsize=1)
def _state() -> PartialState:
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


def fsdp() -> bool:
    """True under ``accelerate launch --use_fsdp`` with several processes. Raises ``ValueError`` for FSDP1
    (``--fsdp_version 1``): only FSDP2 keeps the trainable parameters out of the shards."""
    if not launched() or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    if os.environ.get("FSDP_VERSION", "2") != "2":
        raise ValueError(
            f"FSDP version {os.environ['FSDP_VERSION']} is not supported: launch with --use_fsdp --fsdp_version 2"
        )
    return True


def shard_frozen(modules: Iterable[torch.nn.Module]) -> None:
    """Shard each module's frozen parameters over the processes (FSDP2 ``fully_shard``, dim 0), keeping
    its trainable ones whole; a module sharded before is left as it is. A no-op unless :func:`fsdp`.

    Every process must then run the modules' forwards in the same order (FSDP gathers a module's shards
    with a collective call): the training loop does, since each process runs the same steps."""
    if not fsdp():
        return
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    _sharded[0] += 1
    mesh = init_device_mesh(_state().device.type, (world_size(),))  # fsdp(): launched, so this process's device
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() in ("true", "1", "full_shard")
    for module in modules:
        if isinstance(module, FSDPModule):
            continue
        trainable = {p for p in module.parameters() if p.requires_grad}
        fully_shard(module, mesh=mesh, reshard_after_forward=reshard, ignored_params=trainable or None)


_sharded = [0]  # how many times shard_frozen sharded a model in this process


def strategy() -> str:
    """How this process trains: ``"fsdp"`` (a base model was sharded), ``"ddp"`` (several processes, each
    with the whole base) or ``"single"``; recorded in every checkpoint."""
    if not launched():
        return "single"
    return "fsdp" if _sharded[0] else "ddp"


def barrier() -> None:
    if launched():
        _state().wait_for_everyone()


def shard(indices: Sequence[T]) -> list[T]:
    """This process's share of a global micro-batch: every ``world_size``-th example from its rank."""
    if not launched():
        return list(indices)
    if len(indices) < world_size():
        raise UserError(
            f"train.batch_size={len(indices)} is smaller than the {world_size()} processes: "
            "give every process at least one example"
        )
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
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.distributed.get_backend() == "nccl"
        else torch.device("cpu")
    )

"""Process-group helpers over ``torch.distributed``, usable with or without a process group.

Without an initialised group every helper behaves as in a single process: world size 1, rank
0, gathers return ``[obj]``, barriers return at once. Python objects always travel over a gloo
(CPU) group, so gathering metrics or predictions never takes GPU memory under NCCL.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

# One gloo group per default process group, created collectively on first use.
_GLOO_GROUPS: dict = {}


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group; 1 when torch.distributed is not initialised."""
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    """Rank of this process in the default group; 0 when torch.distributed is not initialised."""
    return dist.get_rank() if is_distributed() else 0


def get_local_rank() -> int:
    """Rank of this process among those on its machine (``$LOCAL_RANK``, set by ``launch``
    and by torchrun); 0 without a process group."""
    if not is_distributed():
        return 0
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Block until every process of the default group has called this; returns at once in a single process."""
    if get_world_size() > 1:
        dist.barrier(**_barrier_device())


def _barrier_device() -> Dict[str, Any]:
    """Under NCCL, name the current CUDA device for the barrier (otherwise torch guesses one and warns)."""
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        return {"device_ids": [torch.cuda.current_device()]}
    return {}


def _cpu_group() -> Optional[dist.ProcessGroup]:
    """The group to exchange Python objects on: the default group if it is gloo, else a gloo
    group spanning the same processes."""
    if dist.get_backend() == dist.Backend.GLOO:
        return None
    world = dist.group.WORLD
    if world not in _GLOO_GROUPS:
        _GLOO_GROUPS[world] = dist.new_group(backend=dist.Backend.GLOO)
    return _GLOO_GROUPS[world]


def all_gather(obj: Any) -> List[Any]:
    """Every process's picklable ``obj``, in rank order, on every process.

    Must be called by every process."""
    if get_world_size() == 1:
        return [obj]
    gathered: List[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj, group=_cpu_group())
    return gathered


def gather_to_main_process(obj: Any) -> Optional[List[Any]]:
    """Every process's picklable ``obj``, in rank order, on rank 0; ``None`` on other ranks.

    Must be called by every process. Without a multi-process group, returns ``[obj]``.
    """
    if get_world_size() == 1:
        return [obj]
    gathered: Optional[List[Any]] = [None] * get_world_size() if is_main_process() else None
    dist.gather_object(obj, gathered, dst=0, group=_cpu_group())
    return gathered


def reduce_dict(values: Dict[str, torch.Tensor], average: bool = True) -> Dict[str, torch.Tensor]:
    """Sum (or, with ``average``, mean) each scalar tensor of ``values`` over all processes.

    Every process must pass the same keys. The result is exact on rank 0 (other ranks receive
    partial sums, as with ``torch.distributed.reduce``); keys are processed in sorted order.
    """
    world_size = get_world_size()
    if world_size == 1:
        return dict(values)
    with torch.no_grad():
        names = sorted(values)
        stacked = torch.stack([values[name].detach().reshape(()) for name in names])
        dist.reduce(stacked, dst=0)
        if average and is_main_process():
            stacked /= world_size
    return dict(zip(names, stacked))

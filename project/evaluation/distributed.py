"""Collecting per-process evaluation state on the main process through ``torch.distributed``."""
from __future__ import annotations

from typing import Any, List, Optional

import torch.distributed as dist

# One CPU (gloo) group per default process group, so that Python objects never travel through
# GPU memory when the default backend is NCCL.
_GLOO_GROUPS: dict = {}


def get_world_size() -> int:
    """Number of processes in the default group; 1 when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def get_rank() -> int:
    """Rank of this process in the default group; 0 when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank()


def is_main_process() -> bool:
    return get_rank() == 0


def _cpu_group() -> Optional[dist.ProcessGroup]:
    """The group to exchange Python objects on: the default group if it is gloo, else a gloo
    group spanning the same processes (created once, collectively, on first use)."""
    if dist.get_backend() == dist.Backend.GLOO:
        return None
    world = dist.group.WORLD
    if world not in _GLOO_GROUPS:
        _GLOO_GROUPS[world] = dist.new_group(backend=dist.Backend.GLOO)
    return _GLOO_GROUPS[world]


def gather_to_main_process(obj: Any) -> Optional[List[Any]]:
    """Gather one picklable object from every process onto rank 0.

    Must be called by every process. Returns the list of objects in rank order on rank 0 and
    ``None`` elsewhere; without an initialised multi-process group, returns ``[obj]``.
    """
    if get_world_size() == 1:
        return [obj]
    group = _cpu_group()
    gathered: Optional[List[Any]] = [None] * get_world_size() if is_main_process() else None
    dist.gather_object(obj, gathered, dst=0, group=group)
    return gathered

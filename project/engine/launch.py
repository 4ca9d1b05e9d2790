"""``launch``: run a function in one process per device, on one or several machines, joined
by ``torch.distributed`` (NCCL on GPUs, gloo on CPUs); also works under ``torchrun``."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..utils import comm

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def find_free_port() -> int:
    """A TCP port on localhost that is free right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` (or another launcher setting its variables) started this process."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = "auto",
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
    backend: Optional[str] = None,
) -> None:
    """Call ``main_func(*args)`` in every process of a distributed job.

    Under ``torchrun`` (``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set), this process joins
    the job torchrun describes (``env://``) and the process counts given here are ignored.
    Otherwise, with ``num_machines * num_gpus_per_machine`` processes in all, this machine
    spawns ``num_gpus_per_machine`` of them, ranked from ``machine_rank *
    num_gpus_per_machine``; one process in all just calls ``main_func``. ``dist_url`` is where
    the processes meet (``"tcp://host:port"``); ``"auto"`` picks a free port on localhost (one
    machine only). ``backend`` defaults to NCCL where CUDA is available, else gloo; each
    process uses the GPU of its local rank, or with gloo an equal share of the CPU cores
    (unless ``OMP_NUM_THREADS`` is set). An exception in any process ends the job and is
    re-raised here (as ``torch.multiprocessing.ProcessRaisedException``).
    """
    backend = backend or default_backend()
    if launched_by_torchrun():
        if num_gpus_per_machine * num_machines > 1:
            logger.warning(
                "Started by torchrun: ignoring num_gpus=%d / num_machines=%d, the job has %s processes",
                num_gpus_per_machine,
                num_machines,
                os.environ["WORLD_SIZE"],
            )
        _run_in_process_group(
            main_func,
            args,
            backend,
            "env://",
            int(os.environ["WORLD_SIZE"]),
            int(os.environ["RANK"]),
            int(os.environ["LOCAL_RANK"]),
            timeout,
        )
        return
    if num_gpus_per_machine < 1 or num_machines < 1 or not 0 <= machine_rank < num_machines:
        raise ValueError(
            f"num_gpus={num_gpus_per_machine}, num_machines={num_machines}, machine_rank={machine_rank}: "
            "need num_gpus >= 1, num_machines >= 1 and 0 <= machine_rank < num_machines"
        )
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return
    if dist_url in (None, "", "auto"):
        if num_machines > 1:
            raise ValueError("dist_url='auto' works on one machine only; give tcp://<machine 0 address>:<port>")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if backend == "nccl" and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"num_gpus={num_gpus_per_machine} processes per machine, but only "
            f"{torch.cuda.device_count()} GPUs are visible"
        )
    mp.start_processes(
        _spawned_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, args, backend, dist_url, world_size, num_gpus_per_machine, machine_rank, timeout),
        start_method="spawn",
        daemon=False,
    )


def _spawned_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    args: Sequence[Any],
    backend: str,
    dist_url: str,
    world_size: int,
    num_per_machine: int,
    machine_rank: int,
    timeout: timedelta,
) -> None:
    rank = machine_rank * num_per_machine + local_rank
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(local_rank),
            "LOCAL_WORLD_SIZE": str(num_per_machine),
        }
    )
    if backend != "nccl" and "OMP_NUM_THREADS" not in os.environ:
        # CPU processes share the cores instead of each starting one thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_per_machine))
    _run_in_process_group(main_func, args, backend, dist_url, world_size, rank, local_rank, timeout)


def _run_in_process_group(
    main_func: Callable[..., Any],
    args: Sequence[Any],
    backend: str,
    init_method: str,
    world_size: int,
    rank: int,
    local_rank: int,
    timeout: timedelta,
) -> None:
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method=init_method, world_size=world_size, rank=rank, timeout=timeout)
    try:
        comm.synchronize()
        main_func(*args)
    finally:
        dist.destroy_process_group()

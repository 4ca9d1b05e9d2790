"""Seeding, deterministic mode, and capturing / restoring every random number generator.

The generators are Python's ``random``, NumPy's global one, torch's CPU generator and, when
CUDA is initialised, every CUDA device's. A captured state contains only tensors, numbers,
strings and containers, so it is saved in checkpoints that load with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from typing import Any, Dict, Iterator

import numpy as np
import torch

logger = logging.getLogger(__name__)

RNGState = Dict[str, Any]


def configure_determinism(deterministic: bool, cudnn_benchmark: bool = False) -> None:
    """Ask torch for reproducible kernels, or allow the fastest ones.

    With ``deterministic``, torch uses deterministic algorithms where they exist and warns
    (instead of failing) on an operation that has none, cuDNN autotuning is off, and cuBLAS
    gets the workspace setting it needs (only effective before CUDA is first used).
    """
    if deterministic:
        if cudnn_benchmark:
            logger.warning("CUDNN_BENCHMARK is ignored in deterministic mode")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = cudnn_benchmark


def capture_rng_state() -> RNGState:
    """The current state of every generator of this process."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: RNGState = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _as_python_state(value: Any) -> Any:
    """``random.setstate`` needs tuples; a state read back from a checkpoint may hold lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_python_state(v) for v in value)
    return value


def restore_rng_state(state: RNGState) -> None:
    """Put every generator back into ``state`` (as returned by :func:`capture_rng_state`)."""
    random.setstate(_as_python_state(state["python"]))
    saved = state["numpy"]
    np.random.set_state(
        (
            saved["kind"],
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) != torch.cuda.device_count():
            logger.warning(
                "The saved RNG state covers %d CUDA devices but %d are visible; CUDA generators "
                "are restored only for the first min(both) devices",
                len(cuda_states),
                torch.cuda.device_count(),
            )
        for device, device_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, device)


@contextlib.contextmanager
def preserve_rng_state() -> Iterator[None]:
    """Run a block (e.g. an evaluation) without advancing any generator as seen from outside."""
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)

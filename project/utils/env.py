"""The process environment: the installed torch version and seeding every random generator."""

from __future__ import annotations

import os
import random
from typing import Optional, Tuple

import numpy as np
import torch

__all__ = ["TORCH_VERSION", "seed_all_rng"]

# (major, minor) of the installed torch, for version comparisons.
TORCH_VERSION: Tuple[int, int] = tuple(int(part) for part in torch.__version__.split(".")[:2])  # type: ignore[assignment]


def seed_all_rng(seed: Optional[int] = None) -> int:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)
    with ``seed``, or with a fresh random seed below 2**31 when it is None. Returns the seed used."""
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed

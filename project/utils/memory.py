"""Handing freed memory back to the operating system (glibc only; elsewhere these do nothing).

A long run that frees large blocks (feature maps) between many small ones that stay (masks kept
as crops) leaves free pages inside the heap, which glibc keeps: resident memory then grows with
the run although live data does not."""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Optional


@functools.lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    """glibc, loaded once; None where the C library is another (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (glibc has it; musl and others do not)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> None:
    """Return the heap's free pages to the system (``malloc_trim(0)``)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def map_large_blocks_separately(threshold_bytes: int = 1 << 20) -> None:
    """Have glibc serve every allocation of ``threshold_bytes`` or more with its own mapping,
    returned to the system when freed (``M_MMAP_THRESHOLD``). By default glibc raises that
    threshold as large blocks are freed, and threads allocating frames and feature maps then
    fragment the heap."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-3, int(threshold_bytes))  # M_MMAP_THRESHOLD

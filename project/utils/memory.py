"""Handing freed memory back to the operating system (glibc only; elsewhere these do nothing).

A long run that frees large blocks (feature maps) between many small ones that stay (masks kept
as crops) leaves free pages inside the heap, which glibc keeps: resident memory then grows with
the run although live data does not."""

from __future__ import annotations

import ctypes
import functools
import os
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


def resident_bytes() -> Optional[int]:
    """This process's resident memory in bytes (``/proc/self/statm``), or None where that file is
    missing (not Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class GrowthTrimmer:
    """Releases free heap pages (``release_free_memory``) only when resident memory has grown by
    ``growth_bytes`` since the last release, so a loop can call it every iteration: a release walks
    the whole heap, and pages it returns are faulted in again when the next large block is
    allocated, so releasing every time costs more than it saves (13% of a tiled run's speed)."""

    def __init__(self, growth_bytes: int = 256 << 20):
        self.growth_bytes = int(growth_bytes)
        self.releases = 0
        self._baseline = resident_bytes()

    def __call__(self) -> bool:
        """Release when grown past the threshold; True when it released."""
        resident = resident_bytes()
        if resident is None or self._baseline is None or resident - self._baseline < self.growth_bytes:
            return False
        release_free_memory()
        self.releases += 1
        self._baseline = resident_bytes()
        return True


def map_large_blocks_separately(threshold_bytes: int = 1 << 20) -> None:
    """Have glibc serve every allocation of ``threshold_bytes`` or more with its own mapping,
    returned to the system when freed (``M_MMAP_THRESHOLD``). By default glibc raises that
    threshold as large blocks are freed, and threads allocating frames and feature maps then
    fragment the heap."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-3, int(threshold_bytes))  # M_MMAP_THRESHOLD

"""Allocator settings for CPU runs (no torch import).

PyTorch on the CPU allocates its large activation buffers with glibc's malloc,
which serves them with mmap and unmaps them on free: every iteration then faults
the same memory in again. Keeping them mapped for the length of a run is free speed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def keep_heap_mapped(enabled: bool = True) -> Iterator[bool]:
    """On glibc, keep large freed buffers in the heap for the duration of a CPU run.

    glibc serves the 60-100 MB activation buffers with mmap and unmaps them on
    free, so every iteration faults them in again (measured 2-2.6x slower than
    with a caching allocator). ``M_MMAP_MAX=0`` puts them in the heap and a huge
    ``M_TRIM_THRESHOLD`` keeps the heap from shrinking. Afterwards glibc's
    default values are set back and ``malloc_trim(0)`` returns the memory. (Once
    set, glibc no longer adapts its mmap threshold dynamically; large blocks are
    then always mmapped, which is its conservative behaviour.) Yields whether
    the settings took effect; elsewhere it does nothing.
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    m_trim_threshold, m_mmap_max = -1, -4
    ok = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**30))
    try:
        yield ok
    finally:
        libc.mallopt(m_mmap_max, 65536)
        libc.mallopt(m_trim_threshold, 128 * 1024)
        libc.malloc_trim(0)


def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present only in glibc
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc

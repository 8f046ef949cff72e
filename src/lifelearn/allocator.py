"""Keep freed memory in the job's process (glibc malloc), so the large temporary tensors of
a training or attack loop reuse heap pages instead of going back to the kernel and being
faulted in again on the next allocation (issue 16).

glibc serves an allocation of at least M_MMAP_THRESHOLD bytes with a fresh mmap and returns
free memory above M_TRIM_THRESHOLD at the top of the heap to the kernel; both start at
128 KiB (the mmap threshold then adapts). PyTorch's CPU allocator calls malloc for every
tensor, so a loop whose tensors cross those sizes (AutoAttack on 500 MNIST-1D points: ~1 MB
activations) pays page faults on nearly every op. Raising both (to glibc's largest mmap
threshold, 32 MiB, and a 512 MiB trim threshold) keeps those pages: AutoAttack 1.3x faster
on this project's CPU machine (benchmarks/allocator_cost.py); the arithmetic, and so every
result, is unchanged. The cost is memory: a job's resident size stays at its peak until it
exits, which is what its benchmark file reports as max RSS anyway.

Only on glibc (Linux); elsewhere (macOS, musl) `keep_freed_memory` does nothing.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 512 * 2**20


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process; True when glibc took both."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

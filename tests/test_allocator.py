"""lifelearn.allocator: glibc's malloc thresholds raised for a job's process."""
from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from lifelearn import allocator


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_takes_both_thresholds_and_memory_stays_in_the_process():
    """In a fresh process: an 8 MB block is its own mmap under glibc's defaults; after
    keep_freed_memory it comes from the heap, and once freed it stays there."""
    code = """
import ctypes, sys
from lifelearn.allocator import keep_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
MB8 = 8 * 2**20
mapped = libc.mallinfo2().hblks
block = libc.malloc(MB8)
assert libc.mallinfo2().hblks == mapped + 1  # glibc's default: a block this size is its own mmap
libc.free(ctypes.c_void_p(block))
assert keep_freed_memory()
block = libc.malloc(MB8)
assert libc.mallinfo2().hblks == mapped      # now from the heap
free_before = libc.mallinfo2().fordblks
libc.free(ctypes.c_void_p(block))
assert libc.mallinfo2().fordblks >= free_before + MB8  # and freed, it stays there
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_elsewhere_nothing_is_done(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False


def test_without_mallopt_nothing_is_done(monkeypatch):
    """A C library without mallopt (musl builds may lack it): False, no error."""
    monkeypatch.setattr(sys, "platform", "linux")

    class NoMallopt:
        def __init__(self, name):
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoMallopt)
    assert allocator.keep_freed_memory() is False

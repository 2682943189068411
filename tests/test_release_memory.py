"""features.extract.release_memory: trim glibc's heap only once enough freed memory has piled up."""
from __future__ import annotations

import ctypes
from types import SimpleNamespace

import pytest

import speechunits.features.extract as extract


class FakeLibc:
    def __init__(self, free_bytes: int):
        self.free_bytes, self.trims = free_bytes, 0

    def mallinfo2(self):
        return SimpleNamespace(fordblks=self.free_bytes)

    def malloc_trim(self, pad: int) -> int:
        self.trims += 1
        self.free_bytes = 0
        return 1


def test_trims_only_past_the_threshold(monkeypatch) -> None:
    libc = FakeLibc(free_bytes=100 << 20)
    monkeypatch.setattr(extract, "_libc", lambda: libc)
    extract.release_memory(min_free_bytes=256 << 20)
    assert libc.trims == 0  # 100 MiB free: kept for the next batch
    libc.free_bytes = 300 << 20
    extract.release_memory(min_free_bytes=256 << 20)
    assert libc.trims == 1 and libc.free_bytes == 0
    extract.release_memory(min_free_bytes=0)  # 0: always trim
    assert libc.trims == 2


def test_without_glibc_it_does_nothing(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(extract, "_libc", lambda: calls.append("looked up"))  # returns None: no glibc
    assert extract.release_memory(min_free_bytes=0) is None
    assert calls == ["looked up"]


def test_real_trim_returns_fragmented_heap_memory_to_the_os() -> None:
    """Free most of ~125 MiB of heap blocks (the last one pins the heap top, so glibc cannot trim by
    itself): RSS stays up below the threshold and falls once release_memory trims."""
    psutil = pytest.importorskip("psutil")
    libc = extract._libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (malloc_trim and mallinfo2)")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block, count = 64 * 1024, 2000
    process = psutil.Process()
    pointers = []
    try:
        for _ in range(count):
            pointer = libc.malloc(block)
            ctypes.memset(pointer, 1, block)  # touch every page
            pointers.append(pointer)
        for pointer in pointers[:-1]:
            libc.free(pointer)
        del pointers[:-1]
        assert libc.mallinfo2().fordblks > (count - 1) * block // 2
        before = process.memory_info().rss
        extract.release_memory(min_free_bytes=1 << 40)  # far below the threshold: kept
        kept = process.memory_info().rss
        extract.release_memory(min_free_bytes=0)
        after = process.memory_info().rss
    finally:
        for pointer in pointers:
            libc.free(pointer)
    assert kept > before - 16 * 2**20
    assert after < kept - 60 * 2**20

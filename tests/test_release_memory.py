"""features.extract.release_memory: trim glibc's heap only once enough freed memory has piled up."""
from __future__ import annotations

from types import SimpleNamespace

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
    monkeypatch.setattr(extract, "_libc", lambda: None)
    extract.release_memory()


def test_real_libc_call_is_harmless() -> None:
    extract.release_memory()
    extract.release_memory(min_free_bytes=0)

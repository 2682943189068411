"""Benchmark input shared by bench/encode.py and bench/extract.py: a deterministic chirp corpus."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def make_corpus(root: Path, count: int, min_s: float, max_s: float, seed: int, sample_rate: int = 16000) -> float:
    """Write ``count`` noisy chirps of uniform random length in ``[min_s, max_s]``; returns total seconds."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i in range(count):
        secs = float(rng.uniform(min_s, max_s))
        t = np.arange(int(secs * sample_rate)) / sample_rate
        f0 = rng.uniform(80, 300)
        wave = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + 0.2 * t)) + 0.05 * rng.standard_normal(t.size)
        sf.write(str(root / f"utt{i:05d}.wav"), wave.astype(np.float32), sample_rate)
        total += secs
    return total

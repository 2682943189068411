"""Toy unit stores and tiny LMs for the unit-LM tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from speechunits.units import Units
from speechunits.units.store import write_units

K = 12
RATE = 50.0


def codebook_meta(sha: str = "a" * 64, k: int = K) -> dict:
    return {"format_version": 1, "encoder": "mfcc", "encoder_identity": "abc", "layer": 0, "k": k, "dim": 8,
            "sample_rate": 16000, "frame_rate": RATE, "hop_length": 320, "receptive_field": 400,
            "frame_offset_s": 0.0125, "sha256": sha}


def cyclic(start: int, length: int, k: int = K, period: int = 6) -> np.ndarray:
    """``start, start+1, ...`` modulo ``period`` (a deterministic toy language)."""
    return (start + np.arange(length)) % period


def toy_store(path: Path, sequences: list[np.ndarray], *, sha: str = "a" * 64, k: int = K, dedup: bool = False,
              prefix: str = "utt"):
    items = []
    for i, seq in enumerate(sequences):
        units = Units(np.asarray(seq), RATE, k)
        items.append((f"{prefix}{i:03d}", units.dedup() if dedup else units))
    return write_units(path, items, codebook_meta(sha, k), dedup=dedup)


def tiny_config(objective: str = "causal", steps: int = 150, **overrides):
    from speechunits.lm.config import preset

    values = dict(objective=objective, hidden=32, layers=1, heads=2, intermediate=64, steps=steps, lr=3e-3,
                  warmup_steps=10, batch_tokens=512, max_tokens=256, dropout=0.0, bf16=False, checkpoint_every=1000,
                  log_every=1000, max_positions=256)
    values.update(overrides)
    return preset("tiny", **values)

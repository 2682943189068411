"""A toy CTC phone corpus for probe sweep tests: features whose dimension ``p`` is raised while phone ``p``
is spoken, so a linear probe can learn it in tens of steps (no audio)."""
from __future__ import annotations

import numpy as np

from speechunits.probe.feature_inputs import ArrayInput
from speechunits.probe.labels import LabelSet
from speechunits.probe.splits import Split

PHONES = ["a", "b", "c", "d"]


def toy_phone_corpus(n_utts: int = 24, seed: int = 0, *, noise: float = 0.5, boost: float = 2.0,
                     train: int = 16, dev: int = 4) -> tuple[ArrayInput, LabelSet, Split]:
    """``n_utts`` utterances ``u00``... of 3-5 phones, 4-7 frames each, 8-dim features at 100 Hz; the
    first ``train`` ids (sorted) train, the next ``dev`` are dev and the rest test."""
    rng = np.random.default_rng(seed)
    features, labels = {}, {}
    for i in range(n_utts):
        seq = [int(p) for p in rng.integers(0, 4, size=int(rng.integers(3, 6)))]
        durations = rng.integers(4, 8, size=len(seq))
        x = noise * rng.standard_normal((int(durations.sum()), 8))
        x[np.arange(len(x)), np.repeat(seq, durations)] += boost
        features[f"u{i:02d}"] = x.astype(np.float32)
        labels[f"u{i:02d}"] = [PHONES[p] for p in seq]
    ids = sorted(features)
    inputs = ArrayInput(features, encoder="toy", encoder_identity="enc-a", layers=[0], frame_rate=100.0)
    return inputs, LabelSet("phones", labels), Split(ids[:train], ids[train:train + dev], ids[train + dev:])

"""The Units record: dedup/expand semantics and validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.units import Units


def test_dedup_matches_torch_unique_consecutive() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4, size=500)
    units = Units(frames, frame_rate=50.0, vocab_size=4)
    dedup = units.dedup()
    ref_ids, ref_counts = torch.unique_consecutive(torch.from_numpy(frames), return_counts=True)
    np.testing.assert_array_equal(dedup.ids, ref_ids.numpy())
    np.testing.assert_array_equal(dedup.durations, ref_counts.numpy())
    assert dedup.num_frames == 500 and dedup.duration_s == pytest.approx(10.0)
    np.testing.assert_array_equal(dedup.expand().ids, frames)
    # Dedup of a dedup is itself.
    again = dedup.dedup()
    np.testing.assert_array_equal(again.ids, dedup.ids)
    np.testing.assert_array_equal(again.durations, dedup.durations)


def test_hand_example_and_strings() -> None:
    units = Units(np.array([5, 5, 1, 1, 1, 5]), 50.0, 10)
    dedup = units.dedup()
    assert dedup.ids.tolist() == [5, 1, 5] and dedup.durations.tolist() == [2, 3, 1]
    assert units.to_string() == "5 5 1 1 1 5"
    assert Units.from_string("5 5 1", 50.0, 10).ids.tolist() == [5, 5, 1]
    empty = Units(np.zeros(0, dtype=np.int64), 50.0, 10).dedup()
    assert len(empty) == 0 and empty.num_frames == 0


def test_invalid_units_are_refused() -> None:
    with pytest.raises(SpeechUnitsError, match=r"\[0, 10\)"):
        Units(np.array([0, 10]), 50.0, 10)
    with pytest.raises(SpeechUnitsError, match="durations"):
        Units(np.array([1, 2]), 50.0, 10, durations=np.array([1]))
    with pytest.raises(SpeechUnitsError, match=">= 1"):
        Units(np.array([1, 2]), 50.0, 10, durations=np.array([1, 0]))
    with pytest.raises(SpeechUnitsError, match="non-integer"):
        Units.from_string("1 x 2", 50.0, 10)


def test_units_equality_and_unhashable() -> None:
    u = Units(np.array([3, 3, 1, 2]), 50.0, 4)
    assert u == Units([3, 3, 1, 2], 50.0, 4) and not (u != Units([3, 3, 1, 2], 50.0, 4))
    assert u != Units([3, 3, 1], 50.0, 4)  # another length
    assert u != Units([3, 3, 1, 0], 50.0, 4)
    assert u != Units([3, 3, 1, 2], 25.0, 4)  # frame rate
    assert u != Units([3, 3, 1, 2], 50.0, 5)  # vocab
    d = u.dedup()
    assert d == Units([3, 1, 2], 50.0, 4, durations=[2, 1, 1])
    assert d != Units([3, 1, 2], 50.0, 4, durations=[1, 1, 2])  # durations differ
    assert d != Units([3, 1, 2], 50.0, 4)  # deduplicated vs not
    assert d != u and d.expand() == u  # a representation is compared, not the frames it stands for
    assert u != u.ids and u != "3 3 1 2"
    with pytest.raises(TypeError, match="unhashable"):
        hash(u)

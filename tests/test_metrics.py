"""Unit-quality metrics against hand computations and sklearn."""
from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.measure import metrics as m


def test_contingency_counts_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    units = np.array([1, 1, 0, 1, 0, 0])
    table = m.contingency(labels, units, 3, 2)
    np.testing.assert_array_equal(table, [[0, 2], [2, 1], [1, 0]])


def test_units_copying_phones_give_pnmi_and_purities_one() -> None:
    rng = np.random.default_rng(0)
    phones = rng.integers(0, 5, size=1000)
    units = (phones * 7 + 3) % 11  # a relabelling, K = 11 > phones
    scores = m.phone_unit_scores(m.contingency(phones, units, 5, 11))
    assert scores.pnmi == pytest.approx(1.0)
    assert scores.phone_purity == pytest.approx(1.0)
    assert scores.cluster_purity == pytest.approx(1.0)
    assert scores.h_phone_given_unit == pytest.approx(0.0, abs=1e-12)


def test_independent_units_give_pnmi_near_zero() -> None:
    rng = np.random.default_rng(1)
    phones = rng.integers(0, 10, size=200_000)
    units = rng.integers(0, 20, size=200_000)
    scores = m.phone_unit_scores(m.contingency(phones, units, 10, 20))
    assert scores.pnmi < 0.005
    assert scores.h_phone == pytest.approx(math.log2(10), abs=1e-3)


def test_small_confusion_matrix_by_hand() -> None:
    # phones x units: p = [[.5, 0], [.25, .25]]
    scores = m.phone_unit_scores(np.array([[2, 0], [1, 1]]))
    mi = 0.5 * math.log2(4 / 3) + 0.25 * math.log2(2 / 3) + 0.25
    assert scores.h_phone == pytest.approx(1.0)
    assert scores.mutual_information == pytest.approx(mi)
    assert scores.pnmi == pytest.approx(mi)
    assert scores.h_phone_given_unit == pytest.approx(1.0 - mi)
    assert scores.phone_purity == pytest.approx(0.75)  # unit 0: .5 of 4 frames, unit 1: .25
    assert scores.cluster_purity == pytest.approx(0.75)
    assert scores.labelled_frames == 4


def test_mutual_information_matches_sklearn() -> None:
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(2)
    phones = rng.integers(0, 8, size=5000)
    units = (phones + rng.integers(0, 3, size=5000)) % 13
    scores = m.phone_unit_scores(m.contingency(phones, units, 8, 13))
    assert scores.mutual_information == pytest.approx(mutual_info_score(phones, units) / math.log(2), rel=1e-9)


def test_single_phone_gives_nan_pnmi_and_no_frames_raise() -> None:
    assert math.isnan(m.phone_unit_scores(np.array([[3, 4]])).pnmi)
    with pytest.raises(SpeechUnitsError, match="no labelled frames"):
        m.phone_unit_scores(np.zeros((2, 2)))
    with pytest.raises(SpeechUnitsError):
        m.phone_unit_scores(np.zeros(3))


def test_contingency_rejects_bad_ids() -> None:
    with pytest.raises(SpeechUnitsError, match="differ in length"):
        m.contingency(np.zeros(3), np.zeros(2), 1, 1)
    with pytest.raises(SpeechUnitsError, match="unit ids"):
        m.contingency(np.zeros(2), np.array([0, 5]), 1, 5)
    with pytest.raises(SpeechUnitsError, match="label ids"):
        m.contingency(np.array([-1, 0]), np.zeros(2), 1, 1)


def test_entropy_and_usage_by_hand() -> None:
    assert m.entropy_bits([1, 1, 1, 1]) == pytest.approx(2.0)
    assert m.entropy_bits([2, 1, 1, 0]) == pytest.approx(1.5)
    assert m.entropy_bits([0, 0]) == 0.0
    usage = m.unit_usage(np.array([2, 1, 1, 0, 0]))
    assert (usage.vocab_size, usage.used_units, usage.dead_units) == (5, 3, 2)
    assert usage.entropy == pytest.approx(1.5)
    assert usage.perplexity == pytest.approx(2**1.5)


def test_bitrate_by_hand() -> None:
    # 50 Hz stream of 2 s with 40 runs over K = 100; tokens used: 4 units equally often.
    rate = m.bitrate(num_tokens=40, duration_s=2.0, vocab_size=100, token_counts=np.array([10, 10, 10, 10] + [0] * 96),
                     frame_rate=50.0)
    assert rate.tokens_per_s == pytest.approx(20.0)
    assert rate.uniform == pytest.approx(20.0 * math.log2(100))
    assert rate.entropy == pytest.approx(20.0 * 2.0)
    assert rate.frame_bitrate == pytest.approx(50.0 * math.log2(100))
    with pytest.raises(SpeechUnitsError, match="duration"):
        m.bitrate(1, 0.0, 10, np.ones(10), 50.0)


def test_run_starts_and_segment_stats() -> None:
    ids = np.array([3, 3, 1, 1, 1, 3, 2])
    np.testing.assert_array_equal(m.run_starts(ids), [0, 2, 5, 6])
    assert m.run_starts(np.zeros(0)).size == 0
    stats = m.segment_stats(4, 7, 50.0)
    assert stats.mean_frames == pytest.approx(1.75)
    assert stats.mean_seconds == pytest.approx(0.035)

"""Speech probabilities -> segments (pure numpy): every expected segment below is worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.segment.segments import (
    SegmentOptions,
    SpeechSegment,
    bridge_pauses,
    find_segments,
    hysteresis_runs,
    split_long,
)


def spans(segments: list[SpeechSegment]) -> list[tuple[float, float]]:
    return [(round(s.start_s, 9), round(s.end_s, 9)) for s in segments]


def bare(**kw: float | None) -> SegmentOptions:
    """No minimum durations, no padding, no cap, unless given."""
    return SegmentOptions(**{"min_speech_s": 0.0, "min_silence_s": 0.0, "pad_s": 0.0, "max_seconds": None, **kw})


# -- hysteresis ------------------------------------------------------------------------------------
def test_hysteresis_starts_at_threshold_and_ends_below_neg_threshold():
    probs = np.array([0.1, 0.6, 0.4, 0.4, 0.3, 0.6, 0.2])
    # 0.6 starts speech at 1; 0.4 >= 0.35 keeps it; 0.3 < 0.35 ends it at 4; 0.6 at 5, 0.2 ends at 6.
    assert hysteresis_runs(probs, 0.5, 0.35) == [(1, 4), (5, 6)]


def test_hysteresis_between_thresholds_never_starts_and_threshold_itself_starts():
    assert hysteresis_runs(np.full(5, 0.45), 0.5, 0.35) == []
    assert hysteresis_runs(np.array([0.2, 0.5, 0.2]), 0.5, 0.35) == [(1, 2)]


def test_speech_running_to_the_end_ends_with_the_last_window():
    assert hysteresis_runs(np.array([0.0, 0.9, 0.9]), 0.5, 0.35) == [(1, 3)]


def test_default_neg_threshold_is_threshold_minus_015():
    assert SegmentOptions(threshold=0.5).offset_threshold == pytest.approx(0.35)
    assert SegmentOptions(threshold=0.1).offset_threshold == pytest.approx(0.01)
    assert SegmentOptions(threshold=0.5, neg_threshold=0.2).offset_threshold == 0.2


# -- pauses, short speech ----------------------------------------------------------------------------
def test_bridge_merges_gaps_shorter_than_min_silence_only():
    # gaps: 2 windows (merged, < 3) then 3 windows (kept, not < 3)
    assert bridge_pauses([(0, 2), (4, 6), (9, 10)], 3) == [(0, 6), (9, 10)]
    assert bridge_pauses([(0, 2), (4, 6)], 0) == [(0, 2), (4, 6)]


def test_find_segments_bridges_then_drops_short_speech():
    # windows of 0.1 s; runs (1,3) (4,6) (9,10): gap 1 window < 0.2 s bridged -> (1,6);
    # gap 3 windows kept; (9,10) lasts 0.1 s < 0.2 s -> dropped.
    p = np.array([0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0], dtype=float)
    got = find_segments(p, 0.1, 1.1, bare(min_silence_s=0.2, min_speech_s=0.2))
    assert spans(got) == [(0.1, 0.6)]


def test_durations_round_to_the_nearest_window():
    # 0.25 s at 0.1 s windows -> 3 windows (round half up): a 2-window run goes, a 3-window run stays.
    p = np.array([1, 1, 0, 0, 0, 1, 1, 1, 0], dtype=float)
    assert spans(find_segments(p, 0.1, 0.9, bare(min_speech_s=0.25))) == [(0.5, 0.8)]


# -- padding ---------------------------------------------------------------------------------------
def test_padding_clamps_to_the_audio_and_splits_short_gaps_in_the_middle():
    # windows of 1 s, audio 9.5 s (last window partial); runs (0,2) (3,5) (8,10).
    p = np.array([1, 1, 0, 1, 1, 0, 0, 0, 1, 1], dtype=float)
    got = find_segments(p, 1.0, 9.5, bare(pad_s=0.75))
    # (0,2): lead clamped to 0; gap of 1 s to the next -> 0.5 s each side.
    # (3,5): 2.5 .. 5.75 (gap of 3 s to the next, full 0.75); (8,10): 7.25 .. min(10, 9.5).
    assert spans(got) == [(0.0, 2.5), (2.5, 5.75), (7.25, 9.5)]


# -- cap on length -----------------------------------------------------------------------------------
def test_split_long_cuts_at_the_lowest_probability_in_the_allowed_range():
    p = np.full(10, 0.9)
    p[3], p[6] = 0.6, 0.55
    # cap 4, half 2: cut in [2, min(4, 8)] -> lowest at 3; from 3: [5, min(7, 8)] -> 6; rest (6,10) = 4.
    assert split_long(p, (0, 10), 4) == [(0, 3), (3, 6), (6, 10)]


def test_split_long_prefers_the_earliest_tie_and_leaves_no_short_tail():
    p = np.full(9, 0.9)
    # cap 6, half 3: range [3, min(6, 9 - 3)] = [3, 6], all tied -> 3; tail (3, 9) = 6 <= cap.
    assert split_long(p, (0, 9), 6) == [(0, 3), (3, 9)]
    # A run of cap + 1 never leaves a 1-window tail: range [3, min(6, 7 - 3)] = [3, 4].
    p2 = np.full(7, 0.9)
    p2[6] = 0.0  # the lowest value lies outside the allowed range
    assert split_long(p2, (0, 7), 6) == [(0, 3), (3, 7)]


def test_max_seconds_counts_the_padding():
    # 1 s windows, pad 0.5, max 4 -> at most 3 windows of speech; a 7-window run, lowest at 3.
    p = np.array([0, 0.9, 0.9, 0.9, 0.6, 0.9, 0.9, 0.9, 0, 0], dtype=float)
    got = find_segments(p, 1.0, 10.0, bare(pad_s=0.5, max_seconds=4.0))
    # run (1,8); cap 3, half 1: cut in [2, min(4, 7)] -> 4 (p=0.6); (4,8) is 4 > 3: cut in [5, min(7, 7)],
    # all 0.9 -> 5; pieces (1,4) (4,5) (5,8); padding only on the outer sides.
    assert spans(got) == [(0.5, 4.0), (4.0, 5.0), (5.0, 8.5)]
    assert all(s.duration_s <= 4.0 for s in got)


def test_random_probabilities_give_ordered_capped_segments_inside_the_audio():
    rng = np.random.default_rng(0)
    probs = np.clip(np.cumsum(rng.normal(0, 0.15, 5000)) % 1.0, 0, 1)
    options = SegmentOptions(max_seconds=5.0, pad_s=0.2)
    got = find_segments(probs, 0.032, 5000 * 0.032 - 0.01, options)
    assert got
    for seg in got:
        assert 0.0 <= seg.start_s < seg.end_s <= 5000 * 0.032 - 0.01
        assert seg.duration_s <= 5.0 + 1e-9
    for a, b in zip(got, got[1:]):
        assert a.end_s <= b.start_s + 1e-12


def test_nothing_in_gives_nothing_out():
    assert find_segments(np.zeros(0), 0.032, 0.0) == []
    assert find_segments(np.zeros(100), 0.032, 3.2) == []


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {"threshold": 0.0}, {"threshold": 1.0}, {"neg_threshold": 0.6}, {"neg_threshold": 0.0},
    {"min_speech_s": -1.0}, {"min_silence_s": float("nan")}, {"pad_s": -0.1},
    {"max_seconds": 0.2, "pad_s": 0.1}, {"max_seconds": float("inf")},
])
def test_bad_options_are_user_errors(kw):
    with pytest.raises(SpeechUnitsError):
        SegmentOptions(**kw)


def test_bad_probabilities_are_user_errors():
    with pytest.raises(SpeechUnitsError, match=r"\[N\]"):
        find_segments(np.zeros((2, 3)), 0.032, 1.0)
    with pytest.raises(SpeechUnitsError, match="no speech inside"):
        find_segments(np.ones(10), 1.0, 10.0, SegmentOptions(max_seconds=1.5, pad_s=0.5))


def test_missing_silero_vad_names_the_extra(monkeypatch):
    from speechunits.segment import vad

    monkeypatch.setattr(vad, "find_spec", lambda name: None)
    with pytest.raises(SpeechUnitsError, match=r"speechunits\[vad\]"):
        vad.model_path()

"""GPE, VDE and FFE (Chu & Alwan) against hand-computed cases and known pitch shifts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.pitch_errors import align_tracks, ffe, gpe, pitch_errors, vde
from speechunits.pitch import F0Track, extract_f0


def _track(values, frame_rate: float = 100.0, offset_s: float = 0.0) -> F0Track:
    return F0Track(np.asarray(values, dtype=np.float32), frame_rate, offset_s)


def test_a_track_shifted_by_30_percent_is_all_gross_errors_and_by_10_percent_none():
    ref = _track(np.linspace(100.0, 200.0, 50))
    assert gpe(ref, _track(ref.f0 * 1.3)) == 1.0
    assert gpe(ref, _track(ref.f0 * 0.7)) == 1.0
    assert gpe(ref, _track(ref.f0 * 1.1)) == 0.0
    assert gpe(ref, _track(ref.f0 * 0.9)) == 0.0
    # Voicing agrees everywhere: no voicing error, and FFE equals the share of gross errors.
    assert vde(ref, _track(ref.f0 * 1.3)) == 0.0 and ffe(ref, _track(ref.f0 * 1.3)) == 1.0


def test_hand_computed_short_arrays():
    #        frame:   0      1      2      3     4      5      6      7
    ref = _track([0.0, 100.0, 100.0, 100.0, 0.0, 200.0, 200.0, 200.0])
    hyp = _track([0.0, 0.0, 105.0, 150.0, 120.0, 200.0, 239.0, 100.0])
    # voiced in both: 2, 3, 5, 6, 7 -> gross errors at 3 (+50 %) and 7 (-50 %); 6 is +19.5 % (not gross)
    # voicing mismatches: 1 (ref voiced, hyp not) and 4 (hyp voiced, ref not)
    assert gpe(ref, hyp) == pytest.approx(2 / 5)
    assert vde(ref, hyp) == pytest.approx(2 / 8)
    assert ffe(ref, hyp) == pytest.approx(4 / 8)
    full = pitch_errors(ref, hyp)
    assert full["frames"] == 8 and full["voiced_both"] == 5 and full["truncated_frames"] == 0


def test_gross_error_boundary_is_strictly_more_than_20_percent():
    ref = _track([100.0, 100.0])
    assert gpe(ref, _track([120.0, 80.0])) == 0.0
    assert gpe(ref, _track([120.5, 79.5])) == 1.0


def test_no_frame_voiced_in_both_makes_gpe_undefined_not_zero():
    ref, hyp = _track([0.0, 100.0, 0.0]), _track([100.0, 0.0, 0.0])
    assert math.isnan(gpe(ref, hyp))
    assert vde(ref, hyp) == pytest.approx(2 / 3) and ffe(ref, hyp) == pytest.approx(2 / 3)


def test_a_few_extra_frames_are_cut_and_reported():
    ref = _track([100.0] * 10)
    hyp = _track([100.0] * 10 + [300.0] * 3)  # three extra frames, wrong ones: cut, so no error
    aligned = align_tracks(ref, hyp)
    assert aligned.truncated == 3 and aligned.ref.size == aligned.hyp.size == 10
    result = pitch_errors(ref, hyp)
    assert result["gpe"] == 0.0 and result["truncated_frames"] == 3


def test_tracks_far_apart_in_length_or_on_other_grids_are_refused():
    with pytest.raises(SpeechUnitsError, match="differ by more than"):
        gpe(_track([100.0] * 10), _track([100.0] * 30))
    with pytest.raises(SpeechUnitsError, match="different frame grids"):
        vde(_track([100.0] * 10), _track([100.0] * 10, frame_rate=50.0))
    with pytest.raises(SpeechUnitsError, match="empty"):
        ffe(_track([]), _track([]))


def _harmonic_tone(f0: float, seconds: float = 1.0, sample_rate: int = 16000) -> Audio:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    return Audio((0.3 * wave / np.abs(wave).max()).astype(np.float32), sample_rate)


def test_extracted_f0_of_pitch_shifted_tones():
    """End to end through speechunits.pitch.extract_f0 (WORLD DIO): a 30 % shift is a gross error everywhere."""
    ref = extract_f0(_harmonic_tone(150.0))
    assert ref.voiced.mean() > 0.9
    assert gpe(ref, extract_f0(_harmonic_tone(195.0))) == 1.0
    assert gpe(ref, extract_f0(_harmonic_tone(165.0))) == 0.0
    assert gpe(ref, ref) == 0.0 and vde(ref, ref) == 0.0 and ffe(ref, ref) == 0.0

"""Diarization error rate against a hand-computed case and pyannote.metrics; RTTM and UEM files; ``der``."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.measure.diarization import DiarizationErrors, diarization_errors, score_recordings, turns_by_recording
from speechunits.rttm import RttmRecord, read_rttm, read_uem, speaker_turns, write_rttm


def test_hand_computed():
    # A talks 0-10 and B 5-15; the hypothesis says x 0-8, y 8-15. Mapping A=x (8 s together), B=y (7 s).
    # 5-8: A and B talk, only x is said: 3 s missed; 8-10: A and B, only y: 2 s missed. Nothing confused.
    errors = diarization_errors([("A", 0, 10), ("B", 5, 15)], [("x", 0, 8), ("y", 8, 15)])
    assert (errors.reference, errors.missed, errors.false_alarm, errors.confusion) == (20, 5, 0, 0)
    assert errors.der == pytest.approx(0.25)
    # swapping the names changes nothing; a hypothesis saying y everywhere confuses A's 5 s alone
    assert diarization_errors([("A", 0, 10), ("B", 5, 15)], [("y", 0, 8), ("x", 8, 15)]) == errors
    one = diarization_errors([("A", 0, 5), ("B", 5, 10)], [("y", 0, 10)])
    assert (one.reference, one.missed, one.false_alarm, one.confusion) == (10, 0, 0, 5)
    # a false alarm outside the reference counts within the default scored region (both sides' extent)
    fa = diarization_errors([("A", 0, 5)], [("x", 0, 5), ("z", 6, 8)])
    assert (fa.false_alarm, fa.der) == (2, pytest.approx(0.4))
    # collar 0.5 around 0 and 5 leaves 0.5-4.5 scored; skip_overlap drops the 5-10 overlap
    assert diarization_errors([("A", 0, 5)], [("x", 1, 5)], collar=0.5).missed == pytest.approx(0.5)
    skip = diarization_errors([("A", 0, 10), ("B", 5, 15)], [("x", 0, 8), ("y", 8, 15)], skip_overlap=True)
    assert (skip.reference, skip.missed) == (10, 0)


def _merged(turns):
    out = []
    for speaker in sorted({t[0] for t in turns}):
        spans = sorted((a, b) for s, a, b in turns if s == speaker)
        start, end = spans[0]
        for a, b in spans[1:]:
            if a <= end:
                end = max(end, b)
            else:
                out.append((speaker, start, end))
                start, end = a, b
        out.append((speaker, start, end))
    return out


def test_equals_pyannote_metrics():
    pytest.importorskip("pyannote.metrics")
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    rng = np.random.default_rng(0)

    def turns(prefix: str, n: int):
        out = []
        for _ in range(n):
            start = float(np.round(rng.uniform(0, 20), 2))
            out.append((f"{prefix}{rng.integers(3)}", start, start + float(np.round(rng.uniform(0.1, 4), 2))))
        return _merged(out) if out else out

    for _ in range(150):
        ref, hyp = turns("r", int(rng.integers(1, 8))), turns("h", int(rng.integers(0, 8)))
        collar, skip = float(rng.choice([0.0, 0.25])), bool(rng.integers(2))
        reference, hypothesis = Annotation(), Annotation()
        for k, (s, a, b) in enumerate(ref):
            reference[Segment(a, b), k] = s
        for k, (s, a, b) in enumerate(hyp):
            hypothesis[Segment(a, b), k] = s
        uem = Timeline([Segment(min(t[1] for t in ref + hyp), max(t[2] for t in ref + hyp))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip)(reference, hypothesis, detailed=True, uem=uem)
        ours = diarization_errors(ref, hyp, collar=collar, skip_overlap=skip)
        assert ours.reference == pytest.approx(theirs["total"], abs=1e-9)
        assert ours.missed == pytest.approx(theirs["missed detection"], abs=1e-9)
        assert ours.false_alarm == pytest.approx(theirs["false alarm"], abs=1e-9)
        assert ours.confusion == pytest.approx(theirs["confusion"], abs=1e-9)


def test_bad_turns_and_empty():
    with pytest.raises(SpeechUnitsError, match="need 0 <= start <= end"):
        diarization_errors([("A", 2, 1)], [])
    with pytest.raises(SpeechUnitsError, match="collar"):
        diarization_errors([("A", 0, 1)], [], collar=-1)
    assert diarization_errors([], []).reference == 0 and np.isnan(diarization_errors([], []).der)
    missing = score_recordings({"r1": [("A", 0, 4)]}, {})
    assert missing["r1"].missed == 4 and missing["r1"].der == 1.0


def test_rttm_round_trip_and_errors(tmp_path):
    path = tmp_path / "ref.rttm"
    records = speaker_turns("mix1", [("s1", 0.0, 1.5), ("s2", 1.0, 2.25)])
    write_rttm(path, records)
    assert path.read_text().splitlines()[0] == "SPEAKER mix1 1 0.000 1.500 <NA> <NA> s1 <NA> <NA>"
    assert read_rttm(path) == records
    assert turns_by_recording(read_rttm(path)) == {"mix1": [("s1", 0.0, 1.5), ("s2", 1.0, 2.25)]}
    path.write_text(";; a comment\nSPEAKER mix1 1 0.5 1.0 <NA> <NA>\n")
    with pytest.raises(SpeechUnitsError, match=r"ref.rttm:2: a SPEAKER line needs at least 8 fields"):
        read_rttm(path)
    assert read_rttm(path, {"LEXEME"}) == []
    path.write_text("SPEAKER mix1 1 -0.5 1.0 <NA> <NA> s1 <NA> <NA>\n")
    with pytest.raises(SpeechUnitsError, match="finite and >= 0"):
        read_rttm(path)
    uem = tmp_path / "all.uem"
    uem.write_text("mix1 1 0.00 3.00\n")
    assert read_uem(uem) == {"mix1": (0.0, 3.0)}
    uem.write_text("mix1 1 0.00 3.00\nmix1 1 4 5\n")
    with pytest.raises(SpeechUnitsError, match="a second region"):
        read_uem(uem)
    uem.write_text("mix1 1 zero\n")
    with pytest.raises(SpeechUnitsError, match="FILE CHANNEL START END"):
        read_uem(uem)


def test_der_command(tmp_path, capsys, caplog):
    ref, hyp, uem = tmp_path / "ref.rttm", tmp_path / "hyp.rttm", tmp_path / "a.uem"
    write_rttm(ref, [*speaker_turns("m1", [("A", 0, 10), ("B", 5, 15)]), *speaker_turns("m2", [("C", 0, 4)])])
    write_rttm(hyp, [*speaker_turns("m1", [("x", 0, 8), ("y", 8, 15)]), *speaker_turns("m3", [("z", 0, 1)])])
    assert main(["der", str(ref), str(hyp), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # m1: 20 s of speech, 5 missed; m2 has no hypothesis: its 4 s are missed; m3 is not scored
    assert report["recordings"]["m1"]["missed_s"] == 5 and report["recordings"]["m2"]["missed_s"] == 4
    assert report["total"]["der"] == pytest.approx(9 / 24) and "m3" not in report["recordings"]
    assert "no hypothesis turn" in caplog.text and "not in the reference" in caplog.text
    uem.write_text("m1 1 0 20\nm2 1 0 4\n")  # 15-20 of m1 scored too: nobody talks there, nothing changes
    assert main(["der", str(ref), str(hyp), "--uem", str(uem)]) == 0
    assert "DER 37.50 %" in capsys.readouterr().out
    empty = tmp_path / "empty.rttm"
    empty.write_text("LEXEME d 1 0 1 q lex <NA> <NA>\n")
    assert "no SPEAKER line" in cli_error(["der", str(empty), str(hyp)], caplog)


def test_errors_add_up():
    a, b = DiarizationErrors(10, 1, 2, 3), DiarizationErrors(5, 0, 0, 0)
    assert (a + b).der == pytest.approx(6 / 15)
    assert a.to_dict()["der"] == pytest.approx(0.6)

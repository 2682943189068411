"""Alignment readers (TSV, Praat TextGrid long/short/UTF-16, fairseq frame labels) and frame labelling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import (
    SILENCE,
    Segment,
    frame_label_ids,
    frame_labels,
    load_alignments,
    write_segments_tsv,
)
from speechunits.measure.textgrid import Interval, Tier, read_textgrid, write_textgrid

# Written by hand the way Praat saves a TextGrid ("Save as text file").
LONG_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0 
xmax = 1.5 
tiers? <exists> 
size = 2 
item []: 
    item [1]:
        class = "IntervalTier" 
        name = "words" 
        xmin = 0 
        xmax = 1.5 
        intervals: size = 3 
        intervals [1]:
            xmin = 0 
            xmax = 0.2 
            text = "" 
        intervals [2]:
            xmin = 0.2 
            xmax = 1.1 
            text = "say ""cat""" 
        intervals [3]:
            xmin = 1.1 
            xmax = 1.5 
            text = "" 
    item [2]:
        class = "IntervalTier" 
        name = "phones" 
        xmin = 0 
        xmax = 1.5 
        intervals: size = 5 
        intervals [1]:
            xmin = 0 
            xmax = 0.2 
            text = "" 
        intervals [2]:
            xmin = 0.2 
            xmax = 0.45 
            text = "k" 
        intervals [3]:
            xmin = 0.45 
            xmax = 0.8 
            text = "æ" 
        intervals [4]:
            xmin = 0.8 
            xmax = 1.1 
            text = "t" 
        intervals [5]:
            xmin = 1.1 
            xmax = 1.5 
            text = "" 
'''

# The same content in Praat's short text format ("Save as short text file").
SHORT_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

0
1.5
<exists>
2
"IntervalTier"
"words"
0
1.5
3
0
0.2
""
0.2
1.1
"say ""cat"""
1.1
1.5
""
"IntervalTier"
"phones"
0
1.5
5
0
0.2
""
0.2
0.45
"k"
0.45
0.8
"æ"
0.8
1.1
"t"
1.1
1.5
""
'''

EXPECTED_PHONES = [
    Segment(0.0, 0.2, SILENCE),
    Segment(0.2, 0.45, "k"),
    Segment(0.45, 0.8, "æ"),
    Segment(0.8, 1.1, "t"),
    Segment(1.1, 1.5, SILENCE),
]


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("content,encoding", [(LONG_TEXTGRID, "utf-8"), (SHORT_TEXTGRID, "utf-8"),
                                              (LONG_TEXTGRID, "utf-16"), (SHORT_TEXTGRID, "utf-16"),
                                              (LONG_TEXTGRID.replace("\n", "\r\n"), "utf-8")])
def test_textgrid_formats_read_the_same(tmp_path: Path, content: str, encoding: str) -> None:
    path = _write(tmp_path / "utt1.TextGrid", content, encoding)
    alignments = load_alignments(path)
    assert alignments == {"utt1": EXPECTED_PHONES}
    words = load_alignments(path, tier="words", silence=None)
    assert words == {"utt1": [Segment(0.2, 1.1, 'say "cat"')]}


def test_textgrid_directory_ids_are_relative_paths(tmp_path: Path) -> None:
    _write(tmp_path / "tg" / "a.TextGrid", LONG_TEXTGRID)
    _write(tmp_path / "tg" / "spk1" / "b.TextGrid", SHORT_TEXTGRID)
    alignments = load_alignments(tmp_path / "tg")
    assert sorted(alignments) == ["a", "spk1/b"]
    assert alignments["spk1/b"] == EXPECTED_PHONES


def test_textgrid_missing_tier_names_the_tiers(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.TextGrid", LONG_TEXTGRID)
    with pytest.raises(SpeechUnitsError, match=r"u\.TextGrid.*no tier named 'phonemes'.*'words', 'phones'"):
        load_alignments(path, tier="phonemes")


def test_textgrid_empty_tier_is_an_error(tmp_path: Path) -> None:
    empty = LONG_TEXTGRID.replace('text = "k"', 'text = ""').replace('text = "æ"', 'text = ""').replace(
        'text = "t"', 'text = ""')
    path = _write(tmp_path / "e.TextGrid", empty)
    with pytest.raises(SpeechUnitsError, match=r"e\.TextGrid.*'e'.*'phones' is empty"):
        load_alignments(path)


def test_textgrid_overlapping_intervals_are_an_error(tmp_path: Path) -> None:
    bad = LONG_TEXTGRID.replace("xmin = 0.45 \n            xmax = 0.8", "xmin = 0.40 \n            xmax = 0.8")
    path = _write(tmp_path / "o.TextGrid", bad)
    with pytest.raises(SpeechUnitsError, match=r"o\.TextGrid.*'o'.*overlapping"):
        load_alignments(path)


def test_textgrid_truncated_or_not_a_textgrid(tmp_path: Path) -> None:
    truncated = _write(tmp_path / "t.TextGrid", SHORT_TEXTGRID[: len(SHORT_TEXTGRID) // 2])
    with pytest.raises(SpeechUnitsError, match=r"t\.TextGrid: truncated"):
        load_alignments(truncated)
    other = _write(tmp_path / "x.TextGrid", "hello world\n")
    with pytest.raises(SpeechUnitsError, match=r"x\.TextGrid: not a Praat TextGrid"):
        load_alignments(other)


def test_textgrid_writer_round_trip(tmp_path: Path) -> None:
    tier = Tier("phones", 0.0, 2.0, [Interval(0.0, 0.5, ""), Interval(0.5, 1.25, 'a"b'), Interval(1.25, 2.0, "ʃ")])
    write_textgrid(tmp_path / "w.TextGrid", [tier])
    assert read_textgrid(tmp_path / "w.TextGrid") == [tier]


def test_tsv_reading_header_and_silence(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.tsv", "utt_id\tstart\tend\tlabel\nu1\t0\t0.5\ta\nu1\t0.5\t0.7\t\nu2\t0.1\t0.3\tb\n")
    assert load_alignments(path) == {"u1": [Segment(0, 0.5, "a"), Segment(0.5, 0.7, SILENCE)],
                                     "u2": [Segment(0.1, 0.3, "b")]}
    assert load_alignments(path, silence=None)["u1"] == [Segment(0, 0.5, "a")]


def test_tsv_round_trip(tmp_path: Path) -> None:
    original = {"x": [Segment(0.0, 0.125, "a"), Segment(0.125, 0.3, "b")], "y": [Segment(1.0, 2.5, "c")]}
    write_segments_tsv(tmp_path / "r.tsv", original)
    assert load_alignments(tmp_path / "r.tsv") == original


@pytest.mark.parametrize("body,message", [
    ("u1\t0\t0.5\ta\nu1\t0.4\t0.7\tb\n", r"bad\.tsv:2: utterance 'u1': overlapping segments 'a'"),
    ("u1\t0.5\t0.7\ta\nu1\t0.1\t0.3\tb\n", r"bad\.tsv:2: utterance 'u1': segments out of order"),
    ("u1\t0.5\t0.2\ta\n", r"bad\.tsv:1: utterance 'u1': bad interval"),
    ("u1\t0\t0.5\ta\nu1\t0.5\tx\tb\n", r"bad\.tsv:2: start/end"),
    ("u1\t0\t0.5\ta\nu1\t0.5\n", r"bad\.tsv:2: expected 4"),
    ("u1\t0\t0.5\ta\textra\n", r"bad\.tsv: unknown alignment format"),
    ("", r"bad\.tsv: empty alignment file"),
])
def test_tsv_bad_input(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path / "bad.tsv", body)
    with pytest.raises(SpeechUnitsError, match=message):
        load_alignments(path)


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "phones.tsv"
    path.write_bytes(b"RIFF\x9f\x00\xff\xfeWAVEfmt ")  # audio passed where alignments are expected
    with pytest.raises(SpeechUnitsError, match=r"phones\.tsv: not UTF-8 text"):
        load_alignments(path)


def test_windows_line_ends_and_bom(tmp_path: Path) -> None:
    """A TSV saved by a Windows editor reads as the same alignments (no '\\r' in the last column)."""
    path = tmp_path / "a.tsv"
    path.write_bytes("\ufeffu1\t0\t0.5\ta\r\nu1\t0.5\t0.7\tb\r\n".encode("utf-8"))
    assert load_alignments(path) == {"u1": [Segment(0, 0.5, "a"), Segment(0.5, 0.7, "b")]}
    frames = tmp_path / "f.tsv"
    frames.write_bytes(b"u1\tsil,AH\r\n")
    assert load_alignments(frames, frame_rate=100.0)["u1"] == [Segment(0.0, 0.01, "sil"), Segment(0.01, 0.02, "AH")]


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="alignments not found"):
        load_alignments(tmp_path / "nope.tsv")


def test_fairseq_frame_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "u1\tsil,sil,AH,AH,AH,T\nu2\tB\n")
    alignments = load_alignments(path, frame_rate=100.0)
    assert alignments["u1"] == [Segment(0.0, 0.02, "sil"), Segment(0.02, 0.05, "AH"), Segment(0.05, 0.06, "T")]
    assert alignments["u2"] == [Segment(0.0, 0.01, "B")]
    # Read back at the same rate with centred frames: the original labels.
    labels = frame_labels(alignments["u1"], 6, 100.0, 0.005)
    assert labels == ["sil", "sil", "AH", "AH", "AH", "T"]
    with pytest.raises(SpeechUnitsError, match=r"train\.tsv.*--frame-rate"):
        load_alignments(path)


def test_frame_labels_hand_computed() -> None:
    segments = [Segment(0.0, 0.1, "a"), Segment(0.1, 0.25, "b"), Segment(0.3, 0.4, "c")]
    # 50 Hz, offset 0.0125 s: centres 0.0125, 0.0325, ... 0.3925, 0.4125
    labels = frame_labels(segments, 21, 50.0, 0.0125)
    centres = [0.0125 + i / 50 for i in range(21)]
    expected = []
    for t in centres:
        hit = [s.label for s in segments if s.start <= t < s.end]
        expected.append(hit[0] if hit else None)
    assert labels == expected
    assert labels[:5] == ["a"] * 5 and labels[5] == "b" and labels[12] is None and labels[15] == "c"
    assert labels[-1] is None


def test_frame_labels_boundary_belongs_to_later_segment() -> None:
    segments = [Segment(0.0, 0.02, "a"), Segment(0.02, 0.04, "b")]
    assert frame_labels(segments, 3, 100.0, 0.0) == ["a", "a", "b"]
    assert frame_labels([], 2, 100.0, 0.0) == [None, None]


def test_frame_label_ids_match_labels() -> None:
    rng = np.random.default_rng(0)
    edges = np.cumsum(rng.uniform(0.01, 0.2, size=40))
    segments = [Segment(float(a), float(b), f"p{rng.integers(5)}") for a, b in zip(edges[:-1], edges[1:])]
    vocab: dict[str, int] = {}
    ids = frame_label_ids(segments, 300, 50.0, 0.0125, vocab)
    names = {v: k for k, v in vocab.items()}
    labels = frame_labels(segments, 300, 50.0, 0.0125)
    assert [names[i] if i >= 0 else None for i in ids.tolist()] == labels

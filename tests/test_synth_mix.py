"""Two-speaker diarization mixtures of a synth corpus: the audio is the sum of its recorded sources,
the RTTM turns are the sources' merged words, splits share no speaker, determinism, reuse and errors
(a 1-minute corpus, a dozen mixtures: seconds)."""
from __future__ import annotations

import json
import shutil
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.corpus import read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import load_alignments
from speechunits.rttm import read_rttm
from speechunits.synth.mixtures import MIXTURE_COLUMNS, SPLITS, apportion, merge_segments, write_mixtures
from speechunits.synth.testing import as_librispeech_tree, small_corpus

ARGS = dict(mixtures=12, seed=0, quiet=True)
#: RTTM and segments files keep milliseconds (an RTTM end is a rounded start plus a rounded duration).
MS = 0.0011


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _table(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    assert tuple(header.split("\t")) == MIXTURE_COLUMNS
    return [dict(zip(MIXTURE_COLUMNS, row.split("\t"))) for row in rows]


def _int16(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="int16")
    assert rate == 16000 and samples.ndim == 1
    return samples


def _merged(words: list[tuple[float, float]], min_pause: float) -> list[tuple[float, float]]:
    """Words joined across pauses shorter than ``min_pause`` and touching ones (written apart from the
    library's merge; a pause within 1e-6 s of ``min_pause`` is not shorter)."""
    spans = sorted(words)
    out = []
    i = 0
    while i < len(spans):
        start, end = spans[i]
        j = i + 1
        while j < len(spans) and (spans[j][0] - end < min_pause - 1e-6 or spans[j][0] - end <= 1e-6):
            end = max(end, spans[j][1])
            j += 1
        out.append((start, end))
        i = j
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("corpus"), minutes=1.0, speakers=6)


@pytest.fixture(scope="module")
def mix(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixtures(corpus, tmp_path_factory.mktemp("mix"), **ARGS)


@pytest.fixture(scope="module")
def short_pauses(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A set whose turns break at the longer pauses of the synthetic sentences (0.04 to 0.14 s)."""
    return write_mixtures(corpus, tmp_path_factory.mktemp("mix"), min_pause=0.045, max_overlap=1.0, **ARGS)


def test_layout_and_kaldi_files(mix: Path) -> None:
    meta = json.loads((mix / "mix.json").read_text(encoding="utf-8"))
    assert sum(meta["splits"][s]["mixtures"] for s in SPLITS) == 12 and meta["alignment"] == "words.tsv"
    for split in SPLITS:
        folder = mix / split
        rows = _table(folder / "mixtures.tsv")
        ids = [r["mix_id"] for r in rows]
        assert ids == [f"{split}_{k:05d}" for k in range(1, len(rows) + 1)]
        assert len(rows) == meta["splits"][split]["mixtures"] >= 1
        scp = dict(line.split() for line in (folder / "wav.scp").read_text().splitlines())
        assert list(scp) == ids and all(scp[m] == f"wavs/{m}.wav" for m in ids)
        assert sorted(p.stem for p in (folder / "wavs").glob("*.wav")) == ids
        durations = dict(line.split() for line in (folder / "reco2dur").read_text().splitlines())
        minutes = 0.0
        for row in rows:
            info = sf.info(folder / scp[row["mix_id"]])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert float(durations[row["mix_id"]]) == float(row["duration_s"]) == info.frames / 16000
            minutes += info.frames / 16000 / 60
        assert meta["splits"][split]["minutes"] == pytest.approx(minutes, abs=1e-3)
    assert not list(mix.parent.glob(".mix.partial"))


@pytest.mark.parametrize("which", ["mix", "short_pauses"])
def test_mixture_is_the_sum_of_its_sources(which: str, corpus: Path, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(which)
    meta = json.loads((root / "mix.json").read_text(encoding="utf-8"))
    for split in SPLITS:
        for row in _table(root / split / "mixtures.tsv"):
            first = _int16(corpus / "wavs" / f"{row['utt1']}.wav").astype(np.float64)
            second = _int16(corpus / "wavs" / f"{row['utt2']}.wav").astype(np.float64)
            ratio, offset = float(row["overlap_ratio"]), round(float(row["offset2_s"]) * 16000)
            assert 0 <= ratio <= meta["max_overlap"] and float(row["offset1_s"]) == 0
            assert offset == round(first.size * (1 - ratio))
            g1, g2, scale = float(row["gain1_db"]), float(row["gain2_db"]), float(row["scale"])
            assert max(abs(g1), abs(g2)) <= meta["gain_db"] / 2 and 0 < scale <= 1
            expected = np.zeros(max(first.size, offset + second.size))
            expected[:first.size] += first * 10 ** (g1 / 20)
            expected[offset:offset + second.size] += second * 10 ** (g2 / 20)
            mixed = _int16(root / split / "wavs" / f"{row['mix_id']}.wav")
            assert mixed.size == expected.size
            assert np.max(np.abs(mixed - expected * scale)) <= 1.0
            assert (scale < 1) == (np.max(np.abs(expected)) > 32767)


@pytest.mark.parametrize("which", ["mix", "short_pauses"])
def test_turns_are_the_merged_words_of_each_source(which: str, corpus: Path, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(which)
    min_pause = json.loads((root / "mix.json").read_text(encoding="utf-8"))["min_pause"]
    words = load_alignments(corpus / "words.tsv", silence=None)
    turns_seen = 0
    for split in SPLITS:
        rows = {r["mix_id"]: r for r in _table(root / split / "mixtures.tsv")}
        records = read_rttm(root / split / "rttm")
        assert {r.file for r in records} == set(rows) and all(r.type == "SPEAKER" for r in records)
        assert not (root / split / "segments").exists() and not (root / split / "utt2spk").exists()
        for mix_id, row in rows.items():
            duration = float(row["duration_s"])
            mine = [r for r in records if r.file == mix_id]
            assert all(0 <= r.start < r.end <= duration + MS for r in mine)
            assert {r.name for r in mine} <= {row["speaker1"], row["speaker2"]} and row["speaker1"] != row["speaker2"]
            for k in ("1", "2"):
                offset = float(row[f"offset{k}_s"])
                got = sorted((r.start - offset, r.end - offset) for r in mine if r.name == row[f"speaker{k}"])
                want = _merged([(s.start, s.end) for s in words[row[f"utt{k}"]]], min_pause)
                assert len(got) == len(want) and np.allclose(got, want, atol=MS), (mix_id, k, got, want)
                turns_seen += len(got)
    if which == "short_pauses":  # the test means something: some pauses split turns, some did not
        assert turns_seen > sum(len(_table(root / s / "mixtures.tsv")) for s in SPLITS) * 2


def test_splits_have_disjoint_speakers_of_the_corpus(mix: Path, corpus: Path) -> None:
    meta = json.loads((mix / "mix.json").read_text(encoding="utf-8"))
    speaker_of = read_speakers(corpus / "speakers.tsv")
    seen = {}
    for split in SPLITS:
        rows = _table(mix / split / "mixtures.tsv")
        speakers = {r[f"speaker{k}"] for r in rows for k in "12"}
        assert all(speaker_of[r[f"utt{k}"]] == r[f"speaker{k}"] for r in rows for k in "12")
        assert speakers <= set(meta["splits"][split]["speaker_ids"]) and meta["splits"][split]["speakers"] >= 2
        seen[split] = set(meta["splits"][split]["speaker_ids"])
    assert not (seen["train"] & seen["dev"]) and not (seen["train"] & seen["test"]) and not (seen["dev"] & seen["test"])
    assert set().union(*seen.values()) == set(speaker_of.values())  # 6 speakers: 2 per split


def test_deterministic_reused_and_refused(mix: Path, corpus: Path, tmp_path: Path) -> None:
    again = write_mixtures(corpus, tmp_path / "a", **ARGS)
    assert _files(again) == _files(mix)
    (tmp_path / "a" / ".mix.partial").mkdir()  # an interrupted run's leftover does not block reuse
    stamp = (again / "mix.json").stat().st_mtime_ns
    assert write_mixtures(corpus, tmp_path / "a", **ARGS) == again
    assert (again / "mix.json").stat().st_mtime_ns == stamp
    with pytest.raises(SpeechUnitsError, match=r"another mixture set \(mixtures 12 \(asked 13\), seed 0 \(asked 1\)\)"):
        write_mixtures(corpus, tmp_path / "a", mixtures=13, seed=1, quiet=True)
    other = write_mixtures(corpus, tmp_path / "b", mixtures=12, seed=1, quiet=True)
    assert _files(other)["train/mixtures.tsv"] != _files(mix)["train/mixtures.tsv"]
    (tmp_path / "c" / "mix").mkdir(parents=True)
    (tmp_path / "c" / "mix" / "x").write_text("x")
    with pytest.raises(SpeechUnitsError, match="not a mixture set"):
        write_mixtures(corpus, tmp_path / "c", **ARGS)


def test_phones_without_words(corpus: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(corpus, tmp_path / "corpus"))
    (copy / "words.tsv").unlink()
    (copy / "manifest.tsv").write_text((copy / "manifest.tsv").read_text().replace(str(corpus), str(copy)))
    out = write_mixtures(copy, tmp_path / "out", mixtures=3, min_pause=0.045, quiet=True)
    assert json.loads((out / "mix.json").read_text())["alignment"] == "phones.tsv"
    phones = load_alignments(copy / "phones.tsv", silence=None)
    row = _table(out / "train" / "mixtures.tsv")[0]
    got = sorted((r.start, r.end) for r in read_rttm(out / "train" / "rttm") if r.name == row["speaker1"]
                 and r.file == row["mix_id"])
    want = _merged([(s.start, s.end) for s in phones[row["utt1"]] if s.label != "sil"], 0.045)
    assert any(s.label == "sil" for s in phones[row["utt1"]])
    assert len(got) == len(want) and np.allclose(got, want, atol=MS)


def _speech_seconds(spans: list[tuple[float, float]], grid: np.ndarray) -> np.ndarray:
    return np.any([(grid >= a) & (grid < b) for a, b in spans], axis=0) if spans else np.zeros(grid.size, bool)


@pytest.mark.skipif(find_spec("silero_vad") is None, reason="needs the [vad] extra (silero-vad)")
def test_a_librispeech_tree_mixes_with_speakers_from_its_ids_and_turns_from_the_vad(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Libri2Mix's case: no speakers.tsv and no alignment. The VAD's turns must cover the words the
    synthesiser spoke (its alignment, which the VAD never sees) and little else."""
    original = as_librispeech_tree(corpus, tmp_path / "LibriSpeech")
    out = write_mixtures(tmp_path / "LibriSpeech", tmp_path / "out", mixtures=6, max_overlap=0.0, quiet=True)
    meta = json.loads((out / "mix.json").read_text())
    assert meta["alignment"] == "silero-vad" and "activity" not in meta  # auto: not an argument of the set
    words = load_alignments(corpus / "words.tsv", silence=None)
    agreement = []
    for split in SPLITS:
        records = read_rttm(out / split / "rttm")
        for row in _table(out / split / "mixtures.tsv"):
            for k in ("1", "2"):
                utt = row[f"utt{k}"]
                new = utt.rsplit("/", 1)[-1]
                assert utt == f"{row[f'speaker{k}']}/2000/{new}" and new.startswith(row[f"speaker{k}"] + "-")
                offset, seconds = float(row[f"offset{k}_s"]), sf.info(corpus / "wavs" / f"{original[new]}.wav").duration
                grid = np.arange(0.0, seconds, 0.01)
                vad = _speech_seconds([(r.start - offset, r.end - offset) for r in records
                                       if r.file == row["mix_id"] and r.name == row[f"speaker{k}"]], grid)
                spoken = _speech_seconds(_merged([(s.start, s.end) for s in words[original[new]]], 0.3), grid)
                agreement.append((vad & spoken).sum() / (vad | spoken).sum())
    assert len(agreement) == 12
    assert np.mean(agreement) > 0.93 and min(agreement) > 0.85, agreement  # 0.96-1.0 with silero-vad 6.2
    # asked for: the VAD even where alignments exist, recorded as an argument of the set
    forced = write_mixtures(corpus, tmp_path / "forced", mixtures=3, activity="vad", quiet=True)
    forced_meta = json.loads((forced / "mix.json").read_text())
    assert forced_meta["alignment"] == "silero-vad" and forced_meta["activity"] == "vad"
    with pytest.raises(SpeechUnitsError, match=r"another mixture set \(activity"):
        write_mixtures(corpus, tmp_path / "forced", mixtures=3, activity="alignments", quiet=True)
    # without silero-vad: the message names the extra and the alternative
    from speechunits.segment import vad as vad_module

    monkeypatch.setattr(vad_module, "find_spec", lambda name: None)
    with pytest.raises(SpeechUnitsError, match=r"no word or phone alignment.*speechunits\[vad\].*words.tsv"):
        write_mixtures(tmp_path / "LibriSpeech", tmp_path / "novad", mixtures=3, quiet=True)


def test_corpus_and_argument_errors(corpus: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(corpus, tmp_path / "corpus"))
    (copy / "manifest.tsv").write_text((copy / "manifest.tsv").read_text().replace(str(corpus), str(copy)))
    out = tmp_path / "out"
    lines = (copy / "speakers.tsv").read_text().replace("\ten05\n", "\ten04\n")
    (copy / "speakers.tsv").write_text(lines)
    with pytest.raises(SpeechUnitsError, match="has 5 speaker"):
        write_mixtures(copy, out, mixtures=3, quiet=True)
    (copy / "speakers.tsv").unlink()
    with pytest.raises(SpeechUnitsError, match="no speakers.tsv"):
        write_mixtures(copy, out, mixtures=3, quiet=True)
    shutil.copy(corpus / "speakers.tsv", copy / "speakers.tsv")
    (copy / "words.tsv").unlink()
    (copy / "phones.tsv").unlink()
    with pytest.raises(SpeechUnitsError, match="no words.tsv or phones.tsv .* for --activity alignments"):
        write_mixtures(copy, out, mixtures=3, activity="alignments", quiet=True)
    with pytest.raises(SpeechUnitsError, match="not a corpus directory"):
        write_mixtures(tmp_path / "nothing", out, quiet=True)
    with pytest.raises(SpeechUnitsError, match="inside the corpus"):
        write_mixtures(corpus, corpus / "out", quiet=True)
    for bad, message in ((dict(max_overlap=1.5), r"--max-overlap must be in \[0, 1\]"),
                         (dict(max_overlap=-0.1), r"--max-overlap must be in \[0, 1\]"),
                         (dict(mixtures=2), "--mixtures must be an integer >= 3"),
                         (dict(min_pause=-1.0), "--min-pause must be finite and >= 0"),
                         (dict(gain_db=float("nan")), "--gain-db must be finite"),
                         (dict(split=(0.5, 0.5)), "split must be 3 positive shares"),
                         (dict(seed=-1), "--seed must be an integer >= 0"),
                         (dict(activity="energy"), "--activity must be one of auto, alignments, vad")):
        with pytest.raises(SpeechUnitsError, match=message):
            write_mixtures(corpus, out, **bad)
    assert not out.exists()


def test_shares() -> None:
    assert apportion(6, (0.6, 0.2, 0.2), 2) == [2, 2, 2]
    assert apportion(8, (0.6, 0.2, 0.2), 2) == [4, 2, 2]
    assert apportion(10, (0.6, 0.2, 0.2), 2) == [6, 2, 2]
    assert apportion(3, (0.6, 0.2, 0.2), 1) == [1, 1, 1]
    assert apportion(300, (0.6, 0.2, 0.2), 1) == [180, 60, 60]
    assert merge_segments([(1.0, 2.0), (0.0, 0.5), (2.2, 3.0), (3.3, 4.0)], 0.3) == [(0.0, 0.5), (1.0, 3.0), (3.3, 4.0)]
    assert merge_segments([(0.0, 1.0), (1.0, 2.0), (2.5, 3.0)], 0.0) == [(0.0, 2.0), (2.5, 3.0)]


def test_cli_mix_and_errors(corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "cli"
    assert main(["synth", "mix", str(out), "--corpus", str(corpus), "--mixtures", "3", "--max-overlap", "0.2",
                 "--min-pause", "0.1", "--gain-db", "0", "--seed", "2", "--quiet"]) == 0
    meta = json.loads((out / "mix" / "mix.json").read_text())
    assert (meta["mixtures"], meta["max_overlap"], meta["min_pause"], meta["gain_db"], meta["seed"]) == \
        (3, 0.2, 0.1, 0.0, 2)
    assert all(float(r["gain1_db"]) == float(r["gain2_db"]) == 0 for r in _table(out / "mix" / "dev" / "mixtures.tsv"))
    x = str(tmp_path / "x")
    assert "--corpus CORPUS is required" in cli_error(["synth", "mix", x], caplog)
    assert "--max-overlap must be in [0, 1]" in cli_error(["synth", "mix", x, "--corpus", str(corpus),
                                                           "--max-overlap", "2"], caplog)
    assert "--workers does not apply" in cli_error(["synth", "mix", x, "--corpus", str(corpus), "--workers", "2"],
                                                   caplog)
    assert "--pairs does not apply" in cli_error(["synth", "mix", x, "--corpus", str(corpus), "--pairs", "2"], caplog)
    assert "--corpus does not apply" in cli_error(["synth", "qbe", x, "--corpus", str(corpus)], caplog)
    assert "--activity does not apply" in cli_error(["synth", "noisy", x, "--corpus", str(corpus), "--activity",
                                                     "vad"], caplog)
    assert "already holds another mixture set (mixtures 3 (asked 4)" in cli_error(
        ["synth", "mix", str(out), "--corpus", str(corpus), "--mixtures", "4", "--max-overlap", "0.2",
         "--min-pause", "0.1", "--gain-db", "0", "--seed", "2"], caplog)

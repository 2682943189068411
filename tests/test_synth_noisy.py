"""Noisy speech with clean references (``speechunits synth noisy``): the realised SNR of every file pair,
the clean copy is the corpus's audio, the noise colours' spectral slopes, splits by speaker,
determinism, reuse, recorded noise files and errors (a 1-minute corpus: seconds)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.corpus import open_corpus
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files
from speechunits.synth.mixtures import SPLITS
from speechunits.synth.noisy import NOISY_COLUMNS, SNRS, TEST_SNRS, coloured_noise, noise_at_snr, write_noisy
from speechunits.synth.testing import as_librispeech_tree, small_corpus


def _table(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    assert tuple(header.split("\t")) == NOISY_COLUMNS
    return [dict(zip(NOISY_COLUMNS, row.split("\t"))) for row in rows]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("corpus"), minutes=1.0, speakers=6)


@pytest.fixture(scope="module")
def noisy(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_noisy(corpus, tmp_path_factory.mktemp("noisy"), quiet=True)


def test_every_pair_has_the_snr_it_records_and_the_corpus_audio_as_reference(corpus, noisy):
    speakers = dict(line.split("\t") for line in (corpus / "speakers.tsv").read_text().splitlines() if line)
    seen: dict[str, set[str]] = {}
    for split in SPLITS:
        rows = _table(noisy / split / "noisy.tsv")
        assert rows, split
        levels = TEST_SNRS if split == "test" else SNRS
        for row in rows:
            assert float(row["snr_db"]) in levels and speakers[row["utt"]] == row["speaker"]
            clean, rate = sf.read(noisy / split / "clean" / f"{row['utt']}.wav", dtype="float64")
            mixture, rate2 = sf.read(noisy / split / "wavs" / f"{row['utt']}.wav", dtype="float64")
            source, _ = sf.read(corpus / "wavs" / f"{row['utt']}.wav", dtype="float64")
            assert rate == rate2 == 16000 and clean.shape == mixture.shape == source.shape
            # the reference is the corpus's utterance at the recorded scale (int16 rounding apart)
            assert np.max(np.abs(clean - source * float(row["scale"]))) <= 1.0 / 32768
            realised = 10 * math.log10(np.sum(clean ** 2) / np.sum((mixture - clean) ** 2))
            assert realised == pytest.approx(float(row["snr_db"]), abs=0.05), row
        seen[split] = {row["speaker"] for row in rows}
    assert not (seen["train"] & seen["dev"]) and not (seen["train"] & seen["test"]) and not (seen["dev"] & seen["test"])
    meta = json.loads((noisy / "noisy.json").read_text())
    assert sorted(meta["splits"]["train"]["speaker_ids"]) == sorted(seen["train"])
    kinds = {row["noise"] for split in SPLITS for row in _table(noisy / split / "noisy.tsv")}
    assert kinds <= {"white", "pink", "brown", "hum", "babble"} and len(kinds) >= 3


def test_the_split_is_a_kaldi_and_espnet_enhancement_directory(corpus, noisy):
    test = noisy / "test"
    ids = [line.split()[0] for line in (test / "wav.scp").read_text().splitlines()]
    assert ids == sorted(ids, key=lambda x: x.encode()) and ids == [u.id for u in open_corpus(test)]
    assert [line.split()[0] for line in (test / "spk1.scp").read_text().splitlines()] == ids
    found = find_label_files(test)
    assert found["references"] == test / "spk1.scp" and found["speakers"] == test / "utt2spk"
    texts = dict(line.split("\t") for line in (corpus / "text.tsv").read_text().splitlines() if line)
    for line in (test / "text").read_text().splitlines():
        utt, text = line.split(" ", 1)
        assert text == " ".join(texts[utt].split())


def test_babble_is_other_speakers_of_the_same_split(noisy):
    for split in SPLITS:
        rows = _table(noisy / split / "noisy.tsv")
        speaker_of = {row["utt"]: row["speaker"] for row in rows}
        for row in rows:
            if row["noise"] == "babble":
                talkers = row["noise_source"].split("+")
                assert talkers and all(t in speaker_of for t in talkers)  # the same split's utterances
                assert all(speaker_of[t] != row["speaker"] for t in talkers)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_noise_colours_have_their_spectral_slope(exponent):
    noise = coloured_noise(2 ** 18, exponent, np.random.default_rng(0))
    assert noise.mean() == pytest.approx(0.0, abs=1e-9) and np.sqrt(np.mean(noise ** 2)) == pytest.approx(1.0)
    freqs, power = welch(noise, fs=16000, nperseg=4096)
    band = (freqs > 50) & (freqs < 4000)
    slope = np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)


def test_noise_at_snr_is_exact_and_refuses_silence():
    rng = np.random.default_rng(1)
    clean, noise = rng.standard_normal(8000), rng.standard_normal(8000) * 3
    scaled = noise_at_snr(clean, noise, 7.5)
    assert 10 * np.log10(np.mean(clean ** 2) / np.mean(scaled ** 2)) == pytest.approx(7.5, abs=1e-9)
    with pytest.raises(SpeechUnitsError, match="noise is silent"):
        noise_at_snr(clean, np.zeros(8000), 5.0)


def test_same_arguments_same_bytes_reuse_and_refusal(corpus, noisy, tmp_path):
    again = write_noisy(corpus, tmp_path / "a", quiet=True)
    assert _files(again) == _files(noisy)
    assert write_noisy(corpus, tmp_path / "a", quiet=True) == again  # the same set: kept
    with pytest.raises(SpeechUnitsError, match="another noisy set.*snrs"):
        write_noisy(corpus, tmp_path / "a", snrs=(5.0,), quiet=True)
    other = write_noisy(corpus, tmp_path / "b", seed=1, quiet=True)
    assert _files(other) != _files(noisy)


def test_noise_recordings_are_drawn_when_given(corpus, tmp_path):
    noises = tmp_path / "noises"
    noises.mkdir()
    rng = np.random.default_rng(2)
    sf.write(noises / "fan.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    sf.write(noises / "street.flac", (0.1 * rng.standard_normal(24000)).astype(np.float32), 8000)  # resampled
    out = write_noisy(corpus, tmp_path / "n", noise_dir=noises, kinds=("file",), quiet=True)
    rows = [row for split in SPLITS for row in _table(out / split / "noisy.tsv")]
    assert {row["noise"] for row in rows} == {"file"}
    assert {Path(row["noise_source"]).name for row in rows} == {"fan.wav", "street.flac"}
    assert json.loads((out / "noisy.json").read_text())["noise_files"] == [str(noises / "fan.wav"),
                                                                         str(noises / "street.flac")]


def test_bad_requests_are_refused(corpus, tmp_path, caplog):
    with pytest.raises(SpeechUnitsError, match="needs --noise DIR"):
        write_noisy(corpus, tmp_path / "a", kinds=("file",), quiet=True)
    with pytest.raises(SpeechUnitsError, match="--noise-kinds"):
        write_noisy(corpus, tmp_path / "a", kinds=("rain",), quiet=True)
    with pytest.raises(SpeechUnitsError, match="--snrs must be one or more finite"):
        write_noisy(corpus, tmp_path / "a", snrs=(), quiet=True)
    with pytest.raises(SpeechUnitsError, match="inside the corpus"):
        write_noisy(corpus, corpus / "out", quiet=True)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(SpeechUnitsError, match="no speakers.tsv"):
        write_noisy(bare, tmp_path / "b", quiet=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpeechUnitsError, match="no audio file"):
        write_noisy(corpus, tmp_path / "c", noise_dir=empty, quiet=True)
    assert "--corpus CORPUS is required" in cli_error(["synth", "noisy", str(tmp_path / "d")], caplog)


def test_a_librispeech_tree_takes_its_speakers_from_its_ids(corpus, tmp_path):
    """No speakers.tsv, as LibriSpeech ships: SPEAKER-CHAPTER-N ids name the speakers."""
    original = as_librispeech_tree(corpus, tmp_path / "LibriSpeech")
    speakers = dict(line.split("\t") for line in (corpus / "speakers.tsv").read_text().splitlines() if line)
    out = write_noisy(tmp_path / "LibriSpeech", tmp_path / "out", kinds=("white",), quiet=True)
    rows = [row for split in SPLITS for row in _table(out / split / "noisy.tsv")]
    assert len(rows) == len(original)
    by_number = {}
    for row in rows:
        new = row["utt"].rsplit("/", 1)[-1]
        assert row["utt"] == f"{row['speaker']}/2000/{new}" and new.startswith(row["speaker"] + "-")
        by_number.setdefault(row["speaker"], set()).add(speakers[original[new]])
    assert all(len(names) == 1 for names in by_number.values()) and len(by_number) == 6  # one voice per number


def test_cli_writes_the_set(corpus, tmp_path):
    assert main(["synth", "noisy", str(tmp_path / "cli"), "--corpus", str(corpus), "--snrs", "0,10",
                 "--test-snrs", "5", "--noise-kinds", "white,pink", "--quiet"]) == 0
    rows = _table(tmp_path / "cli" / "noisy" / "test" / "noisy.tsv")
    assert {row["snr_db"] for row in rows} == {"5"} and {row["noise"] for row in rows} <= {"white", "pink"}

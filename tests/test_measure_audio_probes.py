"""The project's probes as judges of synthesised audio (tiny MFCC probes; plumbing, not quality)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio import evaluate_audio
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 1.5 min: enough utterances per speaker for a speaker probe's split (the same corpus as test_probe_cli)
    return small_corpus(tmp_path_factory.mktemp("audio-probe-corpus"), minutes=1.5, speakers=3)


def _train(task: str, corpus: Path, out: Path) -> Path:
    assert main(["probe", "train", task, str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
                 "--lr", "1e-2", "--max-steps", "20", "--eval-every", "10", "--device", "cpu", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def phones_probe(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("phones", corpus, tmp_path_factory.mktemp("probe") / "phones")


@pytest.fixture(scope="module")
def speaker_probe(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("speaker", corpus, tmp_path_factory.mktemp("probe") / "speaker")


@pytest.fixture(scope="module")
def hyp_copy(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One utterance of each of two speakers, copied unchanged."""
    out = tmp_path_factory.mktemp("hyp")
    for speaker in ("en00", "en01"):
        wav = sorted((corpus / "wavs").glob(f"{speaker}_*.wav"))[0]
        shutil.copy(wav, out / wav.name)
    return out


def test_phones_probe_judges_a_copy_like_the_original(corpus: Path, phones_probe: Path, hyp_copy: Path):
    own = evaluate_audio(corpus / "wavs", hyp_copy, probe=phones_probe, metrics=["probe"], device="cpu", quiet=True)
    assert own["metrics"]["probe_reference"] == "ref_transcripts" and own["metrics"]["probe_per"] == 0.0
    row = own["per_utterance"][0]
    assert row["probe_ref"] == row["probe_hyp"]
    against_phones = evaluate_audio(corpus / "wavs", hyp_copy, probe=phones_probe, phones=corpus / "phones.tsv",
                                    metrics=["probe_per"], device="cpu", quiet=True)["metrics"]
    assert against_phones["probe_reference"] == "phones"
    assert against_phones["probe_per"] == against_phones["probe_per_ref"] > 0.0  # 20 steps: far from perfect


def test_speaker_probe_accuracy_against_the_sources_and_a_target_map(corpus: Path, speaker_probe: Path,
                                                                     hyp_copy: Path, tmp_path: Path):
    found = evaluate_audio(corpus / "wavs", hyp_copy, speaker_probe=speaker_probe, metrics=["speaker_probe"],
                           device="cpu", quiet=True)["metrics"]
    assert 0.0 <= found["speaker_probe_accuracy"] <= 1.0 and found["speaker_probe_chance"] == 0.5
    targets = tmp_path / "targets.tsv"
    targets.write_text("".join(f"{w.stem}\tnobody\n" for w in hyp_copy.glob("*.wav")), encoding="utf-8")
    converted = evaluate_audio(corpus / "wavs", hyp_copy, speaker_probe=speaker_probe, target_speakers=targets,
                               metrics=["speaker_probe"], device="cpu", quiet=True)["metrics"]
    assert converted["speaker_probe_accuracy"] == 0.0  # the probe cannot name a speaker it never saw


def test_a_probe_of_the_wrong_task_is_refused(corpus: Path, phones_probe: Path, speaker_probe: Path,
                                              hyp_copy: Path):
    with pytest.raises(SpeechUnitsError, match="needs an asr or phones probe.*'speaker'"):
        evaluate_audio(corpus / "wavs", hyp_copy, probe=speaker_probe, metrics=["probe"], quiet=True)
    with pytest.raises(SpeechUnitsError, match="needs a speaker probe.*'phones'"):
        evaluate_audio(corpus / "wavs", hyp_copy, speaker_probe=phones_probe, metrics=["speaker_probe"], quiet=True)

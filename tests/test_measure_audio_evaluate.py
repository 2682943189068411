"""``evaluate_audio`` and ``speechunits evaluate-audio`` end to end on copies of synthetic speech, and bad inputs."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio import evaluate_audio
from speechunits.measure.audio import evaluate as evaluate_module
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("evaluate-audio-corpus"))


@pytest.fixture(scope="module")
def hyp_copy(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two utterances of the corpus copied unchanged: a perfect resynthesis."""
    out = tmp_path_factory.mktemp("hyp")
    for wav in sorted((corpus / "wavs").glob("*.wav"))[:2]:
        shutil.copy(wav, out / wav.name)
    return out


def test_a_copy_of_the_reference_is_judged_perfect(corpus: Path, hyp_copy: Path):
    result = evaluate_audio(corpus / "wavs", hyp_copy, metrics=["asr", "pitch", "mcd"], device="cpu", quiet=True)
    metrics = result["metrics"]
    assert result["utterances"] == 2 and result["judges"] == ["asr", "pitch", "mcd"]
    assert metrics["gpe"] == 0.0 and metrics["vde"] == 0.0 and metrics["ffe"] == 0.0
    assert metrics["mcd"] == 0.0
    assert result["asr_reference"] == "ref_transcripts" and metrics["wer_asr"] == 0.0
    assert result["unmatched_references"] > 0 and result["skipped"] == {}
    row = result["per_utterance"][0]
    assert row["asr_ref"] == row["asr_hyp"] and row["asr_hyp"].strip()
    assert row["id"] == sorted(p.stem for p in hyp_copy.iterdir())[0]
    json.dumps(result, allow_nan=False)  # JSON-able, no NaN


def test_with_text_the_hypothesis_and_the_reference_get_the_same_wer(corpus: Path, hyp_copy: Path):
    result = evaluate_audio(corpus / "manifest.tsv", hyp_copy, text=corpus / "text.tsv", metrics=["wer_asr"],
                            quiet=True)
    metrics = result["metrics"]
    assert result["asr_reference"] == "text" and metrics["wer_asr_ref_hyp"] == 0.0
    assert metrics["wer_asr"] == metrics["wer_asr_ref"] >= 0.0
    assert all(row["text"] for row in result["per_utterance"])


def test_speaker_and_dnsmos_of_a_copy(corpus: Path, hyp_copy: Path):
    pytest.importorskip("resemblyzer")
    pytest.importorskip("speechmos")
    one = hyp_copy.parent / "one"
    one.mkdir(exist_ok=True)
    first = sorted(hyp_copy.glob("*.wav"))[0]
    shutil.copy(first, one / first.name)
    metrics = evaluate_audio(corpus / "wavs", one, metrics=["speaker", "dnsmos"], device="cpu", quiet=True)["metrics"]
    assert metrics["speaker_similarity"] == pytest.approx(1.0, abs=1e-5)
    for key in ("ovrl", "sig", "bak", "p808"):
        assert metrics[f"dnsmos_{key}"] == pytest.approx(metrics[f"dnsmos_ref_{key}"])


def test_a_missing_package_skips_its_judge_unless_asked_for(monkeypatch, caplog):
    real = evaluate_module.require

    def without_resemblyzer(module: str, judge: str):
        if module == "resemblyzer":
            raise SpeechUnitsError(f"{judge} needs the package 'resemblyzer': pip install 'speechunits[eval]'")
        return real(module, judge)

    monkeypatch.setattr(evaluate_module, "require", without_resemblyzer)
    with caplog.at_level(logging.WARNING):
        judges, skipped = evaluate_module.select_judges(None)
    assert "speaker" not in judges and "speechunits[eval]" in skipped["speaker"]
    assert "no --probe given" in skipped["probe"] and "speaker" in caplog.text
    with pytest.raises(SpeechUnitsError, match=r"speechunits\[eval\]"):
        evaluate_module.select_judges(["speaker_similarity"])


def test_metric_names_and_judges(tmp_path: Path):
    assert evaluate_module.judge_of("gpe") == "pitch" and evaluate_module.judge_of("mcd") == "mcd"
    with pytest.raises(SpeechUnitsError, match="unknown metric 'pesq'"):
        evaluate_module.judge_of("pesq")
    with pytest.raises(SpeechUnitsError, match="--probe DIR"):
        evaluate_module.select_judges(["probe_per"])
    with pytest.raises(SpeechUnitsError, match="--speaker-probe DIR"):
        evaluate_module.select_judges(["speaker_probe"])


def test_hypotheses_without_a_reference_are_named(corpus: Path, hyp_copy: Path, tmp_path: Path):
    stray = tmp_path / "hyp"
    shutil.copytree(hyp_copy, stray)
    shutil.copy(next(stray.glob("*.wav")), stray / "not_in_ref.wav")
    with pytest.raises(SpeechUnitsError, match="1 of 3 utterances have no reference.*'not_in_ref'"):
        evaluate_audio(corpus / "wavs", stray, metrics=["mcd"], quiet=True)


def test_ids_match_by_file_stem_across_layouts(corpus: Path, hyp_copy: Path, tmp_path: Path):
    nested = tmp_path / "nested" / "sub"
    shutil.copytree(hyp_copy, nested)
    result = evaluate_audio(corpus / "wavs", tmp_path / "nested", metrics=["pitch"], quiet=True)
    assert [r["id"] for r in result["per_utterance"]] == sorted(p.stem for p in hyp_copy.glob("*.wav"))


def test_empty_directories_missing_files_and_missing_text(corpus: Path, hyp_copy: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpeechUnitsError, match=f"{empty}: no audio files"):
        evaluate_audio(corpus / "wavs", empty, quiet=True)
    with pytest.raises(SpeechUnitsError, match=f"{empty}: no audio files"):
        evaluate_audio(empty, hyp_copy, quiet=True)
    with pytest.raises(SpeechUnitsError, match="no such file or directory"):
        evaluate_audio(tmp_path / "absent", hyp_copy, quiet=True)
    manifest = tmp_path / "hyp.tsv"
    name = sorted(hyp_copy.glob("*.wav"))[0].name
    manifest.write_text(f"{hyp_copy}\n{name}\t100\ngone.wav\t100\n", encoding="utf-8")
    (tmp_path / "ref").mkdir()
    for wav in hyp_copy.glob("*.wav"):
        shutil.copy(wav, tmp_path / "ref" / wav.name)
    shutil.copy(hyp_copy / name, tmp_path / "ref" / "gone.wav")
    with pytest.raises(SpeechUnitsError, match="do not exist.*gone.wav"):
        evaluate_audio(tmp_path / "ref", manifest, quiet=True)
    text = tmp_path / "text.tsv"
    text.write_text("someone_else\thello\n", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="no transcript for 2 utterances"):
        evaluate_audio(corpus / "wavs", hyp_copy, text=text, metrics=["asr"], quiet=True)


def test_an_utterance_a_judge_cannot_score_is_recorded_not_fatal(corpus: Path, tmp_path: Path):
    import numpy as np

    from speechunits.audio import Audio

    hyp = tmp_path / "hyp"
    hyp.mkdir()
    wav = sorted((corpus / "wavs").glob("*.wav"))[0]
    length = Audio.load(wav).num_samples
    Audio(np.zeros(length, dtype=np.float32), 16000).save(hyp / wav.name)  # silence: MCD is undefined
    result = evaluate_audio(corpus / "wavs", hyp, metrics=["mcd", "pitch"], quiet=True)
    row = result["per_utterance"][0]
    assert "mcd" in row["errors"] and result["failures"] == {"mcd": 1} and result["metrics"]["mcd"] is None
    assert row["vde"] > 0.0 and row["gpe"] is None  # nothing voiced in the silence: GPE undefined


def test_cli_json_and_table(corpus: Path, hyp_copy: Path, capsys, caplog):
    assert main(["evaluate-audio", str(corpus / "wavs"), str(hyp_copy), "--metrics", "pitch,mcd", "--json",
                 "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metrics"]["gpe"] == 0.0 and len(result["per_utterance"]) == 2
    assert main(["evaluate-audio", str(corpus / "wavs"), str(hyp_copy), "--metrics", "pitch", "--quiet"]) == 0
    assert "GPE" in capsys.readouterr().out
    with caplog.at_level(logging.ERROR):
        assert main(["evaluate-audio", str(corpus / "wavs"), str(hyp_copy), "--metrics", "pesq", "--quiet"]) == 2
    assert "unknown metric" in caplog.text


def test_worker_processes_give_the_same_rows(corpus: Path, tmp_path: Path):
    """jobs=2: the pairs judged in two processes (their own models) give the rows of one, in order."""
    hyp = tmp_path / "hyp"
    hyp.mkdir()
    for wav in sorted((corpus / "wavs").glob("*.wav"))[:4]:
        shutil.copy(wav, hyp / wav.name)
    common = dict(metrics=["asr", "pitch", "mcd"], device="cpu", quiet=True)
    serial = evaluate_audio(corpus / "wavs", hyp, **common)
    parallel = evaluate_audio(corpus / "wavs", hyp, jobs=2, **common)
    assert parallel == serial and len(parallel["per_utterance"]) == 4
    with pytest.raises(SpeechUnitsError, match="--jobs must be at least 1"):
        evaluate_audio(corpus / "wavs", hyp, jobs=0, **common)

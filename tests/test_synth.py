"""Synthetic corpus: layout, alignments vs audio, determinism, speakers, CLI errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.corpus import open_corpus
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import SILENCE, load_alignments
from speechunits.synth import synthesize_corpus
from speechunits.synth.align import clean_label, segments_from_events
from speechunits.synth.espeak import PhoneEvent, Synthesis, WordEvent
from speechunits.synth.sentences import available_languages, sentences
from speechunits.synth.speakers import sample_speakers
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("synth"), minutes=0.5, speakers=3)


def _read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_layout_and_manifest(corpus: Path) -> None:
    utts = list(open_corpus(corpus / "manifest.tsv"))
    assert len(utts) >= 6
    total = 0.0
    for utt in utts:
        info = sf.info(utt.path)
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert info.frames == utt.num_samples
        total += info.frames / 16000
        assert (corpus / "textgrids" / f"{utt.id}.TextGrid").is_file()
    assert total >= 30.0  # stops at the first utterance reaching 0.5 min
    speakers = dict(_read_tsv(corpus / "speakers.tsv"))
    assert sorted(speakers) == sorted(u.id for u in utts)
    assert len(set(speakers.values())) == 3
    info_rows = _read_tsv(corpus / "speaker_info.tsv")
    assert info_rows[0][:3] == ["speaker", "language", "voice"]
    assert {r[0] for r in info_rows[1:]} == set(speakers.values())
    texts = dict(_read_tsv(corpus / "text.tsv"))
    assert len(set(texts.values())) == len(texts)  # no sentence repeated in a small corpus


def test_transcripts_in_three_formats_agree(corpus: Path) -> None:
    """text.tsv, Kaldi ``text`` and manifest.jsonl hold the same transcripts; the JSONL is a corpus too."""
    from speechunits.probe.labels import read_transcripts

    expected = {utt: " ".join(text.split()) for utt, text in _read_tsv(corpus / "text.tsv")}
    assert read_transcripts(corpus / "text.tsv") == expected
    assert read_transcripts(corpus / "text") == expected
    assert read_transcripts(corpus / "manifest.jsonl") == expected
    kaldi_ids = [line.split(" ", 1)[0] for line in (corpus / "text").read_text(encoding="utf-8").splitlines()]
    assert kaldi_ids == sorted(expected)  # Kaldi wants sorted ids
    from_tsv = [(u.id, Path(u.path).resolve(), u.num_samples) for u in open_corpus(corpus / "manifest.tsv")]
    from_jsonl = list(open_corpus(corpus / "manifest.jsonl"))
    assert [(u.id, Path(u.path).resolve(), u.num_samples) for u in from_jsonl] == from_tsv
    speakers = dict(_read_tsv(corpus / "speakers.tsv"))
    assert all(u.fields["speaker"] == speakers[u.id] for u in from_jsonl)


def test_phones_cover_audio_and_agree_with_textgrids(corpus: Path) -> None:
    phones = load_alignments(corpus)
    assert phones == load_alignments(corpus / "textgrids")
    words = load_alignments(corpus, tier="words")
    assert words == load_alignments(corpus / "textgrids", tier="words", silence=None)
    for utt in open_corpus(corpus / "manifest.tsv"):
        segs = phones[utt.id]
        duration = utt.num_samples / 16000
        assert segs[0].start == 0.0 and segs[-1].end == pytest.approx(duration, abs=1e-4)
        for a, b in zip(segs, segs[1:]):
            assert a.end == b.start and a.start < a.end  # contiguous, no zero-length
        assert all(w.end <= duration + 1e-4 for w in words[utt.id])
        assert not any(ch in s.label for s in segs for ch in "ˈˌ'")


def test_words_match_the_text(corpus: Path) -> None:
    words = load_alignments(corpus, tier="words")
    texts = dict(_read_tsv(corpus / "text.tsv"))
    for utt, segs in words.items():
        expected = [w.strip(".,;:!?\"'") for w in texts[utt].split()]
        # espeak glues some words ("of the") into one event: those labels hold both words.
        assert " ".join(s.label for s in segs).split() == expected


def test_silence_is_quiet_and_vowels_are_loud(corpus: Path) -> None:
    """Independent check of the alignment against the audio: energy per labelled region."""
    phones = load_alignments(corpus)
    vowels = set("aeiouæɑɔəɛɪʊʌɚɜ")
    sil_energy, vowel_energy = [], []
    for utt in open_corpus(corpus / "manifest.tsv"):
        audio, rate = sf.read(utt.path, dtype="float32")
        for seg in phones[utt.id]:
            chunk = audio[int(seg.start * rate): int(seg.end * rate)]
            if chunk.size < 80:
                continue
            if seg.label == SILENCE:
                sil_energy.append(float(np.mean(chunk ** 2)))
            elif seg.label[0] in vowels:
                vowel_energy.append(float(np.mean(chunk ** 2)))
    assert sil_energy and vowel_energy
    assert np.median(vowel_energy) > 30 * np.median(sil_energy)


def test_byte_identical_rebuild_any_worker_count(tmp_path: Path) -> None:
    a = synthesize_corpus(tmp_path / "a", 0.15, 2, seed=3, workers=1, quiet=True)
    b = synthesize_corpus(tmp_path / "b", 0.15, 2, seed=3, workers=2, quiet=True)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        data_a, data_b = (a / rel).read_bytes(), (b / rel).read_bytes()
        if rel.name == "manifest.tsv":  # line 1 is the absolute wavs root
            data_a, data_b = data_a.split(b"\n", 1)[1], data_b.split(b"\n", 1)[1]
        assert data_a == data_b, rel
    c = synthesize_corpus(tmp_path / "c", 0.15, 2, seed=4, workers=2, quiet=True)
    assert (c / "text.tsv").read_bytes() != (a / "text.tsv").read_bytes()


def test_stop_closure_joins_the_stop() -> None:
    """Zeros before a stop's event belong to the stop; zeros before a pause-then-stop do not move."""
    rate = 1000
    samples = np.ones(100, dtype=np.int16)
    samples[20:30] = 0  # closure before "t" at 30
    samples[60:70] = 0  # silence of the pause at 60
    events = [PhoneEvent(0, "ˈa"), PhoneEvent(30, "t"), PhoneEvent(60, ""), PhoneEvent(70, "k"), PhoneEvent(90, "")]
    synthesis = Synthesis(samples, rate, events, [WordEvent(0, 1, 2), WordEvent(60, 4, 2)])
    phones, words = segments_from_events(synthesis, "at, ki")
    assert [(p.start, p.end, p.label) for p in phones] == [
        (0.0, 0.02, "a"), (0.02, 0.06, "t"), (0.06, 0.07, SILENCE), (0.07, 0.09, "k"), (0.09, 0.1, SILENCE)]
    assert [(w.start, w.end, w.label) for w in words] == [(0.0, 0.06, "at"), (0.07, 0.09, "ki")]


def test_clean_label_strips_stress() -> None:
    assert clean_label("ˈaɪ") == "aɪ" and clean_label("ˌɛ") == "ɛ" and clean_label("iː") == "iː"


def test_speakers_deterministic_and_varied() -> None:
    speakers = sample_speakers(6, ["en", "es"], seed=1)
    assert speakers == sample_speakers(6, ["en", "es"], seed=1)
    assert [s.language for s in speakers] == ["en", "es"] * 3
    assert len({s.name for s in speakers}) == 6 and len({s.voice for s in speakers}) >= 4
    assert len({(s.pitch, s.rate) for s in speakers}) == 6
    assert not any(bad in s.voice for s in speakers for bad in ("whisper", "robo", "croak"))
    with pytest.raises(SpeechUnitsError, match="--speakers"):
        sample_speakers(1, ["en", "es"], seed=0)
    with pytest.raises(SpeechUnitsError, match="--languages"):
        sample_speakers(2, ["xx"], seed=0)


def test_sentence_lists_are_large_and_distinct() -> None:
    assert "en" in available_languages()
    for lang in available_languages():
        assert len(sentences(lang)) >= 200, lang
    with pytest.raises(SpeechUnitsError, match="no built-in sentences for 'xx'"):
        sentences("xx")


def test_cli_synth_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "cli"
    assert main(["synth", str(out), "--minutes", "0.05", "--speakers", "1", "--quiet"]) == 0
    assert (out / "phones.tsv").is_file() and len(list((out / "wavs").glob("*.wav"))) >= 1
    assert "exists and is not empty" in cli_error(["synth", str(out), "--minutes", "0.05", "--speakers", "1",
                                                   "--quiet"], caplog)
    assert "no built-in sentences for 'xx'" in cli_error(["synth", str(tmp_path / "x"), "--languages", "xx",
                                                          "--quiet"], caplog)
    assert "--minutes must be positive" in cli_error(["synth", str(tmp_path / "y"), "--minutes", "0",
                                                      "--quiet"], caplog)
    assert "--workers must be >= 1" in cli_error(["synth", str(tmp_path / "z"), "--workers", "0", "--quiet"], caplog)
    assert "no sentence grammar for es" in cli_error(["synth", str(tmp_path / "g"), "--languages", "en,es", "--text",
                                                     "mixed", "--quiet"], caplog)
    assert "--text does not apply" in cli_error(["synth", "lexical", str(tmp_path / "l"), "--text", "grammar",
                                                 "--quiet"], caplog)
    with pytest.raises(SpeechUnitsError, match="--text must be one of list, grammar, mixed"):
        synthesize_corpus(tmp_path / "t", 0.05, 1, text="random")
    grammar = tmp_path / "grammar"
    assert main(["synth", str(grammar), "--minutes", "0.1", "--speakers", "2", "--text", "grammar", "--quiet"]) == 0
    texts = [line.split("\t")[1] for line in (grammar / "text.tsv").read_text().splitlines()]
    assert texts and not set(texts) & set(sentences("en"))
    assert '"text": "grammar"' in (grammar / "corpus.json").read_text()


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise RuntimeError("boom")
    return x * x


def test_map_forked_keeps_order_and_reports_failures() -> None:
    from itertools import count

    from speechunits.synth.forking import map_forked

    assert list(map_forked(lambda x: x * x, range(7), workers=3)) == [x * x for x in range(7)]
    endless = map_forked(lambda x: x + 1, count(), workers=2)
    assert [next(endless) for _ in range(5)] == [1, 2, 3, 4, 5]
    endless.close()  # stops the running forks
    with pytest.raises(SpeechUnitsError, match="RuntimeError: boom"):
        list(map_forked(_square_or_fail, range(5), workers=2))
    with pytest.raises(SpeechUnitsError, match="workers"):
        list(map_forked(_square_or_fail, range(5), workers=0))


def test_forks_do_not_leak_state_between_utterances(tmp_path: Path) -> None:
    """The same utterance gives the same samples whatever was synthesised before it."""
    from speechunits.synth.corpus import _plan, _synthesise_task
    from speechunits.synth.forking import map_forked
    from itertools import islice

    speakers = sample_speakers(2, ["en"], seed=0)
    tasks = list(islice(_plan(speakers, 0), 4))
    (tmp_path / "a" / "wavs").mkdir(parents=True)
    (tmp_path / "a" / "textgrids").mkdir()
    (tmp_path / "b" / "wavs").mkdir(parents=True)
    (tmp_path / "b" / "textgrids").mkdir()
    from functools import partial

    forward = list(map_forked(partial(_synthesise_task, out=tmp_path / "a"), tasks, 1))
    backward = list(map_forked(partial(_synthesise_task, out=tmp_path / "b"), tasks[::-1], 1))
    assert forward == backward[::-1]
    for task in tasks:
        name = f"wavs/{task.utt_id}.wav"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_languages_have_their_own_voices_and_words(tmp_path: Path) -> None:
    out = synthesize_corpus(tmp_path / "ml", 0.12, 3, languages=["es", "de", "fr"], quiet=True)
    info = {r[0]: r for r in _read_tsv(out / "speaker_info.tsv")[1:]}
    assert {r[1] for r in info.values()} == {"es", "de", "fr"}
    assert all(r[2].startswith(r[1] + "+") for r in info.values())
    words = load_alignments(out, tier="words")
    texts = dict(_read_tsv(out / "text.tsv"))
    speakers = dict(_read_tsv(out / "speakers.tsv"))
    assert len({info[speakers[u]][1] for u in texts}) == 3
    for utt, segs in words.items():
        expected = [w.strip(".,;:!?") for w in texts[utt].split()]
        assert " ".join(s.label for s in segs).split() == expected

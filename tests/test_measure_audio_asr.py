"""Pocketsphinx transcripts of synthetic speech and WER/CER of known strings."""
from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.asr import PocketsphinxASR, error_rates, utterance_wer
from speechunits.synth.testing import small_corpus

pytest.importorskip("pocketsphinx")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return small_corpus(tmp_path_factory.mktemp("asr-corpus"))


@pytest.fixture(scope="module")
def asr() -> PocketsphinxASR:
    return PocketsphinxASR()


def test_wer_and_cer_of_known_strings():
    # one substitution in 4 words; "Hello, World!" normalises to "hello world" (case and punctuation)
    rates = error_rates(["the cat sat down", "Hello, World!"], ["the cat sat town", "hello world"])
    assert rates["wer"] == pytest.approx(1 / 6)
    assert rates["cer"] == pytest.approx(1 / (16 + 11))
    assert rates["reference_words"] == 6 and rates["utterances"] == 2
    assert utterance_wer("a b c", "a c") == pytest.approx(1 / 3)
    assert utterance_wer("a b", "a b x y") == pytest.approx(1.0)  # two insertions over two words
    assert utterance_wer("?!", "anything") is None


def test_empty_references_are_left_out_and_all_empty_is_undefined():
    rates = error_rates(["", "one two"], ["noise", "one"])
    assert rates["wer"] == pytest.approx(0.5) and rates["empty_references"] == 1
    assert math.isnan(error_rates(["..."], ["x"])["wer"])
    with pytest.raises(SpeechUnitsError, match="2 references but 1"):
        error_rates(["a", "b"], ["a"])


def test_pocketsphinx_transcribes_synthetic_speech(asr, corpus):
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text(encoding="utf-8").splitlines())
    wavs = sorted((corpus / "wavs").glob("*.wav"))[:3]
    hyps = [asr.transcribe(Audio.load(w)) for w in wavs]
    assert all(isinstance(h, str) and h.strip() for h in hyps)
    rates = error_rates([texts[w.stem] for w in wavs], hyps)
    assert math.isfinite(rates["wer"]) and rates["wer"] >= 0.0  # value recorded in docs, not asserted


def test_a_transcript_does_not_depend_on_what_was_decoded_before(asr, corpus):
    wavs = sorted((corpus / "wavs").glob("*.wav"))[:2]
    a, b = Audio.load(wavs[0]), Audio.load(wavs[1])
    first = asr.transcribe(a)
    asr.transcribe(b)
    assert asr.transcribe(a) == first


def test_other_rates_silence_and_empty_audio(asr, corpus):
    wav = sorted((corpus / "wavs").glob("*.wav"))[0]
    at_8k = asr.transcribe(Audio.load(wav, sample_rate=8000))
    assert isinstance(at_8k, str)
    assert asr.transcribe(Audio(np.zeros(0, dtype=np.float32), 16000)) == ""
    assert isinstance(asr.transcribe(Audio(np.zeros(8000, dtype=np.float32), 16000)), str)

"""Speaker similarity (Resemblyzer) and DNSMOS (speechmos) on synthetic speech."""
from __future__ import annotations

import numpy as np
import pytest

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.deps import require
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory):
    corpus = small_corpus(tmp_path_factory.mktemp("judges-corpus"))
    return sorted((corpus / "wavs").glob("*.wav"))


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("resemblyzer")
    from speechunits.measure.audio.speaker import SpeakerEmbedder

    return SpeakerEmbedder(device="cpu")


def _by_speaker(wavs, speaker: str):
    return [w for w in wavs if w.stem.startswith(speaker)]


def test_an_utterance_is_most_similar_to_itself(embedder, wavs):
    from speechunits.measure.audio.speaker import EMBEDDING_DIM, cosine_similarity

    a = embedder.embed(Audio.load(_by_speaker(wavs, "en00")[0]))
    other = embedder.embed(Audio.load(_by_speaker(wavs, "en01")[0]))
    assert a.shape == (EMBEDDING_DIM,) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert cosine_similarity(a, a) == pytest.approx(1.0, abs=1e-6)
    assert cosine_similarity(a, other) < 0.95
    # the same audio at another rate (resampled back to 16 kHz) is nearly the same voice
    at_22k = embedder.embed(Audio.load(_by_speaker(wavs, "en00")[0], sample_rate=22050))
    assert cosine_similarity(a, at_22k) > cosine_similarity(a, other)


def test_silence_has_no_speaker_embedding(embedder):
    from speechunits.measure.audio.speaker import cosine_similarity

    with pytest.raises(SpeechUnitsError, match="silent"):
        embedder.embed(Audio(np.zeros(16000, dtype=np.float32), 16000))
    with pytest.raises(SpeechUnitsError):
        cosine_similarity(np.zeros(3), np.ones(3))


def test_dnsmos_prefers_clean_speech_to_the_same_with_heavy_noise(wavs):
    pytest.importorskip("speechmos")
    from speechunits.measure.audio.dnsmos import dnsmos

    clean = Audio.load(wavs[0])
    rng = np.random.default_rng(0)
    noisy = Audio(np.clip(clean.samples + 0.3 * rng.standard_normal(clean.num_samples), -1, 1).astype(np.float32),
                  clean.sample_rate)
    good, bad = dnsmos(clean), dnsmos(noisy)
    assert set(good) == {"ovrl", "sig", "bak", "p808"}
    assert all(0.5 < v < 5.5 for v in good.values())
    assert good["ovrl"] > bad["ovrl"] and good["bak"] > bad["bak"]
    assert dnsmos(Audio.load(wavs[0], sample_rate=8000))["ovrl"] > 0  # other rates are resampled
    with pytest.raises(SpeechUnitsError, match="empty"):
        dnsmos(Audio(np.zeros(0, dtype=np.float32), 16000))


def test_a_missing_package_names_the_extra():
    with pytest.raises(SpeechUnitsError, match=r"speechunits\[eval\]") as info:
        require("no_such_judge_package_xyz", "the test judge")
    assert "no_such_judge_package_xyz" in str(info.value) and "the test judge" in str(info.value)

"""Speaker similarity: cosine of GE2E speaker embeddings from Resemblyzer's pretrained voice encoder.

Resemblyzer's wheel ships the weights (a 3-layer LSTM trained with the GE2E loss). An utterance is
resampled to 16 kHz (soxr), volume-normalised and stripped of long silences by Resemblyzer's own
``preprocess_wav`` (webrtcvad), then embedded as the L2-normalised mean of embeddings of 1.6 s
windows: a float32 ``[256]`` unit vector. The similarity of two utterances is the cosine of their
embeddings (1 for the same audio; embeddings are non-negative, so it lies in [0, 1]).
"""
from __future__ import annotations

import numpy as np

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.deps import require

#: Resemblyzer's model input rate.
SAMPLE_RATE = 16000
EMBEDDING_DIM = 256


class SpeakerEmbedder:
    """Resemblyzer's GE2E voice encoder, loaded once, on ``device`` (``auto``: CUDA when available)."""

    def __init__(self, device: str = "auto") -> None:
        from speechunits.device import resolve_device

        resemblyzer = require("resemblyzer", "the speaker judge (Resemblyzer)")
        self._resemblyzer = resemblyzer
        self._encoder = resemblyzer.VoiceEncoder(device=resolve_device(device), verbose=False)

    def embed(self, audio: Audio) -> np.ndarray:
        """float32 ``[256]``, unit L2 norm.

        Raises:
            SpeechUnitsError: silent audio (no embedding is defined).
        """
        if audio.sample_rate != SAMPLE_RATE:
            audio = audio.resample(SAMPLE_RATE)
        samples = np.asarray(audio.samples, dtype=np.float32)
        if samples.size == 0 or not np.any(samples):
            raise SpeechUnitsError(f"{audio.path or 'audio'}: silent audio has no speaker embedding")
        wav = self._resemblyzer.preprocess_wav(samples)
        if wav.size < SAMPLE_RATE // 10:  # the VAD kept (almost) nothing: embed the volume-normalised audio
            wav = self._resemblyzer.normalize_volume(samples, -30, increase_only=True)
        return np.asarray(self._encoder.embed_utterance(wav.astype(np.float32)), dtype=np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two embeddings ``[D]``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        raise SpeechUnitsError("cosine similarity of a zero vector is undefined")
    return float(a @ b / norm)

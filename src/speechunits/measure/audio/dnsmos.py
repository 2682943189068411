"""A MOS estimate without listeners: Microsoft's DNSMOS P.835 through speechmos's ONNX models.

``speechmos.dnsmos.run(samples, 16000)`` takes one float array at 16 kHz with values in [-1, 1]
(audio is resampled with soxr and clipped here first) and returns ``ovrl_mos``, ``sig_mos``,
``bak_mos`` (P.835 overall, speech signal, background noise; about 1..5) and ``p808_mos`` (the P.808
model). Clips shorter than 9.01 s are repeated to that length, longer ones scored in 9.01 s windows
with a 1 s hop and averaged (speechmos's behaviour, as in the DNS Challenge scripts). The ONNX sessions
are created on first use and reused.
"""
from __future__ import annotations

import numpy as np

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.deps import require

SAMPLE_RATE = 16000
#: speechmos's result keys -> ours.
KEYS = {"ovrl_mos": "ovrl", "sig_mos": "sig", "bak_mos": "bak", "p808_mos": "p808"}


def dnsmos(audio: Audio) -> dict[str, float]:
    """``{"ovrl", "sig", "bak", "p808"}`` DNSMOS scores of ``audio`` (higher is better).

    Raises:
        SpeechUnitsError: speechmos/onnxruntime missing, or empty audio.
    """
    require("onnxruntime", "the DNSMOS judge (speechmos)")
    module = require("speechmos.dnsmos", "the DNSMOS judge (speechmos)")
    if audio.sample_rate != SAMPLE_RATE:
        audio = audio.resample(SAMPLE_RATE)
    samples = np.clip(np.asarray(audio.samples, dtype=np.float32), -1.0, 1.0)
    if samples.size == 0:
        raise SpeechUnitsError(f"{audio.path or 'audio'}: empty audio has no DNSMOS score")
    result = module.run(samples, sr=SAMPLE_RATE)
    return {ours: float(result[theirs]) for theirs, ours in KEYS.items()}

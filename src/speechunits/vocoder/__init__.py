"""Unit vocoders: units (+ F0, + speaker) -> audio; resynthesis and voice conversion.

``speechunits vocoder train`` trains one for any codebook on any corpus (:func:`train_vocoder`);
:func:`load_vocoder` loads it and :meth:`Vocoder.synthesize` voices units. Two tiers: ``cpu``
(harmonic-plus-noise source-filter, trainable on a laptop) and ``hifigan`` (HiFi-GAN V1 with
multi-period / multi-scale discriminators). See docs/vocoder.md.
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

_LAZY = {
    "Vocoder": "speechunits.vocoder.vocoder",
    "load_vocoder": "speechunits.vocoder.vocoder",
    "VocoderConfig": "speechunits.vocoder.config",
    "train_vocoder": "speechunits.vocoder.train",
    "TrainOptions": "speechunits.vocoder.train",
    "resynthesize": "speechunits.vocoder.resynth",
    "convert": "speechunits.vocoder.resynth",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)

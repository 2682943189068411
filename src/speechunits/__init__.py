"""speechunits: self-supervised discrete speech units, end to end.

Public API (imported lazily so that ``import speechunits`` stays cheap)::

    from speechunits import Audio, load_encoder, Units, SpeechUnitsError
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "Audio": "speechunits.audio",
    "SpeechUnitsError": "speechunits.errors",
    "Utterance": "speechunits.corpus",
    "Corpus": "speechunits.corpus",
    "open_corpus": "speechunits.corpus",
    "Units": "speechunits.units.units",
    "EncoderInfo": "speechunits.encoders.base",
    "Encoder": "speechunits.encoders.base",
    "load_encoder": "speechunits.encoders",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["__version__", *_LAZY]

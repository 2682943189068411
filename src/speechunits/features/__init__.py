"""Feature extraction over corpora and the fairseq-compatible features directory.

Names are imported lazily so that reading :mod:`speechunits.features.defaults` does not load torch.
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

_LAZY = {
    "FeatureItem": "speechunits.features.extract",
    "iter_features": "speechunits.features.extract",
    "FeaturesWriter": "speechunits.features.io",
    "read_features_dir": "speechunits.features.io",
    "read_features_meta": "speechunits.features.io",
    "LoadedAudio": "speechunits.features.loading",
    "load_audio_items": "speechunits.features.loading",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)

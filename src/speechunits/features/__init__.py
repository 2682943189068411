"""Feature extraction over corpora and the fairseq-compatible features directory.

Names are imported lazily so that reading :mod:`speechunits.features.defaults` does not load torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "FeatureItem": "speechunits.features.extract",
    "iter_features": "speechunits.features.extract",
    "FeaturesWriter": "speechunits.features.io",
    "read_features_dir": "speechunits.features.io",
    "read_features_meta": "speechunits.features.io",
    "LoadedAudio": "speechunits.features.loading",
    "load_audio_items": "speechunits.features.loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'speechunits.features' has no attribute {name!r}")


__all__ = list(_LAZY)

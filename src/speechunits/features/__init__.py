"""Feature extraction over corpora and the fairseq-compatible features directory."""
from speechunits.features.extract import FeatureItem, iter_features
from speechunits.features.io import FeaturesWriter, read_features_dir, read_features_meta
from speechunits.features.loading import LoadedAudio, load_audio_items

__all__ = [
    "FeatureItem",
    "FeaturesWriter",
    "LoadedAudio",
    "iter_features",
    "load_audio_items",
    "read_features_dir",
    "read_features_meta",
]

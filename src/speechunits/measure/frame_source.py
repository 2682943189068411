"""Open the frames that ABX scores: a features directory (dense) or a unit store (ids), with their timing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object
from speechunits.measure.dtw import Distance


@dataclass(frozen=True)
class FrameSource:
    """Per-utterance frames of a features directory or a unit store, with their timing."""

    path: Path
    frames: Iterable[tuple[str, np.ndarray]]
    frame_rate: float
    frame_offset_s: float
    distance: Distance
    #: The utterance ids ``frames`` gives, in its order.
    ids: list[str]


def open_frame_source(path: str | Path, layer: int | None = None, frame_rate: float | None = None,
                      frame_offset_s: float | None = None) -> FrameSource:
    """Open a features directory (angular distance) or a unit store (0/1 distance).

    Timing comes from ``features.json`` / the store metadata; ``frame_rate`` and
    ``frame_offset_s`` override it (and are required for a bare fairseq ``.npy``/``.len`` dump).
    """
    path = Path(path)
    if not path.is_dir():
        raise SpeechUnitsError(f"{path}: not a directory (expected a features directory or a unit store)")
    if any(path.glob("layer*.npy")):
        from speechunits.features import read_features_dir

        meta_path = path / "features.json"
        meta = read_json_object(meta_path) if meta_path.is_file() else {}
        rate = frame_rate if frame_rate is not None else meta.get("frame_rate")
        if frame_offset_s is not None:
            offset = frame_offset_s
        elif meta.get("receptive_field") and meta.get("sample_rate"):
            offset = meta["receptive_field"] / (2 * meta["sample_rate"])
        else:
            offset = None
        if rate is None or offset is None:
            raise SpeechUnitsError(f"{path}: no features.json with frame timing; give --frame-rate and --frame-offset")
        if layer is None and meta.get("layers") and len(meta["layers"]) > 1:
            raise SpeechUnitsError(f"{path}: holds layers {meta['layers']}; choose one with --layer")
        frames = list(read_features_dir(path, layer))  # memory-mapped slices: no frame is read here
        return FrameSource(path, frames, float(rate), float(offset), "angular", [utt_id for utt_id, _ in frames])
    from speechunits.units.store import UnitStore

    store = UnitStore.open(path)
    if layer is not None and store.meta.get("codebook", {}).get("layer") not in (None, layer):
        raise SpeechUnitsError(f"{path}: units are from layer {store.meta['codebook']['layer']}, not --layer {layer}")
    frames = ((utt_id, units.expand().ids) for utt_id, units in store)
    rate = frame_rate if frame_rate is not None else store.frame_rate
    offset = frame_offset_s if frame_offset_s is not None else float(store.meta.get("frame_offset_s") or 0.0)
    return FrameSource(path, frames, float(rate), float(offset), "hamming", store.ids())

"""UnitTokenizer: units equal nearest-centroid labels of the encoder's features, several
streams in one pass, dedup, batched == single, and refusal of mismatched codebooks."""
from __future__ import annotations

from pathlib import Path
import numpy as np
import pytest
import torch

from speechunits.audio import Audio
from speechunits.encoders import load_encoder
from speechunits.encoders.base import EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.quantize import Codebook
from speechunits.units.tokenizer import UnitTokenizer


def make_codebook(centroids: np.ndarray, layer: int | None, info: EncoderInfo) -> Codebook:
    """A real Codebook for ``info``'s encoder and ``layer`` (no k-means needed)."""
    meta = {"layer": layer, "encoder": info.name, "encoder_identity": info.identity,
            "sample_rate": info.sample_rate, "frame_rate": info.frame_rate, "hop_length": info.hop_length,
            "receptive_field": info.receptive_field, "frame_offset_s": info.receptive_field / (2 * info.sample_rate)}
    return Codebook(np.asarray(centroids, dtype=np.float32), meta)


@pytest.fixture(scope="module")
def encoder(tiny_hubert_dir: Path):
    torch.set_num_threads(1)
    return load_encoder(str(tiny_hubert_dir), device="cpu")


def waves(seconds=(0.5, 1.3, 0.9)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = [np.arange(int(s * 16000)) / 16000 for s in seconds]
    return [(0.3 * np.sin(2 * np.pi * (150 + 60 * i) * x) + 0.05 * rng.standard_normal(x.size)).astype(np.float32)
            for i, x in enumerate(t)]


def codebook_from(encoder, layer: int, k: int, seed: int = 0) -> Codebook:
    feats = np.concatenate([encoder.extract(w, [layer])[layer] for w in waves()])
    rng = np.random.default_rng(seed)
    return make_codebook(feats[rng.choice(len(feats), size=k, replace=False)], layer, encoder.info)


def test_units_are_nearest_centroids_of_the_layer(encoder) -> None:
    cb = codebook_from(encoder, layer=2, k=6)
    wave = waves()[1]
    units = UnitTokenizer(encoder, [cb]).encode(wave)
    feats = encoder.extract(wave, [2])[2]
    expected = torch.cdist(torch.from_numpy(feats).double(), cb.centroids.double()).argmin(1).numpy()
    assert np.array_equal(units.ids, expected)
    assert units.num_frames == encoder.info.num_frames(wave.size)
    assert units.vocab_size == 6 and units.frame_rate == encoder.info.frame_rate
    assert units.durations is None


def test_streams_dedup_and_batched_equals_single(encoder) -> None:
    cbs = [codebook_from(encoder, 1, 5), codebook_from(encoder, 3, 8, seed=1), codebook_from(encoder, 1, 3, seed=2)]
    tok = UnitTokenizer(encoder, cbs, dedup=True)
    assert tok.layers == [1, 3]
    batch = tok.encode_batch(waves())
    for wave, streams in zip(waves(), batch):
        single = tok.encode_streams(wave)
        assert len(streams) == len(single) == 3
        for a, b, cb in zip(streams, single, cbs):
            assert np.array_equal(a.ids, b.ids) and np.array_equal(a.durations, b.durations)
            feats = torch.from_numpy(encoder.extract(wave, [cb.layer])[cb.layer]).double()
            frames = torch.cdist(feats, cb.centroids.double()).argmin(1).numpy()
            unique, counts = torch.unique_consecutive(torch.from_numpy(frames), return_counts=True)
            assert np.array_equal(a.ids, unique.numpy()) and np.array_equal(a.durations, counts.numpy())
            assert np.array_equal(a.expand().ids, frames)
    # An Audio at another rate is resampled first.
    audio = Audio(waves()[0], 16000).resample(8000)
    assert tok.encode(audio).vocab_size == 5


def test_refuses_mismatched_codebooks(encoder, tiny_wav2vec2_layernorm_dir: Path) -> None:
    other = load_encoder(str(tiny_wav2vec2_layernorm_dir), device="cpu")
    foreign = codebook_from(other, 2, 4)
    with pytest.raises(SpeechUnitsError, match="was trained on encoder"):
        UnitTokenizer(encoder, [foreign])
    cb = codebook_from(encoder, 2, 4)
    wrong_dim = make_codebook(np.zeros((4, encoder.info.dim + 1)), 2, encoder.info)
    with pytest.raises(SpeechUnitsError, match="dim"):
        UnitTokenizer(encoder, [cb, wrong_dim])
    too_deep = make_codebook(cb.centroids, encoder.info.num_layers + 1, encoder.info)
    with pytest.raises(SpeechUnitsError, match="out of range"):
        UnitTokenizer(encoder, [too_deep])
    layerless = make_codebook(cb.centroids, None, encoder.info)
    with pytest.raises(SpeechUnitsError, match="re-import it with --layer"):
        UnitTokenizer(encoder, [layerless])
    assert UnitTokenizer(encoder, [layerless], layers=[2]).layers == [2]
    with pytest.raises(SpeechUnitsError, match="trained on layer 2, not layer 3"):
        UnitTokenizer(encoder, [cb], layers=[3])
    with pytest.raises(SpeechUnitsError, match="at least one"):
        UnitTokenizer(encoder, [])

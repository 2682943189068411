"""On a small synth corpus: MFCC k-means units vs random units, shifted alignments, ABX on MFCC vs noise."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from speechunits.corpus import SPEAKERS_FILE, read_speakers
from speechunits.measure import abx, abx_items
from speechunits.measure.alignments import load_alignments
from speechunits.measure.evaluate import evaluate_units
from speechunits.units.units import Units

K = 30
SHIFT_S = 0.06



@pytest.fixture(autouse=True)
def one_torch_thread():
    """The DTW runs many small ops: one thread avoids contention on the shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def _mfcc_corpus(tmp: Path, minutes: float, speakers: int):
    pytest.importorskip("espeakng_loader")
    from speechunits.audio import Audio
    from speechunits.encoders import load_encoder
    from speechunits.synth.testing import small_corpus

    root = small_corpus(tmp, minutes=minutes, speakers=speakers)
    encoder = load_encoder("mfcc", device="cpu")
    feats = {}
    for line in (root / "manifest.tsv").read_text().splitlines()[1:]:
        rel = line.split("\t")[0]
        feats[rel.rsplit(".", 1)[0]] = encoder.extract(Audio.load(root / "wavs" / rel), [0])[0]
    return root, encoder.info, feats


@pytest.fixture(scope="module")
def mfcc_corpus(tmp_path_factory: pytest.TempPathFactory):
    """Half a minute, 3 speakers (the synth tests' default corpus, usually cached)."""
    return _mfcc_corpus(tmp_path_factory.mktemp("synth"), 0.5, 3)


@pytest.fixture(scope="module")
def mfcc_corpus_abx(tmp_path_factory: pytest.TempPathFactory):
    """One minute, 2 speakers: enough repeated triphone contexts for within and across cells."""
    return _mfcc_corpus(tmp_path_factory.mktemp("synth_abx"), 1.0, 2)


def _units(feats: dict[str, np.ndarray], frame_rate: float) -> dict[str, Units]:
    from speechunits.quantize.kmeans import fit_kmeans

    allf = np.concatenate(list(feats.values()))
    mean, std = allf.mean(0), allf.std(0) + 1e-6
    centroids = fit_kmeans((allf - mean) / std, K, iters=10, seed=0, device="cpu").centroids.numpy()
    out = {}
    for utt, f in feats.items():
        z = (f - mean) / std
        d = (z**2).sum(1)[:, None] - 2 * z @ centroids.T + (centroids**2).sum(1)[None, :]
        out[utt] = Units(d.argmin(1), frame_rate, K)
    return out


def test_mfcc_units_beat_random_units_and_shifted_alignments(mfcc_corpus) -> None:
    root, info, feats = mfcc_corpus
    alignments = load_alignments(root)
    offset = info.receptive_field / (2 * info.sample_rate)
    units = _units(feats, info.frame_rate)
    kw = dict(frame_rate=info.frame_rate, frame_offset_s=offset, vocab_size=K)
    good = evaluate_units(units.items(), alignments, **kw)
    rng = np.random.default_rng(0)
    rand = {u: Units(rng.integers(0, K, size=x.ids.size), info.frame_rate, K) for u, x in units.items()}
    bad = evaluate_units(rand.items(), alignments, **kw)
    shifted = {u: [replace(s, start=s.start + SHIFT_S, end=s.end + SHIFT_S) for s in segs] for u, segs in alignments.items()}
    late = evaluate_units(units.items(), shifted, **kw)
    assert good.pnmi > 0.2 and bad.pnmi < 0.1 and good.pnmi > 3 * bad.pnmi
    assert late.pnmi < good.pnmi
    assert good.phone_purity > bad.phone_purity
    assert good.utterances == len(feats) and good.utterances_missing_alignments == 0


def test_abx_mfcc_beats_noise_on_synth(mfcc_corpus_abx) -> None:
    root, info, feats = mfcc_corpus_abx
    items = abx_items.build_items(load_alignments(root), read_speakers(root / SPEAKERS_FILE))
    offset = info.receptive_field / (2 * info.sample_rate)
    mfcc = abx.compute_abx(items, feats.items(), info.frame_rate, offset)
    rng = np.random.default_rng(0)
    noise = {u: rng.standard_normal(f.shape).astype(np.float32) for u, f in feats.items()}
    rand = abx.compute_abx(items, noise.items(), info.frame_rate, offset)
    assert mfcc.num_within_cells >= 10 and mfcc.num_across_cells >= 10
    assert mfcc.abx_within < 0.15 and mfcc.abx_across < 0.2
    # Noise features sit near (slightly above) chance: see docs/measure-metrics.md on durations.
    assert rand.abx_within > 0.4 and rand.abx_across > 0.4

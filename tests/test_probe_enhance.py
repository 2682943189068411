"""The ``enhance`` probe (SUPERB's SE): STFT round trip, masks, L1 loss, SI-SDR/PESQ/STOI against hand cases,
an oracle mask, training end to end on white noise, reload, written audio, 50 Hz inputs and refusals."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.probe.masking import (BINS, MaskLabel, apply_mask, audio_scores, decode_mask, enhancement_scores,
                                       load_audio, magnitude_targets, mask_tokens, masks_of, pit_mask_l1,
                                       read_references, si_sdr, stft, upsample_factor)
from speechunits.probe.evaluate import corpus_labels, probe_input
from speechunits.probe.model_dir import load_probe
from speechunits.probe.task import MASK, batch_loss, collate
from speechunits.synth.noisy import write_noisy
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """White noise at 0 and 5 dB (test: 2.5 dB) over a 1-minute, 6-voice corpus."""
    root = tmp_path_factory.mktemp("enhance")
    corpus = small_corpus(root / "corpus", minutes=1.0, speakers=6)
    return write_noisy(corpus, root / "set", snrs=(0.0, 5.0), test_snrs=(2.5,), kinds=("white",), quiet=True)


@pytest.fixture(scope="module")
def trained(noisy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "se"
    assert main(["probe", "train", "enhance", str(noisy / "{train,dev,test}"), "--encoder", "logmel", "-o", str(out),
                 "--lr", "1e-2", "--max-steps", "300", "--eval-every", "50", "--batch-frames", "2000",
                 "--head", "linear", "--device", "cpu", "--quiet"]) == 0
    return out


def _label(noisy: Path, utt: str, part: str = "test") -> MaskLabel:
    return MaskLabel(str(noisy / part / "wavs" / f"{utt}.wav"), (str(noisy / part / "clean" / f"{utt}.wav"),))


def _pair(noisy: Path, part: str = "test") -> tuple[str, MaskLabel]:
    utt = (noisy / part / "wav.scp").read_text().split()[0]
    return utt, _label(noisy, utt, part)


# -- signal processing -----------------------------------------------------------------------------

def test_a_mask_of_ones_gives_back_the_noisy_audio_and_zeros_silence():
    x = np.random.default_rng(0).standard_normal(16037).astype(np.float32) * 0.1
    assert stft(x).shape == (1 + 16037 // 160, BINS)
    np.testing.assert_allclose(apply_mask(x, np.ones((3, BINS))), x, atol=1e-5)  # last frame repeated
    assert np.max(np.abs(apply_mask(x, np.zeros((200, BINS))))) < 1e-6


def test_si_sdr_of_hand_made_estimates():
    t = np.arange(16000) / 16000
    s = np.sin(2 * np.pi * 200 * t)  # whole periods: sin and cos are orthogonal
    e = np.cos(2 * np.pi * 200 * t) * math.sqrt(0.1)  # a tenth of the reference's energy
    assert si_sdr(s, s + e) == pytest.approx(10.0, abs=1e-6)
    assert si_sdr(s, 3 * (s + e)) == pytest.approx(10.0, abs=1e-6)  # scale-invariant
    assert si_sdr(s, 0.5 * s) == math.inf
    with pytest.raises(SpeechUnitsError, match="reference is silent"):
        si_sdr(np.zeros(100), s[:100])


def test_identical_audio_scores_the_top_of_each_scale(noisy):
    _, pair = _pair(noisy)
    clean = load_audio(pair.references[0])
    scores = audio_scores(clean, clean)
    assert scores["pesq"] == pytest.approx(4.64, abs=0.01)  # P.862.2's ceiling
    assert scores["stoi"] == pytest.approx(1.0, abs=1e-6) and scores["si_sdr"] == math.inf


def test_the_oracle_amplitude_mask_enhances_far_beyond_the_noisy_audio(noisy):
    """min(|S| / |X|, 1) on the noisy STFT: aligned frames and bins give a large gain; five frames off, less."""
    pairs, oracle, shifted = [], [], []
    for line in (noisy / "test" / "wav.scp").read_text().splitlines()[:4]:
        utt = line.split()[0]
        pair = _label(noisy, utt)
        mags = magnitude_targets(pair).astype(np.float32)
        mask = np.minimum(mags[:, 1:] / np.maximum(mags[:, :1], 1e-8), 1.0)  # [N, 1, F]
        pairs.append(pair)
        oracle.append(mask)
        shifted.append(np.concatenate([mask[5:], mask[-5:]]))
    best = enhancement_scores(pairs, oracle)
    assert best["si_sdr"] > best["si_sdr_noisy"] + 8 and best["pesq"] > best["pesq_noisy"] + 1.0
    assert best["stoi"] > best["stoi_noisy"] + 0.05
    off = enhancement_scores(pairs, shifted)
    assert off["si_sdr"] < best["si_sdr"] - 3


def test_masks_interleave_the_sub_frames_and_the_loss_is_hand_computed():
    logits = torch.zeros(1, 2, 2 * BINS)
    logits[0, 0, BINS:] = 100.0  # frame 0's second sub-frame: mask 1
    masks = masks_of(logits, 2)
    assert masks.shape == (1, 4, 1, BINS)
    assert torch.allclose(masks[0, 0, 0], torch.full((BINS,), 0.5)) and torch.allclose(masks[0, 1, 0], torch.ones(BINS))
    assert np.allclose(decode_mask(logits[0].numpy(), mask_tokens(2, 1)), masks[0].numpy())
    targets = torch.zeros(1, 5, 2, BINS)
    targets[0, :, 0] = 2.0  # noisy magnitude
    targets[0, :, 1] = 0.5  # clean magnitude
    # valid: 3 STFT frames: |0.5*2 - 0.5| + |1*2 - 0.5| + |0.5*2 - 0.5| per bin
    assert pit_mask_l1(logits, targets, torch.tensor([3]), 2).item() == pytest.approx(BINS * (0.5 + 1.5 + 0.5))
    batch = collate([_Sample(2)], MASK, [targets[0, :3].numpy()])  # 3 STFT frames, 2 input frames x 2
    assert batch.target_lengths.tolist() == [3]
    loss, count, _ = batch_loss(_Head(logits), batch, MASK)
    assert loss.item() == pytest.approx(BINS * 2.5) and count == 3 * BINS


class _Sample:
    def __init__(self, frames: int):
        self.num_frames = frames
        self.features = torch.zeros(1, frames, 3)
        self.units = None
        self.durations = None


class _Head(torch.nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, x, lengths, durations):
        return self.logits


def test_upsample_factor_divides_the_stft_rate():
    assert [upsample_factor(r) for r in (100, 50, 25)] == [1, 2, 4]
    with pytest.raises(SpeechUnitsError, match="30 frames/s does not divide"):
        upsample_factor(30)
    with pytest.raises(SpeechUnitsError, match="does not divide"):
        upsample_factor(200)


# -- the probe -------------------------------------------------------------------------------------

def test_a_trained_probe_enhances_unseen_voices_and_reloads_exactly(noisy, trained, tmp_path, capsys):
    meta = json.loads((trained / "probe.json").read_text())
    assert meta["task"] == "enhance" and meta["selection"]["metric"] == "pesq"
    assert meta["selection"]["lower_is_better"] is False
    assert meta["labels"]["kind"] == "stft-mask" and meta["labels"]["upsample"] == 1 and meta["labels"]["sources"] == 1
    assert meta["labels"]["stft"]["hop_length"] == 160 and meta["model"]["num_classes"] == BINS
    test = meta["test"]
    assert test["si_sdr"]["mean"] > test["si_sdr_noisy"]["mean"] + 3, test
    assert test["pesq"]["mean"] > test["pesq_noisy"]["mean"] + 0.1, test
    out = tmp_path / "enhanced"
    assert main(["probe", "eval", str(trained), str(noisy / "test"), "--audio-out", str(out), "--json",
                 "--device", "cpu", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pesq"] == pytest.approx(test["pesq"]["mean"], abs=1e-9)
    # the written files are what was scored (to 16-bit rounding), at the noisy audio's length
    from pesq import pesq

    written = sorted(out.glob("*.wav"))
    assert len(written) == result["utterances"] == len((noisy / "test" / "wav.scp").read_text().splitlines())
    values = []
    for path in written:
        audio, rate = sf.read(path, dtype="float64")
        clean, _ = sf.read(noisy / "test" / "clean" / path.name, dtype="float64")
        assert rate == 16000 and audio.shape == clean.shape
        values.append(pesq(16000, clean, audio, "wb"))
    assert float(np.mean(values)) == pytest.approx(result["pesq"], abs=0.02)
    # `speechunits enhance` needs no reference and writes the same audio
    assert main(["enhance", str(noisy / "test" / "wavs"), "--probe", str(trained), "-o", str(tmp_path / "plain"),
                 "--device", "cpu", "--quiet"]) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "plain").glob("*.wav")} == {p.name: p.read_bytes()
                                                                                 for p in written}
    probe = load_probe(trained)
    made = probe_input(probe.identity, noisy / "test", device="cpu", quiet=True)
    samples = made.load([p.stem for p in written]).samples
    first, again = probe.logits(samples), load_probe(trained).logits(samples)
    assert all(np.array_equal(first[u], again[u]) for u in samples)


def test_50_hz_features_predict_two_masks_per_frame(noisy, tiny_hubert_dir, tmp_path):
    out = tmp_path / "se50"
    assert main(["probe", "train", "enhance", str(noisy / "{train,dev,test}"), "--encoder", str(tiny_hubert_dir),
                 "--layers", "2", "-o", str(out), "--max-steps", "4", "--eval-every", "2", "--device", "cpu",
                 "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    assert meta["labels"]["upsample"] == 2 and meta["model"]["num_classes"] == 2 * BINS
    # no head named: SUPERB's downstream for the task (s3prl's enhancement_stft2), not the linear default
    assert (meta["model"]["head"], meta["model"]["lstm_layers"], meta["training"]["batch_frames"]) == ("bilstm", 3, 3000)
    probe = load_probe(out)
    made = probe_input(probe.identity, noisy / "test", device="cpu", quiet=True)
    utt, pair = _pair(noisy)
    sample = made.load([utt]).samples[utt]
    masks = probe.predict({utt: sample}, [utt], device="cpu")[utt]
    assert masks.shape == (2 * sample.num_frames, 1, BINS) and 0 <= masks.min() and masks.max() <= 1
    assert abs(masks.shape[0] - stft(load_audio(pair.mixture)).shape[0]) <= 4  # the two clocks agree


def test_clean_references_from_a_folder_named_as_the_noisy_files(noisy, trained, capsys):
    refs = read_references(noisy / "test" / "clean")
    assert sorted(refs) == sorted(line.split()[0] for line in (noisy / "test" / "wav.scp").read_text().splitlines())
    assert main(["probe", "eval", str(trained), str(noisy / "test" / "wavs"), "--labels", str(noisy / "test" / "clean"),
                 "--json", "--device", "cpu", "--quiet"]) == 0
    from_folder = json.loads(capsys.readouterr().out)
    meta = json.loads((trained / "probe.json").read_text())
    assert from_folder["pesq"] == pytest.approx(meta["test"]["pesq"]["mean"], abs=1e-9)


def test_enhance_refuses_what_it_cannot_score(noisy, trained, tmp_path, caplog, monkeypatch):
    args = ["--encoder", "logmel", "--max-steps", "1", "--device", "cpu", "--quiet"]
    bare = tmp_path / "bare"  # noisy audio without references
    bare.mkdir()
    (bare / "wav.scp").write_text((noisy / "dev" / "wav.scp").read_text().replace("wavs/", f"{noisy}/dev/wavs/"))
    assert "needs clean references" in cli_error(["probe", "train", "enhance", str(bare), "-o", str(tmp_path / "a"),
                                                  *args], caplog)
    corpus = str(noisy / "{train,dev,test}")
    assert "cannot stack frames" in cli_error(["probe", "train", "enhance", corpus, "-o", str(tmp_path / "b"),
                                               "--stack", "2", *args], caplog)
    assert "writes a diarization probe's turns" in cli_error(
        ["probe", "eval", str(trained), str(noisy / "dev"), "--rttm-out", str(tmp_path / "x.rttm"), "--device", "cpu"],
        caplog)
    # a reference of another length
    short = tmp_path / "short"
    short.mkdir()
    utt, pair = _pair(noisy, "dev")
    sf.write(short / f"{utt}.wav", load_audio(pair.references[0])[:8000], 16000)
    with pytest.raises(SpeechUnitsError, match="a reference has the length of the noisy audio"):
        magnitude_targets(MaskLabel(pair.mixture, (str(short / f"{utt}.wav"),)))
    # no PESQ/STOI installed: a clear message before anything trains
    import builtins

    real_import = builtins.__import__

    def no_pesq(name, *a, **k):
        if name == "pesq":
            raise ImportError("No module named 'pesq'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pesq)
    assert "pip install 'speechunits[eval]'" in cli_error(["probe", "train", "enhance", corpus, "-o",
                                                           str(tmp_path / "c"), *args], caplog)
    monkeypatch.undo()
    labels = corpus_labels("enhance", noisy / "dev", [utt], inputs=probe_input(
        load_probe(trained).identity, noisy / "dev", device="cpu", quiet=True), samples={utt: _Sample(10)})
    assert labels.labels[utt].references == (str(noisy / "dev" / "clean" / f"{utt}.wav"),)


def test_audio_out_is_refused_for_other_tasks(noisy, tmp_path, caplog):
    probe = tmp_path / "cls"
    ids = [line.split()[0] for line in (noisy / "train" / "wav.scp").read_text().splitlines()]
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"{utt}\t{'ab'[k % 2]}\n" for k, utt in enumerate(ids)))
    assert main(["probe", "train", "classify", str(noisy / "train"), "--labels", str(labels), "--encoder", "mfcc",
                 "-o", str(probe), "--max-steps", "1", "--device", "cpu", "--quiet"]) == 0
    message = cli_error(["probe", "eval", str(probe), str(noisy / "train"), "--labels", str(labels), "--audio-out",
                         str(tmp_path / "o"), "--device", "cpu"], caplog)
    assert "--audio-out writes an enhancement or separation probe's audio" in message and "'classify' probe" in message
    assert not (tmp_path / "o").exists()
    message = cli_error(["enhance", str(noisy / "train"), "--probe", str(probe), "-o", str(tmp_path / "e"),
                         "--device", "cpu"], caplog)
    assert "a 'classify' probe gives no audio" in message
    message = cli_error(["probe", "eval", str(probe), str(noisy / "train"), "--labels", str(labels), "--threshold",
                         "0.4", "--device", "cpu"], caplog)
    assert "decide a diarization probe's speaker activity" in message and "'classify' probe" in message

"""Vocoder training: overfitting, GAN phase alternation with exact resume, dedup + durations, geometry."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.cli.main import main
from speechunits.units.units import Units

pytest.importorskip("pyworld")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is many times faster than two on a loaded machine (restored by conftest)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from speechunits.synth.testing import small_corpus

    return small_corpus(tmp_path_factory.mktemp("voct_corpus"), minutes=0.5, speakers=3)


@pytest.fixture(scope="module")
def codebook(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("voct_cb") / "cb20"
    assert main(["fit", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--k", "20", "-o", str(out),
                 "--quiet"]) == 0
    return out


def _log(voc: Path) -> list[dict]:
    return [json.loads(line) for line in (voc / "training" / "log.jsonl").read_text().splitlines()]


def test_tiny_vocoder_overfits_one_utterance(corpus: Path, codebook: Path, tmp_path: Path) -> None:
    from speechunits.vocoder.config import TINY
    from speechunits.vocoder.train import TrainOptions, train_vocoder

    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(corpus / "wavs" / "en01_0000.wav", one / "a.wav")
    cfg = dict(TINY, channels=48, blocks=2, segment_frames=32, batch_size=4)
    summary = train_vocoder(one, [codebook], tmp_path / "voc", config=cfg, device="cpu", quiet=True,
                            options=TrainOptions(steps=60, lr=3e-3, warmup_steps=5, checkpoint_every=1000))
    assert summary["steps_done"] == 60
    log = _log(tmp_path / "voc")
    start = np.mean([e["mel_l1"] for e in log[:3]])
    end = np.mean([e["mel_l1"] for e in log[-5:]])
    assert end < 0.7 * start, (start, end)


def test_gan_phases_alternate_and_resume_exactly(corpus: Path, codebook: Path, tmp_path: Path) -> None:
    """Discriminators from step 2: generator-only steps, then (discriminator, generator); 2 + 2 steps
    with a resume in between equal 4 straight (HiFi-GAN's constant learning rate: the same schedule
    whatever the step cap)."""
    from safetensors.torch import load_file

    small = tmp_path / "small"
    small.mkdir()
    for name in ("en00_0000", "en01_0000", "en02_0000"):
        shutil.copy(corpus / "wavs" / f"{name}.wav", small / f"{name}.wav")
    (small / "speakers.tsv").write_text("".join(f"{n}\t{n[:4]}\n" for n in ("en00_0000", "en01_0000", "en02_0000")))
    base = ["vocoder", "train", str(small), "--codebook", str(codebook), "--size", "tiny", "--arch", "hifigan",
            "--gan-start", "2", "--segment-frames", "8", "--batch-size", "1",
            "--speaker", "table", "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu", "--quiet"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(base + ["-o", str(straight), "--steps", "4"]) == 0
    assert main(base + ["-o", str(resumed), "--steps", "2"]) == 0
    assert main(base + ["-o", str(resumed), "--steps", "4", "--resume"]) == 0
    a = load_file(str(straight / "training" / "model.safetensors"))
    b = load_file(str(resumed / "training" / "model.safetensors"))
    assert set(a) == set(b) and any(k.startswith("discriminators.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = _log(straight)
    assert [("loss_discriminator" in e) for e in log] == [False, False, True, True]
    assert [("g_adv" in e) for e in log] == [False, False, True, True]
    assert [e["loss"] for e in _log(resumed)] == [e["loss"] for e in log]
    saved = torch.load(straight / "training" / "optimizer.pt", weights_only=True)
    assert set(saved["phases"]) == {"generator", "discriminator"}
    # the exported vocoder leaves the discriminators out
    from safetensors.torch import load_file as load

    assert not any(k.startswith("discriminators.") for k in load(str(straight / "vocoder.safetensors")))


def test_dedup_vocoder_with_duration_predictor(corpus: Path, codebook: Path, tmp_path: Path) -> None:
    from speechunits.vocoder import load_vocoder

    out = tmp_path / "dedup"
    assert main(["vocoder", "train", str(corpus), "--codebook", str(codebook), "-o", str(out), "--size", "tiny",
                 "--dedup", "--f0", "quantized", "--speaker", "embedding", "--steps", "3",
                 "--checkpoint-every", "3", "--device", "cpu", "--quiet"]) == 0
    voc = load_vocoder(out, device="cpu")
    assert voc.meta["dedup"] is True and voc.meta["f0"] == "quantized" and voc.meta["speaker"] == "embedding"
    frames = Units(np.array([3, 3, 3, 7, 7, 1, 1, 1, 1, 5]), 100.0, 20)
    dedup = frames.dedup()
    lead = 120
    # with durations: expanded exactly
    with_durations = voc.synthesize(dedup, speaker="en00")
    assert with_durations.num_samples == lead + 160 * frames.num_frames
    # without: the duration predictor decides, every unit at least one frame
    speaker_vec, _ = voc.target("en00")
    predicted = voc.expand([Units(dedup.ids, 100.0, 20)], speaker_vec)
    assert predicted.shape[0] == 1 and predicted.shape[1] >= len(dedup)
    assert Units(predicted[0], 100.0, 20).dedup().ids.tolist() == dedup.ids.tolist()
    bare = voc.synthesize(Units(dedup.ids, 100.0, 20), speaker="en00")
    assert bare.num_samples == lead + 160 * predicted.shape[1]
    timed = voc.predicted_durations(Units(dedup.ids, 100.0, 20), speaker_vec)  # the same run lengths, as Units
    assert timed.ids.tolist() == dedup.ids.tolist() and timed.expand().ids.tolist() == predicted[0].tolist()
    with torch.inference_mode():
        log_frames = voc.model.duration_predictor(torch.from_numpy(dedup.ids)[None, None], speaker_vec)[0].numpy()
    doubled = voc.predicted_durations(Units(dedup.ids, 100.0, 20), speaker_vec, scale=2.0)
    assert doubled.durations.tolist() == np.maximum(np.round(2 * np.expm1(log_frames)), 1).tolist()
    # one-shot: an embedding vocoder takes reference audio of any voice
    from speechunits.audio import Audio

    ref = Audio.load(corpus / "wavs" / "en02_0001.wav")
    assert voc.synthesize(dedup, reference=ref).num_samples == lead + 160 * frames.num_frames


def test_duration_predictor_learns_run_lengths() -> None:
    """Toy case: unit u always lasts u + 1 frames; the dedup targets come from the task's run-length code."""
    from speechunits.vocoder.conditioning import DurationPredictor
    from speechunits.vocoder.config import VocoderConfig
    from speechunits.vocoder.task import VocoderTask

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    orders = [rng.permutation(5) for _ in range(8)]
    frames = np.stack([np.repeat(ids, ids + 1) for ids in orders])  # [8, 15]: every row 1+2+3+4+5 frames
    targets = VocoderTask._dedup(frames)
    first = frames[0]
    starts = np.flatnonzero(np.concatenate(([True], first[1:] != first[:-1])))
    runs = np.diff(np.concatenate((starts, [first.size])))
    n = len(starts)
    assert targets["dedup_units"][0, 0, :n].tolist() == first[starts].tolist()
    np.testing.assert_allclose(targets["log_durations"][0, :n].numpy(), np.log1p(runs), rtol=1e-6)
    assert targets["dedup_mask"][0].sum() == n
    predictor = DurationPredictor(VocoderConfig(vocab_sizes=[5], dedup=True, predictor_channels=32))
    opt = torch.optim.Adam(predictor.parameters(), lr=1e-2)
    mask = targets["dedup_mask"]
    for _ in range(100):
        opt.zero_grad()
        pred = predictor(targets["dedup_units"], None)
        loss = (((pred - targets["log_durations"]) ** 2) * mask).sum() / mask.sum()
        loss.backward()
        opt.step()
    ids = torch.tensor([[[0, 4, 2, 1, 3]]])
    got = predictor.frames(predictor(ids, None))[0].tolist()
    assert got == [1, 5, 3, 2, 4]


def test_upsample_plan_and_generator_length() -> None:
    from speechunits.vocoder.config import VocoderConfig, upsample_plan
    from speechunits.vocoder.hifigan import HiFiGANGenerator

    assert upsample_plan(320) == ([5, 4, 4, 2, 2], [11, 8, 8, 4, 4])  # speech-resynthesis at 16 kHz
    assert upsample_plan(160) == ([5, 4, 4, 2], [11, 8, 8, 4])
    assert upsample_plan(240) == ([5, 4, 4, 3], [11, 8, 8, 6])
    for hop in (160, 240, 320):
        cfg = VocoderConfig(arch="hifigan", hop=hop, hifigan_channels=16, resblock_kernels=[3],
                            resblock_dilations=[[1]])
        gen = HiFiGANGenerator(cfg, 4)
        assert gen(torch.randn(2, 4, 7)).shape == (2, 7 * hop)


def test_pulse_train_has_the_conditioning_period() -> None:
    from speechunits.vocoder.source_filter import pulse_train

    f0 = torch.full((1, 50), 200.0)
    voiced = torch.ones(1, 50)
    x = pulse_train(f0, voiced, 16000, 160)[0].numpy()
    assert x.shape == (8000,)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1 / 16000)
    peaks = freqs[np.argsort(spec)[-5:]]
    # every strong component is a harmonic of 200 Hz; nothing is left where it is unvoiced
    assert np.all(np.abs(peaks / 200.0 - np.round(peaks / 200.0)) < 0.02)
    silent = pulse_train(f0, torch.zeros(1, 50), 16000, 160)
    assert float(silent.abs().max()) == 0.0


def test_multi_phase_optimizer_checkpoint_is_refused_by_a_single_optimizer(tmp_path: Path) -> None:
    from speechunits.errors import SpeechUnitsError
    from speechunits.training.checkpoint import load_optimizer, save_checkpoint
    from speechunits.training.config import OptimConfig
    from speechunits.training.optim import make_optimizer, make_optimizers

    model = torch.nn.ModuleDict({"g": torch.nn.Linear(2, 2), "d": torch.nn.Linear(2, 1)})
    cfg = OptimConfig()
    optimizers = make_optimizers({"generator": model["g"], "discriminator": model["d"]}, cfg)
    save_checkpoint(tmp_path, model, optimizers, {"step": 1})
    with pytest.raises(SpeechUnitsError, match="single optimizer"):
        load_optimizer(tmp_path, make_optimizer(model, cfg))
    with pytest.raises(SpeechUnitsError, match="phases"):
        load_optimizer(tmp_path, make_optimizers({"generator": model["g"]}, cfg))
    load_optimizer(tmp_path, optimizers)
    with pytest.raises(SpeechUnitsError, match="shares parameters"):
        make_optimizers({"a": model, "b": model["d"]}, cfg)


def test_windows_made_during_synthesis_serve_training() -> None:
    """A process that synthesises (inference mode) and then trains reuses the cached STFT windows."""
    from speechunits.vocoder import dsp

    dsp._WINDOWS.clear()
    with torch.inference_mode():
        dsp.hann(64, torch.device("cpu"))
    x = torch.randn(1, 256, requires_grad=True)
    dsp.stft_magnitude(x, 64, 16, 64).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_perturbed_units_are_those_of_the_shifted_audio(corpus: Path, codebook: Path, tmp_path: Path) -> None:
    """``--perturb-units=-3,3``: the config records the shifts, and the cached copies are the codebook's
    units of the audio shifted by -3 and +3 semitones, in that order (recomputed here independently)."""
    from speechunits.audio import Audio
    from speechunits.augment import pitch_shift
    from speechunits.quantize import Codebook

    voc = tmp_path / "voc"
    assert main(["vocoder", "train", str(corpus), "--codebook", str(codebook), "-o", str(voc), "--size", "tiny",
                 "--speaker", "table", "--steps", "3", "--checkpoint-every", "3", "--perturb-units=-3,3",
                 "--device", "cpu", "--quiet"]) == 0
    assert json.loads((voc / "vocoder.json").read_text())["config"]["perturb_semitones"] == [-3.0, 3.0]
    with np.load(voc / "cache" / "units-f0.npz") as cache:
        units, copies = cache["en01_0000/units"], cache["en01_0000/perturbed"]
    assert copies.shape == (2, *units.shape)
    cb = Codebook.load(codebook)
    audio = Audio.load(corpus / "wavs" / "en01_0000.wav", sample_rate=16000)
    from speechunits.encoders import load_encoder

    encoder = load_encoder("mfcc")
    for copy, shift in zip(copies, (-3.0, 3.0)):
        shifted = Audio(pitch_shift(audio.samples, 16000, shift), 16000)
        expected = cb.assign(encoder.extract(shifted, [cb.layer])[cb.layer], device="cpu")
        n = min(expected.size, copy.shape[1])
        assert np.array_equal(copy[0, :n], expected[:n])
    # a shift of a third of an octave moves many frames to other units
    assert (copies[0, 0] != units[0]).mean() > 0.2 and (copies[1, 0] != units[0]).mean() > 0.2


def test_crops_draw_their_units_from_the_original_or_a_copy_uniformly() -> None:
    """Every crop's units come from one source (original or one copy), each about 1/3 of the time
    for two copies; audio, F0 and speaker are always the original's."""
    from speechunits.pitch import F0Stats
    from speechunits.vocoder.config import VocoderConfig
    from speechunits.vocoder.data import ALL_SPEAKERS, Utterance
    from speechunits.vocoder.task import VocoderTask

    cfg = VocoderConfig(speaker="table", num_speakers=1, segment_frames=4, batch_size=8, vocab_sizes=[10],
                        perturb_semitones=[-2.0, 2.0])
    frames = 20
    utt = Utterance("u", "s", np.full((1, frames), 1), np.full(frames, 120.0, dtype=np.float32),
                    np.arange(frames * 160, dtype=np.float32), np.stack([np.full((1, frames), 2), np.full((1, frames), 3)]))
    stats = {ALL_SPEAKERS: F0Stats(float(np.log(120)), 0.1, frames), "s": F0Stats(float(np.log(120)), 0.1, frames)}
    task = VocoderTask(cfg, [utt], stats, ["s"])
    seen = []
    for index in range(60):
        batch = task.batch(index)
        for row, audio in zip(batch["units"][:, 0], batch["audio"]):
            assert len(set(row.tolist())) == 1  # one source per crop
            seen.append(int(row[0]))
            start = int(audio[0]) // 160
            assert np.array_equal(audio.numpy(), utt.audio[start * 160:(start + 4) * 160])
        assert batch["speaker"].tolist() == [0] * 8
    shares = np.bincount(seen, minlength=4)[1:] / len(seen)
    assert np.all(np.abs(shares - 1 / 3) < 0.06), shares


@pytest.mark.parametrize("value", ["0", "20", "2,2", "a"])
def test_bad_perturbation_shifts_are_refused(value: str, corpus: Path, codebook: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    from conftest import cli_error

    message = cli_error(["vocoder", "train", str(corpus), "--codebook", str(codebook), "-o", str(tmp_path / "v"),
                         "--size", "tiny", f"--perturb-units={value}", "--device", "cpu", "--quiet"], caplog)
    assert "--perturb-units" in message
    assert not (tmp_path / "v").exists()

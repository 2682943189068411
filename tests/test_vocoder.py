"""Unit vocoder: training in the one loop, the vocoder directory, resynthesis, conversion, refusals.

Tiny models on the cached synthetic corpus (3 speakers, 30 s) with an MFCC K=20 codebook.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.pitch import F0Stats, F0Track
from speechunits.units.units import Units

from conftest import cli_error

pytest.importorskip("pyworld")

TINY_STEPS = 6


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is many times faster than two on a loaded machine (restored by conftest)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from speechunits.synth.testing import small_corpus

    return small_corpus(tmp_path_factory.mktemp("voc_corpus"), minutes=0.5, speakers=3)


@pytest.fixture(scope="module")
def codebook(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("voc_cb") / "cb20"
    assert main(["fit", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--k", "20", "-o", str(out),
                 "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def other_codebook(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("voc_cb_other") / "cb12"
    assert main(["fit", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--k", "12", "-o", str(out),
                 "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def table_vocoder(corpus: Path, codebook: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cpu-tier vocoder with a speaker table, checkpointed (with samples) at its last step."""
    out = tmp_path_factory.mktemp("voc_table") / "voc"
    assert main(["vocoder", "train", str(corpus), "--codebook", str(codebook), "-o", str(out), "--size", "tiny",
                 "--speaker", "table", "--steps", str(TINY_STEPS), "--checkpoint-every", str(TINY_STEPS),
                 "--device", "cpu", "--quiet"]) == 0
    return out


def test_vocoder_directory_records_what_it_consumes(table_vocoder: Path, codebook: Path) -> None:
    from speechunits.quantize import Codebook
    from speechunits.vocoder import load_vocoder

    voc = load_vocoder(table_vocoder, device="cpu")
    cb = Codebook.load(codebook)
    meta = voc.meta
    assert meta["codebook_sha256"] == [cb.sha256] and meta["k"] == [20]
    assert meta["encoder"] == "mfcc" and meta["encoder_identity"] == cb.encoder_identity
    assert meta["frame_rate"] == 100.0 and meta["frame_offset_s"] == pytest.approx(400 / 32000)
    assert meta["layer"] == 0 and meta["dedup"] is False and meta["sample_rate"] == 16000
    assert (meta["f0"], meta["f0_method"], meta["speaker"], meta["arch"]) == ("continuous", "dio", "table", "cpu")
    assert voc.speakers == ["en00", "en01", "en02"]
    with pytest.raises(SpeechUnitsError, match="no duration predictor"):  # frame-level units only
        voc.predicted_durations(Units(np.array([1, 2]), 100.0, 20), None)
    # F0 statistics per speaker and overall, computed by the tool
    assert set(meta["f0_stats"]) == {"*", "en00", "en01", "en02"}
    assert all(60 < math.exp(s["mean_log"]) < 400 for s in meta["f0_stats"].values())
    # the codebook travels with the vocoder; samples were written at the checkpoint
    assert Codebook.load(table_vocoder / "codebooks" / "stream0").sha256 == cb.sha256
    assert len(list((table_vocoder / "samples" / f"step-{TINY_STEPS}").glob("*.wav"))) == 3
    state = json.loads((table_vocoder / "training" / "state.json").read_text())
    assert state["format_version"] == 2 and state["consumes"]["codebook_sha256"] == [cb.sha256]


def test_save_load_gives_identical_audio(table_vocoder: Path) -> None:
    """The sample the in-memory model wrote at its checkpoint equals the loaded vocoder's synthesis."""
    from speechunits.vocoder import load_vocoder

    voc = load_vocoder(table_vocoder, device="cpu")
    cache = np.load(table_vocoder / "cache" / "units-f0.npz")
    sample = table_vocoder / "samples" / f"step-{TINY_STEPS}" / "en01_0000.wav"
    units = Units(cache["en01_0000/units"][0], 100.0, 20)
    f0 = F0Track(cache["en01_0000/f0"], 100.0)
    audio = voc.synthesize(units, speaker="en01", f0=f0)
    written, rate = sf.read(str(sample), dtype="int16")
    assert rate == 16000
    ours = np.round(np.clip(audio.samples, -1, 1) * 32767)  # PCM_16 as soundfile writes it
    assert audio.num_samples == written.size
    assert np.max(np.abs(ours - written.astype(np.float64))) <= 1
    again = load_vocoder(table_vocoder, device="cpu").synthesize(units, speaker="en01", f0=f0)
    assert np.array_equal(again.samples, audio.samples)


def test_units_of_another_codebook_are_refused(table_vocoder: Path, other_codebook: Path, corpus: Path,
                                               tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from speechunits.quantize import Codebook
    from speechunits.vocoder import load_vocoder

    voc = load_vocoder(table_vocoder, device="cpu")
    other = Codebook.load(other_codebook)
    with pytest.raises(SpeechUnitsError) as err:
        voc.check_codebook(other.sha256, source="my_store")
    text = str(err.value)
    assert other.sha256[:12] in text and voc.meta["codebook_sha256"][0][:12] in text
    assert "my_store" in text and str(table_vocoder / "codebooks" / "stream0") in text
    with pytest.raises(SpeechUnitsError, match="K=12"):
        voc.synthesize(Units(np.array([1, 2, 3]), 100.0, 12), speaker="en00")
    store = tmp_path / "store12"
    assert main(["encode", str(corpus / "manifest.tsv"), "--codebook", str(other_codebook), "-o", str(store),
                 "--quiet"]) == 0
    message = cli_error(["synthesize", str(store), "--vocoder", str(table_vocoder), "-o", str(tmp_path / "o"),
                         "--speaker", "en00"], caplog)
    assert other.sha256[:12] in message and voc.meta["codebook_sha256"][0][:12] in message


def test_unknown_or_missing_speaker_is_refused(table_vocoder: Path) -> None:
    from speechunits.vocoder import load_vocoder

    voc = load_vocoder(table_vocoder, device="cpu")
    units = Units(np.array([1, 2, 3]), 100.0, 20)
    with pytest.raises(SpeechUnitsError, match=r"unknown speaker 'nobody'.*known speakers: en00, en01, en02"):
        voc.synthesize(units, speaker="nobody")
    with pytest.raises(SpeechUnitsError, match="needs a speaker"):
        voc.synthesize(units)


def test_synthesize_store_without_f0_uses_the_predictor(table_vocoder: Path, codebook: Path, corpus: Path,
                                                        tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert main(["encode", str(corpus / "manifest.tsv"), "--codebook", str(codebook), "-o", str(store),
                 "--quiet"]) == 0
    out = tmp_path / "syn"
    assert main(["synthesize", str(store), "--vocoder", str(table_vocoder), "-o", str(out), "--speaker", "en02",
                 "--quiet"]) == 0
    from speechunits.units.store import UnitStore

    stored = UnitStore.open(store).to_dict()
    wav = out / "en00_0001.wav"
    info = sf.info(str(wav))
    # frame i lands at its centre: 120 samples of lead, then 160 per frame
    assert info.frames == 120 + 160 * stored["en00_0001"].num_frames


@pytest.mark.parametrize("kind", ["silent", "short", "8khz"])
def test_awkward_inputs_go_through_resynth(table_vocoder: Path, tmp_path: Path, kind: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rate = 8000 if kind == "8khz" else 16000
    seconds = {"silent": 1.0, "short": 0.01, "8khz": 0.6}[kind]
    t = np.arange(int(seconds * rate)) / rate
    wave = np.zeros_like(t) if kind == "silent" else 0.3 * np.sin(2 * np.pi * 180 * t)
    sf.write(str(src / "x.wav"), wave.astype(np.float32), rate)
    out = tmp_path / "out"
    assert main(["resynth", str(src), "--vocoder", str(table_vocoder), "-o", str(out), "--speaker", "en00",
                 "--quiet"]) == 0
    data, out_rate = sf.read(str(out / "x.wav"))
    assert out_rate == 16000 and data.size == int(round(seconds * 16000))
    assert np.all(np.isfinite(data))


def test_resynth_and_convert_cli(table_vocoder: Path, corpus: Path, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(corpus / "wavs" / "en00_0000.wav", one / "en00_0000.wav")
    # the corpus's speakers.tsv gives each utterance its table speaker
    assert main(["resynth", str(corpus), "--vocoder", str(table_vocoder), "-o", str(tmp_path / "rs"),
                 "--quiet"]) == 0
    assert len(list((tmp_path / "rs").glob("*.wav"))) == 12
    assert main(["convert", str(one), "--vocoder", str(table_vocoder), "--speaker", "en02", "-o",
                 str(tmp_path / "cv"), "--quiet"]) == 0
    src_len = sf.info(str(one / "en00_0000.wav")).frames
    assert sf.info(str(tmp_path / "cv" / "en00_0000.wav")).frames == src_len
    message = cli_error(["convert", str(one), "--vocoder", str(table_vocoder), "--speaker", "zz", "-o",
                         str(tmp_path / "cv2")], caplog)
    assert "unknown speaker 'zz'" in message and "en00, en01, en02" in message
    message = cli_error(["convert", str(one), "--vocoder", str(table_vocoder), "--reference",
                         str(one / "en00_0000.wav"), "-o", str(tmp_path / "cv3")], caplog)
    assert "speaker table" in message


def test_resynthesis_never_writes_over_its_input(table_vocoder: Path, corpus: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """`resynth wavs/ -o wavs/` overwrote the originals with their resynthesis (found by trying it)."""
    wavs = tmp_path / "wavs"
    shutil.copytree(corpus / "wavs", wavs)
    before = {p.name: p.read_bytes() for p in wavs.glob("*.wav")}
    for out in (wavs, wavs / "sub"):
        assert "inside the input directory" in cli_error(
            ["resynth", str(wavs), "--vocoder", str(table_vocoder), "--speaker", "en00", "-o", str(out)], caplog)
    # a manifest whose audio lies where the outputs would go
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"{wavs}\nen00_0000.wav\n")
    assert "is an input file" in cli_error(
        ["resynth", str(manifest), "--vocoder", str(table_vocoder), "--speaker", "en00", "-o", str(wavs)], caplog)
    assert {p.name: p.read_bytes() for p in wavs.glob("*.wav")} == before
    assert not (wavs / "sub").exists()


def test_existing_vocoder_needs_resume(table_vocoder: Path, corpus: Path, codebook: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    message = cli_error(["vocoder", "train", str(corpus), "--codebook", str(codebook), "-o", str(table_vocoder),
                         "--size", "tiny", "--device", "cpu", "--quiet"], caplog)
    assert "already holds a vocoder" in message and "--resume" in message


def test_speaker_table_without_speakers_is_refused(codebook: Path, corpus: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(corpus / "wavs" / "en00_0000.wav", bare / "a.wav")
    message = cli_error(["vocoder", "train", str(bare), "--codebook", str(codebook), "-o", str(tmp_path / "v"),
                         "--size", "tiny", "--speaker", "table", "--device", "cpu", "--quiet"], caplog)
    assert "speakers file" in message


def test_conversion_moves_log_f0_between_speaker_ranges() -> None:
    from speechunits.vocoder.f0 import convert_track

    source = F0Stats(math.log(100.0), 0.1, 100)
    target = F0Stats(math.log(200.0), 0.2, 100)
    track = F0Track(np.array([100.0, 0.0, 100.0 * math.exp(0.1)], dtype=np.float32), 100.0)
    out = convert_track(track, source, target).f0
    # z = 0 -> the target's mean; z = 1 -> one target std above it; unvoiced stays unvoiced
    np.testing.assert_allclose(out, [200.0, 0.0, 200.0 * math.exp(0.2)], rtol=1e-5)


def test_two_codebooks_are_two_streams(corpus: Path, codebook: Path, other_codebook: Path, tmp_path: Path) -> None:
    from speechunits.quantize import Codebook
    from speechunits.vocoder import load_vocoder

    out = tmp_path / "voc2"
    assert main(["vocoder", "train", str(corpus), "--codebook", str(codebook), "--codebook", str(other_codebook),
                 "-o", str(out), "--size", "tiny", "--steps", "2", "--checkpoint-every", "2", "--f0", "none",
                 "--device", "cpu", "--quiet"]) == 0
    voc = load_vocoder(out, device="cpu")
    shas = [Codebook.load(codebook).sha256, Codebook.load(other_codebook).sha256]
    assert voc.meta["k"] == [20, 12] and voc.meta["codebook_sha256"] == shas and voc.meta["f0"] == "none"
    voc.check_codebook(shas, source="two stores")
    with pytest.raises(SpeechUnitsError, match="trained on codebook"):
        voc.check_codebook(shas[:1], source="one store")
    with pytest.raises(SpeechUnitsError, match="2 unit stream"):
        voc.synthesize(Units(np.array([1, 2]), 100.0, 20))
    audio = voc.synthesize([Units(np.array([1, 2, 3]), 100.0, 20), Units(np.array([4, 5, 6]), 100.0, 12)])
    assert audio.num_samples == 120 + 3 * 160
    assert main(["resynth", str(corpus / "wavs" / "en00_0000.wav"), "--vocoder", str(out), "-o",
                 str(tmp_path / "rs"), "--quiet"]) == 0
    assert (tmp_path / "rs" / "en00_0000.wav").is_file()


def test_unit_tables_from_centroids(corpus: Path, codebook: Path, other_codebook: Path, tmp_path: Path) -> None:
    """--embed-init centroids: each stream's table is its codebook's centroids, every dimension standardised
    over the K rows (checked against numpy), then projected; training moves them from there."""
    from speechunits.quantize import Codebook
    from speechunits.vocoder import load_vocoder
    from speechunits.vocoder.conditioning import Conditioner
    from speechunits.vocoder.config import TINY, VocoderConfig

    cbs = [Codebook.load(codebook), Codebook.load(other_codebook)]
    cfg = VocoderConfig(**TINY, vocab_sizes=[20, 12], embed_init="centroids", unit_table_dims=[39, 39], f0="none")
    cond = Conditioner(cfg)
    cond.load_centroids([torch.as_tensor(np.asarray(c.centroids)) for c in cbs])
    for table, cb in zip(cond.units, cbs):
        c = np.asarray(cb.centroids, dtype=np.float64)
        expected = (c - c.mean(0)) / c.std(0)  # population std
        np.testing.assert_allclose(table.weight.detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    ids = torch.tensor([[[3, 7]], [[5, 1]]]).reshape(1, 2, 2)  # [B=1, S=2, T=2]
    want = sum(proj(table.weight[ids[0, s]]) for s, (table, proj) in enumerate(zip(cond.units, cond.unit_projections)))
    torch.testing.assert_close(cond.embed_units(ids)[0], want)
    with pytest.raises(SpeechUnitsError, match="centroids"):
        cond.load_centroids([torch.zeros(20, 13), torch.zeros(12, 39)])
    with pytest.raises(SpeechUnitsError, match="random"):
        Conditioner(VocoderConfig(**TINY)).load_centroids([torch.zeros(100, 39)])
    with pytest.raises(SpeechUnitsError, match="--embed-init"):
        VocoderConfig(embed_init="kmeans")
    with pytest.raises(SpeechUnitsError, match="unit table dims"):
        VocoderConfig(unit_table_dims=[39])  # only with centroid tables
    with pytest.raises(SpeechUnitsError, match="unit table dims"):
        VocoderConfig(vocab_sizes=[20, 12], embed_init="centroids", unit_table_dims=[39])

    out = tmp_path / "voc-c"
    lr, steps = 1e-3, 2
    assert main(["vocoder", "train", str(corpus), "--codebook", str(codebook), "-o", str(out), "--size", "tiny",
                 "--speaker", "table", "--embed-init", "centroids", "--steps", str(steps), "--lr", str(lr),
                 "--checkpoint-every", str(steps), "--device", "cpu", "--quiet"]) == 0
    voc = load_vocoder(out, device="cpu")
    assert voc.meta["config"]["embed_init"] == "centroids" and voc.meta["config"]["unit_table_dims"] == [39]
    table = voc.model.conditioner.units[0].weight.detach().numpy()
    c = np.asarray(cbs[0].centroids, dtype=np.float64)
    moved = np.abs(table - (c - c.mean(0)) / c.std(0))
    assert 0 < moved.max() < 3 * lr * steps  # Adam moves a weight by about lr per step
    audio = voc.synthesize(Units(np.array([1, 2, 3]), 100.0, 20), speaker="en00")
    assert audio.num_samples == 120 + 3 * 160 and np.isfinite(audio.samples).all()


def test_kernel_widens_the_context_and_must_be_odd():
    """A change at frame 40 reaches the log-magnitude filters (kernel - 1) / 2 frames further per layer
    (the input convolution and each block): 5 layers of kernel 7 -> frames 25-55, of kernel 11 -> 15-65."""
    from speechunits.vocoder.config import TINY, VocoderConfig
    from speechunits.vocoder.source_filter import SourceFilterGenerator

    with pytest.raises(SpeechUnitsError, match="--kernel"):
        VocoderConfig(kernel=6)
    for kernel, reach in ((7, 15), (11, 25)):
        torch.manual_seed(0)
        gen = SourceFilterGenerator(VocoderConfig(**{**TINY, "blocks": 4, "kernel": kernel}), 8).eval()
        torch.nn.init.normal_(gen.head.weight)  # the head starts at zero: make the filters depend on the input
        cond = torch.randn(1, 8, 81)
        changed = cond.clone()
        changed[..., 40] += 1.0
        with torch.no_grad():
            diff = (gen.filters(changed) - gen.filters(cond)).abs().amax(dim=(0, 1, 2))  # per STFT frame
        moved = torch.nonzero(diff > 0).flatten()  # outside the context the arithmetic is identical
        # STFT frame j averages unit frames j - 1 and j
        assert (int(moved.min()), int(moved.max())) == (40 - reach, 41 + reach)


def test_a_damaged_vocoder_is_a_clear_error(tmp_path: Path):
    from speechunits.errors import SpeechUnitsError
    from speechunits.recipes.demo_audio import shipped_vocoder
    from speechunits.vocoder.vocoder import load_vocoder

    shutil.copytree(shipped_vocoder(), tmp_path / "voc")
    weights = tmp_path / "voc" / "vocoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(SpeechUnitsError, match="vocoder.safetensors: unreadable safetensors file"):
        load_vocoder(tmp_path / "voc", "cpu")
    (tmp_path / "voc" / "vocoder.json").write_text("{cut")
    with pytest.raises(SpeechUnitsError, match="vocoder.json: not valid JSON"):
        load_vocoder(tmp_path / "voc", "cpu")

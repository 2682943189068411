"""silero-vad on speech-like audio: the packaged model through our batched path, streaming in
blocks, resampled input, tiny files, and speech found where the synthetic corpus put it."""
from __future__ import annotations

import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

if find_spec("silero_vad") is None:  # not importorskip: importing silero_vad sets torch to one thread
    pytest.skip("needs the [vad] extra (silero-vad)", allow_module_level=True)
pytest.importorskip("espeakng_loader")

from speechunits.audio import Audio  # noqa: E402
from speechunits.errors import SpeechUnitsError  # noqa: E402
from speechunits.segment.run import find_speech  # noqa: E402
from speechunits.segment.segments import SegmentOptions  # noqa: E402
from speechunits.segment.vad import WINDOW, SileroVAD, model_path  # noqa: E402

#: Silence before each utterance, and after the last one (seconds).
GAPS = [1.0, 1.5, 0.8, 2.0, 0.6, 1.2, 3.0, 0.9, 1.0]
TOLERANCE_S = 0.2


def build_long_recording(corpus: Path, out: Path) -> list[tuple[float, float]]:
    """Eight synthetic utterances with the silences of GAPS (faint noise) between them, written to
    ``out`` (16 kHz); returns each utterance's speech span (first to last non-silent phone)."""
    rng = np.random.default_rng(0)
    phones: dict[str, list[tuple[float, float]]] = {}
    for line in (corpus / "phones.tsv").read_text(encoding="utf-8").splitlines():
        utt, start, end, label = line.split("\t")
        if label != "sil":
            phones.setdefault(utt, []).append((float(start), float(end)))
    ids = sorted(phones)[: len(GAPS) - 1]
    parts, spans, t = [], [], 0.0
    for utt, gap in zip(ids, GAPS):
        parts.append((1e-3 * rng.standard_normal(int(gap * 16000))).astype(np.float32))
        t += parts[-1].size / 16000
        wave, rate = sf.read(corpus / "wavs" / f"{utt}.wav", dtype="float32")
        assert rate == 16000
        spans.append((t + phones[utt][0][0], t + phones[utt][-1][1]))
        parts.append(wave)
        t += wave.size / 16000
    parts.append((1e-3 * rng.standard_normal(int(GAPS[-1] * 16000))).astype(np.float32))
    sf.write(str(out), np.concatenate(parts), 16000, subtype="PCM_16")
    return spans


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD.load()


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    from speechunits.synth.testing import small_corpus

    tmp = tmp_path_factory.mktemp("segment_vad")
    corpus = small_corpus(tmp, minutes=0.5, speakers=3)
    path = tmp / "long.wav"
    return path, build_long_recording(corpus, path)


def test_batched_probabilities_equal_silero_vads_own_loop(vad, long_recording):
    import torch

    path, _ = long_recording
    audio = Audio(Audio.load(path).samples[: 12 * 16000 + 300], 16000)  # two utterances and a partial window
    ours = vad.speech_probabilities(audio)
    # silero-vad's own whole-audio loop (window by window, its stateful forward) is the reference.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated in torch 2.13
        module = torch.jit.load(str(model_path()), map_location="cpu").eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny per-window ops: extra threads only wait on each other
    try:
        reference = module.audio_forward(torch.from_numpy(audio.samples)[None], 16000)[0].numpy()
    finally:
        torch.set_num_threads(threads)
    assert ours.shape == reference.shape == (-(-audio.num_samples // WINDOW),)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    one_by_one = SileroVAD.load(batched=False).speech_probabilities(audio)
    np.testing.assert_allclose(one_by_one, reference, atol=1e-6)
    assert ours.min() < 0.1 and ours.max() > 0.9  # speech and silence both present


def test_streaming_in_any_blocks_equals_whole_audio(vad, long_recording):
    path, _ = long_recording
    audio = Audio.load(path)
    whole = vad.speech_probabilities(audio)
    stream = vad.stream()
    rng = np.random.default_rng(1)
    got, pos = [], 0
    for size in [1, 63, 64, 511, 512, 513, 0, 5000] + list(rng.integers(1, 40000, 40)):
        got.append(stream.feed(audio.samples[pos: pos + size]))
        pos += size
    got.append(stream.feed(audio.samples[pos:]))
    got.append(stream.finish())
    np.testing.assert_allclose(np.concatenate(got), whole, atol=1e-5)


def test_find_speech_reads_blocks_and_matches_whole_file(vad, long_recording):
    path, _ = long_recording
    whole = vad.speech_probabilities(Audio.load(path))
    seen: list[float] = []
    speech = find_speech(vad, path, block_seconds=0.77, on_block=seen.append)
    np.testing.assert_allclose(speech.probs, whole, atol=1e-5)
    assert speech.num_frames == sf.info(str(path)).frames and speech.sample_rate == 16000
    assert sum(seen) == pytest.approx(speech.duration_s)
    assert len(seen) == -(-speech.num_frames // int(0.77 * 16000))


def test_vad_finds_the_known_utterance_boundaries(vad, long_recording):
    path, spans = long_recording
    speech = find_speech(vad, path, SegmentOptions(pad_s=0.0))
    found = [(s.start_s, s.end_s) for s in speech.segments]
    assert len(found) == len(spans), found
    for (start, end), (true_start, true_end) in zip(found, spans):
        assert abs(start - true_start) <= TOLERANCE_S, (start, true_start)
        assert abs(end - true_end) <= TOLERANCE_S, (end, true_end)


def test_a_44k_stereo_file_is_resampled_in_blocks_like_audio_load(vad, long_recording, tmp_path):
    path, spans = long_recording
    mono16 = Audio.load(path)
    wave44 = mono16.resample(44100).samples
    stereo = tmp_path / "stereo44k.flac"
    sf.write(str(stereo), np.stack([wave44 * 0.8, wave44 * 0.6], axis=1), 44100, subtype="PCM_24")
    blocks = list(Audio.stream(stereo, 16000, block_seconds=1.3))
    loaded = Audio.load(stereo, sample_rate=16000)  # downmix then one-shot soxr
    np.testing.assert_array_equal(np.concatenate([b.samples for b in blocks]), loaded.samples)
    assert sum(b.source_frames for b in blocks) == wave44.size and {b.source_rate for b in blocks} == {44100}
    speech = find_speech(vad, stereo, SegmentOptions(pad_s=0.0), block_seconds=1.3)
    np.testing.assert_allclose(speech.probs, vad.speech_probabilities(loaded), atol=1e-5)
    assert speech.sample_rate == 44100 and speech.num_frames == wave44.size
    assert len(speech.segments) == len(spans)
    for seg, (true_start, true_end) in zip(speech.segments, spans):
        assert abs(seg.start_s - true_start) <= TOLERANCE_S and abs(seg.end_s - true_end) <= TOLERANCE_S


@pytest.mark.parametrize("num_samples, windows", [(1, 1), (300, 1), (512, 1), (513, 2)])
def test_files_shorter_than_a_window_or_just_over(vad, tmp_path, num_samples, windows):
    path = tmp_path / "short.wav"
    sf.write(str(path), np.full(num_samples, 0.01, dtype=np.float32), 16000)
    speech = find_speech(vad, path)
    assert speech.probs.shape == (windows,)
    assert speech.segments == []  # a constant is not speech
    assert speech.probs.tolist() == pytest.approx(vad.speech_probabilities(Audio.load(path)).tolist(), abs=1e-6)


def test_bad_files_are_user_errors(vad, tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(SpeechUnitsError, match="empty"):
        find_speech(vad, empty)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(SpeechUnitsError, match="unreadable"):
        find_speech(vad, broken)
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.0, np.nan, 0.0] * 1000, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(SpeechUnitsError, match="NaN"):
        find_speech(vad, nan)
    with pytest.raises(SpeechUnitsError, match="channel 3"):
        find_speech(vad, nan, channel=3)
    with pytest.raises(SpeechUnitsError, match="extension"):
        find_speech(vad, tmp_path / "x.txt")


def test_the_vad_leaves_torch_threads_as_it_found_them():
    import subprocess
    import sys

    # silero_vad's __init__ sets torch's thread count to 1: we must never import it.
    # The VAD runs on one thread and puts the process's setting back.
    code = ("import sys, numpy, torch; torch.set_num_threads(2); from speechunits.audio import Audio; "
            "from speechunits.segment.vad import SileroVAD; "
            "SileroVAD.load().speech_probabilities(Audio(numpy.zeros(2000, 'float32'), 16000)); "
            "print(torch.get_num_threads(), 'silero_vad' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "False"]

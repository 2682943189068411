"""The overlapped local loader: order, bounded look-ahead, errors, equality with the serial loader."""
from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tone
from speechunits.corpus import open_corpus
from speechunits.errors import SpeechUnitsError
from speechunits.scale.prefetch import ordered_map, prefetch_audio_items


def _slow_square(x: int) -> int:
    time.sleep(random.uniform(0, 0.01))
    return x * x


def test_ordered_map_keeps_input_order_under_random_delays() -> None:
    items = list(range(60))
    assert list(ordered_map(_slow_square, items, workers=4)) == [x * x for x in items]


def test_ordered_map_inline_when_no_workers() -> None:
    seen_threads = set()

    def record(x: int) -> int:
        seen_threads.add(threading.get_ident())
        return x + 1

    assert list(ordered_map(record, range(5), workers=0)) == [1, 2, 3, 4, 5]
    assert seen_threads == {threading.get_ident()}


def test_ordered_map_reads_at_most_prefetch_items_ahead() -> None:
    pulled = 0

    def source():
        nonlocal pulled
        for i in range(40):
            pulled += 1
            yield i

    depth = 3
    out = []
    for consumed, value in enumerate(ordered_map(lambda x: x, source(), workers=2, prefetch=depth), start=1):
        time.sleep(0.002)  # a slow consumer: the loader would run ahead if it were unbounded
        assert pulled <= consumed + depth
        out.append(value)
    assert out == list(range(40))


def test_ordered_map_raises_at_the_failing_item() -> None:
    def fn(x: int) -> int:
        if x == 3:
            raise RuntimeError("boom at 3")
        return x

    got = []
    with pytest.raises(RuntimeError, match="boom at 3"):
        for value in ordered_map(fn, range(10), workers=3):
            got.append(value)
    assert got == [0, 1, 2]


def test_ordered_map_early_close_cancels_pending_work() -> None:
    calls = []

    def fn(x: int) -> int:
        calls.append(x)
        time.sleep(0.005)
        return x

    gen = ordered_map(fn, range(1000), workers=2, prefetch=4)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert len(calls) <= 3 + 4 + 2  # consumed + queued + running, not the whole input


def test_ordered_map_processes() -> None:
    assert list(ordered_map(abs, [-3, 2, -1, 0], workers=2, mode="process")) == [3, 2, 1, 0]


@pytest.mark.parametrize("kwargs, match", [
    ({"workers": -1}, "loader-workers"),
    ({"workers": 2, "prefetch": 0}, "prefetch"),
    ({"workers": 2, "mode": "fibres"}, "mode"),
])
def test_ordered_map_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(SpeechUnitsError, match=match):
        list(ordered_map(abs, [1], **kwargs))


@pytest.fixture()
def mixed_corpus(tmp_path: Path) -> Path:
    """44.1 kHz and 16 kHz files, a stereo one, a corrupt one and one too short for the encoder."""
    root = tmp_path / "mixed"
    write_tone(root / "a.wav", 1.0, sample_rate=44100, seed=1)
    write_tone(root / "b.flac", 0.7, sample_rate=16000, channels=2, seed=2)
    (root / "c.wav").write_bytes(b"RIFF not really a wav")
    write_tone(root / "d.wav", 0.01, sample_rate=16000, seed=3)  # 160 samples < 400
    for i in range(6):
        write_tone(root / "more" / f"e{i}.wav", 0.3 + 0.1 * i, sample_rate=22050, seed=10 + i)
    return root


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_prefetch_equals_serial_loader(mixed_corpus: Path, mode: str) -> None:
    from speechunits.features import load_audio_items

    corpus = open_corpus(mixed_corpus)
    serial = list(load_audio_items(corpus, 16000, 400))
    overlapped = list(prefetch_audio_items(corpus, 16000, 400, workers=3, prefetch=2, mode=mode))
    assert [i.utt.id for i in overlapped] == [i.utt.id for i in serial]
    assert [i.error for i in overlapped] == [i.error for i in serial]
    assert sum(i.error is not None for i in serial) == 2  # the corrupt and the too-short file
    for a, b in zip(overlapped, serial):
        if b.audio is not None:
            assert a.audio.sample_rate == b.audio.sample_rate == 16000
            np.testing.assert_array_equal(a.audio.samples, b.audio.samples)


def test_iter_features_with_prefetched_audio_is_identical(mixed_corpus: Path, tiny_hubert_dir: Path) -> None:
    from speechunits.encoders import load_encoder
    from speechunits.features import iter_features

    encoder = load_encoder(str(tiny_hubert_dir), device="cpu")
    corpus = open_corpus(mixed_corpus)
    info = encoder.info
    serial = list(iter_features(encoder, corpus, [1, 3], quiet=True, max_batch_seconds=2.0))
    items = prefetch_audio_items(corpus, info.sample_rate, info.receptive_field, workers=2)
    overlapped = list(iter_features(encoder, corpus, [1, 3], quiet=True, max_batch_seconds=2.0, audio_items=items))
    assert [(i.utt.id, i.error) for i in overlapped] == [(i.utt.id, i.error) for i in serial]
    for a, b in zip(overlapped, serial):
        if b.features is not None:
            for layer in (1, 3):
                np.testing.assert_array_equal(a.features[layer], b.features[layer])

"""Unit BPE: exact reversibility to units and durations, HF compatibility, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_error
from speechunits.errors import SpeechUnitsError
from speechunits.units import Units
from speechunits.units.bpe import (
    UnitBPE,
    decode_tokens,
    encode_store,
    iter_tokens,
    text_to_units,
    train_bpe,
    unit_char,
    units_to_text,
)
from speechunits.units.store import UnitStore, write_units

K, RATE = 12, 50.0


def codebook_meta(sha: str = "e" * 64) -> dict:
    return {"k": K, "frame_rate": RATE, "frame_offset_s": 0.0125, "sha256": sha}


def corpus_store(path: Path, dedup: bool, n: int = 40, seed: int = 0) -> UnitStore:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        # Frame-level sequences with runs, built from a few recurring "words" so merges exist.
        words = [np.array([1, 2, 3]), np.array([4, 5]), np.array([7, 1, 2])]
        parts = [words[j] for j in rng.integers(0, 3, size=int(rng.integers(0, 12)))]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        frames = np.repeat(ids, rng.integers(1, 4, size=ids.size))
        units = Units(frames, RATE, K)
        items.append((f"u{i}", units.dedup() if dedup else units))
    return write_units(path, items, codebook_meta(), durations_s={f"u{i}": 0.5 + i for i in range(n)})


def test_char_mapping_round_trip() -> None:
    ids = np.array([0, 1, 6399, 6400, 6401, 70000])
    text = units_to_text(ids)
    assert len(text) == ids.size
    assert unit_char(0) == "\ue000" and unit_char(6400) == chr(0xF0000)
    assert np.array_equal(text_to_units(text), ids)
    with pytest.raises(SpeechUnitsError):
        text_to_units("a")
    with pytest.raises(SpeechUnitsError):
        unit_char(-1)


def test_hand_computed_merge_and_token_durations() -> None:
    sequences = [np.array([1, 2, 3, 1, 2]), np.array([1, 2, 0])]
    bpe = UnitBPE.train(sequences, unit_vocab_size=K, vocab_size=K + 1, min_frequency=2)
    assert bpe.vocab_size == K + 1
    merged = bpe.tokenizer.token_to_id(units_to_text([1, 2]))
    assert merged == K  # the only pair seen 3 times; alphabet tokens are 0..K-1 in unit order
    tokens = bpe.encode(np.array([1, 2, 3, 1, 2]))
    assert tokens.tolist() == [K, 3, K]
    assert bpe.token_durations(tokens, np.array([2, 1, 1, 3, 1])).tolist() == [3, 1, 4]
    assert bpe.decode(tokens).tolist() == [1, 2, 3, 1, 2]
    # Units never seen in training are still single-character tokens.
    assert bpe.decode(bpe.encode(np.array([11, 10, 11]))).tolist() == [11, 10, 11]


@pytest.mark.parametrize("dedup", [True, False])
def test_store_round_trip_is_exact(tmp_path: Path, dedup: bool) -> None:
    store = corpus_store(tmp_path / "units", dedup)
    bpe = train_bpe(store, vocab_size=K + 8)
    bpe.save(tmp_path / "bpe")
    bpe = UnitBPE.load(tmp_path / "bpe")
    assert encode_store(store, bpe, tmp_path / "tokens", rows_per_file=7) == len(store)
    n_tokens = n_units = 0
    for utt_id, tokens, token_durs, durs, _ in iter_tokens(tmp_path / "tokens"):
        n_tokens += tokens.size
        n_units += durs.size
        assert token_durs.sum() == durs.sum()
    assert n_tokens < n_units  # merges were learnt and used
    back = decode_tokens(tmp_path / "tokens", bpe, tmp_path / "back")
    assert back.meta == store.meta
    original = list(store.iter_rows())
    decoded = list(back.iter_rows())
    assert [u for u, _, _ in decoded] == [u for u, _, _ in original]
    for (_, a, sa), (_, b, sb) in zip(original, decoded):
        assert np.array_equal(a.ids, b.ids) and sa == sb
        assert (a.durations is None) == (b.durations is None)
        if a.durations is not None:
            assert np.array_equal(a.durations, b.durations)
    # Resuming an already complete token store writes nothing.
    assert encode_store(store, bpe, tmp_path / "tokens") == 0


def test_tokenizer_json_loads_in_transformers(tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    store = corpus_store(tmp_path / "units", dedup=True)
    bpe = train_bpe(store, vocab_size=K + 6)
    bpe.save(tmp_path / "bpe")
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "bpe/tokenizer.json"))
    assert len(hf) == bpe.vocab_size
    for _, units in list(store)[:10]:
        ours = bpe.encode(units.ids).tolist()
        assert hf(units_to_text(units.ids), add_special_tokens=False)["input_ids"] == ours
        assert hf.decode(ours) == units_to_text(units.ids)


def test_training_is_deterministic(tmp_path: Path) -> None:
    store = corpus_store(tmp_path / "units", dedup=False)
    a = train_bpe(store, vocab_size=K + 8).save(tmp_path / "a")
    b = train_bpe(store, vocab_size=K + 8).save(tmp_path / "b")
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_bad_input(tmp_path: Path) -> None:
    store = corpus_store(tmp_path / "units", dedup=True)
    with pytest.raises(SpeechUnitsError, match="--vocab"):
        train_bpe(store, vocab_size=K - 1)
    bpe = train_bpe(store, vocab_size=K + 4)
    bpe.save(tmp_path / "bpe")
    encode_store(store, bpe, tmp_path / "tokens")
    other = train_bpe(store, vocab_size=K + 2)
    with pytest.raises(SpeechUnitsError, match="tokens were made with BPE"):
        decode_tokens(tmp_path / "tokens", other, tmp_path / "back")
    with pytest.raises(SpeechUnitsError, match="bpe_sha256"):
        encode_store(store, other, tmp_path / "tokens")  # appending with another BPE
    foreign = write_units(tmp_path / "foreign", [("x", Units(np.array([1]), RATE, K))], codebook_meta("d" * 64))
    with pytest.raises(SpeechUnitsError, match="trained on units of codebook"):
        encode_store(foreign, bpe, tmp_path / "tokens2")
    path = tmp_path / "bpe/tokenizer.json"
    path.write_text(path.read_text().replace("\ue001", "\ue002", 1))
    with pytest.raises(SpeechUnitsError, match="sha256"):
        UnitBPE.load(tmp_path / "bpe")
    with pytest.raises(SpeechUnitsError, match="missing"):
        UnitBPE.load(tmp_path / "nothing")
    with pytest.raises(SpeechUnitsError, match="not a BPE token directory"):
        list(iter_tokens(tmp_path / "units"))
    assert json.loads((tmp_path / "bpe/bpe.json").read_text())["unit_vocab_size"] == K


def test_cli_train_encode_decode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from speechunits.cli.main import main

    store = corpus_store(tmp_path / "units", dedup=False)
    assert main(["bpe", "train", str(store.path), "--vocab", str(K + 5), "-o", str(tmp_path / "bpe")]) == 0
    assert main(["bpe", "encode", str(store.path), "--bpe", str(tmp_path / "bpe"), "-o", str(tmp_path / "tok")]) == 0
    assert main(["bpe", "decode", str(tmp_path / "tok"), "--bpe", str(tmp_path / "bpe"), "-o", str(tmp_path / "b")]) == 0
    back = UnitStore.open(tmp_path / "b")
    assert [(u, x.ids.tolist()) for u, x in back] == [(u, x.ids.tolist()) for u, x in store]
    assert "--vocab 3 must be >= the number of units" in cli_error(["bpe", "train", str(store.path), "--vocab", "3",
                                                                    "-o", str(tmp_path / "bad")], caplog)

"""Probe vocabularies and text tokenizers: ids, round trips, files, and the HF tokenizer file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.probe.vocab import (
    BLANK,
    TextTokenizer,
    Vocabulary,
    bpe_tokenizer,
    char_tokenizer,
    char_vocabulary,
    class_vocabulary,
    normalize_text,
    phone_vocabulary,
)

TEXTS = [
    "The old lighthouse keeper climbed the stairs every evening at dusk.",
    "A small brown dog chased the ball across the wet grass.",
    "Please remember to close the window before the storm arrives.",
    "We bought fresh bread and cheese at the market on Saturday.",
    "The children built a sandcastle that the tide washed away.",
] * 3


def test_normalize_text() -> None:
    assert normalize_text("Hello,  World!") == "hello world"
    assert normalize_text("It’s a TEST-run.\n") == "it's a test run"
    assert normalize_text("Ça va? 42") == "ça va 42"
    assert normalize_text(" ... ") == ""


def test_phone_vocabulary_sorts_and_puts_blank_first() -> None:
    vocab = phone_vocabulary([["t", "ae", "t"], ["ae", "k"]])
    assert vocab.tokens == (BLANK, "ae", "k", "t")
    assert vocab.blank == 0
    assert vocab.encode(["k", "ae", "t"]) == [2, 1, 3]
    assert vocab.decode([2, 0, 1, 3]) == ["k", "ae", "t"]  # blank dropped
    # the order of appearance does not matter
    assert phone_vocabulary([["ae", "k"], ["t", "ae", "t"]]) == vocab


def test_char_and_class_vocabularies() -> None:
    chars = char_vocabulary(["Ab a!", "b"])
    assert chars.tokens == (BLANK, "a", "b", "|")
    assert chars.encode(list("ab|a")) == [1, 2, 3, 1]
    classes = class_vocabulary(["sad", "happy", "sad"])
    assert classes.tokens == ("happy", "sad") and classes.blank is None
    assert classes.decode([1, 0]) == ["sad", "happy"]


def test_vocabulary_refuses_unknown_labels_and_ids() -> None:
    vocab = phone_vocabulary([["a", "b"]])
    with pytest.raises(SpeechUnitsError, match="no label 'zh'"):
        vocab.encode(["a", "zh"])
    with pytest.raises(SpeechUnitsError, match="id 7 outside"):
        vocab.decode([7])
    with pytest.raises(SpeechUnitsError, match="reserved for the CTC blank"):
        class_vocabulary(["x", BLANK])
    with pytest.raises(SpeechUnitsError, match="no labels"):
        phone_vocabulary([[]])


def test_vocabulary_save_load_round_trip_and_sha256(tmp_path: Path) -> None:
    vocab = phone_vocabulary([["sh", "iy"], ["ə", "n"]])
    path = vocab.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.sha256 == vocab.sha256
    assert json.loads(path.read_text(encoding="utf-8"))["tokens"] == list(vocab.tokens)
    # sha256 follows the content: another label, another order of ids, another kind
    assert phone_vocabulary([["sh", "iy"], ["n"]]).sha256 != vocab.sha256
    assert Vocabulary((BLANK, "b", "a")).sha256 != Vocabulary((BLANK, "a", "b")).sha256
    assert class_vocabulary(["a", "b"]).sha256 != Vocabulary(("a", "b"), None, "phones").sha256
    # an edited file is refused
    data = json.loads(path.read_text(encoding="utf-8"))
    data["tokens"][1] = "zz"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="sha256 does not match"):
        Vocabulary.load(path)
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="not valid JSON"):
        Vocabulary.load(tmp_path / "bad.json")


def test_char_tokenizer_round_trips_text(tmp_path: Path) -> None:
    tokenizer = char_tokenizer(TEXTS)
    assert tokenizer.blank == 0 and tokenizer.tokens[0] == BLANK
    for text in TEXTS[:5]:
        ids = tokenizer.encode(text)
        assert 0 not in ids
        assert len(ids) == len(normalize_text(text))  # one id per character, spaces included
        assert tokenizer.decode(ids) == normalize_text(text)
    ids = tokenizer.encode("the dog")
    assert tokenizer.decode([0, *ids[:2], 0, *ids[2:]]) == "the dog"  # blanks are dropped
    tokenizer.save(tmp_path)
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.kind == "chars" and loaded.sha256 == tokenizer.sha256
    assert loaded.encode("The wet dog.") == tokenizer.encode("the wet dog")
    with pytest.raises(SpeechUnitsError, match="no label 'z'"):
        tokenizer.encode("zebra")


def test_bpe_tokenizer_round_trips_and_loads_with_hf_tokenizers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = bpe_tokenizer(TEXTS, vocab_size=80)
    assert tokenizer.kind == "bpe" and tokenizer.tokens[0] == BLANK
    assert tokenizer.vocab_size <= 81
    for text in TEXTS[:5]:
        ids = tokenizer.encode(text)
        assert 0 not in ids
        assert tokenizer.decode(ids) == normalize_text(text)
        # merges learnt: fewer tokens than characters
        assert len(ids) < len(normalize_text(text))
    unseen = "the bread was old"  # words recombined, characters seen
    assert tokenizer.decode(tokenizer.encode(unseen)) == unseen
    path = tokenizer.save(tmp_path)
    assert path.name == "tokenizer.json"
    hf = Tokenizer.from_file(str(path))
    text = normalize_text(TEXTS[1])
    assert [i + 1 for i in hf.encode(text).ids] == tokenizer.encode(text)  # ids shifted by one for the blank
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.sha256 == tokenizer.sha256 and loaded.tokens == tokenizer.tokens
    assert loaded.encode(TEXTS[2]) == tokenizer.encode(TEXTS[2])
    # characters never seen in training become <unk>, not an error
    assert "<unk>" in loaded.decode(loaded.encode("quiz"))


def test_bpe_tokenizer_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="no training text"):
        bpe_tokenizer(["...", ""], vocab_size=50)
    with pytest.raises(SpeechUnitsError, match="use at least"):
        bpe_tokenizer(TEXTS, vocab_size=5)
    with pytest.raises(SpeechUnitsError, match="no text tokenizer"):
        TextTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="unreadable tokenizer"):
        TextTokenizer.load(tmp_path)

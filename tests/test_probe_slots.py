"""Slot filling (SUPERB's SF): slot texts and their tokens, the metrics against hand-computed values,
SNIPS's IOB labels and SUPERB's voice split, and ``probe train slots`` end to end (MFCC)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.layouts.snips import SUPERB_SPEAKERS, read_iob, superb_parts
from speechunits.probe.labels import read_slot_labels, read_utterance_labels
from speechunits.probe.slots import (check_slot_text, parse_slots, slot_text, slot_tokens, slot_type_f1,
                                     slot_value_cer, tokens_to_slot_text)
from speechunits.probe.vocab import TextTokenizer, slot_tokenizer
from speechunits.synth.testing import small_corpus
from conftest import cli_error

REF = "play B-artist the beatles E-artist on B-service spotify E-service please"


def test_slot_text_from_iob_tags_and_its_tokens_round_trip():
    words = "Play the Beatles on Spotify please".split()
    assert slot_text(words, ["O", "artist", "artist", "O", "service", "O"]) == REF
    tokens = slot_tokens(REF)
    assert tokens[:6] == ["p", "l", "a", "y", "|", "B-artist"] and "E-artist" in tokens
    assert tokens[tokens.index("E-artist") - 1] == "s" and tokens[tokens.index("E-artist") + 1] == "|"
    assert tokens_to_slot_text(tokens) == REF
    # two slots side by side, and a slot at the end
    adjacent = slot_text(["a", "b", "c"], ["x", "y", "y"])
    assert adjacent == "B-x a E-x B-y b c E-y" and tokens_to_slot_text(slot_tokens(adjacent)) == adjacent
    with pytest.raises(SpeechUnitsError, match="3 words but 2 slot tags"):
        slot_text(["a", "b", "c"], ["O", "x"])


def test_slot_metrics_by_hand():
    assert parse_slots(REF) == ("play the beatles on spotify please", [("artist", "the beatles"), ("service", "spotify")])
    hyp = "play B-artist the betles E-artist on B-album spotify E-album please"
    # types: {artist, service} vs {artist, album}: precision 1/2, recall 1/2 -> F1 1/2
    assert slot_type_f1([REF], [hyp]) == pytest.approx(0.5)
    # values: "the beatles" vs "the betles" (1 edit of 11), "spotify" vs nothing (7 of 7): 8 / 18
    assert slot_value_cer([REF], [hyp]) == pytest.approx(8 / 18)
    # no slot on either side counts 1; one side without any, 0; averaged over utterances
    assert slot_type_f1(["hello there", REF], ["hello there", "play the beatles"]) == pytest.approx(0.5)
    # the best of several hypothesis values of a type is taken; a malformed tag is ignored
    assert slot_value_cer(["B-x ab E-x"], ["B-x zz E-x B-x ab E-x E-y"]) == 0.0
    assert parse_slots("B-x a E-y b B-z c")[1] == []


def test_check_slot_text_refuses_ill_formed_tags():
    assert check_slot_text("Play B-artist The Beatles E-artist", "f") == "play B-artist the beatles E-artist"
    for bad, message in (("B-x a B-y b E-y E-x", "does not match"), ("a E-x", "does not match"),
                         ("B-x a", "B-x is not closed")):
        with pytest.raises(SpeechUnitsError, match=message):
            check_slot_text(bad, "f")


def test_slot_tokenizer_saves_and_loads(tmp_path: Path):
    tokenizer = slot_tokenizer([REF, "B-x ab E-x"])
    assert tokenizer.kind == "slots" and tokenizer.decode(tokenizer.encode(REF)) == REF
    tokenizer.save(tmp_path / "tok")
    again = TextTokenizer.load(tmp_path / "tok")
    assert again.kind == "slots" and again.sha256 == tokenizer.sha256 and again.encode(REF) == tokenizer.encode(REF)


def _iob_line(utt: str, words: list[str], tags: list[str], intent: str) -> str:
    return f"{utt} BOS {' '.join(words)} EOS\tO {' '.join(tags)} {intent}"


def test_read_iob_labels_and_intents(tmp_path: Path):
    path = tmp_path / "all.iob.snips.txt"
    path.write_text(_iob_line("Ivy-snips-train-0", ["PLAY", "THE", "BEATLES"], ["O", "artist", "artist"], "PlayMusic")
                    + "\n" + _iob_line("Ivy-snips-train-1", ["HI"], ["O"], "Greet") + "\n")
    assert read_iob(path)["Ivy-snips-train-0"] == (["PLAY", "THE", "BEATLES"], ["O", "artist", "artist"], "PlayMusic")
    assert read_slot_labels(path) == {"Ivy-snips-train-0": "play B-artist the beatles E-artist",
                                      "Ivy-snips-train-1": "hi"}
    assert read_utterance_labels(path) == {"Ivy-snips-train-0": "PlayMusic", "Ivy-snips-train-1": "Greet"}
    bad = tmp_path / "bad.txt"
    bad.write_text("Ivy-snips-train-0 BOS A B EOS\tO x INTENT\n")
    with pytest.raises(SpeechUnitsError, match=r"bad.txt:1: expected"):
        read_iob(bad)
    tsv = tmp_path / "slots.tsv"
    tsv.write_text("u1\tPlay B-artist Abba E-artist\nu2\tB-x open\n")
    with pytest.raises(SpeechUnitsError, match="u2: slot B-x is not closed"):
        read_slot_labels(tsv)


# -- a SNIPS tree made of synthetic speech ----------------------------------------------------------

VOICES = [v for part in ("train", "dev", "test") for v in SUPERB_SPEAKERS[part]]
FOLDER = {"train": "train", "dev": "valid", "test": "test"}
PART_OF = {v: part for part, voices in SUPERB_SPEAKERS.items() for v in voices}
SLOT_WORDS = {"the": "det", "cat": "animal", "park": "place", "water": "place", "over": "prep"}


@pytest.fixture(scope="module")
def snips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = small_corpus(tmp_path_factory.mktemp("slots-corpus"), minutes=3, speakers=4)
    texts = dict(line.split("\t") for line in (corpus / "text.tsv").read_text().splitlines() if line)
    root = tmp_path_factory.mktemp("snips") / "SNIPS"
    lines = []
    for n, (utt, text) in enumerate(sorted(texts.items())):
        voice = VOICES[n % len(VOICES)]
        part = PART_OF[voice]
        name = f"{voice}-snips-{FOLDER[part]}-{n}"
        folder = root / FOLDER["train" if n % 7 == 3 and part != "train" else part]  # now and then misplaced
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(corpus / "wavs" / f"{utt}.wav", folder / f"{name}.wav")
        words = text.replace(".", "").replace(",", "").upper().split()
        tags = [SLOT_WORDS.get(w.lower(), "O") for w in words]
        lines.append(_iob_line(name, words, tags, "Intent" + str(len(words) % 3)))
    (root / "all.iob.snips.txt").write_text("\n".join(lines) + "\n")
    return root


def test_superb_split_of_a_snips_tree(snips: Path):
    from speechunits.corpus import open_corpus

    ids = [u.id for u in open_corpus(snips)]
    parts = superb_parts(snips, ids)
    assert parts and set(parts.values()) == {"train", "dev", "test"}
    for utt, part in parts.items():
        voice = Path(utt).name.split("-")[0]
        assert voice in SUPERB_SPEAKERS[part] and Path(utt).parts[0] == FOLDER[part]
    misplaced = [u for u in ids if Path(u).parts[0] != FOLDER[PART_OF[Path(u).name.split("-")[0]]]]
    assert misplaced and not set(misplaced) & set(parts)
    assert superb_parts(snips / "train", ids) is None


def test_slots_probe_trains_evaluates_and_transcribes(snips: Path, tmp_path: Path, capsys):
    out = tmp_path / "sf"
    assert main(["probe", "train", "slots", str(snips), "-o", str(out), "--encoder", "mfcc", "--max-steps", "40",
                 "--eval-every", "20", "--lr", "1e-2", "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    assert meta["split"]["by"] == "dataset" and meta["selection"]["metric"] == "slot_type_f1"
    assert set(meta["test"]) == {"slot_type_f1", "slot_value_cer", "wer", "cer"}
    assert meta["labels"]["kind"] == "slots"
    capsys.readouterr()
    assert main(["probe", "eval", str(out), str(snips), "--split", "test", "--json", "--device", "cpu",
                 "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["slot_type_f1"] == pytest.approx(meta["test"]["slot_type_f1"]["mean"])
    wav = next((snips / "test").glob("*.wav"))
    assert main(["transcribe", str(wav), "--probe", str(out), "--device", "cpu"]) == 0
    line = capsys.readouterr().out.rstrip("\n")
    assert line.split("\t")[0] == wav.stem and len(line.split("\t")) == 2  # id<TAB>text with slot tags
    # intents from the same file: SNIPS intent classification on the same split
    assert main(["probe", "train", "classify", str(snips), "-o", str(tmp_path / "ic"), "--encoder", "mfcc",
                 "--max-steps", "5", "--eval-every", "5", "--device", "cpu", "--quiet"]) == 0
    assert json.loads((tmp_path / "ic" / "probe.json").read_text())["split"]["by"] == "dataset"


def test_slots_probe_refuses_bpe_targets_and_missing_labels(snips: Path, tmp_path: Path, caplog):
    base = ["--encoder", "mfcc", "--max-steps", "5", "--device", "cpu", "--quiet"]
    assert "characters and slot tags" in cli_error(["probe", "train", "slots", str(snips), "-o", str(tmp_path / "a"),
                                                    "--tokenizer", "64", *base], caplog)
    bare = tmp_path / "bare"
    bare.mkdir()
    os.symlink(next((snips / "train").glob("*.wav")), bare / "x.wav")
    assert "needs slot labels" in cli_error(["probe", "train", "slots", str(bare), "-o", str(tmp_path / "b"), *base],
                                            caplog)

"""Spoken benchmark sets and the parallel corpus: ZeroSpeech 2021 gold files, determinism, held-out
sentences, pairs.tsv, half-written outputs and CLI errors (tiny sets, a few seconds each)."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.corpus import open_corpus
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import SILENCE, load_alignments
from speechunits.synth.benchmarks import write_lexical, write_syntactic
from speechunits.synth.lexicon import training_vocabulary
from speechunits.synth.parallel import read_parallel_pairs, synthesize_parallel
from speechunits.synth.speakers import (SPEAKER_INFO_COLUMNS, Speaker, is_corpus_speaker, read_speaker_info,
                                        sample_speakers, write_speaker_info)

LEXICAL_HEADER = ["id", "filename", "word", "correct", "voice", "frequency", "length", "phones"]
SYNTACTIC_HEADER = ["id", "filename", "type", "subtype", "correct", "voice", "transcription"]


def _gold(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zr")
    write_lexical(out, pairs=4, voices=2, seed=0, workers=2, quiet=True)
    write_syntactic(out, pairs=7, voices=2, seed=0, workers=2, quiet=True)
    return out


def _check_pairing(rows: list[dict[str, str]], voices: set[str]) -> None:
    by_pair = Counter((r["id"], r["voice"]) for r in rows)
    assert set(by_pair.values()) == {2}  # one word and one non-word (grammatical/ungrammatical) per id and voice
    for key in by_pair:
        assert sorted(r["correct"] for r in rows if (r["id"], r["voice"]) == key) == ["0", "1"]
    assert {r["voice"] for r in rows} == voices


def test_lexical_gold_files(sets: Path) -> None:
    vocabulary = training_vocabulary("en")
    voice_rows = [line.split("\t") for line in (sets / "lexical" / "voices.tsv").read_text().splitlines()[1:]]
    voices = {row[0] for row in voice_rows}
    assert len(voices) == 2
    assert not any(is_corpus_speaker(Speaker(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]))) for r in voice_rows)
    words = {}
    for split in ("dev", "test"):
        folder = sets / "lexical" / split
        header, rows = _gold(folder / "gold.csv")
        assert header == LEXICAL_HEADER
        assert len(rows) == 4 * 2 * 2
        _check_pairing(rows, voices)
        alignments = load_alignments(folder / "phones.tsv")
        assert set(alignments) == {r["filename"] for r in rows}
        for r in rows:
            info = sf.info(folder / f"{r['filename']}.wav")
            assert info.samplerate == 16000 and info.frames > 1600
            assert int(r["length"]) == len(r["phones"].split())
            if r["correct"] == "1":
                assert int(r["frequency"]) == vocabulary[r["word"]] >= 1
            else:
                assert r["frequency"] == "0" and r["word"] not in vocabulary
            # the aligner may drop a zero-length phone (e.g. an l before a stop closure), never add one
            spoken = [s.label for s in alignments[r["filename"]] if s.label != SILENCE]
            assert len(spoken) <= int(r["length"])
        for pair_id in {r["id"] for r in rows}:
            members = [r for r in rows if r["id"] == pair_id]
            assert len({r["length"] for r in members}) == 1  # non-word as long as its word
            assert len({r["word"] for r in members if r["correct"] == "1"}) == 1
        words[split] = {r["word"] for r in rows if r["correct"] == "1"}
    assert not words["dev"] & words["test"]
    assert len(list((sets / "lexical" / "dev").glob("*.wav"))) == 16


def test_syntactic_gold_files(sets: Path) -> None:
    from speechunits.synth.syntax import SUBTYPES, parses

    for split in ("dev", "test"):
        header, rows = _gold(sets / "syntactic" / split / "gold.csv")
        assert header == SYNTACTIC_HEADER
        _check_pairing(rows, {"v00", "v01"})
        assert {(r["type"], r["subtype"]) for r in rows} == set(SUBTYPES)
        for r in rows:
            assert parses(r["transcription"]) is (r["correct"] == "1")
            assert (sets / "syntactic" / split / f"{r['filename']}.wav").is_file()


def test_sets_are_byte_identical_for_a_seed(sets: Path, tmp_path: Path) -> None:
    write_lexical(tmp_path, pairs=4, voices=2, seed=0, workers=1, quiet=True)
    assert _files(tmp_path / "lexical") == _files(sets / "lexical")
    write_lexical(tmp_path / "other", pairs=4, voices=2, seed=1, workers=2, quiet=True)
    assert _files(tmp_path / "other" / "lexical")["dev/gold.csv"] != _files(sets / "lexical")["dev/gold.csv"]


def test_half_written_set_is_replaced_and_finished_one_refused(tmp_path: Path) -> None:
    stale = tmp_path / ".syntactic.partial" / "dev"
    stale.mkdir(parents=True)
    (stale / "junk.wav").write_bytes(b"half")
    write_syntactic(tmp_path, pairs=1, voices=1, seed=0, workers=2, quiet=True)
    assert not (tmp_path / ".syntactic.partial").exists()
    assert not (tmp_path / "syntactic" / "dev" / "junk.wav").exists()
    with pytest.raises(SpeechUnitsError, match="already exists"):
        write_syntactic(tmp_path, pairs=1, voices=1, seed=0, quiet=True)


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parallel") / "esen"
    return synthesize_parallel(out, source="es", target="en", minutes=0.25, speakers=2, seed=0, workers=2,
                               quiet=True)


def test_parallel_pairs_resolve_and_heldout_is_new(parallel: Path) -> None:
    rows = read_parallel_pairs(parallel / "pairs.tsv")
    header = (parallel / "pairs.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert header == ["id", "source", "target", "source_text", "target_text", "split"]
    corpora = {side: {u.id: u for u in open_corpus(parallel / lang / "manifest.tsv")}
               for side, lang in (("source", "es"), ("target", "en"))}
    texts = {side: dict(line.split("\t") for line in (parallel / lang / "text.tsv").read_text().splitlines())
             for side, lang in (("source", "es"), ("target", "en"))}
    speakers = {side: dict(line.split("\t") for line in (parallel / lang / "speakers.tsv").read_text().splitlines())
                for side, lang in (("source", "es"), ("target", "en"))}
    for side in ("source", "target"):
        assert sorted(r[side] for r in rows) == sorted(corpora[side])  # every utterance in exactly one pair
        assert all(texts[side][r[side]] == r[f"{side}_text"] for r in rows)
    assert all(speakers["source"][r["source"]] != speakers["target"][r["target"]] for r in rows)
    splits = Counter(r["split"] for r in rows)
    assert set(splits) == {"train", "dev", "test"} and splits["dev"] >= 1 and splits["test"] >= 1
    train = [r for r in rows if r["split"] == "train"]
    train_words = {w for r in train for w in r["target_text"].lower().rstrip(".").split()}
    for r in rows:
        if r["split"] != "train":
            assert r["source_text"] not in {t["source_text"] for t in train}
            assert r["target_text"] not in {t["target_text"] for t in train}
            assert set(r["target_text"].lower().rstrip(".").split()) <= train_words  # seen words only
    phones = load_alignments(parallel / "en")
    assert set(phones) == set(corpora["target"])


def test_parallel_is_deterministic_and_resumes_a_half_written_dir(parallel: Path, tmp_path: Path) -> None:
    out = tmp_path / "esen"
    (out / "es" / "wavs").mkdir(parents=True)
    (out / "es" / "wavs" / "junk.wav").write_bytes(b"half")
    (out / ".incomplete").write_text("")
    synthesize_parallel(out, source="es", target="en", minutes=0.25, speakers=2, seed=0, workers=1, quiet=True)
    a, b = _files(parallel), _files(out)
    assert sorted(a) == sorted(b) and ".incomplete" not in b
    for rel in a:
        if not rel.endswith("manifest.tsv"):  # line 1 of a manifest is the absolute wavs root
            assert a[rel] == b[rel], rel
    with pytest.raises(SpeechUnitsError, match="exists and is not empty"):
        synthesize_parallel(out, source="es", target="en", minutes=0.25, speakers=2, quiet=True)


def test_cli_sets_and_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["synth", "syntactic", str(tmp_path / "s"), "--pairs", "1", "--voices", "1", "--quiet"]) == 0
    assert (tmp_path / "s" / "syntactic" / "test" / "gold.csv").is_file()
    assert "--language 'xx'" in cli_error(["synth", "lexical", str(tmp_path / "x"), "--language", "xx"], caplog)
    assert "fewer than 2 x 5000" in cli_error(["synth", "lexical", str(tmp_path / "x"), "--pairs", "5000"], caplog)
    assert "exists for en only" in cli_error(["synth", "syntactic", str(tmp_path / "x"), "--language", "es"], caplog)
    assert "--minutes does not apply" in cli_error(["synth", "lexical", str(tmp_path / "x"), "--minutes", "1"],
                                                   caplog)
    assert "expected OUT or one of" in cli_error(["synth", "bogus", str(tmp_path / "x")], caplog)
    assert "--pairs must be >= 1" in cli_error(["synth", "lexical", str(tmp_path / "x"), "--pairs", "0"], caplog)
    assert "are both 'en'" in cli_error(["synth", "parallel", str(tmp_path / "p"), "--source", "en"], caplog)
    assert "--target 'xx'" in cli_error(["synth", "parallel", str(tmp_path / "p"), "--target", "xx"], caplog)
    assert "at most 6 distinct unseen voices" in cli_error(["synth", "lexical", str(tmp_path / "x"), "--voices",
                                                             "9"], caplog)
    assert not (tmp_path / "x").exists() and not (tmp_path / "p").exists()


def test_speaker_info_round_trip_and_bad_files(tmp_path: Path) -> None:
    speakers = sample_speakers(5, ["en", "es"], seed=3)
    write_speaker_info(tmp_path / "info.tsv", speakers)
    assert read_speaker_info(tmp_path / "info.tsv") == speakers
    bad = tmp_path / "bad.tsv"
    for text, message in (("speaker\tvoice\nx\ty\n", "the header must be"),
                          ("\t".join(SPEAKER_INFO_COLUMNS) + "\nen00\ten\ten-us+m1\t40\t50\n", "expected 6"),
                          ("\t".join(SPEAKER_INFO_COLUMNS) + "\nen00\ten\ten-us+m1\thigh\t50\t160\n", "integers"),
                          ("\t".join(SPEAKER_INFO_COLUMNS) + "\n", "no speakers")):
        bad.write_text(text)
        with pytest.raises(SpeechUnitsError, match=message):
            read_speaker_info(bad)
    with pytest.raises(SpeechUnitsError, match=r"missing.tsv: speaker info file .* not found"):
        read_speaker_info(tmp_path / "missing.tsv")


def test_sets_in_voices_of_a_corpus(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus_speakers = sample_speakers(3, ["en"], seed=1)
    info = tmp_path / "speaker_info.tsv"
    write_speaker_info(info, corpus_speakers)
    write_lexical(tmp_path / "zr", pairs=2, voices=2, seed=0, workers=2, quiet=True, voices_from=info)
    _, rows = _gold(tmp_path / "zr" / "lexical" / "dev" / "gold.csv")
    _check_pairing(rows, {"en00", "en01"})
    assert read_speaker_info(tmp_path / "zr" / "lexical" / "voices.tsv") == corpus_speakers[:2]
    assert all(is_corpus_speaker(s) for s in corpus_speakers)
    meta = json.loads((tmp_path / "zr" / "lexical" / "lexical.json").read_text())
    assert meta["voices_from"] == str(info)
    # the same words and non-words as the set in unseen voices of the same seed
    write_lexical(tmp_path / "unseen", pairs=2, voices=2, seed=0, workers=2, quiet=True)
    _, unseen = _gold(tmp_path / "unseen" / "lexical" / "dev" / "gold.csv")
    assert {(r["id"], r["word"]) for r in rows} == {(r["id"], r["word"]) for r in unseen}
    assert main(["synth", "syntactic", str(tmp_path / "s"), "--pairs", "1", "--voices", "1", "--voices-from",
                 str(info), "--quiet"]) == 0
    _, rows = _gold(tmp_path / "s" / "syntactic" / "test" / "gold.csv")
    assert {r["voice"] for r in rows} == {"en00"}
    assert "lists only 3 speakers" in cli_error(["synth", "lexical", str(tmp_path / "x"), "--voices", "4",
                                                 "--voices-from", str(info)], caplog)
    mixed = tmp_path / "mixed.tsv"
    write_speaker_info(mixed, sample_speakers(2, ["es", "en"], seed=0))
    assert "speak another language than 'en'" in cli_error(["synth", "lexical", str(tmp_path / "x"),
                                                             "--voices-from", str(mixed)], caplog)
    assert "--voices-from does not apply" in cli_error(["synth", str(tmp_path / "x"), "--voices-from",
                                                         str(info)], caplog)
    assert not (tmp_path / "x").exists()


def test_lexical_set_in_a_carrier_phrase(sets: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["synth", "lexical", str(tmp_path / "c"), "--pairs", "4", "--voices", "2", "--carrier",
                 "She said {} twice.", "--quiet"]) == 0
    meta = json.loads((tmp_path / "c" / "lexical" / "lexical.json").read_text())
    assert meta["carrier"] == "She said {} twice."
    assert meta["carrier_phones_before"] == ["ʃ", "iː", "s", "ɛ", "d"]  # espeak-ng's "she said", by hand
    assert meta["carrier_phones_after"] == ["t", "w", "aɪ", "s"]
    for split in ("dev", "test"):
        _, alone = _gold(sets / "lexical" / split / "gold.csv")
        _, framed = _gold(tmp_path / "c" / "lexical" / split / "gold.csv")
        # the same items and gold columns (the item's own phones); only the file names differ
        drop = lambda rows: [{k: v for k, v in r.items() if k != "filename"} for r in rows]  # noqa: E731
        assert drop(framed) == drop(alone)
        assert not {r["filename"] for r in framed} & {r["filename"] for r in alone}
        alignments = load_alignments(tmp_path / "c" / "lexical" / split / "phones.tsv")
        for a, f in zip(alone, framed):
            seconds = {row["filename"]: sf.info(folder / f"{row['filename']}.wav").duration
                       for row, folder in ((a, sets / "lexical" / split), (f, tmp_path / "c" / "lexical" / split))}
            assert seconds[f["filename"]] > seconds[a["filename"]] + 0.4  # five + four more phones
            spoken = [s.label for s in alignments[f["filename"]] if s.label != SILENCE]
            assert spoken[:5] == meta["carrier_phones_before"] and spoken[-4:] == meta["carrier_phones_after"]
    # "her" before a word that starts with a vowel ("enormous") gets espeak-ng's linking r: refused
    assert "choose another --carrier" in cli_error(["synth", "lexical", str(tmp_path / "x"), "--pairs", "4",
                                                    "--voices", "1", "--carrier", "her {}"], caplog)
    assert not any((tmp_path / "x").iterdir())  # no half-written set left behind
    (tmp_path / "x").rmdir()
    for carrier, message in (("no slot", "needs exactly one"), ("{} and {}", "needs exactly one"),
                             ("{} 42!", "has no word besides")):
        assert message in cli_error(["synth", "lexical", str(tmp_path / "x"), "--carrier", carrier], caplog)
    assert "--carrier does not apply" in cli_error(["synth", "syntactic", str(tmp_path / "x"), "--carrier",
                                                    "a {}"], caplog)
    assert not (tmp_path / "x").exists()

"""Label files that name utterances differently from the audio (``flac/u1`` against ``u1``).

A folder scan names an utterance by its path below the folder (``wavs/en00_0000`` for a synth
corpus folder, ``19/198/19-198-0001`` for LibriSpeech), while label files name it by file name. The
expectations here are hand-made id lists and, for the commands, the same command run on ids that
match exactly (a store encoded from the corpus's manifest): both must give the same figures.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest

from speechunits.cli.main import main
from speechunits.corpus import read_speakers
from speechunits.id_match import match_ids, named_by, rekey
from speechunits.synth.testing import as_librispeech_tree, small_corpus
from conftest import cli_error, write_tone


def test_exact_ids_win_and_nothing_else_is_tried_when_one_is_shared() -> None:
    # 'wavs/b' would match 'b' by its ending, but 'a' is shared: only exact ids match
    assert match_ids(["a", "wavs/b"], ["a", "b"]) == {"a": "a"}
    assert match_ids(["a", "b"], ["b", "c"]) == {"b": "b"}


def test_endings_match_either_way_round_and_across_folders() -> None:
    assert match_ids(["flac/x", "flac/y"], ["y", "x", "z"]) == {"flac/x": "x", "flac/y": "y"}
    assert match_ids(["x"], ["wavs/x"]) == {"x": "wavs/x"}
    assert match_ids(["flac/x"], ["wavs/x"]) == {"flac/x": "wavs/x"}
    librispeech = ["19/198/19-198-0001", "19/198/19-198-0002", "84/121123/84-121123-0000"]
    assert match_ids(librispeech, ["19-198-0001", "84-121123-0000"]) == {
        "19/198/19-198-0001": "19-198-0001", "84/121123/84-121123-0000": "84-121123-0000"}


def test_the_longest_shared_ending_is_taken() -> None:
    # TIMIT-like: 'SA1' ends every speaker's file; 'DR1/FCJF0/SA1' is one of them
    ours = ["TRAIN/DR1/FCJF0/SA1", "TRAIN/DR1/MDAB0/SA1"]
    assert match_ids(ours, ["DR1/FCJF0/SA1", "DR1/MDAB0/SA1"]) == {
        "TRAIN/DR1/FCJF0/SA1": "DR1/FCJF0/SA1", "TRAIN/DR1/MDAB0/SA1": "DR1/MDAB0/SA1"}


def test_an_ending_shared_by_several_ids_matches_none(caplog) -> None:
    # two of ours end in 'x': neither may take the label of 'x'; 'y' is unambiguous
    with caplog.at_level(logging.WARNING, logger="speechunits.id_match"):
        assert match_ids(["a/x", "b/x", "a/y"], ["x", "y"]) == {"a/y": "y"}
    # two label ids end in 'x': ours matches neither
    assert match_ids(["flac/x"], ["a/x", "b/x"]) == {}
    assert "2 id(s) end like several utterances and match none (e.g. 'a/x', 'b/x')" in caplog.text
    # an ending is made of whole path parts, not characters
    assert match_ids(["wavs/ab"], ["b"]) == {} and match_ids(["wavs/a"], ["avs/a"]) == {"wavs/a": "avs/a"}
    assert match_ids(["a", "b"], ["c", "d"]) == {} and match_ids([], ["a"]) == {} and match_ids(["a"], []) == {}


def test_the_log_says_when_ids_were_matched_by_their_endings(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="speechunits.id_match"):
        match_ids(["flac/x"], ["x"], "phones.tsv")
    assert "phones.tsv: no utterance id in common; 1 of 1 matched" in caplog.text and "'flac/x' = 'x'" in caplog.text


def test_rekey_gives_the_table_under_our_ids() -> None:
    assert rekey({"x": 1, "y": 2, "z": 3}, ["wavs/y", "wavs/x", "wavs/q"]) == {"wavs/y": 2, "wavs/x": 1}


def test_named_by_keeps_a_table_whose_ids_are_ours_whole() -> None:
    table = {"x": 1, "y": 2, "z": 3}
    assert named_by(table, ["x", "q"]) == table  # ids in common: every row kept, 'y' and 'z' too
    assert named_by(table, ["p", "q"]) == table  # nothing matches: the caller reports it
    assert named_by(table, ["wavs/y", "wavs/x"]) == {"wavs/y": 2, "wavs/x": 1}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(corpus, store of the corpus folder, store of its manifest), MFCC K=8."""
    corpus = small_corpus(tmp_path_factory.mktemp("id-match"), minutes=0.5, speakers=2)
    out = corpus.parent
    assert main(["fit", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--layer", "0", "--k", "8",
                 "-o", str(out / "cb"), "--quiet"]) == 0
    for name, source in (("by_folder", corpus), ("by_manifest", corpus / "manifest.tsv")):
        assert main(["encode", str(source), "--codebook", str(out / "cb"), "-o", str(out / name), "--quiet"]) == 0
    return corpus, out / "by_folder", out / "by_manifest"


def _json_out(argv: list[str], capsys) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_of_a_folder_encoding_equals_that_of_the_manifest(encoded, capsys) -> None:
    corpus, by_folder, by_manifest = encoded
    folder = _json_out(["evaluate", str(by_folder), "--alignments", str(corpus / "phones.tsv"), "--json"], capsys)
    manifest = _json_out(["evaluate", str(by_manifest), "--alignments", str(corpus / "phones.tsv"), "--json"], capsys)
    assert folder["utterances"] > 0 and folder == pytest.approx(manifest, rel=1e-12)  # (phones met in another order)


def test_abx_of_a_folder_encoding_equals_that_of_the_manifest(encoded, capsys) -> None:
    corpus, by_folder, by_manifest = encoded
    argv = ["--alignments", str(corpus / "phones.tsv"), "--json", "--quiet"]
    folder = _json_out(["abx", str(by_folder), *argv], capsys)
    manifest = _json_out(["abx", str(by_manifest), *argv], capsys)
    assert folder["num_items_used"] > 0 and folder == manifest


def test_sweep_on_the_corpus_folder_reads_every_utterance_with_its_labels(encoded, tmp_path: Path) -> None:
    # (the folder and the manifest list the utterances in another order, so k-means samples other
    # frames: the counts agree, the figures need not)
    corpus = encoded[0]
    rows = {}
    for name, source in (("folder", corpus), ("manifest", corpus / "manifest.tsv")):
        assert main(["sweep", str(source), "--encoder", "mfcc", "--layers", "0", "--k", "4", "--abx",
                     "--alignments", str(corpus / "phones.tsv"), "-o", str(tmp_path / name), "--quiet"]) == 0
        with open(tmp_path / name / "results.csv") as handle:
            rows[name] = next(csv.DictReader(handle))
        assert "(12 aligned utterances)" in (tmp_path / name / "report.md").read_text()
    for column in ("labelled_frames", "fit_frames", "h_phone"):
        assert rows["folder"][column] == rows["manifest"][column]
    assert rows["folder"]["abx_across"] != ""  # the speakers file matched too


def test_a_probe_reads_units_of_the_corpus_folder(encoded, tmp_path: Path, capsys) -> None:
    corpus, by_folder, by_manifest = encoded
    results = {}
    for name, store in (("folder", by_folder), ("manifest", by_manifest)):
        assert main(["probe", "train", "phones", str(corpus / "manifest.tsv"), "--units", str(store),
                     "-o", str(tmp_path / name), "--max-steps", "4", "--device", "cpu", "--quiet"]) == 0
        results[name] = json.loads((tmp_path / name / "probe.json").read_text())["dev"]
    assert results["folder"] == results["manifest"]


def test_a_probe_on_the_corpus_folder_finds_its_labels(encoded, tmp_path: Path) -> None:
    corpus = encoded[0]
    assert main(["probe", "train", "speaker", str(corpus), "--encoder", "mfcc", "-o", str(tmp_path / "p"),
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0


def test_nothing_in_common_is_still_an_error(encoded, tmp_path: Path, caplog) -> None:
    by_folder = encoded[1]
    other = tmp_path / "phones.tsv"
    other.write_text("elsewhere\t0.0\t0.5\ta\nelsewhere\t0.5\t1.0\tb\n")
    message = cli_error(["evaluate", str(by_folder), "--alignments", str(other)], caplog)
    assert "no utterance in common" in message and "elsewhere" in message


@pytest.fixture(scope="module")
def folder_corpus(encoded, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus without its manifest: audio under wavs/, label files beside it (ivr-prompts-en's layout)."""
    corpus = encoded[0]
    out = tmp_path_factory.mktemp("folder") / "corpus"
    shutil.copytree(corpus, out)
    (out / "manifest.tsv").unlink()
    return out


def test_tts_trains_on_a_folder_whose_labels_name_files(encoded, folder_corpus: Path, tmp_path: Path, capsys) -> None:
    codebook = encoded[1].parent / "cb"
    capsys.readouterr()
    assert main(["tts", "train", str(folder_corpus), "--codebook", str(codebook), "-o", str(tmp_path / "tts"),
                 "--steps", "2", "--model", "dim=32,heads=2,ffn=64,encoder_layers=1,decoder_layers=1,"
                 "duration_hidden=32,ar_hidden=32", "--no-bf16", "--threads", "1", "--quiet", "--device", "cpu",
                 "--warmup-steps", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["speakers"] == 2 and summary["train_utterances"] + summary["heldout_utterances"] == 12


def test_vocoder_speaker_table_of_a_folder_whose_speakers_file_names_files(encoded, folder_corpus: Path,
                                                                           tmp_path: Path) -> None:
    codebook = encoded[1].parent / "cb"
    assert main(["vocoder", "train", str(folder_corpus), "--codebook", str(codebook), "-o", str(tmp_path / "voc"),
                 "--size", "tiny", "--speaker", "table", "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    assert json.loads((tmp_path / "voc" / "vocoder.json").read_text())["speakers"] == ["en00", "en01"]


def test_lm_interleaves_words_of_a_folder_encoding(encoded, tmp_path: Path) -> None:
    corpus, by_folder, by_manifest = encoded
    for name, store in (("folder", by_folder), ("manifest", by_manifest)):
        assert main(["lm", "train", str(store), "-o", str(tmp_path / name), "--config", "tiny", "--steps", "1",
                     "--interleave", str(corpus / "textgrids"), "--device", "cpu", "--quiet"]) == 0
    metas = [json.loads((tmp_path / name / "lm.json").read_text())["interleave"]
             for name in ("folder", "manifest")]
    assert metas[0]["utterances"] == metas[1]["utterances"] == 12


@pytest.fixture(scope="module")
def librispeech_tree(encoded, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The corpus laid out as LibriSpeech is (:func:`~speechunits.synth.testing.as_librispeech_tree`);
    returns (root, {LibriSpeech id: text as its transcript says it})."""
    corpus = encoded[0]
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines() if line)
    root = tmp_path_factory.mktemp("LibriSpeech") / "dev-clean"
    original = as_librispeech_tree(corpus, root)
    return root, {new: " ".join(texts[utt].upper().split()) for new, utt in original.items()}


def test_sweep_on_a_librispeech_tree_scores_abx_across_its_speakers(encoded, librispeech_tree, tmp_path: Path) -> None:
    """Speakers from the tree's ids (no speakers.tsv anywhere), alignments named by LibriSpeech ids."""
    corpus = encoded[0]
    root = librispeech_tree[0]
    by_speaker: dict[str, list[str]] = {}
    for utt, speaker in sorted(read_speakers(corpus / "speakers.tsv").items()):
        by_speaker.setdefault(speaker, []).append(utt)
    renamed = {utt: f"{100 + number}-2000-{index:04d}" for number, (_, utts) in enumerate(sorted(by_speaker.items()))
               for index, utt in enumerate(utts)}
    lines = [line.split("\t") for line in (corpus / "phones.tsv").read_text().splitlines() if line]
    alignments = tmp_path / "alignments" / "phones.tsv"
    alignments.parent.mkdir()
    alignments.write_text("".join("\t".join([renamed[f[0]], *f[1:]]) + "\n" for f in lines))
    assert main(["sweep", str(root), "--encoder", "mfcc", "--layers", "0", "--k", "4", "--abx", "--alignments",
                 str(alignments), "-o", str(tmp_path / "report"), "--quiet"]) == 0
    with open(tmp_path / "report" / "results.csv") as handle:
        row = next(csv.DictReader(handle))
    assert row["abx_across"] != ""  # (within-speaker ABX has too few items in this small corpus)


def test_librispeech_transcripts_are_read_from_the_tree(librispeech_tree) -> None:
    from speechunits.probe.labels import find_label_files, read_transcripts

    from speechunits.corpus import read_speakers

    root, expected = librispeech_tree
    assert find_label_files(root)["transcripts"] == find_label_files(root)["speakers"] == root
    assert read_transcripts(root) == expected
    assert read_speakers(root) == {utt: utt.split("-")[0] for utt in expected}


def test_a_speaker_probe_trains_on_a_librispeech_tree(librispeech_tree, tmp_path: Path) -> None:
    root = librispeech_tree[0]
    assert main(["probe", "train", "speaker", str(root), "--encoder", "mfcc", "-o", str(tmp_path / "spk"),
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    assert json.loads((tmp_path / "spk" / "probe.json").read_text())["missing_labels"] == 0


def test_an_asr_probe_trains_on_a_librispeech_tree(librispeech_tree, tmp_path: Path) -> None:
    root, expected = librispeech_tree
    assert main(["probe", "train", "asr", str(root), "--encoder", "mfcc", "-o", str(tmp_path / "asr"),
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((tmp_path / "asr" / "probe.json").read_text())
    assert meta["missing_labels"] == 0
    split = json.loads((tmp_path / "asr" / "split.json").read_text())
    assert sorted(u.rsplit("/", 1)[-1] for part in split.values() if isinstance(part, list) for u in part) == \
        sorted(expected)


def test_a_chapter_listed_twice_is_named(tmp_path: Path) -> None:
    from speechunits.errors import SpeechUnitsError
    from speechunits.probe.labels import read_transcripts

    for chapter in ("1", "2"):
        (tmp_path / chapter).mkdir()
        (tmp_path / chapter / f"19-{chapter}.trans.txt").write_text("19-198-0001 HELLO\n")
    with pytest.raises(SpeechUnitsError, match=r"2/19-2.trans.txt: utterance '19-198-0001' is also in another"):
        read_transcripts(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpeechUnitsError, match="no LibriSpeech or LibriTTS transcripts"):
        read_transcripts(empty)


def test_a_libritts_tree_and_ljspeech_metadata(tmp_path: Path) -> None:
    """LibriTTS: ``SPK/CHAP/SPK_CHAP_*.wav`` with ``SPK_CHAP.trans.tsv`` (id, original, normalised text);
    LJSpeech: ``wavs/*.wav`` with ``metadata.csv`` (id|text|normalised text)."""
    from speechunits.corpus import read_speakers
    from speechunits.probe.labels import find_label_files, read_transcripts

    libritts = tmp_path / "LibriTTS" / "dev-clean"
    chapter = libritts / "84" / "121123"
    chapter.mkdir(parents=True)
    for utt in ("84_121123_000007_000001", "84_121123_000008_000000"):
        write_tone(chapter / f"{utt}.wav", 0.3)
    (chapter / "84_121123.trans.tsv").write_text("84_121123_000007_000001\tDr. Smith's 2 cats.\tDoctor Smith's two cats.\n"
                                                 "84_121123_000008_000000\tHe left.\tHe left.\n")
    assert find_label_files(libritts) == {"transcripts": libritts, "speakers": libritts}
    assert read_transcripts(libritts) == {"84_121123_000007_000001": "Doctor Smith's two cats.",
                                          "84_121123_000008_000000": "He left."}
    assert set(read_speakers(libritts).values()) == {"84"}
    lj = tmp_path / "LJSpeech-1.1"
    (lj / "wavs").mkdir(parents=True)
    write_tone(lj / "wavs" / "LJ001-0001.wav", 0.3)
    (lj / "metadata.csv").write_text("LJ001-0001|Printing, in 1450, began|Printing, in fourteen fifty, began\n"
                                     "LJ001-0002|in being comparatively modern.|\n")
    assert find_label_files(lj) == {"transcripts": lj / "metadata.csv"}
    assert read_transcripts(lj / "metadata.csv") == {"LJ001-0001": "Printing, in fourteen fifty, began",
                                                     "LJ001-0002": "in being comparatively modern."}


def test_a_vctk_corpus_labels_both_microphones(tmp_path: Path) -> None:
    """VCTK 0.92: ``wav48_silence_trimmed/SPK/SPK_NNN_mic{1,2}.flac`` and ``txt/SPK/SPK_NNN.txt``; a sentence
    without text (p315) is unlabelled. 0.80: ``wav48/SPK/SPK_NNN.wav``."""
    from speechunits.corpus import open_corpus, read_speakers
    from speechunits.probe.labels import find_label_files, read_transcripts

    root = tmp_path / "VCTK-Corpus-0.92"
    for speaker, sentences in (("p225", {"p225_001": "Please call Stella.", "p225_002": "Ask her to bring these."}),
                               ("p315", {"p315_001": None})):
        (root / "wav48_silence_trimmed" / speaker).mkdir(parents=True)
        (root / "txt" / speaker).mkdir(parents=True, exist_ok=True)
        for sentence, text in sentences.items():
            for mic in (1, 2):
                write_tone(root / "wav48_silence_trimmed" / speaker / f"{sentence}_mic{mic}.flac", 0.2)
            if text is not None:
                (root / "txt" / speaker / f"{sentence}.txt").write_text(text + "\n")
    assert find_label_files(root) == {"transcripts": root, "speakers": root}
    assert read_transcripts(root) == {"p225_001_mic1": "Please call Stella.", "p225_001_mic2": "Please call Stella.",
                                      "p225_002_mic1": "Ask her to bring these.",
                                      "p225_002_mic2": "Ask her to bring these."}
    speakers = read_speakers(root)
    assert speakers["p315_001_mic2"] == "p315" and len(speakers) == 6
    ids = [u.id for u in open_corpus(root)]
    assert match_ids(ids, read_transcripts(root), "vctk")["wav48_silence_trimmed/p225/p225_002_mic2"] == "p225_002_mic2"
    # one microphone: a glob of its files is the corpus, the root the labels
    one_mic = [u.id for u in open_corpus(f"{root}/wav48_silence_trimmed/*/*_mic2.flac")]
    assert one_mic == ["p225_001_mic2", "p225_002_mic2", "p315_001_mic2"]
    assert read_transcripts(root)["p225_002_mic2"] == "Ask her to bring these." and read_speakers(root)["p225_001_mic2"] == "p225"
    old = tmp_path / "VCTK-Corpus"
    (old / "wav48" / "p225").mkdir(parents=True)
    (old / "txt" / "p225").mkdir(parents=True)
    write_tone(old / "wav48" / "p225" / "p225_001.wav", 0.2)
    (old / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\n")
    assert read_transcripts(old) == {"p225_001": "Please call Stella."}


def test_librispeech_splits_given_as_one_pattern_keep_their_split(librispeech_tree, tmp_path: Path) -> None:
    """``'LibriSpeech/{train-clean-100,dev-clean,test-clean}'``: three trees, each with its transcripts."""
    import json

    from conftest import probes_train_on

    root, expected = librispeech_tree
    part_of = {name: ("dev-clean" if int(name[-4:]) % 5 == 3 else "test-clean" if int(name[-4:]) % 5 == 4
                      else "train-clean-100") for name in expected}
    books = tmp_path / "LibriSpeech"
    for name, part in part_of.items():
        speaker, chapter, _ = name.split("-")
        folder = books / part / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / speaker / chapter / f"{name}.wav", folder / f"{name}.wav")
        with (folder / f"{speaker}-{chapter}.trans.txt").open("a") as handle:
            handle.write(f"{name} {expected[name]}\n")
    pattern = f"{books}/{{train-clean-100,dev-clean,test-clean}}"
    probes_train_on(pattern, tmp_path, {"asr": []})
    saved = json.loads((tmp_path / "asr" / "split.json").read_text())
    assert saved["info"]["by"] == "dataset"
    assert sorted(u.rsplit("/", 1)[1] for u in saved["test"]) == sorted(n for n, p in part_of.items() if p == "test-clean")

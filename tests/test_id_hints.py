"""Ids that differ only by a leading folder: the error says so and names the fix.

Encoding a synth corpus *folder* gives ids like ``wavs/en00_0000``, while its ``phones.tsv`` and
``manifest.tsv`` say ``en00_0000``; the commands that match the two must say why nothing matched.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from speechunits.cli.main import main
from speechunits.corpus import disjoint_ids_hint
from speechunits.synth.testing import small_corpus
from conftest import cli_error


def test_hint_names_the_folder_either_way_round() -> None:
    hint = disjoint_ids_hint(["wavs/b", "wavs/a"], ["a", "b", "c"])
    assert "'wavs/a' are 'a' behind the folder 'wavs/'" in hint
    assert "'wavs/a' are 'a'" in disjoint_ids_hint(["a"], ["wavs/a"])
    assert "behind the folder 'x/y/'" in disjoint_ids_hint(["x/y/a"], ["a"])


def test_no_hint_for_unrelated_ids_or_a_shared_suffix_that_is_not_a_whole_id() -> None:
    assert disjoint_ids_hint(["a", "b"], ["c", "d"]) == ""
    assert disjoint_ids_hint(["wavs/a"], ["s/a"]) == ""  # 's/a' is no whole tail of 'wavs/a'
    assert disjoint_ids_hint([], ["a"]) == ""


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(corpus, store of the corpus folder, store of its manifest), MFCC K=8."""
    corpus = small_corpus(tmp_path_factory.mktemp("id-hints"), minutes=0.5, speakers=2)
    out = corpus.parent
    assert main(["fit", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--layer", "0", "--k", "8",
                 "-o", str(out / "cb"), "--quiet"]) == 0
    for name, source in (("by_folder", corpus), ("by_manifest", corpus / "manifest.tsv")):
        assert main(["encode", str(source), "--codebook", str(out / "cb"), "-o", str(out / name), "--quiet"]) == 0
    return corpus, out / "by_folder", out / "by_manifest"


def test_evaluate_says_why_a_folder_encoding_matches_no_alignment(encoded, caplog) -> None:
    corpus, by_folder, by_manifest = encoded
    message = cli_error(["evaluate", str(by_folder), "--alignments", str(corpus / "phones.tsv")], caplog)
    assert "no utterance in common" in message and "behind the folder 'wavs/'" in message
    assert "manifest.tsv" in message
    # the fix the message names works
    assert main(["evaluate", str(by_manifest), "--alignments", str(corpus / "phones.tsv"), "--json"]) == 0


def test_sweep_says_why_a_corpus_folder_matches_no_alignment(encoded, tmp_path: Path, caplog) -> None:
    corpus = encoded[0]
    message = cli_error(["sweep", str(corpus), "--encoder", "mfcc", "--layers", "0", "--k", "4",
                         "--alignments", str(corpus / "phones.tsv"), "-o", str(tmp_path / "report")], caplog)
    assert "no utterance in common" in message and "behind the folder 'wavs/'" in message


def test_probe_on_a_folder_encoding_says_why_no_utterance_has_input(encoded, tmp_path: Path, caplog) -> None:
    corpus, by_folder, _ = encoded
    message = cli_error(["probe", "train", "phones", str(corpus / "manifest.tsv"), "--units", str(by_folder),
                         "-o", str(tmp_path / "probe"), "--max-steps", "2", "--device", "cpu", "--quiet"], caplog)
    assert "0 training and 0 dev" in message and "behind the folder 'wavs/'" in message


def test_probe_on_a_corpus_folder_says_why_no_utterance_has_a_label(encoded, tmp_path: Path, caplog) -> None:
    corpus = encoded[0]
    message = cli_error(["probe", "train", "phones", str(corpus), "--encoder", "mfcc", "-o", str(tmp_path / "p"),
                         "--max-steps", "2", "--device", "cpu", "--quiet"], caplog)
    assert "has a phones label" in message and "behind the folder 'wavs/'" in message

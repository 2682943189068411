"""Common Voice TSVs as input: clips under ``clips/``, sentences and client ids as labels.

The expectation is a hand-written ``validated.tsv`` (Common Voice 17's columns) over the synthetic
corpus's audio, written as MP3 as Common Voice ships it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import soundfile as sf

from conftest import probes_train_on
from speechunits.corpus import open_corpus, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files, read_transcripts
from speechunits.synth.testing import small_corpus

HEADER = ("client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
          "gender", "accents", "variant", "locale", "segment")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, str]]:
    """(validated.tsv, {clip id: sentence}, {clip id: client id})."""
    corpus = small_corpus(tmp_path_factory.mktemp("cv-src"), minutes=0.5, speakers=2)
    root = tmp_path_factory.mktemp("cv") / "en"
    (root / "clips").mkdir(parents=True)
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines() if line)
    speakers = read_speakers(corpus / "speakers.tsv")
    rows, sentences, clients = ["\t".join(HEADER)], {}, {}
    for number, utt in enumerate(sorted(texts)):
        clip = f"common_voice_en_{4000 + number}"
        audio, rate = sf.read(corpus / "wavs" / f"{utt}.wav")
        sf.write(root / "clips" / f"{clip}.mp3", audio, rate, format="MP3")
        client = hashlib.sha512(speakers[utt].encode()).hexdigest()[:128]  # Common Voice's client ids are hex
        rows.append("\t".join([client, f"{clip}.mp3", f"s{number}", texts[utt], "", "2", "0", "", "", "", "",
                               "en", ""]))
        sentences[clip], clients[clip] = " ".join(texts[utt].split()), client
    (root / "validated.tsv").write_text("\n".join(rows) + "\n")
    return root / "validated.tsv", sentences, clients


def test_clips_sentences_and_speakers_are_read(release) -> None:
    tsv, sentences, clients = release
    utts = list(open_corpus(tsv))
    assert [u.id for u in utts] == list(sentences) and all(Path(u.path).is_file() for u in utts)
    assert find_label_files(tsv) == {"transcripts": tsv, "speakers": tsv}
    assert read_transcripts(tsv) == sentences and read_speakers(tsv) == clients


def test_probes_train_on_a_common_voice_tsv(release, tmp_path: Path) -> None:
    tsv = release[0]
    probes_train_on(tsv, tmp_path, {"asr": [], "speaker": []})


def test_a_row_with_missing_columns_is_named(tmp_path: Path) -> None:
    tsv = tmp_path / "train.tsv"
    tsv.write_text("\t".join(HEADER) + "\nabc\tx.mp3\tonly three\n")
    with pytest.raises(SpeechUnitsError, match=r"train.tsv:2: 3 columns, the header has 13"):
        list(open_corpus(tsv))

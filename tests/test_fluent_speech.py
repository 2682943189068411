"""Fluent Speech Commands' layout (SUPERB's intent classification) as it is published.

``data/{train,valid,test}_data.csv`` (a pandas index column, then ``path``, ``speakerId``,
``transcription``, ``action``, ``object``, ``location``) name ``wavs/speakers/SPK/FILE.wav`` from the
dataset's root. The expectation is the hand-written tree: the CSVs' rows are the utterances, the
intent is the three slots joined, and a probe over the three CSVs keeps them as its split.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import probes_train_on
from speechunits.corpus import open_corpus, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files, read_transcripts, read_utterance_labels
from speechunits.synth.testing import small_corpus

INTENTS = [("activate", "lights", "kitchen"), ("deactivate", "music", "none"), ("increase", "volume", "none")]


@pytest.fixture(scope="module")
def fsc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str, str]]]:
    corpus = small_corpus(tmp_path_factory.mktemp("fsc-src"), minutes=0.6, speakers=2)
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines() if line)
    speakers = read_speakers(corpus / "speakers.tsv")
    root = tmp_path_factory.mktemp("fsc") / "fluent_speech_commands_dataset"
    (root / "data").mkdir(parents=True)
    ids = sorted(texts)
    intent = {u: INTENTS[i % len(INTENTS)] for i, u in enumerate(ids)}
    parts = {"train": ids[:-4], "valid": ids[-4:-2], "test": ids[-2:]}
    for name, rows in parts.items():
        lines = [",path,speakerId,transcription,action,object,location"]
        for n, u in enumerate(rows):
            rel = f"wavs/speakers/{speakers[u]}/{u}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(corpus / "wavs" / f"{u}.wav", root / rel)
            lines.append(f'{n},{rel},{speakers[u]},"{texts[u]}",{",".join(intent[u])}')
        (root / "data" / f"{name}_data.csv").write_text("\n".join(lines) + "\n")
    return root, intent


def test_the_csvs_are_manifests_read_from_the_dataset_root(fsc) -> None:
    root, intent = fsc
    utts = list(open_corpus(root / "data" / "test_data.csv"))
    assert [u.id for u in utts] == sorted(intent)[-2:]
    assert all(Path(u.path).is_file() and Path(u.path).parent.parent.name == "speakers" for u in utts)
    found = find_label_files(root / "data" / "test_data.csv")
    assert set(found) == {"transcripts", "speakers"}
    assert set(read_transcripts(found["transcripts"])) == {u.id for u in utts}
    assert read_speakers(found["speakers"]) == {u.id: Path(u.path).parent.name for u in utts}
    labels = read_utterance_labels(f"{root}/data/test_data.csv::action+object+location")
    assert labels == {u.id: "+".join(intent[u.id]) for u in utts}
    with pytest.raises(SpeechUnitsError, match=r"no record has 'action' and 'mood'"):
        read_utterance_labels(f"{root}/data/test_data.csv::action+mood")


def test_an_intent_probe_over_the_three_csvs_keeps_their_split(fsc, tmp_path: Path) -> None:
    root, intent = fsc
    pattern = f"{root}/data/{{train,valid,test}}_data.csv"
    probes_train_on(pattern, tmp_path, {"classify": ["--labels", f"{pattern}::action+object+location"]})
    saved = json.loads((tmp_path / "classify" / "split.json").read_text())
    assert saved["info"]["by"] == "dataset"
    assert sorted(saved["dev"]) == sorted(intent)[-4:-2] and sorted(saved["test"]) == sorted(intent)[-2:]


def test_a_fold_column_gives_cross_validation_folds(tmp_path: Path) -> None:
    """ESC-50-style: a CSV manifest with ``path``, ``category`` and ``fold``; ``--fold K`` tests on fold K."""
    corpus = small_corpus(tmp_path / "src", minutes=0.6, speakers=2)
    wavs = sorted((corpus / "wavs").glob("*.wav"))
    lines = ["path,category,fold"] + [f"{w},{'dog' if i % 2 else 'rain'},{i % 3 + 1}" for i, w in enumerate(wavs)]
    manifest = tmp_path / "meta.csv"
    manifest.write_text("\n".join(lines) + "\n")
    from speechunits.cli.main import main

    assert main(["probe", "train", "classify", str(manifest), "--encoder", "mfcc", "-o", str(tmp_path / "p"),
                 "--labels", f"{manifest}::category", "--fold", "3", "--max-steps", "2", "--device", "cpu",
                 "--quiet"]) == 0
    saved = json.loads((tmp_path / "p" / "split.json").read_text())
    assert saved["info"]["by"] == "fold" and saved["info"]["fold"] == "3"
    assert sorted(saved["test"]) == sorted(w.stem for i, w in enumerate(wavs) if i % 3 == 2)
    assert len(saved["dev"]) == round(0.2 * (len(wavs) - len(saved["test"])))
    from speechunits.probe.train import train_probe_on_corpus

    with pytest.raises(SpeechUnitsError, match=r"--fold 9: the corpus's folds are 1, 2, 3"):
        train_probe_on_corpus("classify", manifest, None, tmp_path / "q", labels=f"{manifest}::category", fold=9)
    with pytest.raises(SpeechUnitsError, match=r"neither an IEMOCAP release nor a manifest or table with a 'fold'"):
        train_probe_on_corpus("classify", corpus / "wavs", None, tmp_path / "r", labels=f"{manifest}::category", fold=1)

"""ESC-50's layout as published: ``meta/esc50.csv`` (``filename,fold,target,category,...``) naming the
files of ``audio/``; five cross-validation folds.

The expectation is a hand-written copy of that layout over synthetic audio: the CSV's rows are the
utterances, ``category`` their class, and ``--fold K`` tests on the rows of fold K.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from speechunits.cli.main import main
from speechunits.corpus import open_corpus
from speechunits.probe.labels import read_utterance_labels
from speechunits.synth.testing import small_corpus


def test_esc50_reads_from_its_meta_csv_and_runs_a_fold(tmp_path: Path) -> None:
    corpus = small_corpus(tmp_path / "src", minutes=0.6, speakers=2)
    root = tmp_path / "ESC-50-master"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    expected = {}
    for i, wav in enumerate(sorted((corpus / "wavs").glob("*.wav"))):
        name = f"{i % 5 + 1}-{100000 + i}-A-{i % 2}.wav"
        shutil.copy(wav, root / "audio" / name)
        category = "dog" if i % 2 else "rain"
        rows.append(f"{name},{i % 5 + 1},{i % 2},{category},False,{100000 + i},A")
        expected[name[:-4]] = (category, str(i % 5 + 1))
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    csv = root / "meta" / "esc50.csv"
    utts = list(open_corpus(csv))
    assert [u.id for u in utts] == list(expected)
    assert all(Path(u.path).parent == (root / "audio").resolve() for u in utts)
    assert read_utterance_labels(f"{csv}::category") == {u: c for u, (c, _) in expected.items()}
    assert main(["probe", "train", "classify", str(csv), "--labels", f"{csv}::category", "--fold", "1", "--encoder",
                 "mfcc", "-o", str(tmp_path / "p"), "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    saved = json.loads((tmp_path / "p" / "split.json").read_text())
    assert sorted(saved["test"]) == sorted(u for u, (_, fold) in expected.items() if fold == "1")

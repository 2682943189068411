"""``speechunits qbe`` end to end: a QUESST-shaped tree of synthetic speech, MFCC features and units."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.search.quesst import Occurrence, write_ground_truth
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def quesst_tree(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """``quesst/{Audio,dev_queries,scoring}``: 12 synthetic utterances as documents; 4 dev queries
    cut from four of them (gain 0.7 and faint noise added), named in the ground truth with every
    document whose words include theirs. Returns the root and ``{query: the document it was cut from}``."""
    tmp = tmp_path_factory.mktemp("qbe")
    corpus = small_corpus(tmp)
    root = tmp / "quesst"
    (root / "Audio").mkdir(parents=True)
    (root / "dev_queries").mkdir()
    words: dict[str, list[tuple[float, float, str]]] = {}
    for row in csv.reader(open(corpus / "words.tsv", encoding="utf-8"), delimiter="\t"):
        words.setdefault(row[0], []).append((float(row[1]), float(row[2]), row[3].lower()))
    durations, cut_from = {}, {}
    rng = np.random.default_rng(0)
    for utt in sorted(words):
        audio, rate = sf.read(corpus / "wavs" / f"{utt}.wav", dtype="float32")
        doc = f"quesst14_{len(durations) + 1:05d}"
        sf.write(root / "Audio" / f"{doc}.wav", audio, rate)
        durations[doc] = len(audio) / rate
        long_words = [w for w in words[utt] if w[1] - w[0] >= 0.35]
        if len(cut_from) < 4 and long_words:
            start, end, _ = long_words[0]
            query = f"quesst14_dev_{len(cut_from) + 1:04d}"
            piece = 0.7 * audio[int(start * rate):int(end * rate)]
            sf.write(root / "dev_queries" / f"{query}.wav", piece + 0.003 * rng.normal(size=piece.shape).astype(np.float32), rate)
            cut_from[query] = (doc, long_words[0][2])
    doc_of_utt = dict(zip(sorted(words), durations))
    occurrences = [Occurrence(doc_of_utt[utt], query, s, e - s)
                   for query, (_, word) in cut_from.items() for utt in sorted(words)
                   for s, e, w in words[utt] if w == word]
    write_ground_truth(root / "scoring" / "groundtruth_quesst14_dev", "quesst14_dev", durations,
                       {q: w for q, (_, w) in cut_from.items()}, occurrences)
    return root, {q: d for q, (d, _) in cut_from.items()}


@pytest.fixture(scope="module")
def mfcc_features(quesst_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("feat") / "mfcc"
    assert main(["features", str(quesst_tree[0]), "--encoder", "mfcc", "-o", str(out), "--quiet"]) == 0
    return out


def test_qbe_on_features_finds_each_query_where_it_was_cut(quesst_tree, mfcc_features, tmp_path, capsys):
    root, cut_from = quesst_tree
    out = tmp_path / "qbe"
    # without SUPERB's per-document min-max rescaling: with it, on these MFCCs one exact copy of a
    # word loses to another document (the rescaling gives every document a perfect frame per row)
    assert main(["qbe", str(mfcc_features), "--quesst", str(root), "--split", "dev", "--no-minmax", "-o", str(out),
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["queries"] == 4 and metrics["documents"] == 12 and metrics["queries_scored"] == 4
    assert metrics["map"] > 0.5 and 0.0 <= metrics["mtwv"] <= 1.0
    # QUESST's scorer's prior; minCnxe below 1 (the ranking is worth something), never above Cnxe
    assert metrics["beta"] == pytest.approx(12.49) and metrics["effective_prior"] == pytest.approx(0.0741289, abs=1e-7)
    assert 0.0 <= metrics["min_cnxe"] < 1.0 and metrics["min_cnxe"] <= metrics["cnxe"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    rows = list(csv.DictReader(open(out / "scores.tsv", encoding="utf-8"), delimiter="\t"))
    assert len(rows) == 4 * 12
    for query, doc in cut_from.items():
        mine = [r for r in rows if r["query"] == query]
        best = max(mine, key=lambda r: float(r["score"]))
        assert best["document"] == doc
        assert 0.0 <= float(best["start_s"]) < float(best["end_s"])
    assert (out / "stdlist.xml").read_text(encoding="utf-8").count("<term ") == 4 * 12


def test_qbe_on_units_and_search_only(quesst_tree, mfcc_features, tmp_path, capsys, caplog):
    root, cut_from = quesst_tree
    codebook, store = tmp_path / "cb", tmp_path / "units"
    assert main(["fit", "--from-features", str(mfcc_features), "--k", "20", "-o", str(codebook), "--quiet"]) == 0
    assert main(["encode", str(root), "--codebook", str(codebook), "-o", str(store), "--quiet"]) == 0
    assert main(["qbe", str(store), "--truth", str(root / "scoring" / "groundtruth_quesst14_dev"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["queries_scored"] == 4 and metrics["map"] > 0.3
    # the same units compared by their centroids: the store's own codebook, checked
    assert main(["qbe", str(store), "--truth", str(root / "scoring" / "groundtruth_quesst14_dev"), "--codebook",
                 str(codebook), "--json"]) == 0
    by_centroid = json.loads(capsys.readouterr().out)
    assert by_centroid["queries_scored"] == 4 and by_centroid["map"] > 0.3
    other = tmp_path / "cb_other"
    assert main(["fit", "--from-features", str(mfcc_features), "--k", "12", "-o", str(other), "--quiet"]) == 0
    truth = str(root / "scoring" / "groundtruth_quesst14_dev")
    assert "holds units of codebook" in cli_error(["qbe", str(store), "--truth", truth, "--codebook", str(other)], caplog)
    assert "goes with a unit store" in cli_error(["qbe", str(mfcc_features), "--truth", truth, "--codebook",
                                                  str(codebook)], caplog)
    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"{q}\n" for q in cut_from))
    out = tmp_path / "search"
    assert main(["qbe", str(store), "--queries", str(queries), "-o", str(out)]) == 0
    assert "searched 4 queries in 12 documents" in capsys.readouterr().out
    assert not (out / "metrics.json").exists()


def test_qbe_errors(quesst_tree, mfcc_features, tmp_path, caplog):
    root, _ = quesst_tree
    truth = str(root / "scoring" / "groundtruth_quesst14_dev")
    assert "--split needs --quesst" in cli_error(["qbe", str(mfcc_features), "--truth", truth, "--split", "eval"], caplog)
    assert "--languages needs --quesst" in cli_error(["qbe", str(mfcc_features), "--truth", truth, "--languages", "x"], caplog)
    assert "groundtruth_*_eval" in cli_error(["qbe", str(mfcc_features), "--quesst", str(root), "--split", "eval"], caplog)
    other = tmp_path / "other.rttm"
    other.write_text("LEXEME nowhere 1 0 1 nothing lex <NA> <NA>\n")
    assert "nothing to search" in cli_error(["qbe", str(mfcc_features), "--truth", str(other)], caplog)
    queries = tmp_path / "q.txt"
    queries.write_text("quesst14_dev_0001\nnot_there\n")
    assert "1 of 2 query ids are not in" in cli_error(["qbe", str(mfcc_features), "--queries", str(queries)], caplog)
    assert "layer number or 'all'" in cli_error(["qbe", str(mfcc_features), "--truth", truth, "--layer", "x"], caplog)


def test_qbe_sweeps_the_layers_of_a_features_directory(quesst_tree, tiny_hubert_dir, tmp_path, capsys):
    root, _ = quesst_tree
    feats = tmp_path / "tiny"
    assert main(["features", str(root), "--encoder", str(tiny_hubert_dir), "--layers", "0-2", "-o", str(feats),
                 "--quiet"]) == 0
    out = tmp_path / "sweep"
    assert main(["qbe", str(feats), "--quesst", str(root), "--layer", "all", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["layers"]) == ["0", "1", "2"]
    best = max(report["layers"], key=lambda k: report["layers"][k]["mtwv"])
    assert report["best_layer"] == int(best)
    for layer in (0, 1, 2):
        assert json.loads((out / f"layer{layer}" / "metrics.json").read_text()) == report["layers"][str(layer)]
    # one layer of the same directory gives the same figures as its part of the sweep
    assert main(["qbe", str(feats), "--quesst", str(root), "--layer", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report["layers"]["1"]

"""The synthetic QbE-STD set in QUESST 2014's layout: ground truth against the documents' text,
unseen query voices, disjoint splits, determinism, reuse and CLI errors (tiny sets, seconds each)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import Segment
from speechunits.search.quesst import quesst_ground_truth, read_ecf, read_language_key, read_rttm_occurrences
from speechunits.synth.lexicon import pronounce, words_of
from speechunits.synth.qbe import (SPLITS, document_voice, occurrences_in, plan_documents, timed_words,
                                   write_qbe)
from speechunits.synth.speakers import Speaker, is_corpus_speaker, read_speaker_info

ARGS = dict(documents=12, queries=4, doc_voices=3, query_voices=2, seed=0, quiet=True)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _table(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    return [dict(zip(header.split("\t"), row.split("\t"))) for row in rows]


@pytest.fixture(scope="module")
def qbe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qbe(tmp_path_factory.mktemp("qbe"), workers=2, **ARGS)


def test_layout_lists_every_document_and_query(qbe: Path) -> None:
    documents = _table(qbe / "documents.tsv")
    queries = _table(qbe / "queries.tsv")
    doc_ids = [d["doc_id"] for d in documents]
    assert doc_ids == [f"qbe_en_{k:05d}" for k in range(1, 13)]
    assert sorted(p.stem for p in (qbe / "Audio").glob("*.wav")) == doc_ids
    assert read_language_key(qbe / "scoring" / "language_key_utterances.lst") == {d: "en" for d in doc_ids}
    for split in SPLITS:
        truth = quesst_ground_truth(qbe, split)
        ids = [q["query_id"] for q in queries if q["split"] == split]
        assert truth.documents == doc_ids and truth.terms == ids == [f"qbe_en_{split}_{j:04d}" for j in range(1, 5)]
        assert sorted(p.stem for p in (qbe / f"{split}_queries").glob("*.wav")) == ids
        assert read_language_key(qbe / "scoring" / f"language_key_{split}.lst") == {q: "en" for q in ids}
        assert quesst_ground_truth(qbe, split, ["en"]).terms == ids
    for wav in [*(qbe / "Audio").glob("*.wav"), *(qbe / "dev_queries").glob("*.wav")]:
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert not list(qbe.parent.glob(".qbe.partial"))


def test_occurrences_match_the_documents_text(qbe: Path) -> None:
    """Every RTTM line is a real occurrence inside its document, and no occurrence is missing."""
    texts = {d["doc_id"]: d["text"] for d in _table(qbe / "documents.tsv")}
    durations = {doc: sf.info(qbe / "Audio" / f"{doc}.wav").duration for doc in texts}
    queries = _table(qbe / "queries.tsv")
    word_of = {q["query_id"]: q["word"] for q in queries}
    meta = json.loads((qbe / "qbe.json").read_text(encoding="utf-8"))
    for split in SPLITS:
        folder = qbe / "scoring" / f"groundtruth_qbe_en_{split}"
        lines = read_rttm_occurrences(folder / f"qbe_en_{split}.rttm")
        assert len(lines) == meta["occurrences"][split] > 0
        assert read_ecf(folder / f"qbe_en_{split}.ecf.xml") == list(texts)
        counted = Counter((o.term, o.document) for o in lines)
        for o in lines:
            assert word_of[o.term] in words_of(texts[o.document])
            assert 0.0 <= o.start_s and 0.0 < o.duration_s and o.start_s + o.duration_s <= durations[o.document] + 1e-3
        unmatched = 0
        for q in (q for q in queries if q["split"] == split):
            expected = {doc: words_of(text).count(q["word"]) for doc, text in texts.items()
                        if q["word"] in words_of(text)}
            assert {doc: n for (term, doc), n in counted.items() if term == q["query_id"]} == expected
            assert int(q["n_documents"]) == len(expected)
            unmatched += not expected
        assert unmatched == meta["unmatched_queries"][split] == 1  # 20 % of 4, rounded


def test_voices_splits_and_counts(qbe: Path) -> None:
    documents = _table(qbe / "documents.tsv")
    queries = _table(qbe / "queries.tsv")
    voices = {s.name: s for s in read_speaker_info(qbe / "voices.tsv")}
    doc_voices = {d["voice"] for d in documents}
    query_voices = {q["voice"] for q in queries}
    assert doc_voices == {"d00", "d01", "d02"} and query_voices == {"q00", "q01"}
    assert {voices[v].voice for v in doc_voices}.isdisjoint({voices[v].voice for v in query_voices})
    assert not any(is_corpus_speaker(voices[v]) for v in query_voices)  # unseen voices
    words = {split: {q["word"] for q in queries if q["split"] == split} for split in SPLITS}
    assert len(words["dev"]) == len(words["eval"]) == 4 and words["dev"].isdisjoint(words["eval"])
    assert all(words_of(q["word"]) == [q["word"]] for q in queries)
    lexicon = pronounce([q["word"] for q in queries], "en-us")
    assert all(len(lexicon[q["word"]].ipa) >= 4 for q in queries)  # --min-phones
    meta = json.loads((qbe / "qbe.json").read_text(encoding="utf-8"))
    assert meta["documents"] == 12 and meta["queries_per_split"] == {"dev": 4, "eval": 4}
    assert meta["document_minutes"] == pytest.approx(sum(sf.info(p).duration for p in (qbe / "Audio").glob("*.wav"))
                                                     / 60, abs=1e-3)
    assert [v["name"] for v in meta["voices"]["queries"]] == ["q00", "q01"]


def test_deterministic_reused_and_refused(qbe: Path, tmp_path: Path) -> None:
    stale = tmp_path / ".qbe.partial" / "Audio"
    stale.mkdir(parents=True)
    (stale / "junk.wav").write_bytes(b"half")
    again = write_qbe(tmp_path, workers=1, **ARGS)
    assert _files(again) == _files(qbe) and not (tmp_path / ".qbe.partial").exists()
    before = (again / "qbe.json").stat().st_mtime_ns
    assert write_qbe(tmp_path, workers=2, **ARGS) == again  # the same set: kept as it is
    assert (again / "qbe.json").stat().st_mtime_ns == before
    with pytest.raises(SpeechUnitsError, match="another QbE set .*seed 0 .asked 1."):
        write_qbe(tmp_path, **{**ARGS, "seed": 1})
    other = write_qbe(tmp_path / "other", workers=2, **{**ARGS, "seed": 1})
    assert (other / "documents.tsv").read_bytes() != (qbe / "documents.tsv").read_bytes()


def test_plan_holds_out_unmatched_words_and_cycles_sentences() -> None:
    pool = ["the red fox ran", "a blue fox sat", "the green owl flew", "one red owl sang", "the lone wolf howled"]
    eligible = {"red", "blue", "green", "owl", "fox"}
    texts, held = plan_documents(pool, eligible, documents=9, held_out=1, seed=0)
    assert len(held) == 1 and held[0] in {"blue", "green"}  # an eligible word of one sentence
    assert all(held[0] not in words_of(t) for t in texts)
    assert len(set(texts)) == 4 and texts[:4] == texts[4:8] and texts[8] == texts[0]
    assert plan_documents(pool, eligible, documents=9, held_out=1, seed=0) == (texts, held)
    with pytest.raises(SpeechUnitsError, match="only 1 can be held out"):
        plan_documents(pool, eligible, documents=3, held_out=2, seed=0)  # a third of 5 sentences is 1
    # a repeated sentence comes back in another voice
    voices = [document_voice(k, 4, 3) for k in range(12)]
    assert all(voices[k] != voices[k + 4] for k in range(8))


def test_glued_words_are_never_timed() -> None:
    """espeak gives "of the" one word event: "the" cannot be timed there, so it is no query."""
    texts = ["The top of the hill.", "Climb the hill"]
    alignments = [[Segment(0.0, 0.2, "The"), Segment(0.2, 0.5, "top"), Segment(0.5, 0.7, "of the"),
                   Segment(0.7, 1.0, "hill")],
                  [Segment(0.0, 0.3, "Climb"), Segment(0.3, 0.4, "the"), Segment(0.4, 0.8, "hill")]]
    assert timed_words(texts, alignments) == {"top", "hill", "climb"}
    assert occurrences_in("hill", alignments) == [(0, alignments[0][3]), (1, alignments[1][2])]


def test_cli_qbe_and_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "es"
    assert main(["synth", "qbe", str(out), "--language", "es", "--documents", "6", "--queries", "2",
                 "--doc-voices", "2", "--query-voices", "1", "--name", "mini", "--quiet"]) == 0
    assert sorted(q.stem for q in (out / "qbe" / "dev_queries").glob("*.wav")) == ["mini_dev_0001", "mini_dev_0002"]
    assert quesst_ground_truth(out / "qbe", "eval").documents == [f"mini_{k:05d}" for k in range(1, 7)]
    x = str(tmp_path / "x")
    assert "--language 'xx'" in cli_error(["synth", "qbe", x, "--language", "xx"], caplog)
    assert "--documents must be >= 1" in cli_error(["synth", "qbe", x, "--documents", "0"], caplog)
    assert "fewer than 2 x 5000" in cli_error(["synth", "qbe", x, "--queries", "5000"], caplog)
    assert "at most 6 distinct unseen voices" in cli_error(["synth", "qbe", x, "--query-voices", "7"], caplog)
    assert "--unmatched-share must be in [0, 1)" in cli_error(["synth", "qbe", x, "--unmatched-share", "1"], caplog)
    assert "--pairs does not apply" in cli_error(["synth", "qbe", x, "--pairs", "3"], caplog)
    assert "--documents does not apply" in cli_error(["synth", "lexical", x, "--documents", "3"], caplog)
    assert "--name 'a b'" in cli_error(["synth", "qbe", x, "--name", "a b"], caplog)
    assert "the documents say only" in cli_error(["synth", "qbe", x, "--documents", "2", "--queries", "30"], caplog)
    assert "already holds another QbE set (documents 6 (asked 7))" in cli_error(
        ["synth", "qbe", str(out), "--language", "es", "--documents", "7", "--queries", "2", "--doc-voices", "2",
         "--query-voices", "1", "--name", "mini"], caplog)
    assert not (tmp_path / "x").exists()


def test_speaker_rows_round_trip(qbe: Path) -> None:
    """voices.tsv lists document voices then query voices, as qbe.json does."""
    meta = json.loads((qbe / "qbe.json").read_text(encoding="utf-8"))
    rows = [Speaker(**r) for r in meta["voices"]["documents"] + meta["voices"]["queries"]]
    assert read_speaker_info(qbe / "voices.tsv") == rows

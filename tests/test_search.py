"""Query-by-example search: subsequence DTW against dtw-python and a loop reference, TWV and AP against
brute force, hand-computed cases and scikit-learn, the NIST STD ground-truth files, and the pipeline."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from scipy.spatial import distance as scipy_distance

from speechunits.errors import SpeechUnitsError
from speechunits.search.dtw import index_documents, subsequence_dtw
from speechunits.search.quesst import (GroundTruth, Occurrence, is_quesst_root, quesst_ground_truth,
                                       read_ground_truth, read_rttm_occurrences, write_ground_truth, write_stdlist)
from speechunits.search.run import centroid_frames, evaluate, search
from speechunits.search.cnxe import cnxe, min_cnxe, prior_of_beta
from speechunits.search.twv import average_precisions, beta_from, maximum_twv, twv_at


def loop_subsequence_dtw(dist: np.ndarray) -> tuple[float, int, int]:
    """Plain loops: asymmetric steps, open begin and end on the columns; (cost / n, start, end)."""
    n, m = dist.shape
    cost = np.full((n, m), np.inf)
    start = np.zeros((n, m), dtype=int)
    cost[0] = dist[0]
    start[0] = np.arange(m)
    for i in range(1, n):
        for j in range(m):
            options = [(cost[i - 1, j - k], start[i - 1, j - k]) for k in (0, 1, 2) if j - k >= 0]
            best, origin = min(options, key=lambda o: o[0])
            cost[i, j] = dist[i, j] + best
            start[i, j] = origin
    end = int(np.argmin(cost[-1]))
    return float(cost[-1, end] / n), int(start[-1, end]), end


def _scipy_distances(q: np.ndarray, d: np.ndarray, kind: str, minmax: bool) -> np.ndarray:
    if kind == "euclidean":
        out = scipy_distance.cdist(q, d)
    else:
        out = scipy_distance.cdist(q, d, "cosine")
        if kind == "cosine-exp":
            out = np.exp(out) - 1
    if minmax:
        low, high = out.min(1, keepdims=True), out.max(1, keepdims=True)
        out = (out - low) / np.clip(high - low, 1e-9, None)
    return out


@pytest.fixture(scope="module")
def random_set():
    rng = np.random.default_rng(0)
    docs = [rng.normal(size=(int(rng.integers(1, 60)), 6)).astype(np.float32) for _ in range(12)]
    queries = [rng.normal(size=(int(rng.integers(1, 15)), 6)).astype(np.float32) for _ in range(5)]
    return docs, queries


@pytest.mark.parametrize("kind,minmax", [("cosine-exp", True), ("cosine", False), ("euclidean", True)])
def test_subsequence_dtw_equals_dtw_python(random_set, kind, minmax):
    dtw = pytest.importorskip("dtw").dtw
    docs, queries = random_set
    matches = subsequence_dtw(queries, index_documents(docs), distance=kind, minmax=minmax, locate=True)
    for qi, q in enumerate(queries):
        for di, d in enumerate(docs):
            ref = dtw(_scipy_distances(q, d, kind, minmax), step_pattern="asymmetric", open_begin=True,
                      open_end=True, keep_internals=False, distance_only=False)
            assert float(matches.cost[qi, di]) == pytest.approx(ref.normalizedDistance, abs=1e-5)
            assert int(matches.end[qi, di]) == int(ref.index2[-1])
            assert int(matches.start[qi, di]) == int(ref.index2[0])


def test_subsequence_dtw_equals_loops(random_set):
    docs, queries = random_set
    matches = subsequence_dtw(queries, index_documents(docs), distance="cosine", minmax=False, locate=True)
    fast = subsequence_dtw(queries, index_documents(docs), distance="cosine", minmax=False)
    assert fast.start is None
    assert torch.equal(fast.cost, matches.cost) and torch.equal(fast.end, matches.end)
    for qi, q in enumerate(queries):
        for di, d in enumerate(docs):
            cost, start, end = loop_subsequence_dtw(_scipy_distances(q, d, "cosine", False))
            assert float(matches.cost[qi, di]) == pytest.approx(cost, abs=1e-5)
            assert (int(matches.start[qi, di]), int(matches.end[qi, di])) == (start, end)


def test_the_torch_segment_path_other_devices_take_agrees(random_set, monkeypatch):
    from speechunits.search import dtw as search_dtw

    docs, queries = random_set
    numpy_path = subsequence_dtw(queries, index_documents(docs), minmax=True, locate=True)
    monkeypatch.setattr(search_dtw, "NUMPY_SEGMENTS_ON_CPU", False)
    torch_path = subsequence_dtw(queries, index_documents(docs), minmax=True, locate=True)
    torch.testing.assert_close(torch_path.cost, numpy_path.cost)
    assert torch.equal(torch_path.start, numpy_path.start) and torch.equal(torch_path.end, numpy_path.end)


def test_unit_ids_hand_computed():
    # query 1 2 sits at frames 1-2 of document 0; document 1 holds 2 then 1 (no 1 followed by 2)
    docs = [np.array([0, 1, 2, 3]), np.array([2, 5, 1])]
    matches = subsequence_dtw([np.array([1, 2])], index_documents(docs), distance="hamming", minmax=False,
                              locate=True)
    assert matches.cost[0].tolist() == [0.0, 0.5]
    assert (int(matches.start[0, 0]), int(matches.end[0, 0])) == (1, 2)


def test_documents_never_join():
    # document 0 ends with 1 and document 1 starts with 2: a path over the border would cost 0
    docs = [np.array([7, 7, 1]), np.array([2, 7, 7])]
    matches = subsequence_dtw([np.array([1, 2])], index_documents(docs), distance="hamming", minmax=False)
    assert matches.cost[0].tolist() == [0.5, 0.5]


def test_dtw_bad_inputs():
    docs = index_documents([np.zeros((3, 2), dtype=np.float32)])
    with pytest.raises(SpeechUnitsError, match="hamming"):
        subsequence_dtw([np.zeros((2, 2), dtype=np.float32)], docs, distance="hamming")
    with pytest.raises(SpeechUnitsError, match="no frame"):
        subsequence_dtw([np.zeros((0, 2), dtype=np.float32)], docs)
    with pytest.raises(SpeechUnitsError, match="no query"):
        subsequence_dtw([], docs)
    with pytest.raises(SpeechUnitsError, match="unknown distance"):
        subsequence_dtw([np.zeros((2, 2), dtype=np.float32)], docs, distance="manhattan")  # type: ignore[arg-type]
    with pytest.raises(SpeechUnitsError, match="no frame"):
        index_documents([np.zeros((0, 2))])
    with pytest.raises(SpeechUnitsError, match="no document"):
        index_documents([])


def test_twv_hand_computed():
    # two terms, four documents; beta 2. Term a occurs in d0 and d1, term b in d2.
    truth = np.array([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=bool)
    scores = np.array([[0.9, 0.2, 0.8, 0.1], [0.3, 0.4, 0.7, 0.6]])
    # threshold 0.7: a detects d0 (hit), d2 (FA); b detects d2 (hit).
    # P_miss: a 1/2, b 0; P_fa: a 1/2, b 0  -> TWV = 1 - ((0.5 + 2*0.5) + 0) / 2 = 0.25
    at = twv_at(scores, truth, 0.7, beta=2.0)
    assert at.value == pytest.approx(0.25)
    assert (at.p_miss, at.p_fa) == (pytest.approx(0.25), pytest.approx(0.25))
    # the other thresholds: 0.9 (a's hit alone: 1 - (0.5 + 1) / 2 = 0.25), 0.8 (a's hit and FA, b
    # nothing: -0.25), 0.6 and below (b's FA at d3 costs 2/3: lower); ties go to the higher threshold
    best = maximum_twv(scores, truth, beta=2.0)
    assert (best.value, best.threshold) == (pytest.approx(0.25), 0.9)
    # nothing worth detecting: MTWV 0 at an infinite threshold
    none = maximum_twv(np.zeros((1, 3)), np.array([[True, False, False]]), beta=1e6)
    assert (none.value, none.threshold, none.p_miss) == (0.0, float("inf"), 1.0)


def test_mtwv_is_the_best_threshold_and_ap_is_sklearns():
    average_precision_score = pytest.importorskip("sklearn.metrics").average_precision_score
    rng = np.random.default_rng(1)
    for _ in range(100):
        terms, docs = int(rng.integers(1, 6)), int(rng.integers(2, 12))
        truth = rng.random((terms, docs)) < 0.3
        truth[0, rng.integers(docs)] = True
        scores = np.round(rng.normal(size=(terms, docs)) + truth * rng.uniform(0, 2), 1)  # ties on purpose
        beta = float(rng.choice([0.5, 3.0, 1249.0]))
        candidates = [np.inf, *np.unique(scores[truth.any(axis=1)])]
        brute = max(twv_at(scores, truth, t, beta).value for t in candidates)
        assert maximum_twv(scores, truth, beta).value == pytest.approx(brute, abs=1e-12)
        expected = [average_precision_score(t, s) for s, t in zip(scores, truth) if t.any()]
        assert average_precisions(scores, truth) == pytest.approx(expected)


def test_twv_bad_inputs():
    # QUESST's score-TWV-Cnxe.sh: P_target 0.0008, C_miss 100, C_fa 1; its scorer gets prior 0.0741289
    assert beta_from() == pytest.approx(12.49)
    assert prior_of_beta(beta_from()) == pytest.approx(0.0741289, abs=1e-7)
    assert beta_from(cost_miss=1.0) == pytest.approx(1249.0)
    with pytest.raises(SpeechUnitsError, match="P_target"):
        beta_from(0.0)
    with pytest.raises(SpeechUnitsError, match="costs"):
        beta_from(0.1, cost_miss=0.0)
    with pytest.raises(SpeechUnitsError, match="same"):
        maximum_twv(np.zeros((2, 3)), np.zeros((3, 2), dtype=bool))
    with pytest.raises(SpeechUnitsError, match="no query occurs"):
        maximum_twv(np.zeros((2, 3)), np.zeros((2, 3), dtype=bool))
    with pytest.raises(SpeechUnitsError, match="NaN"):
        maximum_twv(np.full((1, 2), np.nan), np.array([[True, False]]))


def _quesst_tree(root, languages=("nnenglish", "czech")):
    scoring = root / "scoring"
    docs = {"quesst14_00001": 2.0, "quesst14_00002": 3.5, "quesst14_00003": 1.0}
    terms = {"quesst14_dev_0001": "dog", "quesst14_dev_0002": "cat", "quesst14_dev_0003": "pes"}
    occurrences = [Occurrence("quesst14_00001", "quesst14_dev_0001", 0.5, 0.4),
                   Occurrence("quesst14_00002", "quesst14_dev_0001", 1.0, 0.4),
                   Occurrence("quesst14_00003", "quesst14_dev_0003", 0.1, 0.3)]
    write_ground_truth(scoring / "groundtruth_quesst14_dev", "quesst14_dev", docs, terms, occurrences)
    (scoring / "language_key_utterances.lst").write_text(
        f"quesst14Database/Audio/quesst14_00001.wav {languages[0]}\nquesst14Database/Audio/quesst14_00002.wav "
        f"{languages[0]}\nquesst14Database/Audio/quesst14_00003.wav {languages[1]}\n")
    (scoring / "language_key_dev.lst").write_text(
        f"quesst14Database/dev_queries/quesst14_dev_0001.wav {languages[0]}\n"
        f"quesst14Database/dev_queries/quesst14_dev_0002.wav {languages[0]}\n"
        f"quesst14Database/dev_queries/quesst14_dev_0003.wav {languages[1]}\n")
    return docs, terms


def test_ground_truth_round_trip_and_languages(tmp_path):
    docs, terms = _quesst_tree(tmp_path)
    truth = read_ground_truth(tmp_path / "scoring" / "groundtruth_quesst14_dev")
    assert truth.documents == list(docs) and truth.terms == list(terms)
    assert truth.hits == {"quesst14_dev_0001": {"quesst14_00001", "quesst14_00002"},
                          "quesst14_dev_0003": {"quesst14_00003"}}
    # the ECF written is the NIST form: excerpts with audio_filename, channel, tbeg, dur
    ecf = ET.parse(tmp_path / "scoring" / "groundtruth_quesst14_dev" / "quesst14_dev.ecf.xml").getroot()
    assert ecf.find("excerpt").attrib["audio_filename"] == "Audio/quesst14_00001.wav"
    assert is_quesst_root(tmp_path)
    english = quesst_ground_truth(tmp_path, "dev", ["nnenglish"])
    assert english.documents == ["quesst14_00001", "quesst14_00002"]
    assert english.terms == ["quesst14_dev_0001", "quesst14_dev_0002"]
    assert english.hits == {"quesst14_dev_0001": {"quesst14_00001", "quesst14_00002"}}
    with pytest.raises(SpeechUnitsError, match="no file in language"):
        quesst_ground_truth(tmp_path, "dev", ["klingon"])
    with pytest.raises(SpeechUnitsError, match="groundtruth_\\*_eval"):
        quesst_ground_truth(tmp_path, "eval")


def test_rttm_alone_and_bad_files(tmp_path):
    rttm = tmp_path / "x.rttm"
    rttm.write_text(";; comment\nSPEAKER f 1 0 1 <NA> <NA> s1 <NA>\nLEXEME Audio/d1.wav 1 0.50 0.30 q1 lex <NA> <NA>\n")
    assert read_rttm_occurrences(rttm) == [Occurrence("d1", "q1", 0.5, 0.3)]
    truth = read_ground_truth(rttm)
    assert (truth.documents, truth.terms, truth.hits) == (["d1"], ["q1"], {"q1": {"d1"}})
    rttm.write_text("LEXEME d1 1 0.5\n")
    with pytest.raises(SpeechUnitsError, match=r"x.rttm:1: a LEXEME line needs at least 6 fields"):
        read_rttm_occurrences(rttm)
    rttm.write_text("LEXEME d1 1 zero 0.3 q1\n")
    with pytest.raises(SpeechUnitsError, match="TBEG and TDUR must be numbers"):
        read_rttm_occurrences(rttm)
    with pytest.raises(SpeechUnitsError, match="no such ground-truth"):
        read_ground_truth(tmp_path / "missing")
    folder = tmp_path / "gt"
    write_ground_truth(folder, "a", {"d1": 1.0}, {"q1": "w"}, [Occurrence("d2", "q1", 0.0, 0.1)])
    with pytest.raises(SpeechUnitsError, match="documents not in the ECF"):
        read_ground_truth(folder)
    (folder / "b.rttm").write_text("")
    with pytest.raises(SpeechUnitsError, match="several RTTM"):
        read_ground_truth(folder)
    (folder / "a.rttm").unlink()
    (folder / "a.ecf.xml").write_text("<ecf><excerpt channel='1'/></ecf>")
    with pytest.raises(SpeechUnitsError, match="no audio_filename"):
        read_ground_truth(folder)
    (folder / "a.ecf.xml").write_text("<termlist/>")
    with pytest.raises(SpeechUnitsError, match="not a ECF file|not an? ECF"):
        read_ground_truth(folder)
    (folder / "a.ecf.xml").write_text("<ecf")
    with pytest.raises(SpeechUnitsError, match="not a readable ECF"):
        read_ground_truth(folder)


def test_stdlist_is_quessts_form(tmp_path):
    write_stdlist(tmp_path / "s.xml", {"q1": [("d1", 2.5), ("d2", -0.1)]}, threshold=2.0)
    root = ET.parse(tmp_path / "s.xml").getroot()
    assert root.tag == "stdlist"
    terms = root.find("detected_termlist").findall("term")
    assert [(t.get("file"), t.get("score"), t.get("decision")) for t in terms] == [
        ("d1", "2.5000", "YES"), ("d2", "-0.1000", "NO")]


def _planted(rng, n_docs=30, dim=12):
    docs = {f"d{i}": rng.normal(size=(int(rng.integers(30, 80)), dim)).astype(np.float32) for i in range(n_docs)}
    frames, hits = dict(docs), {}
    for k in range(8):
        doc = f"d{int(rng.integers(n_docs))}"
        s = int(rng.integers(0, len(docs[doc]) - 12))
        frames[f"q{k}"] = docs[doc][s:s + 12] + 0.3 * rng.normal(size=(12, dim)).astype(np.float32)
        hits[f"q{k}"] = {doc}
    return frames, [f"q{k}" for k in range(8)], list(docs), hits


def test_search_finds_planted_queries_and_chunks_agree():
    rng = np.random.default_rng(3)
    frames, queries, docs, hits = _planted(rng)
    result = search(frames, queries, docs, frame_rate=50.0, locate=True)
    metrics = evaluate(result, GroundTruth(docs, queries, hits))
    assert metrics["mtwv"] == pytest.approx(1.0) and metrics["map"] == pytest.approx(1.0)
    chunked = search(frames, queries, docs, frame_rate=50.0, chunk_frames=100, device="cpu")
    np.testing.assert_allclose(chunked.score, result.score, atol=1e-5)
    # each query's scores are z-normalised over the documents
    np.testing.assert_allclose(result.score.mean(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(result.score.std(axis=1), 1.0, atol=1e-9)
    # the match lies where the query was cut (12 frames at 50 Hz: 0.24 s)
    for i, q in enumerate(queries):
        j = docs.index(next(iter(hits[q])))
        assert result.end_s[i, j] - result.start_s[i, j] == pytest.approx(0.24, abs=0.06)


def test_search_short_and_missing_queries():
    rng = np.random.default_rng(4)
    frames, queries, docs, hits = _planted(rng)
    frames["tiny"] = frames["q0"][:3]
    result = search(frames, [*queries, "tiny"], docs, frame_rate=50.0)
    assert result.short_queries == ["tiny"] and (result.score[-1] == 0).all()
    metrics = evaluate(result, GroundTruth(docs, [*queries, "tiny"], {**hits, "tiny": hits["q0"]}))
    assert metrics["short_queries"] == 1 and metrics["queries_scored"] == 9
    with pytest.raises(SpeechUnitsError, match="shorter than 5"):
        search(frames, ["tiny"], docs, frame_rate=50.0)
    with pytest.raises(SpeechUnitsError, match="no frames"):
        search(frames, ["nope"], docs, frame_rate=50.0)
    with pytest.raises(SpeechUnitsError, match="nothing to search"):
        search(frames, [], docs, frame_rate=50.0)
    with pytest.raises(SpeechUnitsError, match="no query occurs"):
        evaluate(result, GroundTruth(docs, queries, {}))


def test_search_unit_ids_use_hamming_without_minmax():
    rng = np.random.default_rng(5)
    docs = {f"d{i}": rng.integers(0, 50, size=int(rng.integers(20, 40))) for i in range(10)}
    frames = dict(docs)
    frames["q"] = docs["d3"][5:15].copy()
    result = search(frames, ["q"], list(docs), frame_rate=50.0)
    assert result.cost[0, 3] == 0.0 and int(np.argmax(result.score[0])) == 3


def test_centroid_frames():
    table = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    out = centroid_frames({"u": np.array([2, 0, 0])}, table)
    assert out["u"].dtype == np.float32 and out["u"].tolist() == [[4.0, 5.0], [0.0, 1.0], [0.0, 1.0]]
    with pytest.raises(SpeechUnitsError, match="outside the codebook's 3 units"):
        centroid_frames({"u": np.array([3])}, table)


# -- normalised cross-entropy ----------------------------------------------------------------------

def _trials(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.15
    truth[:2] = [True, False]
    return rng.normal(0.0, 1.0, n) + 2.0 * truth, truth


def test_cnxe_is_one_for_a_system_that_knows_nothing_and_near_zero_for_a_confident_right_one():
    _, truth = _trials(0)
    for prior in (0.0741289, 0.3):
        assert cnxe(np.zeros(truth.shape), truth, prior) == pytest.approx(1.0, abs=1e-12)
        assert min_cnxe(np.zeros(truth.shape), truth, prior) == pytest.approx(1.0, abs=1e-12)
    sure = np.where(truth, 40.0, -40.0)
    assert cnxe(sure, truth, 0.0741289) < 1e-12 and min_cnxe(sure, truth, 0.0741289) == 0.0
    assert cnxe(-sure, truth, 0.0741289) > 10  # confidently wrong: far worse than knowing nothing


def test_cnxe_equals_sklearns_prior_weighted_log_loss():
    from sklearn.metrics import log_loss

    prior = 0.0741289
    for seed in range(3):
        scores, truth = _trials(seed)
        weights = np.where(truth, prior / truth.sum(), (1 - prior) / (~truth).sum())
        posterior = 1.0 / (1.0 + np.exp(-(scores + np.log(prior / (1 - prior)))))
        entropy = -(prior * np.log2(prior) + (1 - prior) * np.log2(1 - prior))
        expected = log_loss(truth, posterior, sample_weight=weights) / np.log(2) / entropy
        assert cnxe(scores, truth, prior) == pytest.approx(expected, rel=1e-9)


def test_min_cnxe_is_the_best_monotonic_recalibration():
    from sklearn.isotonic import IsotonicRegression

    prior = 0.0741289
    for seed in range(3):
        scores, truth = _trials(seed)
        scores = np.round(scores, 1)  # ties: pooled before PAV
        best = min_cnxe(scores, truth, prior)
        # a second PAV (scikit-learn's), turned into likelihood ratios the same way
        p = np.clip(IsotonicRegression().fit(scores, truth.astype(float)).predict(scores), 1e-300, 1 - 1e-16)
        share = truth.mean()
        llr = np.log(p / (1 - p)) - np.log(share / (1 - share))
        assert best == pytest.approx(cnxe(llr, truth, prior), abs=1e-9)
        # no affine recalibration, nor the scores as they are, beats it; a monotone change of scale changes nothing
        affine = min(cnxe(a * scores + b, truth, prior) for a in (0.25, 0.5, 1, 2, 4) for b in np.linspace(-6, 2, 17))
        assert best <= affine + 1e-12 and best <= cnxe(scores, truth, prior)
        assert min_cnxe(np.exp(scores), truth, prior) == pytest.approx(best, abs=1e-12)


def test_cnxe_refuses_what_it_cannot_score():
    with pytest.raises(SpeechUnitsError, match="target and non-target"):
        cnxe(np.zeros(3), np.ones(3, bool), 0.1)
    with pytest.raises(SpeechUnitsError, match="in \\(0, 1\\)"):
        min_cnxe(np.zeros(2), np.array([True, False]), 1.0)
    with pytest.raises(SpeechUnitsError, match="NaN"):
        cnxe(np.array([np.nan, 0.0]), np.array([True, False]), 0.1)
    with pytest.raises(SpeechUnitsError, match="2 scores for 3"):
        cnxe(np.zeros(2), np.array([True, False, True]), 0.1)
    with pytest.raises(SpeechUnitsError, match="beta must be positive"):
        prior_of_beta(0.0)

"""Speaker verification: EER/minDCF against hand-computed values and scikit-learn's ROC, trial files,
and ``probe train verify`` / ``probe eval --trials`` end to end on a synthetic corpus (MFCC)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.probe.verification import (ScoreNorm, Trials, all_pair_scores, choose_score_norm, cosine_scores,
                                            equal_error_rate, match_trials, min_dcf, read_trials,
                                            speaker_cohort, verification_metrics)
from speechunits.synth.testing import small_corpus
from conftest import cli_error

# three target trials (0.9, 0.8, 0.3) and three non-target (0.4, 0.2, 0.1)
SCORES = np.array([0.9, 0.8, 0.3, 0.4, 0.2, 0.1])
TARGET = np.array([True, True, True, False, False, False])


def test_eer_of_a_hand_made_case():
    # accepting scores >= 0.4 misses 0.3 (1 of 3 targets) and accepts 0.4 (1 of 3 non-targets)
    assert equal_error_rate(SCORES, TARGET) == pytest.approx(1 / 3)
    assert equal_error_rate(np.array([0.9, 0.8, 0.2, 0.1]), np.array([True, True, False, False])) == 0.0
    assert equal_error_rate(np.array([0.1, 0.2, 0.8, 0.9]), np.array([True, True, False, False])) == 1.0


def test_min_dcf_of_a_hand_made_case():
    # p_target 0.5: the cost is misses + false alarms, lowest (1/3) at thresholds 0.8 or 0.3
    assert min_dcf(SCORES, TARGET, p_target=0.5) == pytest.approx(1 / 3)
    # p_target 0.01: (0.01 miss + 0.99 fa) / 0.01; threshold 0.8 gives 1/3, rejecting all gives 1
    assert min_dcf(SCORES, TARGET) == pytest.approx(1 / 3)
    with pytest.raises(SpeechUnitsError, match="p_target"):
        min_dcf(SCORES, TARGET, p_target=1.0)


def test_eer_matches_scikit_learn_roc():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    for n in (40, 700):
        target = rng.random(n) < 0.3
        scores = rng.normal(size=n) + target
        fpr, tpr, _ = roc_curve(target, scores)
        fnr = 1 - tpr
        k = int(np.argmax(fnr <= fpr))  # the two ROC points around the crossing, joined by a line
        g0, g1 = fpr[k - 1] - fnr[k - 1], fpr[k] - fnr[k]
        expected = fpr[k - 1] + g0 / (g0 - g1) * (fpr[k] - fpr[k - 1])
        assert equal_error_rate(scores, target) == pytest.approx(expected, abs=1e-12)


def test_metrics_refuse_one_sided_trials():
    with pytest.raises(SpeechUnitsError, match="target and non-target"):
        equal_error_rate(np.array([0.5, 0.6]), np.array([True, True]))
    with pytest.raises(SpeechUnitsError, match="2 scores but 3"):
        equal_error_rate(np.array([0.5, 0.6]), np.array([True, False, True]))


def all_pair_trials(speakers: dict[str, str]) -> Trials:
    """Every unordered pair listed, the reference the block-wise scores are checked against."""
    ids = sorted(speakers)
    a, b = np.triu_indices(len(ids), k=1)
    labels = np.array([speakers[i] for i in ids], dtype=object)
    return Trials([ids[i] for i in a], [ids[j] for j in b], labels[a] == labels[b])


def test_all_pairs_blockwise_equal_listed_pairs():
    rng = np.random.default_rng(1)
    speakers = {f"u{i:04d}": f"s{i % 7}" for i in range(1100)}  # more rows than one block
    embeddings = {u: rng.normal(size=8) for u in speakers}
    trials = all_pair_trials(speakers)
    assert len(trials) == 1100 * 1099 // 2
    scores, target = all_pair_scores(speakers, embeddings)
    np.testing.assert_allclose(np.sort(scores), np.sort(cosine_scores(embeddings, trials)), atol=1e-12)
    assert target.sum() == trials.target.sum() == sum(n * (n - 1) // 2 for n in [158] * 1 + [157] * 6)
    # by hand: two speakers, embeddings at known angles
    emb = {"a1": np.array([1.0, 0.0]), "a2": np.array([2.0, 0.1]), "b1": np.array([0.0, 1.0])}
    got = verification_metrics({"a1": "A", "a2": "A", "b1": "B"}, emb)
    assert got["eer"] == 0.0 and got["trials"] == 3 and got["target_trials"] == 1


def test_read_trials_in_voxceleb_and_kaldi_layouts(tmp_path: Path):
    vox = tmp_path / "veri_test.txt"
    vox.write_text("1 id10270/x6u/00001.wav id10270/8jE/00008.wav\n\n0 id10270/x6u/00001.wav id10300/ize/00001.wav\n")
    trials = read_trials(vox)
    assert trials.first == ["id10270/x6u/00001.wav"] * 2 and trials.target.tolist() == [True, False]
    kaldi = tmp_path / "trials"
    kaldi.write_text("utt1 utt2 target\nutt1 utt3 nontarget\n")
    assert read_trials(kaldi).target.tolist() == [True, False]
    bad = tmp_path / "bad"
    bad.write_text("utt1 utt2 maybe\n")
    with pytest.raises(SpeechUnitsError, match=r"bad:1: expected"):
        read_trials(bad)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SpeechUnitsError, match="no trial"):
        read_trials(empty)
    with pytest.raises(SpeechUnitsError, match="no such trial file"):
        read_trials(tmp_path / "absent")


def test_match_trials_drops_extensions_and_reports_strangers():
    trials = Trials(["id1/a/00001.wav", "id1/a/00001.wav"], ["id1/b/00002.wav", "id9/z/00001.wav"],
                    np.array([True, False]), "t")
    matched, unmatched = match_trials(trials, ["id1/a/00001", "id1/b/00002", "id2/c/00003"])
    assert (matched.first, matched.second, matched.target.tolist()) == (["id1/a/00001"], ["id1/b/00002"], [True])
    assert unmatched == ["id9/z/00001.wav"]
    # ids that keep a longer path match by their ending
    matched, _ = match_trials(trials, ["wav/id1/a/00001", "wav/id1/b/00002"])
    assert matched.first == ["wav/id1/a/00001"]


# -- score normalisation -----------------------------------------------------------------------------

def _normalised_by_hand(x: np.ndarray, y: np.ndarray, cohort: np.ndarray, top: int) -> float:
    """One trial's (A)S-norm score, written out as the formula reads, one side at a time."""
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    s = float(unit(x) @ unit(y))
    total = 0.0
    for side in (x, y):
        sims = sorted((float(unit(side) @ unit(c)) for c in cohort), reverse=True)[:top]
        total += (s - np.mean(sims)) / np.std(sims)
    return total / 2


def test_score_normalisation_by_its_formula():
    rng = np.random.default_rng(3)
    embeddings = {f"u{k}": rng.normal(size=5) for k in range(6)}
    speakers = {f"u{k}": f"s{k % 3}" for k in range(6)}
    cohort = rng.normal(size=(8, 5))
    cohort /= np.linalg.norm(cohort, axis=1, keepdims=True)
    trials = Trials(["u0", "u1", "u2"], ["u3", "u4", "u5"], np.array([True, True, True]))
    for norm, top in ((ScoreNorm("s-norm"), 8), (ScoreNorm("as-norm", 3), 3), (ScoreNorm("as-norm", 50), 8)):
        got = cosine_scores(embeddings, trials, norm=norm, cohort=cohort)
        expected = [_normalised_by_hand(embeddings[a], embeddings[b], cohort, top) for a, b in zip(trials.first, trials.second)]
        assert got == pytest.approx(expected, abs=1e-12)
        # every pair, block by block, scores the same as the listed pairs
        pairs, target = all_pair_scores(speakers, embeddings, norm=norm, cohort=cohort)
        ids = sorted(embeddings)
        listed = [(a, b) for k, a in enumerate(ids) for b in ids[k + 1:]]
        assert pairs == pytest.approx(cosine_scores(embeddings, Trials([a for a, _ in listed], [b for _, b in listed],
                                                                       target), norm=norm, cohort=cohort), abs=1e-12)
    # no normalisation is the plain cosine
    assert cosine_scores(embeddings, trials, norm=ScoreNorm(), cohort=cohort) == pytest.approx(cosine_scores(embeddings, trials))


def test_speaker_cohort_is_each_speakers_mean_direction():
    embeddings = {"a1": np.array([2.0, 0.0]), "a2": np.array([0.0, 0.5]), "b1": np.array([-3.0, 0.0]), "x": np.ones(2)}
    cohort = speaker_cohort({"a1": "A", "a2": "A", "b1": "B", "zz": "C"}, embeddings)  # zz has no embedding
    assert cohort.dtype == np.float32 and cohort.shape == (2, 2)
    assert cohort[0] == pytest.approx([2 ** -0.5, 2 ** -0.5]) and cohort[1] == pytest.approx([-1.0, 0.0])


def test_choose_score_norm_takes_devs_least_eer_and_needs_four_cohort_speakers():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(12, 8))
    speakers, embeddings = {}, {}
    for k in range(12):
        for j in range(4):
            speakers[f"s{k}-{j}"] = f"s{k}"
            # an utterance-dependent offset (a "channel") that normalisation can take out
            embeddings[f"s{k}-{j}"] = centres[k] + rng.normal(scale=0.8, size=8) + (j % 2) * 1.5
    train = {u: e for u, e in embeddings.items() if int(u[1:].split("-")[0]) < 8}
    dev = {u: e for u, e in embeddings.items() if u not in train}
    chosen = choose_score_norm(speakers, train, dev)
    assert chosen.cohort.shape == (8, 8) and set(chosen.dev) == {"none", "s-norm", "as-norm:4"}
    assert chosen.dev[chosen.norm.name]["eer"] == min(m["eer"] for m in chosen.dev.values())
    small = choose_score_norm(speakers, {u: e for u, e in train.items() if int(u[1:].split("-")[0]) < 3}, dev)
    assert small.norm == ScoreNorm() and set(small.dev) == {"none"}  # 3 cohort speakers: no normalisation offered


def test_score_norm_names_and_refusals():
    assert ScoreNorm.parse("as-norm") == ScoreNorm("as-norm", 300)
    assert ScoreNorm.parse("as-norm:50").name == "as-norm:50" and ScoreNorm.parse("s-norm").name == "s-norm"
    assert ScoreNorm.from_record(ScoreNorm("as-norm", 7).record()) == ScoreNorm("as-norm", 7)
    assert ScoreNorm.from_record(None) == ScoreNorm()
    for text, match in (("z-norm", "expected one of"), ("as-norm:x", "whole number"), ("s-norm:5", "only as-norm"),
                        ("as-norm:1", "at least 2")):
        with pytest.raises(SpeechUnitsError, match=match):
            ScoreNorm.parse(text)
    embeddings = {"a": np.ones(3), "b": np.arange(3.0)}
    trials = Trials(["a"], ["b"], np.array([True]))
    with pytest.raises(SpeechUnitsError, match="needs a cohort"):
        cosine_scores(embeddings, trials, norm=ScoreNorm("s-norm"))
    with pytest.raises(SpeechUnitsError, match="cohort is"):
        cosine_scores(embeddings, trials, norm=ScoreNorm("s-norm"), cohort=np.ones((1, 3)))


# -- the probe ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("verify-corpus"), minutes=3, speakers=12)


@pytest.fixture(scope="module")
def verify_probe(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "probe"
    assert main(["probe", "train", "verify", str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
                 "--standardize", "--speaker-dim", "64", "--lr", "1e-2", "--max-steps", "200", "--eval-every", "50",
                 "--device", "cpu", "--quiet"]) == 0
    return out


def _speakers(corpus: Path) -> dict[str, str]:
    return dict(line.split("\t") for line in (corpus / "speakers.tsv").read_text().splitlines() if line)


def test_verify_probe_scores_unseen_speakers(verify_probe: Path, corpus: Path):
    meta = json.loads((verify_probe / "probe.json").read_text())
    split = json.loads((verify_probe / "split.json").read_text())
    speakers = _speakers(corpus)
    parts = {name: {speakers[u] for u in split[name]} for name in ("train", "dev", "test")}
    assert not parts["train"] & (parts["dev"] | parts["test"]) and len(parts["dev"]) >= 2 and len(parts["test"]) >= 2
    assert meta["selection"]["metric"] == "eer" and meta["selection"]["lower_is_better"]
    assert meta["model"]["verification"] == {"embedding_dim": 64, "scale": 30.0, "margin": 0.2}
    assert meta["labels"]["num_classes"] == len(parts["train"])
    n = len(split["test"])
    assert meta["test"]["trials"]["mean"] == n * (n - 1) // 2
    # MFCC statistics tell these synthetic voices apart: far below chance (0.5)
    assert meta["test"]["eer"]["mean"] < 0.25
    # the normalisation was chosen on dev against a cohort of the training speakers, kept beside the head
    scoring = meta["scoring"]
    assert scoring["cohort"] == "cohort.safetensors" and scoring["cohort_speakers"] == len(parts["train"])
    half = len(parts["train"]) // 2
    assert set(scoring["dev_eer"]) == {"none", "s-norm", f"as-norm:{half}"}
    chosen = ScoreNorm.from_record(scoring["norm"]).name
    assert scoring["dev_eer"][chosen] == min(scoring["dev_eer"].values())
    assert meta["dev"]["eer"]["mean"] == pytest.approx(scoring["dev_eer"][chosen])


def test_verify_probe_eval_matches_training_and_trial_files(verify_probe: Path, corpus: Path, tmp_path: Path, capsys,
                                                             caplog):
    meta = json.loads((verify_probe / "probe.json").read_text())
    assert main(["probe", "eval", str(verify_probe), str(corpus / "manifest.tsv"), "--split", "test", "--json",
                 "--device", "cpu", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["eer"] == pytest.approx(meta["test"]["eer"]["mean"], abs=1e-9)
    assert result["score_norm"] == ScoreNorm.from_record(meta["scoring"]["norm"]).name
    # every normalisation can be asked for; none is the plain cosine of the embeddings
    from speechunits.probe.evaluate import probe_input
    from speechunits.probe.model_dir import load_probe

    probe = load_probe(verify_probe)
    made = probe_input(probe.identity, str(corpus / "manifest.tsv"), quiet=True)
    test_ids = json.loads((verify_probe / "split.json").read_text())["test"]
    plain = verification_metrics({u: _speakers(corpus)[u] for u in test_ids}, probe.embeddings(made.load(test_ids).samples))
    for norm in ("none", "s-norm", "as-norm:3"):
        assert main(["probe", "eval", str(verify_probe), str(corpus / "manifest.tsv"), "--split", "test", "--json",
                     "--device", "cpu", "--quiet", "--score-norm", norm]) == 0
        asked = json.loads(capsys.readouterr().out)
        assert asked["score_norm"] == norm and asked["trials"] == result["trials"]
        if norm == "none":
            assert asked["eer"] == pytest.approx(plain["eer"], abs=1e-12)
    # the same pairs as a VoxCeleb trial file naming audio files, plus one utterance the corpus lacks
    speakers = _speakers(corpus)
    test_ids = sorted(json.loads((verify_probe / "split.json").read_text())["test"])
    lines = [f"{int(speakers[a] == speakers[b])} {a}.wav {b}.wav"
             for k, a in enumerate(test_ids) for b in test_ids[k + 1:]]
    trials = tmp_path / "veri_test.txt"
    trials.write_text("\n".join(lines + [f"0 {test_ids[0]}.wav nobody/x/00001.wav"]) + "\n")
    assert main(["probe", "eval", str(verify_probe), str(corpus / "manifest.tsv"), "--trials", str(trials),
                 "--json", "--device", "cpu", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["eer"] == pytest.approx(meta["test"]["eer"]["mean"], abs=1e-9)
    assert result["trials"] == len(lines) and result["unmatched_trial_utterances"] == 1
    # a probe whose cohort file is gone says so; one saved without a cohort can only score plainly
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(verify_probe, bare)
    (bare / "cohort.safetensors").unlink()
    args = [str(corpus / "manifest.tsv"), "--split", "test", "--device", "cpu", "--quiet"]
    assert "cohort.safetensors: missing" in cli_error(["probe", "eval", str(bare), *args, "--score-norm", "s-norm"],
                                                      caplog)
    record = json.loads((bare / "probe.json").read_text())
    record["scoring"] = {"norm": {"kind": "s-norm", "top": None}}
    (bare / "probe.json").write_text(json.dumps(record))
    assert "saved without one" in cli_error(["probe", "eval", str(bare), *args], caplog)
    assert main(["probe", "eval", str(bare), *args, "--score-norm", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eer"] == pytest.approx(plain["eer"], abs=1e-12)


def test_verify_probe_embeddings_survive_a_reload(verify_probe: Path, corpus: Path):
    from speechunits.probe.evaluate import probe_input
    from speechunits.probe.model_dir import load_probe

    first, second = load_probe(verify_probe), load_probe(verify_probe)
    made = probe_input(first.identity, str(corpus / "manifest.tsv"), quiet=True)
    ids = json.loads((verify_probe / "split.json").read_text())["test"][:4]
    samples = made.load(ids).samples
    a, b = first.embeddings(samples), second.embeddings(samples)
    for i in ids:
        np.testing.assert_array_equal(a[i], b[i])
        assert np.linalg.norm(a[i]) == pytest.approx(1.0, abs=1e-5)


def test_am_softmax_loss_by_its_formula():
    from speechunits.probe.model import build_model
    from speechunits.probe.task import MARGIN, ProbeBatch, batch_loss

    spec = {"input": {"kind": "features", "num_layers": 1, "dim": 6}, "head": "linear", "num_classes": 3,
            "level": "utterance", "interface": "weighted-sum",
            "verification": {"embedding_dim": 4, "scale": 10.0, "margin": 0.3}}
    torch.manual_seed(0)
    model = build_model(spec)
    x, lengths, targets = torch.randn(5, 1, 7, 6), torch.tensor([7, 5, 3, 7, 2]), torch.tensor([0, 2, 1, 1, 0])
    loss, count, _ = batch_loss(model, ProbeBatch(x, lengths, targets=targets), MARGIN)
    with torch.no_grad():
        embedding = model.embed(x, lengths)
        cosine = embedding @ torch.nn.functional.normalize(model.speaker_weights, dim=-1).T
        logits = 10.0 * (cosine - 0.3 * torch.nn.functional.one_hot(targets, 3))
        expected = -torch.log_softmax(logits, -1)[torch.arange(5), targets].sum()
    assert count == 5 and float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_verify_options_and_bad_input_are_refused(corpus: Path, verify_probe: Path, tmp_path: Path, caplog):
    manifest = str(corpus / "manifest.tsv")
    base = ["--encoder", "mfcc", "--max-steps", "5", "--device", "cpu", "--quiet"]
    assert "apply to task 'verify'" in cli_error(["probe", "train", "phones", manifest, "-o", str(tmp_path / "a"),
                                                  "--margin", "0.3", *base], caplog)
    assert "--margin in [0, 1)" in cli_error(["probe", "train", "verify", manifest, "-o", str(tmp_path / "b"),
                                              "--margin", "1.5", *base], caplog)
    assert "--balance applies" in cli_error(["probe", "train", "verify", manifest, "-o", str(tmp_path / "c"),
                                             "--balance", *base], caplog)
    assert "it splits by speaker" in cli_error(["probe", "train", "verify", manifest, "-o", str(tmp_path / "e"),
                                                "--split-by", "utterance", *base], caplog)
    # a split file that puts a test speaker in training: verification would score seen speakers
    speakers = _speakers(corpus)
    ids = sorted(speakers)
    by_speaker: dict[str, list[str]] = {}
    for u in ids:
        by_speaker.setdefault(speakers[u], []).append(u)
    names = sorted(by_speaker)
    rows = [f"{u}\ttrain" for s in names[:8] for u in by_speaker[s]]
    rows += [f"{u}\tdev" for s in names[8:10] for u in by_speaker[s]]
    rows += [f"{u}\ttest" for s in names[10:] for u in by_speaker[s]] + [f"{by_speaker[names[0]][0]}\ttest"]
    split = tmp_path / "split.tsv"
    split.write_text("\n".join(dict((r.split("\t")[0], r) for r in rows).values()) + "\n")
    message = cli_error(["probe", "train", "verify", manifest, "-o", str(tmp_path / "d"), "--split-file", str(split),
                         *base], caplog)
    assert "never seen in training" in message and "test speakers are in the training part" in message
    # trials for another kind of probe
    trials = tmp_path / "trials"
    trials.write_text(f"1 {ids[0]} {ids[1]}\n")
    phones = tmp_path / "phones"
    assert main(["probe", "train", "phones", manifest, "-o", str(phones), *base, "--eval-every", "5"]) == 0
    assert "--trials scores a verification probe" in cli_error(["probe", "eval", str(phones), manifest,
                                                                "--trials", str(trials)], caplog)
    with pytest.raises(SpeechUnitsError, match="gives no speaker embeddings"):
        from speechunits.probe.model_dir import load_probe

        load_probe(phones).embeddings({})


def test_a_trial_file_as_split_file_makes_its_utterances_the_test_part(corpus: Path, tmp_path: Path):
    speakers = _speakers(corpus)
    by_speaker: dict[str, list[str]] = {}
    for u in sorted(speakers):
        by_speaker.setdefault(speakers[u], []).append(u)
    names = sorted(by_speaker)
    a, b = by_speaker[names[0]], by_speaker[names[1]]
    chosen = [a[0], a[1], b[0]]  # the speakers' other utterances are left out, not trained on
    trials = tmp_path / "trials"
    trials.write_text(f"{a[0]} {a[1]} target\n{a[0]} {b[0]} nontarget\n")
    out = tmp_path / "p"
    assert main(["probe", "train", "verify", str(corpus / "manifest.tsv"), "-o", str(out), "--split-file", str(trials),
                 "--encoder", "mfcc", "--max-steps", "5", "--eval-every", "5", "--device", "cpu", "--quiet"]) == 0
    split = json.loads((out / "split.json").read_text())
    assert sorted(split["test"]) == sorted(chosen)
    trained = {speakers[u] for u in split["train"]} | {speakers[u] for u in split["dev"]}
    assert not trained & {names[0], names[1]} and len({speakers[u] for u in split["dev"]}) >= 2
    meta = json.loads((out / "probe.json").read_text())
    assert meta["split"]["by"] == "trials" and meta["split"]["left_out"] == len(a) + len(b) - 3
    assert meta["test"]["trials"]["mean"] == 3  # every pair of the test part


def test_split_from_trials_refuses_strangers_and_too_few_speakers():
    from speechunits.probe.splits import split_from_trials

    speakers = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "d1": "D"}
    with pytest.raises(SpeechUnitsError, match="none of the utterances"):
        split_from_trials(["zz"], speakers)
    with pytest.raises(SpeechUnitsError, match="2 speakers are not in its trials"):
        split_from_trials(["a1", "a2", "d1"], speakers)
    split = split_from_trials(["a1"], {**speakers, "e1": "E"})
    assert split.test == ["a1"] and len(split.dev) == 2 and len(split.train) == 2 and split.info["left_out"] == 1


def _kaldi_parts(corpus: Path, root: Path, parts: dict[str, list[str]]) -> str:
    speakers = _speakers(corpus)
    for name, ids in parts.items():
        data = root / name
        data.mkdir(parents=True)
        (data / "wav.scp").write_text("".join(f"{u} {corpus / 'wavs' / u}.wav\n" for u in ids))
        (data / "utt2spk").write_text("".join(f"{u} {speakers[u]}\n" for u in ids))
    return f"{root}/{{train,dev,test}}"


def test_verify_keeps_a_datasets_own_parts_only_when_they_keep_speakers_apart(corpus: Path, tmp_path: Path):
    speakers = _speakers(corpus)
    names = sorted(set(speakers.values()))
    of = {part: [u for u in sorted(speakers) if speakers[u] in chosen]
          for part, chosen in (("train", names[:8]), ("dev", names[8:10]), ("test", names[10:]))}
    args = ["--encoder", "mfcc", "--max-steps", "5", "--eval-every", "5", "--device", "cpu", "--quiet"]
    apart = _kaldi_parts(corpus, tmp_path / "apart", of)
    assert main(["probe", "train", "verify", apart, "-o", str(tmp_path / "p1"), *args]) == 0
    split = json.loads((tmp_path / "p1" / "split.json").read_text())
    assert split["info"]["by"] == "dataset" and sorted(split["test"]) == of["test"]
    # parts drawn by utterance share speakers: the probe draws its own split by speaker instead
    ids = sorted(speakers)
    mixed = _kaldi_parts(corpus, tmp_path / "mixed", {"train": ids[:-8], "dev": ids[-8:-4], "test": ids[-4:]})
    assert main(["probe", "train", "verify", mixed, "-o", str(tmp_path / "p2"), *args]) == 0
    split = json.loads((tmp_path / "p2" / "split.json").read_text())
    assert split["info"]["by"] == "speaker"


def test_xvector_head_ignores_padding_and_serves_utterance_tasks_only(corpus: Path, tmp_path: Path, caplog):
    from speechunits.probe.heads import XVectorHead

    torch.manual_seed(0)
    head = XVectorHead(6, 4, hidden=8).eval()
    x = torch.randn(1, 30, 6)
    padded = torch.cat([x, torch.randn(1, 20, 6)], dim=1)  # garbage after the valid frames
    alone = head(x, torch.tensor([30]))
    in_batch = head(torch.cat([padded, torch.randn(1, 50, 6)]), torch.tensor([30, 50]))[:1]
    assert torch.allclose(alone, in_batch, atol=1e-6)
    with pytest.raises(SpeechUnitsError, match="pools utterances"):
        XVectorHead(6, 4, level="frame")
    assert "--head xvector pools utterances" in cli_error(
        ["probe", "train", "phones", str(corpus / "manifest.tsv"), "-o", str(tmp_path / "x"), "--encoder", "mfcc",
         "--head", "xvector", "--max-steps", "2", "--device", "cpu", "--quiet"], caplog)
    out = tmp_path / "xv"
    assert main(["probe", "train", "verify", str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
                 "--head", "xvector", "--hidden", "32", "--max-steps", "20", "--eval-every", "10", "--device", "cpu",
                 "--quiet"]) == 0
    assert json.loads((out / "probe.json").read_text())["model"]["head"] == "xvector"

"""The ``separate`` probe (SUPERB's SS) and ``synth mix --sources``: sources that sum to the mixture, the PIT
mask loss and best-order SI-SDR against hand cases, oracle masks, training end to end and refusals."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files
from speechunits.probe.masking import (BINS, MaskLabel, best_order_si_sdr, magnitude_targets, pit_mask_l1,
                                       separation_scores, si_sdr, source_references)
from speechunits.probe.model_dir import load_probe
from speechunits.probe.evaluate import probe_input
from speechunits.synth.mixtures import write_mixtures
from speechunits.synth.noisy import write_noisy
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("corpus"), minutes=1.0, speakers=6)


@pytest.fixture(scope="module")
def mixset(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixtures(corpus, tmp_path_factory.mktemp("mix"), mixtures=30, max_overlap=1.0, with_sources=True,
                          quiet=True)


@pytest.fixture(scope="module")
def trained(mixset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "ss"
    assert main(["probe", "train", "separate", str(mixset / "{train,dev,test}"), "--encoder", "logmel", "-o", str(out),
                 "--lr", "1e-2", "--max-steps", "300", "--eval-every", "50", "--batch-frames", "2000",
                 "--head", "linear", "--device", "cpu", "--quiet"]) == 0
    return out


def _ids(split: Path) -> list[str]:
    return [line.split()[0] for line in (split / "wav.scp").read_text().splitlines()]


def _label(split: Path, mix: str) -> MaskLabel:
    return MaskLabel(str(split / "wavs" / f"{mix}.wav"), (str(split / "s1" / f"{mix}.wav"),
                                                          str(split / "s2" / f"{mix}.wav")))


# -- the data --------------------------------------------------------------------------------------

def test_the_sources_sum_to_the_mixture_and_are_the_corpus_utterances(corpus, mixset):
    for split in ("train", "dev", "test"):
        folder = mixset / split
        header, *rows = (folder / "mixtures.tsv").read_text().splitlines()
        columns = header.split("\t")
        for line in rows:
            row = dict(zip(columns, line.split("\t")))
            mix, rate = sf.read(folder / "wavs" / f"{row['mix_id']}.wav", dtype="int16")
            s1, _ = sf.read(folder / "s1" / f"{row['mix_id']}.wav", dtype="int16")
            s2, _ = sf.read(folder / "s2" / f"{row['mix_id']}.wav", dtype="int16")
            assert rate == 16000 and mix.shape == s1.shape == s2.shape
            assert np.max(np.abs(mix.astype(int) - s1 - s2)) <= 1  # each side rounded once
            # s2 is the second utterance at its offset, gain and scale
            source, _ = sf.read(corpus / "wavs" / f"{row['utt2']}.wav", dtype="float64")
            start = int(round(float(row["offset2_s"]) * 16000))
            factor = 10 ** (float(row["gain2_db"]) / 20) * float(row["scale"])
            expected = source * factor
            assert np.max(np.abs(s2[start:start + source.size] / 32768 - expected)) <= 1.5 / 32768
            assert not np.any(s2[:start])
        assert [line.split()[0] for line in (folder / "spk2.scp").read_text().splitlines()] == _ids(folder)
    assert find_label_files(mixset / "test")["references"] == mixset / "test" / "spk1.scp"
    assert source_references(mixset / "test" / "spk1.scp") == [str(mixset / "test" / f"spk{k}.scp") for k in (1, 2)]
    pattern = str(mixset / "{train,dev,test}" / "spk1.scp")
    assert source_references(pattern) == [pattern, pattern.replace("spk1", "spk2")]


def test_a_set_without_sources_is_not_taken_for_one_with_them(corpus, tmp_path):
    plain = write_mixtures(corpus, tmp_path / "a", mixtures=6, quiet=True)
    assert not (plain / "test" / "s1").exists() and "sources" not in json.loads((plain / "mix.json").read_text())
    assert write_mixtures(corpus, tmp_path / "a", mixtures=6, quiet=True) == plain  # the same set: kept
    with pytest.raises(SpeechUnitsError, match="another mixture set"):
        write_mixtures(corpus, tmp_path / "a", mixtures=6, with_sources=True, quiet=True)
    assert main(["synth", "mix", str(tmp_path / "b"), "--corpus", str(corpus), "--mixtures", "6", "--sources",
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "b" / "mix" / "mix.json").read_text())["sources"] is True
    dev = tmp_path / "b" / "mix" / "dev"
    assert _ids(dev) == [line.split()[0] for line in (dev / "spk1.scp").read_text().splitlines()]


# -- loss and metrics ------------------------------------------------------------------------------

def test_the_pit_loss_is_the_least_over_the_orders_of_the_sources():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.standard_normal((2, 3, 2 * BINS)), dtype=torch.float32)  # 2 utts, 3 frames, 2 sources
    targets = torch.tensor(rng.uniform(0, 2, (2, 3, 3, BINS)), dtype=torch.float32)
    valid = torch.tensor([3, 2])
    masks = 1 / (1 + np.exp(-logits.numpy().reshape(2, 3, 2, BINS)))
    expected = 0.0
    for b in range(2):
        n = int(valid[b])
        x, refs = targets[b, :n, 0].numpy(), targets[b, :n, 1:].numpy()
        expected += min(sum(np.abs(masks[b, :n, k] * x - refs[:, j]).sum() for k, j in enumerate(order))
                        for order in itertools.permutations(range(2)))
    assert pit_mask_l1(logits, targets, valid, 1).item() == pytest.approx(expected, rel=1e-5)
    swapped = targets[:, :, [0, 2, 1]]  # the references in the other order: the same loss
    assert pit_mask_l1(logits, swapped, valid, 1).item() == pytest.approx(expected, rel=1e-5)


def test_best_order_si_sdr_matches_each_estimate_to_its_source():
    t = np.arange(16000) / 16000
    a, b = np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 300 * t)  # orthogonal over whole periods
    noise = np.cos(2 * np.pi * 200 * t) * math.sqrt(0.1)
    score, order = best_order_si_sdr([a, b], [b, a + noise])
    assert order == (1, 0) and score == pytest.approx(np.mean([si_sdr(a, a + noise), si_sdr(b, b)]))


def test_best_order_si_sdr_equals_fast_bss_evals_permutation_solved_si_sdr():
    import fast_bss_eval  # in the [dev] extra
    rng = np.random.default_rng(3)
    for sources in (2, 3):
        refs = rng.standard_normal((sources, 8000))
        estimates = refs[::-1] + rng.uniform(0.2, 0.8, (sources, 1)) * rng.standard_normal((sources, 8000))
        values, perm = fast_bss_eval.si_sdr(refs, estimates, return_perm=True)
        ours, order = best_order_si_sdr(list(refs), list(estimates))
        assert order == tuple(int(p) for p in perm) and ours == pytest.approx(float(np.mean(values)), abs=1e-3)


def test_oracle_masks_separate_well_in_either_order(mixset):
    test = mixset / "test"
    labels, oracle = [], []
    for mix in _ids(test):
        label = _label(test, mix)
        mags = magnitude_targets(label).astype(np.float32)
        oracle.append(np.minimum(mags[:, 1:] / np.maximum(mags[:, :1], 1e-8), 1.0))  # [N, 2, F]
        labels.append(label)
    scores = separation_scores(labels, oracle)
    assert scores["si_sdri"] > 8 and scores["si_sdri"] == pytest.approx(scores["si_sdr"] - scores["si_sdr_mixture"])
    swapped = separation_scores(labels, [m[:, ::-1] for m in oracle])
    assert swapped["si_sdri"] == pytest.approx(scores["si_sdri"], abs=1e-9)
    one_mask = separation_scores(labels, [np.stack([m[:, 0], m[:, 0]], axis=1) for m in oracle])
    assert one_mask["si_sdri"] < scores["si_sdri"] - 5  # the same source twice separates nothing


# -- the probe -------------------------------------------------------------------------------------

def test_a_trained_probe_separates_unseen_voices_and_writes_the_sources(mixset, trained, tmp_path, capsys):
    meta = json.loads((trained / "probe.json").read_text())
    assert meta["task"] == "separate" and meta["selection"]["metric"] == "si_sdri"
    assert meta["labels"]["sources"] == 2 and meta["model"]["num_classes"] == 2 * BINS
    assert meta["test"]["si_sdri"]["mean"] > 1.0, meta["test"]
    out = tmp_path / "separated"
    assert main(["probe", "eval", str(trained), str(mixset / "test"), "--audio-out", str(out), "--json",
                 "--device", "cpu", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["si_sdri"] == pytest.approx(meta["test"]["si_sdri"]["mean"], abs=1e-9)
    # the written sources, scored here from the files, give the same figure (16-bit rounding apart)
    values = []
    for mix in _ids(mixset / "test"):
        refs = [sf.read(mixset / "test" / f"s{k}" / f"{mix}.wav")[0] for k in (1, 2)]
        estimates = [sf.read(out / f"s{k}" / f"{mix}.wav")[0] for k in (1, 2)]
        mixture = sf.read(mixset / "test" / "wavs" / f"{mix}.wav")[0]
        values.append(best_order_si_sdr(refs, estimates)[0] - np.mean([si_sdr(r, mixture) for r in refs]))
    assert float(np.mean(values)) == pytest.approx(result["si_sdri"], abs=0.05)
    assert main(["enhance", str(mixset / "test"), "--probe", str(trained), "-o", str(tmp_path / "plain"),
                 "--device", "cpu", "--quiet"]) == 0
    for k in (1, 2):
        assert {p.name: p.read_bytes() for p in (tmp_path / "plain" / f"s{k}").glob("*.wav")} == \
            {p.name: p.read_bytes() for p in (out / f"s{k}").glob("*.wav")}
    probe = load_probe(trained)
    made = probe_input(probe.identity, mixset / "test", device="cpu", quiet=True)
    samples = made.load(_ids(mixset / "test")).samples
    masks = probe.predict(samples, list(samples), device="cpu")
    assert all(m.shape == (samples[u].num_frames, 2, BINS) for u, m in masks.items())


def test_mask_tasks_default_to_superbs_bilstm_and_each_option_given_wins():
    from speechunits.probe.defaults import head_defaults

    assert head_defaults("separate", None, None, None) == ("bilstm", 3, 3000)
    assert head_defaults("separate", "linear", None, 8000) == ("linear", 3, 8000)
    assert head_defaults("phones", None, None, None) == ("linear", 2, 20000)
    assert head_defaults("diarize", "bilstm", 1, None) == ("bilstm", 1, 20000)


def test_separate_refuses_what_it_cannot_score(corpus, mixset, tmp_path, caplog):
    args = ["--encoder", "logmel", "--max-steps", "1", "--device", "cpu", "--quiet"]
    noisy = write_noisy(corpus, tmp_path / "n", quiet=True)  # one reference per utterance
    assert "1 source scp(s)" in cli_error(["probe", "train", "separate", str(noisy / "{train,dev,test}"), "-o",
                                           str(tmp_path / "a"), *args], caplog)
    assert "reads each source's scp" in cli_error(["probe", "train", "separate", str(mixset / "{train,dev,test}"),
                                                   "--labels", str(mixset / "test" / "rttm"), "-o",
                                                   str(tmp_path / "b"), *args], caplog)
    plain = write_mixtures(corpus, tmp_path / "m", mixtures=6, quiet=True)
    assert "needs each source's scp" in cli_error(["probe", "train", "separate", str(plain / "{train,dev,test}"),
                                                   "-o", str(tmp_path / "c"), *args], caplog)

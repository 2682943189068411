"""``--dev-sample``: a sweep evaluates a fixed sample of dev while training, then scores each run's
best step on all of dev, which picks the learning rate (toy CTC data, no audio)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from probe_helpers import toy_phone_corpus

from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.probe import run as run_module
from speechunits.probe.labels import LabelSet
from speechunits.probe.model_dir import load_probe
from speechunits.probe.splits import dev_sample
from speechunits.probe.train import train_probe

def _corpus():
    return toy_phone_corpus(30, noise=0.8, boost=1.5, train=16, dev=10)


def _sweep(out, **options):
    inputs, labels, split = _corpus()
    settings = dict(interface="single", head="linear", lrs=(3e-3, 3e-1), max_steps=30, eval_every=10,
                    patience=100, batch_frames=120, step_schedule=True, quiet=True, device="cpu")
    settings.update(options)
    return train_probe("phones", inputs, labels, split, out, **settings), inputs, labels, split


def _scored_ids(monkeypatch) -> list[list[str]]:
    """The id lists the sweep's runs score with ``dev_metrics``, in call order."""
    calls: list[list[str]] = []
    original = run_module.dev_metrics

    def counting(task, model, coder, samples, labels, ids, *args, **kwargs):
        calls.append(list(ids))
        return original(task, model, coder, samples, labels, ids, *args, **kwargs)

    monkeypatch.setattr(run_module, "dev_metrics", counting)
    return calls


def test_the_sample_is_a_fixed_subset_whatever_the_order_of_the_ids():
    ids = [f"u{i:03d}" for i in range(50)]
    picked = dev_sample(ids, 7)
    assert len(picked) == 7 and set(picked) <= set(ids)
    assert picked == [i for i in ids if i in set(picked)]  # in the order given
    assert set(dev_sample(list(reversed(ids)), 7)) == set(picked)
    assert dev_sample(ids, 7) == picked
    assert set(picked) < set(dev_sample(ids, 8))  # a larger sample keeps the smaller one's utterances
    assert dev_sample(ids, None) == ids and dev_sample(ids, 50) == ids and dev_sample(ids, 80) == ids
    with pytest.raises(SpeechUnitsError, match="--dev-sample"):
        dev_sample(ids, 0)


def test_training_evaluates_the_sample_and_each_best_step_is_scored_on_all_of_dev(tmp_path, monkeypatch):
    calls = _scored_ids(monkeypatch)
    result, inputs, labels, split = _sweep(tmp_path / "p", dev_sample=3)
    watched = dev_sample(split.dev, 3)
    # per run: evaluations at steps 10, 20, 30 on the sample, then one on all of dev
    assert calls == [watched, watched, watched, split.dev] * 2
    meta = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert meta["training"]["dev_sample"] == 3
    probe = load_probe(tmp_path / "p")
    samples = inputs.load(split.dev).samples
    for run in result.runs:
        assert run.dev_watched is not None and run.dev != run.dev_watched
        assert run.dev_score == pytest.approx(-run.dev["per"])
    # the chosen lr is the one best on all of dev, and the probe's weights score what it reports
    assert result.lr == min(result.runs, key=lambda r: r.dev["per"]).lr
    chosen = next(r for r in result.runs if r.lr == result.lr)
    full = run_module.dev_metrics("phones", probe.model, probe.coder, samples, labels.labels, split.dev,
                                  "cpu", 120)
    part = run_module.dev_metrics("phones", probe.model, probe.coder, samples, labels.labels, watched, "cpu", 120)
    assert full == pytest.approx(chosen.dev) and part == pytest.approx(chosen.dev_watched)
    record = json.loads((tmp_path / "p" / "runs" / f"lr{result.lr:g}-seed0" / "result.json").read_text())
    assert record["dev"] == pytest.approx(chosen.dev) and record["dev_watched"] == pytest.approx(chosen.dev_watched)


def test_without_a_sample_or_with_one_as_large_as_dev_every_evaluation_reads_all_of_dev(tmp_path, monkeypatch):
    calls = _scored_ids(monkeypatch)
    result, _, _, split = _sweep(tmp_path / "p", lrs=(3e-2,), dev_sample=len(_corpus()[2].dev))
    assert calls == [split.dev] * 3
    assert result.runs[0].dev_watched is None
    assert json.loads((tmp_path / "p" / "probe.json").read_text())["training"]["dev_sample"] is None


def test_a_resume_with_another_sample_is_refused(tmp_path, monkeypatch):
    _sweep(tmp_path / "p", lrs=(3e-2,), dev_sample=3)
    (tmp_path / "p" / "probe.json").unlink()
    with pytest.raises(SpeechUnitsError, match="dev_sample"):
        _sweep(tmp_path / "p", lrs=(3e-2,), dev_sample=4, resume=True)


def test_bad_sizes_and_verify_are_refused(tmp_path):
    with pytest.raises(SpeechUnitsError, match="--dev-sample: expected at least 1"):
        _sweep(tmp_path / "p", dev_sample=0)
    inputs, _, split = _corpus()
    speakers = LabelSet("verify", {i: f"s{int(i[1:]) % 4}" for i in inputs.available_ids()})
    with pytest.raises(SpeechUnitsError, match="--dev-sample: not for 'verify'"):
        train_probe("verify", inputs, speakers, split, tmp_path / "v", dev_sample=2, device="cpu", quiet=True)


def test_the_cli_passes_dev_sample_and_crop_seconds(tmp_path, monkeypatch):
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise SpeechUnitsError("stop here")

    monkeypatch.setattr("speechunits.probe.train.train_probe_on_corpus", fake)
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    code = main(["probe", "train", "phones", str(tmp_path), "--encoder", "mfcc", "-o", str(tmp_path / "p"),
                 "--dev-sample", "5", "--crop-seconds", "4"])
    assert code != 0 and seen["dev_sample"] == 5 and seen["crop_seconds"] == 4.0

"""Probe models, inputs and training on constructed data (no audio; fast)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.encoders.base import EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.features.io import FeaturesWriter
from speechunits.probe.featurizers import HierarchicalConv, UnitEmbedding, WeightedSum
from speechunits.probe.heads import BiLSTMHead, LinearHead, statistics_pooling
from speechunits.probe.model import ProbeModel
from speechunits.probe.feature_inputs import ArrayInput, FeaturesDirInput
from speechunits.probe.inputs import Sample, check_identity
from speechunits.probe.unit_inputs import UnitInput
from speechunits.probe.labels import IGNORE_INDEX, LabelSet
from speechunits.probe.metrics import error_rate
from speechunits.probe.model_dir import LabelCoder, load_probe, read_probe_meta, save_probe
from speechunits.probe.splits import Split
from speechunits.probe.task import collate, predict_logits
from speechunits.probe.train import train_probe
from speechunits.probe.vocab import class_vocabulary, phone_vocabulary
from speechunits.training.loop import recorded_values
from speechunits.units.store import write_units
from speechunits.units.units import Units


# -- featurizers and heads -------------------------------------------------------------------------

def test_weighted_sum_weights_are_a_softmax_and_mix_layers_as_computed_by_hand():
    torch.manual_seed(0)
    ws = WeightedSum(4)
    with torch.no_grad():
        ws.logits.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    w = ws.weights()
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    assert bool((w > 0).all())
    expected_w = np.exp([0.5, -1.0, 2.0, 0.0]) / np.exp([0.5, -1.0, 2.0, 0.0]).sum()
    np.testing.assert_allclose(w.numpy(), expected_w, rtol=1e-6)
    x = torch.randn(2, 4, 7, 3)
    expected = np.tensordot(expected_w, x.numpy(), axes=([0], [1]))  # [B, T, D]
    np.testing.assert_allclose(ws(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_weighted_sum_of_one_layer_is_that_layer_exactly():
    x = torch.randn(3, 1, 11, 5)
    out = WeightedSum(1)(x)
    assert torch.equal(out, x[:, 0])


def test_hierarchical_conv_reduces_the_layer_axis_to_one():
    conv = HierarchicalConv(num_layers=5, dim=6, hidden=4)
    assert len(conv.convs) == 3  # 5 -> 3 -> 2 -> 1
    out = conv(torch.randn(2, 5, 9, 6))
    assert out.shape == (2, 9, 4)
    # frames are independent: changing frame 0 leaves the others unchanged
    x = torch.randn(1, 5, 4, 6)
    y = x.clone()
    y[:, :, 0] += 1.0
    assert torch.allclose(conv(x)[:, 1:], conv(y)[:, 1:])


def test_statistics_pooling_ignores_padding():
    x = torch.randn(2, 6, 3)
    lengths = torch.tensor([6, 4])
    pooled = statistics_pooling(x, lengths)
    valid = x[1, :4].numpy()
    np.testing.assert_allclose(pooled[1, :3].numpy(), valid.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled[1, 3:].numpy(), valid.std(0), rtol=1e-3, atol=1e-3)


def test_bilstm_frame_logits_do_not_depend_on_padding():
    torch.manual_seed(0)
    head = BiLSTMHead(3, 5, hidden=4, num_layers=1).eval()
    x = torch.randn(1, 6, 3)
    padded = torch.cat([x, torch.randn(1, 3, 3)], dim=1)
    alone = head(x, torch.tensor([6]))
    with_pad = head(padded, torch.tensor([6]))[:, :6]
    assert torch.allclose(alone, with_pad, atol=1e-6)


def test_head_dropout_acts_only_while_training_and_zero_adds_nothing():
    torch.manual_seed(0)
    plain = BiLSTMHead(3, 5, hidden=4, num_layers=2)
    dropped = BiLSTMHead(3, 5, hidden=4, num_layers=2, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())  # dropout holds no weights: the same state dict
    assert plain.dropout is None and set(plain.state_dict()) == set(dropped.state_dict())
    x, lengths = torch.randn(2, 7, 3), torch.tensor([7, 5])
    plain.eval(), dropped.eval()
    assert torch.equal(plain(x, lengths), dropped(x, lengths))  # inference: identical
    dropped.train()
    first, second = dropped(x, lengths), dropped(x, lengths)
    assert not torch.allclose(first, second)  # training: a fresh mask each call
    linear = LinearHead(4, 2, dropout=0.25).train()
    ones = torch.ones(1, 4000, 4)
    kept = linear.dropout(ones)
    assert torch.allclose(torch.unique(kept), torch.tensor([0.0, 1 / 0.75]))  # inverted dropout's scale
    assert abs(float((kept == 0).float().mean()) - 0.25) < 0.02
    x = torch.ones(1, 4000, 4, requires_grad=True)
    dropped = linear.dropout(x)
    dropped.sum().backward()
    assert torch.equal(x.grad, dropped.detach())  # the gradient passes the same mask and scale
    torch.manual_seed(3)
    first = linear.dropout(ones)
    torch.manual_seed(3)
    assert torch.equal(first, linear.dropout(ones))  # torch's seed repeats the mask
    for bad in (-0.1, 1.0):
        with pytest.raises(SpeechUnitsError, match="--dropout"):
            BiLSTMHead(3, 5, dropout=bad)


def test_unit_embedding_sum_and_attention_and_durations():
    torch.manual_seed(0)
    ids = torch.tensor([[[1, 2], [0, 3]]])  # [B=1, T=2, S=2]
    summed = UnitEmbedding([4, 5], 3, "sum")
    expected = summed.tables[0].weight[1] + summed.tables[1].weight[2]
    assert torch.allclose(summed(ids)[0, 0], expected)
    att = UnitEmbedding([4, 5], 3, "attention")
    assert att(ids).shape == (1, 2, 3)
    dur = UnitEmbedding([4], 3, "sum", durations=True)
    one = torch.tensor([[[1]]])
    # durations start neutral (zero rows): the unit's own row, whatever the duration
    assert torch.equal(dur(one, torch.tensor([[2]]))[0, 0], dur.tables[0].weight[1])
    assert torch.equal(dur(one, torch.tensor([[1]])), dur(one, torch.tensor([[2]])))
    # ... and learn: one step on a loss of duration 2's output separates it from duration 1
    dur(one, torch.tensor([[2]])).sum().backward()
    with torch.no_grad():
        dur.duration.weight -= 0.1 * dur.duration.weight.grad
    assert not torch.allclose(dur(one, torch.tensor([[1]])), dur(one, torch.tensor([[2]])))
    with pytest.raises(SpeechUnitsError, match="durations"):
        dur(one)


# -- inputs and identities -------------------------------------------------------------------------

def _info(identity: str = "enc-a", dim: int = 4) -> EncoderInfo:
    return EncoderInfo(name="toy", sample_rate=16000, hop_length=160, receptive_field=400, num_layers=2,
                       dim=dim, identity=identity)


def _write_features(path: Path, features: dict[str, dict[int, np.ndarray]], identity: str = "enc-a") -> Path:
    dim = next(iter(next(iter(features.values())).values())).shape[1]
    writer = FeaturesWriter(path, _info(identity, dim), layers=sorted(next(iter(features.values()))))
    for utt_id, layers in features.items():
        writer.add(utt_id, f"/audio/{utt_id}.wav", 16000, layers)
    writer.close()
    return path


def test_features_dir_input_stacks_layers_and_refuses_another_encoder(tmp_path):
    rng = np.random.default_rng(0)
    feats = {f"u{i}": {0: rng.standard_normal((5 + i, 4)).astype(np.float32),
                       2: rng.standard_normal((5 + i, 4)).astype(np.float32)} for i in range(3)}
    ours = FeaturesDirInput(_write_features(tmp_path / "a", feats, "enc-a"), cache_dtype=torch.float32)
    loaded = ours.load(["u1", "nope"])
    assert torch.equal(loaded.samples["u1"].features, torch.from_numpy(np.stack([feats["u1"][0], feats["u1"][2]])))
    assert "nope" in loaded.errors
    other = FeaturesDirInput(_write_features(tmp_path / "b", feats, "enc-b"))
    with pytest.raises(SpeechUnitsError, match="enc-a"):
        other.check(ours.identity())
    fewer_layers = FeaturesDirInput(tmp_path / "a", layers=[2])
    with pytest.raises(SpeechUnitsError, match="layers"):
        fewer_layers.check(ours.identity())
    with pytest.raises(SpeechUnitsError, match="holds layers"):
        FeaturesDirInput(tmp_path / "a", layers=[1])
    ours.check(FeaturesDirInput(tmp_path / "a").identity())  # the same: accepted


def _codebook_meta(sha: str, k: int = 6) -> dict:
    return {"k": k, "frame_rate": 50.0, "sha256": sha, "encoder": "toy", "layer": 3, "receptive_field": 400,
            "sample_rate": 16000}


def test_unit_input_dedup_keeps_durations_and_refuses_another_codebook(tmp_path):
    units = {"a": Units(np.array([1, 1, 1, 4, 4, 2]), 50.0, 6), "b": Units(np.array([0, 5, 5]), 50.0, 6)}
    store = write_units(tmp_path / "s1", units.items(), _codebook_meta("sha-one"))
    raw = UnitInput(store.path)
    sample = raw.load(["a"]).samples["a"]
    assert sample.units[:, 0].tolist() == [1, 1, 1, 4, 4, 2] and sample.durations is None
    dedup = UnitInput(store.path, dedup=True)
    sample = dedup.load(["a"]).samples["a"]
    assert sample.units[:, 0].tolist() == [1, 4, 2]
    assert sample.durations.tolist() == [3, 2, 1]
    assert dedup.model_spec() == {"kind": "units", "vocab_sizes": [6], "durations": True}
    other = UnitInput(write_units(tmp_path / "s2", units.items(), _codebook_meta("sha-two")).path)
    with pytest.raises(SpeechUnitsError, match="sha-one"):
        other.check(raw.identity())
    with pytest.raises(SpeechUnitsError, match="dedup"):
        dedup.check(raw.identity())


def test_two_unit_stores_are_two_streams(tmp_path):
    first = write_units(tmp_path / "s1", [("a", Units(np.array([1, 2, 3]), 50.0, 6))], _codebook_meta("x"))
    second = write_units(tmp_path / "s2", [("a", Units(np.array([0, 0, 7]), 50.0, 8))], _codebook_meta("y", 8))
    both = UnitInput([first.path, second.path])
    assert both.load().samples["a"].units.tolist() == [[1, 0], [2, 0], [3, 7]]
    assert both.model_spec()["vocab_sizes"] == [6, 8]
    with pytest.raises(SpeechUnitsError, match="deduplicated"):
        UnitInput([first.path, second.path], dedup=True)


# -- save / load -----------------------------------------------------------------------------------

def test_save_load_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    spec = {"input": {"kind": "features", "num_layers": 3, "dim": 4}, "interface": "weighted-sum",
            "head": "bilstm", "hidden": 5, "level": "utterance", "num_classes": 3, "dropout": 0.3}
    model = ProbeModel(spec).eval()
    with torch.no_grad():
        model.featurizer.logits.copy_(torch.tensor([0.3, -0.2, 1.0]))
    coder = LabelCoder("classify", vocabulary=class_vocabulary(["cat", "dog", "owl"]))
    rng = np.random.default_rng(1)
    samples = {f"u{i}": Sample(features=torch.from_numpy(rng.standard_normal((3, 4 + 3 * i, 4)).astype(np.float32)))
               for i in range(5)}
    before = predict_logits(model, samples, list(samples))
    identity = {"kind": "features", "encoder": "toy", "encoder_identity": "enc-a", "layers": [0, 1, 2], "dim": 4}
    save_probe(tmp_path / "p", model, coder, {"task": "classify", "input": identity})
    probe = load_probe(tmp_path / "p")
    after = probe.logits(samples)
    assert all(np.array_equal(before[k], after[k]) for k in samples)
    assert probe.predict(samples, ["u0"])["u0"] in ("cat", "dog", "owl")
    assert read_probe_meta(tmp_path / "p")["model"]["head"] == "bilstm"
    with pytest.raises(SpeechUnitsError, match="enc-b"):
        probe.check_input({**identity, "encoder_identity": "enc-b"})


def test_load_refuses_a_directory_without_probe_json(tmp_path):
    with pytest.raises(SpeechUnitsError, match="not a probe"):
        load_probe(tmp_path)


# -- training --------------------------------------------------------------------------------------

def _separable_frames(n_utts: int, seed: int = 0) -> tuple[dict, dict]:
    """Frames of 3 classes; class c has mean 3 * e_c in 6 dims (linearly separable), noise 0.3."""
    rng = np.random.default_rng(seed)
    features, labels = {}, {}
    for i in range(n_utts):
        t = int(rng.integers(20, 40))
        y = rng.integers(0, 3, size=t)
        x = 0.3 * rng.standard_normal((t, 6))
        x[np.arange(t), y] += 3.0
        features[f"u{i:02d}"] = x.astype(np.float32)
        y = y.astype(np.int64)
        y[:2] = IGNORE_INDEX  # unlabelled frames are ignored
        labels[f"u{i:02d}"] = y
    return features, labels


def test_linear_probe_learns_separable_frames(tmp_path):
    features, labels = _separable_frames(30)
    inputs = ArrayInput(features, encoder="toy", encoder_identity="enc-a", layers=[0], frame_rate=100.0)
    ids = sorted(features)
    label_set = LabelSet("frames", {k: labels[k] for k in ids[:-2]}, missing=ids[-2:],
                         vocabulary=class_vocabulary(["a", "b", "c"]))
    split = Split(ids[:20], ids[20:24], ids[24:])
    result = train_probe("frames", inputs, label_set, split, tmp_path / "probe", lrs=(1e-2,), max_steps=150,
                         eval_every=25, batch_frames=400, quiet=True, device="cpu")
    assert result.test["frame_accuracy"]["mean"] >= 0.99
    assert result.missing_labels == ids[-2:]  # utterances without labels are reported
    meta = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert meta["split"]["test"] == 4  # the two unlabelled test utterances left the split
    assert meta["layer_weights"] == [1.0]
    assert (tmp_path / "probe" / "training" / "state.json").is_file()
    log_file = tmp_path / "probe" / "training" / "log.jsonl"
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    dev_lines = recorded_values(log_file, "dev")  # every dev evaluation, beside the step lines
    assert [r["step"] for r in dev_lines] == list(range(25, 151, 25)) and all("dev" not in r for r in logged
                                                                              if "loss" in r)
    assert dev_lines == [r for r in logged if "dev" in r]
    assert max(r["dev"]["frame_accuracy"] for r in dev_lines) == result.dev["frame_accuracy"]["mean"]
    probe = load_probe(tmp_path / "probe")
    samples = inputs.load(ids[24:]).samples
    predictions = probe.predict(samples)
    frames = np.concatenate([labels[k][2:] for k in samples])
    guessed = np.concatenate([predictions[k][2:] for k in samples])
    assert (frames == guessed).mean() >= 0.99
    with pytest.raises(SpeechUnitsError, match="already holds a probe"):
        train_probe("frames", inputs, label_set, split, tmp_path / "probe", max_steps=1, quiet=True)


def test_lr_sweep_picks_by_dev_and_reports_mean_and_std_over_seeds(tmp_path):
    features, labels = _separable_frames(16, seed=1)
    inputs = ArrayInput({k: np.stack([v, np.zeros_like(v)]) for k, v in features.items()}, encoder="toy",
                        encoder_identity="enc-a", layers=[3, 4], frame_rate=100.0)
    ids = sorted(features)
    label_set = LabelSet("frames", labels, vocabulary=class_vocabulary(["a", "b", "c"]))
    result = train_probe("frames", inputs, label_set, Split(ids[:10], ids[10:13], ids[13:]), tmp_path / "p",
                         lrs=(1e-6, 3e-2), seeds=(0, 1), max_steps=60, eval_every=20, batch_frames=400,
                         quiet=True, device="cpu")
    assert result.lr == pytest.approx(3e-2)  # a learning rate of 1e-6 does not learn in 60 steps
    assert len(result.runs) == 4
    accs = result.test["frame_accuracy"]["values"]
    assert len(accs) == 2 and result.test["frame_accuracy"]["std"] == pytest.approx(np.std(accs))
    weights = result.layer_weights
    assert len(weights) == 2 and sum(weights) == pytest.approx(1.0)
    assert weights[0] > weights[1]  # the informative layer gains weight
    runs = [r for r in result.runs if r.lr == pytest.approx(1e-6)]
    assert all(r.test is None for r in runs)  # the test part is read for the chosen lr only


def test_ctc_probe_on_units_and_input_errors_reported(tmp_path):
    """Units that spell the phones (with repeats) make a CTC probe easy; a missing utterance is reported."""
    rng = np.random.default_rng(0)
    phones = ["a", "b", "c", "d"]
    items, labels = [], {}
    for i in range(24):
        seq, n = [int(rng.integers(0, 4))], int(rng.integers(3, 7))
        while len(seq) < n:  # no phone twice in a row: dedup keeps every phone
            seq.append(int((seq[-1] + rng.integers(1, 4)) % 4))
        frames = np.repeat(seq, rng.integers(2, 5, size=len(seq)))
        items.append((f"u{i:02d}", Units(frames, 50.0, 4)))
        labels[f"u{i:02d}"] = [phones[p] for p in seq]
    store = write_units(tmp_path / "units", items[:-1], _codebook_meta("sha-u", k=4))
    inputs = UnitInput(store.path, dedup=True)
    ids = sorted(labels)
    result = train_probe("phones", inputs, LabelSet("phones", labels), Split(ids[:16], ids[16:20], ids[20:]),
                         tmp_path / "probe", head="linear", embed_dim=16, lrs=(3e-2,), max_steps=200,
                         eval_every=50, batch_frames=200, quiet=True, device="cpu")
    assert result.test["per"]["mean"] < 0.2
    assert list(result.input_errors) == [ids[-1]]
    probe = load_probe(tmp_path / "probe")
    assert probe.identity["codebook_sha256"] == ["sha-u"] and probe.identity["dedup"] is True
    test_ids = [i for i in ids[20:] if i != ids[-1]]
    predictions = probe.predict(inputs.load(test_ids).samples)
    per = error_rate([labels[i] for i in test_ids], [predictions[i] for i in test_ids])
    assert per == pytest.approx(result.test["per"]["mean"])  # the saved probe is the one that was scored


def test_collate_pads_ctc_targets_and_frames():
    samples = [Sample(features=torch.ones(1, 3, 2)), Sample(features=torch.ones(1, 5, 2))]
    batch = collate(samples, "ctc", [[1, 2], [3]])
    assert batch.x.shape == (2, 1, 5, 2) and batch.lengths.tolist() == [3, 5]
    assert batch.targets.tolist() == [[1, 2], [3, 0]] and batch.target_lengths.tolist() == [2, 1]
    frames = collate(samples, "frame", [np.array([0, 1, 2, 2]), np.array([1, 1])])
    assert frames.targets.tolist() == [[0, 1, 2, -100, -100], [1, 1, -100, -100, -100]]


def test_predictions_do_not_depend_on_batching():
    torch.manual_seed(0)
    spec = {"input": {"kind": "features", "num_layers": 2, "dim": 3}, "interface": "hierarchical-conv",
            "head": "bilstm", "hidden": 4, "level": "frame", "num_classes": 5}
    model = ProbeModel(spec)
    rng = np.random.default_rng(0)
    samples = {f"u{i}": Sample(features=torch.from_numpy(rng.standard_normal((2, 3 + 4 * i, 3)).astype(np.float32)))
               for i in range(6)}
    one = predict_logits(model, samples, list(samples), batch_frames=1)
    many = predict_logits(model, samples, list(samples), batch_frames=10_000)
    assert all(np.allclose(one[k], many[k], atol=1e-5) for k in samples)
    assert one["u2"].shape == (11, 5)


def test_check_identity_refuses_units_for_a_features_probe():
    with pytest.raises(SpeechUnitsError, match="reads features"):
        check_identity({"kind": "features", "encoder_identity": "x", "layers": [0], "dim": 3},
                       {"kind": "units", "codebook_sha256": ["y"]})
    assert phone_vocabulary([["a"]]).blank == 0


def test_top_blocks_reproduce_the_encoders_upper_layers(tiny_hubert_dir):
    """Blocks 3-4 re-run on layer 2 give the encoder's own layers 3 and 4, also inside a padded batch."""
    from speechunits.encoders import load_encoder
    from speechunits.probe.finetune import TopBlocks, parse_finetune

    encoder = load_encoder(str(tiny_hubert_dir), device="cpu")
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 12000)]
    feats = encoder.extract_batch(waves, [2, 3, 4])
    top = TopBlocks(str(tiny_hubert_dir), parse_finetune("top:2").blocks).eval()
    lengths = torch.tensor([f[2].shape[0] for f in feats])
    x = torch.zeros(2, int(lengths.max()), feats[0][2].shape[1])
    for i, f in enumerate(feats):
        x[i, : f[2].shape[0]] = torch.from_numpy(f[2])
    with torch.no_grad():
        out = top(x, lengths)  # [B, 3, T, D]
    for i, f in enumerate(feats):
        n = f[2].shape[0]
        for j, layer in enumerate((2, 3, 4)):
            np.testing.assert_allclose(out[i, j, :n].numpy(), f[layer], rtol=1e-4, atol=1e-4)
    with pytest.raises(SpeechUnitsError, match="top:N"):
        parse_finetune("top:0")


def test_time_budget_stops_runs_and_still_scores_them(tmp_path):
    features, labels = _separable_frames(10, seed=2)
    inputs = ArrayInput(features, encoder="toy", encoder_identity="enc-a", layers=[0], frame_rate=100.0)
    ids = sorted(features)
    result = train_probe("frames", inputs, LabelSet("frames", labels, vocabulary=class_vocabulary(["a", "b", "c"])),
                         Split(ids[:6], ids[6:8], ids[8:]), tmp_path / "p", lrs=(1e-2,), seeds=(0, 1),
                         max_steps=100_000, max_minutes=1e-4, eval_every=1000, batch_frames=100, quiet=True,
                         device="cpu")
    assert [r.stop_reason for r in result.runs] == ["time_budget", "time_budget"]
    assert all(r.steps_done < 100_000 and "frame_accuracy" in r.dev for r in result.runs)
    assert len(result.test["frame_accuracy"]["values"]) == 2


# -- unit embedding tables from the codebook centroids (DASB's initialisation) ---------------------

def _centroid_store(tmp_path: Path, centroids: np.ndarray, items: list) -> tuple[Path, Path]:
    from speechunits.quantize.codebook import Codebook

    codebook = Codebook(centroids, {"frame_rate": 50.0, "encoder": "toy", "layer": 3, "receptive_field": 400,
                                    "sample_rate": 16000})
    codebook.save(tmp_path / "cb")
    store = write_units(tmp_path / "units", items, codebook.meta)
    return tmp_path / "cb", store.path


def test_centroid_tables_are_the_codebook_and_bpe_tokens_average_their_units(tmp_path):
    from speechunits.units.bpe import UnitBPE

    centroids = np.arange(12, dtype=np.float32).reshape(4, 3) ** 1.5
    items = [(f"u{i}", Units(np.array([0, 0, 1, 2, 3, 3, 1, 2]), 50.0, 4)) for i in range(6)]
    cb, store = _centroid_store(tmp_path, centroids, items)
    tables = UnitInput(store, codebooks=[cb]).centroid_tables()
    assert len(tables) == 1 and np.array_equal(tables[0].numpy(), centroids)
    bpe = UnitBPE.train([np.array([0, 1, 2, 3, 1, 2])] * 6, 4, 6)
    bpe.save(tmp_path / "bpe")
    table = UnitInput(store, bpe_dir=tmp_path / "bpe", codebooks=[cb]).centroid_tables()[0].numpy()
    assert table.shape == (bpe.vocab_size, 3)
    merged = [t for t in range(bpe.vocab_size) if len(bpe.decode([t])) > 1]
    assert merged  # the frequent pair (1, 2) became a token
    for token in merged:  # by hand: the mean of its units' centroids
        assert np.allclose(table[token], centroids[bpe.decode([token])].mean(0))
    with pytest.raises(SpeechUnitsError, match="--codebook"):
        UnitInput(store).centroid_tables()
    other, _ = _centroid_store(tmp_path / "other", centroids + 1.0, items)
    with pytest.raises(SpeechUnitsError, match="holds units of codebook"):
        UnitInput(store, codebooks=[other])


def test_embedding_from_centroids_is_standardised_then_projected():
    centroids = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    emb = UnitEmbedding([3], 4, table_dims=[2])
    emb.load_centroids([centroids])
    c = centroids.numpy()
    expected_table = (c - c.mean(0)) / c.std(0)  # numpy's population std, computed independently
    assert np.allclose(emb.tables[0].weight.detach().numpy(), expected_table, atol=1e-6)
    ids = torch.tensor([[[2], [0]]])
    projection = emb.projections[0]
    by_hand = torch.from_numpy(expected_table[[2, 0]]).float() @ projection.weight.T + projection.bias
    assert torch.allclose(emb(ids)[0], by_hand, atol=1e-6)
    with pytest.raises(SpeechUnitsError, match="centroid table"):
        emb.load_centroids([centroids[:2]])
    with pytest.raises(SpeechUnitsError, match="not built for centroid tables"):
        UnitEmbedding([3], 4).load_centroids([centroids])


def test_centroid_probe_trains_frozen_or_not_and_round_trips(tmp_path):
    """Units that spell phones: a probe whose tables start from the centroids learns them; frozen tables
    stay the standardised centroids; the saved probe predicts the same without the codebook."""
    rng = np.random.default_rng(1)
    phones = ["a", "b", "c", "d"]
    items, labels = [], {}
    for i in range(24):
        seq = [int(rng.integers(0, 4))]
        while len(seq) < int(rng.integers(3, 7)):
            seq.append(int((seq[-1] + rng.integers(1, 4)) % 4))
        items.append((f"u{i:02d}", Units(np.repeat(seq, rng.integers(2, 5, size=len(seq))), 50.0, 4)))
        labels[f"u{i:02d}"] = [phones[p] for p in seq]
    centroids = rng.normal(size=(4, 5)).astype(np.float32)
    cb, store = _centroid_store(tmp_path, centroids, items)
    ids = sorted(labels)
    split = Split(ids[:16], ids[16:20], ids[20:])
    standardised = (centroids - centroids.mean(0)) / centroids.std(0)
    for init in ("centroids", "centroids-frozen"):
        inputs = UnitInput(store, dedup=True, codebooks=[cb])
        out = tmp_path / init
        result = train_probe("phones", inputs, LabelSet("phones", labels), split, out, head="linear", embed_dim=16,
                             lrs=(3e-2,), max_steps=200, eval_every=50, batch_frames=200, quiet=True, device="cpu",
                             embed_init=init)
        assert result.test["per"]["mean"] < 0.2
        meta = read_probe_meta(out)
        probe = load_probe(out)  # no codebook needed: the tables are in head.safetensors
        table = probe.model.featurizer.tables[0].weight.detach().numpy()
        assert table.shape == (4, 5)
        assert np.allclose(table, standardised, atol=1e-5) == (init == "centroids-frozen")
        assert meta["model"]["embed_init"] == init and meta["model"]["table_dims"] == [5]
        test_ids = split.test
        predictions = probe.predict(UnitInput(store, dedup=True).load(test_ids).samples)
        per = error_rate([labels[i] for i in test_ids], [predictions[i] for i in test_ids])
        assert per == pytest.approx(result.test["per"]["mean"])
    with pytest.raises(SpeechUnitsError, match="--codebook"):
        train_probe("phones", UnitInput(store, dedup=True), LabelSet("phones", labels), split, tmp_path / "none",
                    head="linear", max_steps=2, quiet=True, device="cpu", embed_init="centroids")
    features = ArrayInput({i: np.zeros((1, 6, 2), np.float32) for i in ids}, encoder="toy", encoder_identity="e",
                          layers=[0], frame_rate=50.0)
    with pytest.raises(SpeechUnitsError, match="applies to units"):
        train_probe("phones", features, LabelSet("phones", labels), split, tmp_path / "feats", head="linear",
                    max_steps=2, quiet=True, device="cpu", embed_init="centroids")


# -- class-balanced loss ---------------------------------------------------------------------------

def test_balanced_class_weights_and_the_weighted_loss_match_a_hand_computation():
    from speechunits.probe.task import UTTERANCE, batch_loss
    from speechunits.probe.train import balanced_class_weights

    assert balanced_class_weights([0, 0, 0, 1], 3) == pytest.approx([4 / 6, 2.0, 0.0])  # n / (seen * n_c)
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.0], [0.0, 3.0]])
    targets = torch.tensor([0, 0, 1])

    class Fixed(torch.nn.Module):
        def forward(self, x, lengths, durations):
            return logits

    batch = collate([Sample(torch.zeros(1, 2, 1))] * 3, UTTERANCE, [0, 0, 1])
    batch.targets = targets
    weights = torch.tensor([0.75, 1.5])
    loss, count, metrics = batch_loss(Fixed(), batch, UTTERANCE, weights)
    nll = -np.log(np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True))[[0, 1, 2], [0, 0, 1]]
    assert float(loss) == pytest.approx(float((nll * np.array([0.75, 0.75, 1.5])).sum()), rel=1e-6)
    assert count == pytest.approx(3.0) and metrics["acc"] == (2.0, 3.0)


def test_a_balanced_classify_probe_records_its_weights_and_frame_tasks_refuse_it(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"u{i:02d}" for i in range(24)]
    labels = {u: ("rare" if i % 4 == 0 else "common") for i, u in enumerate(ids)}
    features = {u: (rng.standard_normal((12, 4)) + (2.0 if labels[u] == "rare" else 0.0)).astype(np.float32)
                for u in ids}
    inputs = ArrayInput(features, encoder="toy", encoder_identity="enc-a", layers=[0], frame_rate=100.0)
    split = Split(ids[:16], ids[16:20], ids[20:])
    train_probe("classify", inputs, LabelSet("classify", labels), split, tmp_path / "p", max_steps=5, eval_every=5,
                balance=True, quiet=True, device="cpu")
    meta = json.loads((tmp_path / "p" / "probe.json").read_text())
    classes = json.loads((tmp_path / "p" / meta["labels"]["vocabulary"]).read_text())["tokens"]
    counts = {"rare": 4, "common": 12}  # the training part: every fourth utterance is rare
    expected = {c: 16 / (2 * n) for c, n in counts.items()}
    assert meta["class_weights"] == pytest.approx([expected[c] for c in classes])
    features_f, frame_labels = _separable_frames(8)
    frame_inputs = ArrayInput(features_f, encoder="toy", encoder_identity="enc-a", layers=[0], frame_rate=100.0)
    with pytest.raises(SpeechUnitsError, match=r"--balance applies to tasks 'speaker' and 'classify', not 'frames'"):
        train_probe("frames", frame_inputs, LabelSet("frames", frame_labels, vocabulary=class_vocabulary(["a", "b", "c"])),
                    Split(sorted(frame_labels)[:6], sorted(frame_labels)[6:7], sorted(frame_labels)[7:]),
                    tmp_path / "f", balance=True, quiet=True, device="cpu")

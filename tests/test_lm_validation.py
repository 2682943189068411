"""Held-out loss during LM training and the best weights by it (speechunits.lm.validation)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import speechunits.lm.validation as validation
from speechunits.errors import SpeechUnitsError
from speechunits.lm.config import build_model
from speechunits.lm.data import with_specials
from speechunits.lm.train import train_lm
from speechunits.lm.validation import dev_loss
from lm_helpers import cyclic, tiny_config, toy_store

CPU = torch.device("cpu")


def test_causal_dev_loss_is_transformers_own_loss():
    """One sequence: transformers' mean cross-entropy of the shifted labels is the held-out loss."""
    torch.manual_seed(0)
    model = build_model(tiny_config(), 16).eval()
    seq = with_specials(np.array([3, 4, 5, 6, 7, 3, 4], dtype=np.int64))
    ids = torch.from_numpy(seq)[None]
    with torch.no_grad():
        expected = float(model(input_ids=ids, labels=ids).loss)
    assert dev_loss(model, [seq], objective="causal", vocab_size=16, mask_prob=0.15, device=CPU) == \
        pytest.approx(expected, rel=1e-5)


def test_masked_dev_loss_uses_one_fixed_draw():
    torch.manual_seed(0)
    model = build_model(tiny_config("masked"), 16)
    seqs = [with_specials(np.arange(4, 4 + n) % 12 + 4) for n in (20, 30, 40)]
    first = dev_loss(model, seqs, objective="masked", vocab_size=16, mask_prob=0.3, device=CPU)
    assert first == dev_loss(model, seqs, objective="masked", vocab_size=16, mask_prob=0.3, device=CPU)
    assert model.training  # left as it was
    assert 0 < first < 10


def _store(tmp_path, name, sha="a" * 64, n=24):
    return toy_store(tmp_path / name, [cyclic(i, 30 + i % 5) for i in range(n)], sha=sha).path


def test_the_lm_keeps_the_weights_of_the_lowest_held_out_loss(tmp_path, monkeypatch):
    """Scripted held-out losses 3, 1, 2, 2.5 at steps 2, 4, 6, 8: patience 2 stops at step 8, and the
    LM directory holds step 4's weights (saved as best), not the last checkpoint's."""
    losses = iter([3.0, 1.0, 2.0, 2.5])
    monkeypatch.setattr(validation, "dev_loss", lambda *a, **k: next(losses))
    train, dev = _store(tmp_path, "train"), _store(tmp_path, "dev", n=4)
    result = train_lm(train, tmp_path / "lm", tiny_config(steps=50), dev_store=dev, eval_every=2, patience=2,
                      device="cpu", quiet=True)
    assert result.training.steps_done == 8 and result.training.stop_reason == "requested"
    meta = json.loads((tmp_path / "lm" / "lm.json").read_text())
    assert meta["dev"]["best_step"] == 4 and meta["dev"]["best_loss"] == 1.0
    assert [h["step"] for h in meta["dev"]["history"]] == [2, 4, 6, 8]
    exported = load_file(str(tmp_path / "lm" / "model.safetensors"))
    best = load_file(str(tmp_path / "lm" / "training" / "best.safetensors"))
    last = load_file(str(tmp_path / "lm" / "training" / "model.safetensors"))
    name = next(k for k in exported if k.endswith("q_proj.weight") and k in best and k in last)
    assert torch.equal(exported[name], best[name])
    assert not torch.equal(exported[name], last[name])


def test_real_held_out_loss_falls_and_the_best_is_exported(tmp_path):
    from transformers import AutoModelForCausalLM

    train, dev = _store(tmp_path, "train"), _store(tmp_path, "dev", n=4)
    train_lm(train, tmp_path / "lm", tiny_config(steps=150), dev_store=dev, eval_every=50, device="cpu", quiet=True)
    meta = json.loads((tmp_path / "lm" / "lm.json").read_text())
    losses = [h["loss"] for h in meta["dev"]["history"]]
    assert len(losses) == 3 and losses[0] < np.log(16) and losses[-1] < 0.5 * losses[0]  # learnt
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "lm"))
    sequences = validation.dev_sequences(dev, _vocab(meta), 256, "a" * 64)
    again = dev_loss(model, sequences, objective="causal", vocab_size=model.config.vocab_size, mask_prob=0.15,
                     device=CPU)
    assert again == pytest.approx(meta["dev"]["best_loss"], rel=1e-4)


def _vocab(meta):
    from speechunits.lm.vocab import LMVocab

    return LMVocab.from_dict(meta["vocab"])


def test_held_out_store_of_another_codebook_and_bad_options_refused(tmp_path):
    train, other = _store(tmp_path, "train"), _store(tmp_path, "other", sha="b" * 64, n=4)
    with pytest.raises(SpeechUnitsError, match="codebook"):
        train_lm(train, tmp_path / "lm", tiny_config(steps=5), dev_store=other, device="cpu", quiet=True)
    assert not (tmp_path / "lm").exists()  # refused before anything was written
    with pytest.raises(SpeechUnitsError, match="--eval-every"):
        train_lm(train, tmp_path / "lm2", tiny_config(steps=5), dev_store=train, eval_every=0, device="cpu",
                 quiet=True)


def test_resume_keeps_scoring_the_same_held_out_store(tmp_path):
    from dataclasses import replace

    train, dev = _store(tmp_path, "train"), _store(tmp_path, "dev", n=4)
    cfg = tiny_config(steps=4, checkpoint_every=2)
    train_lm(train, tmp_path / "lm", cfg, dev_store=dev, eval_every=2, device="cpu", quiet=True)
    train_lm(train, tmp_path / "lm", replace(cfg, steps=8), resume=True, device="cpu", quiet=True)  # no --dev
    meta = json.loads((tmp_path / "lm" / "lm.json").read_text())
    assert meta["dev"]["store"] == str(dev)
    assert [h["step"] for h in meta["dev"]["history"]] == [2, 4, 6, 8]
    assert meta["dev"]["best_loss"] == min(h["loss"] for h in meta["dev"]["history"])

"""Unit LMs: tokenizer, training on the one loop, scoring against a direct transformers forward,
codebook refusal, empty stores, reproducible sampling, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lm_helpers import K, cyclic, tiny_config, toy_store
from speechunits.errors import SpeechUnitsError


def toy_sequences(n: int = 40, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [cyclic(int(rng.integers(6)), int(rng.integers(20, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store of a deterministic toy language and a causal and a masked tiny LM trained on it."""
    from speechunits.lm.train import train_lm

    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared machine (restored after the module)
    root = tmp_path_factory.mktemp("lm")
    toy_store(root / "store", toy_sequences())
    train_lm(root / "store", root / "causal", tiny_config("causal"), quiet=True)
    train_lm(root / "store", root / "masked", tiny_config("masked", steps=300), quiet=True)
    return root


def test_tokenizer_matches_library_ids():
    from speechunits.lm.vocab import LMVocab
    from speechunits.units.bpe import UnitBPE, units_to_text

    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, K, 60) for _ in range(20)]
    bpe = UnitBPE.train([LMVocab("dedup", K).unit_sequence(s) for s in seqs], K, K + 15)
    for vocab in (LMVocab("units", K, words=["cat", "a"]), LMVocab("dedup", K), LMVocab("bpe", K, bpe=bpe)):
        tok = vocab.hf_tokenizer()
        for s in seqs[:5]:
            units = vocab.unit_sequence(s)
            assert tok(units_to_text(units))["input_ids"] == [1, *vocab.encode_units(s).tolist(), 2]
            assert np.array_equal(vocab.decode_units(vocab.encode_units(s)), units)
    words = LMVocab("units", K, words=["cat", "a"])
    ids = words.hf_tokenizer()(units_to_text([3]) + "[cat]")["input_ids"]
    assert ids == [1, 3 + 5, words.word_id("cat"), 2] and words.size == 5 + K + 2


def test_lm_directory_loads_with_auto_classes(trained):
    import transformers

    for name, auto in (("causal", transformers.AutoModelForCausalLM), ("masked", transformers.AutoModelForMaskedLM)):
        model = auto.from_pretrained(str(trained / name))
        tok = transformers.AutoTokenizer.from_pretrained(str(trained / name))
        assert model.config.vocab_size == len(tok) == 5 + K
        meta = json.loads((trained / name / "lm.json").read_text())
        assert meta["consumes"]["codebook_sha256"] == "a" * 64 and meta["consumes"]["k"] == K
        assert meta["vocab"]["tokenisation"] == "units" and meta["objective"] == name
        assert (trained / name / "training" / "state.json").is_file()


def _direct_scores(directory, auto_name, sequences):
    """Log-probabilities by transformers alone: AutoTokenizer on the unit text, one utterance per forward."""
    import transformers

    from speechunits.units.bpe import units_to_text

    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    model = getattr(transformers, auto_name).from_pretrained(str(directory)).eval()
    out = []
    with torch.no_grad():
        for seq in sequences:
            ids = torch.tensor([tok(units_to_text(seq))["input_ids"]])
            if auto_name == "AutoModelForCausalLM":
                logp = model(ids).logits[0, :-1].log_softmax(-1)
                out.append(float(logp.gather(-1, ids[0, 1:, None]).sum()))
            else:
                total = 0.0
                for t in range(1, ids.shape[1] - 1):
                    masked = ids.clone()
                    masked[0, t] = tok.mask_token_id
                    total += float(model(masked).logits[0, t].log_softmax(-1)[ids[0, t]])
                out.append(total)
    return out


@pytest.mark.parametrize("name,auto", [("causal", "AutoModelForCausalLM"), ("masked", "AutoModelForMaskedLM")])
def test_scores_equal_direct_transformers_forward(trained, name, auto):
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.score import score_store

    lm = load_lm(trained / name, "cpu")
    scores = score_store(lm, trained / "store", batch_tokens=100)  # several padded batches
    seqs = toy_sequences()[:6]
    expected = _direct_scores(trained / name, auto, seqs)
    for s, seq, value in zip(scores[:6], seqs, expected):
        assert s.logprob == pytest.approx(value, abs=1e-3)
        assert s.tokens == len(seq) + (1 if name == "causal" else 0)
        assert s.normalised == pytest.approx(s.logprob / s.tokens)


def test_causal_windows_score_every_target_once_with_half_a_window_of_context():
    from speechunits.lm.score import causal_windows

    seq = np.arange(100, 110)  # <s> f1 .. f8 </s> stand-ins: 10 tokens, windows of 5, stride 2
    windows = causal_windows(seq, 5)
    assert [(w.tolist(), first) for w, first in windows] == [
        ([1, 101, 102, 103, 104], 1),   # targets f1..f4
        ([1, 103, 104, 105, 106], 3),   # f5, f6 (after f3 f4)
        ([1, 105, 106, 107, 108], 3),   # f7, f8
        ([1, 107, 108, 109], 3)]        # f9 (</s>)
    (whole, first), = causal_windows(seq, 10)  # it fits: the sequence itself, every target
    assert whole is seq and first == 1


@pytest.mark.parametrize("name,auto", [("causal", "AutoModelForCausalLM"), ("masked", "AutoModelForMaskedLM")])
def test_an_utterance_longer_than_the_training_length_is_scored_in_windows(trained, name, auto):
    """Each target predicted from <s> and at most the training length (256 here) of its neighbours, by a
    direct transformers forward per target; and the toy language stays as probable per token as in
    short utterances (one pass over 700 tokens would run past the model's 256 positions)."""
    import transformers

    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.score import score_tokens
    from speechunits.lm.vocab import MASK_ID

    lm = load_lm(trained / name, "cpu")
    assert lm.trained_length == 256
    long, short = cyclic(0, 700), cyclic(0, 30)
    (total, count), (short_total, short_count) = score_tokens(lm, [long + 5, short + 5])  # +5: unit ids to tokens
    full = np.concatenate(([1], long + 5, [2]))
    model = getattr(transformers, auto).from_pretrained(str(trained / name)).eval()
    expected = 0.0
    with torch.no_grad():
        if name == "causal":  # target t sees <s> + f[a..t-1], a = 1 + 127 j for the window j holding t
            for t in range(1, len(full)):
                j = 0 if t < 256 else (t - 256) // 127 + 1
                a = 1 + 127 * j
                ids = torch.tensor([[1, *full[a:t]]])
                expected += float(model(ids).logits[0, -1].log_softmax(-1)[full[t]])
            assert count == 701
        else:  # token t masked among the 254 inner tokens around it
            for t in range(1, len(full) - 1):
                start = min(max(t - 127, 1), len(full) - 2 - 254 + 1)
                ids = torch.tensor([[1, *full[start:start + 254], 2]])
                position = t - start + 1
                ids[0, position] = MASK_ID
                expected += float(model(ids).logits[0, position].log_softmax(-1)[full[t]])
            assert count == 700
    assert total == pytest.approx(expected, abs=1e-2)
    assert abs(total / count - short_total / short_count) < 0.1


@pytest.mark.parametrize("name", ["causal", "masked"])
def test_trained_lm_prefers_the_toy_language_to_a_shuffle(trained, name):
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.score import score_tokens

    lm = load_lm(trained / name, "cpu")
    rng = np.random.default_rng(5)
    good = [cyclic(s, 30) for s in range(6)]
    bad = [rng.permutation(g) for g in good]
    scores = score_tokens(lm, [lm.tokens(x) for x in good + bad])
    for i in range(6):
        assert scores[i][0] > scores[6 + i][0] + 5.0


def test_mismatched_codebook_and_empty_store_refused(trained, tmp_path):
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.score import score_store
    from speechunits.lm.train import train_lm

    toy_store(tmp_path / "other", toy_sequences(3), sha="b" * 64)
    lm = load_lm(trained / "causal", "cpu")
    with pytest.raises(SpeechUnitsError, match="b{64}.*a{64}"):
        score_store(lm, tmp_path / "other")
    toy_store(tmp_path / "empty", [])
    empty = toy_store(tmp_path / "empty-a", [], sha="a" * 64)
    assert len(empty) == 0
    with pytest.raises(SpeechUnitsError, match="empty"):
        score_store(lm, tmp_path / "empty-a")
    with pytest.raises(SpeechUnitsError, match="empty"):
        train_lm(tmp_path / "empty", tmp_path / "lm", tiny_config(steps=2), quiet=True)
    with pytest.raises(SpeechUnitsError, match="already holds a checkpoint"):
        train_lm(trained / "store", trained / "causal", tiny_config(steps=2), quiet=True)


@pytest.mark.parametrize("damaged", ["config.json", "model.safetensors"])
def test_damaged_model_files_are_a_clear_error(trained, tmp_path, damaged):
    import shutil

    from speechunits.lm.model_dir import load_lm

    shutil.copytree(trained / "causal", tmp_path / "lm")
    path = tmp_path / "lm" / damaged
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(SpeechUnitsError, match="lm: unreadable model files"):
        load_lm(tmp_path / "lm", "cpu")


def test_sampling_is_reproducible_for_a_seed(trained):
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.sample import SampleOptions, prompts_from, sample_units

    lm = load_lm(trained / "causal", "cpu")
    prompts = prompts_from(lm, str(trained / "store"), prompt_seconds=0.1)[:3]
    options = SampleOptions(seconds=0.5, seed=7, temperature=0.8, top_k=4)
    first, again = sample_units(lm, prompts, options), sample_units(lm, prompts, options)
    other = sample_units(lm, prompts, SampleOptions(seconds=0.5, seed=8, temperature=2.0))
    assert all(a.units == b.units for a, b in zip(first, again))
    assert any(a.units != b.units for a, b in zip(first, other))
    assert all(len(s.units) == 25 and s.new_tokens == 25 for s in first)  # 0.5 s at 50 Hz, one token per frame
    # the LM continues its toy language: mostly +1 steps
    steps = np.concatenate([np.diff(s.units.ids) % 6 for s in first])
    assert np.mean(steps == 1) > 0.8
    with pytest.raises(SpeechUnitsError, match="masked LM cannot sample"):
        sample_units(load_lm(trained / "masked", "cpu"), prompts, options)


def test_a_prompt_longer_than_the_training_length_continues_its_end(trained, caplog):
    import logging

    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.sample import SampleOptions, sample_units
    from speechunits.units import Units

    lm = load_lm(trained / "causal", "cpu")  # trained on sequences of at most 256 tokens, 256 positions
    long = Units(cyclic(0, 400), 50.0, K)  # 400 frames, one token each
    with caplog.at_level(logging.WARNING, logger="speechunits.lm.sample"):
        sample, = sample_units(lm, [("long", long)], SampleOptions(seconds=0.5, seed=7, temperature=0.8, top_k=4,
                                                                   keep_prompt=True))
    # 256 - <s> - 25 new tokens = 230 prompt tokens go in; the whole prompt stays in the output
    assert "1 of 1 prompts were longer than the 230 tokens" in caplog.text
    assert sample.new_tokens == 25 and len(sample.units) == 425
    assert np.array_equal(sample.units.ids[:400], long.ids)
    assert np.mean(np.diff(sample.units.ids[399:]) % 6 == 1) > 0.8  # it continues where the prompt ends
    with pytest.raises(SpeechUnitsError, match=r"do not fit the LM's 256 positions after a prompt; ask for at most 3\.8 s"):
        sample_units(lm, [("long", long)], SampleOptions(seconds=5.0))


def test_resume_continues_the_checkpoint(tmp_path):
    from speechunits.lm.train import train_lm

    toy_store(tmp_path / "s", toy_sequences(10))
    train_lm(tmp_path / "s", tmp_path / "lm", tiny_config(steps=4, checkpoint_every=2), quiet=True)
    result = train_lm(tmp_path / "s", tmp_path / "lm", tiny_config(steps=6), resume=True, quiet=True)
    assert result.training.steps_done == 6 and [e.step for e in result.training.history] == [5, 6]
    toy_store(tmp_path / "b", toy_sequences(3), sha="b" * 64)
    with pytest.raises(SpeechUnitsError, match="codebook"):
        train_lm(tmp_path / "b", tmp_path / "lm", tiny_config(steps=8), resume=True, quiet=True)


def test_dedup_and_bpe_tokenisations(tmp_path):
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.sample import SampleOptions, sample_units
    from speechunits.lm.score import score_store
    from speechunits.lm.train import train_lm
    from speechunits.units.bpe import train_bpe

    seqs = [np.repeat(s, 2) for s in toy_sequences(12)]  # every unit lasts 2 frames
    store = toy_store(tmp_path / "s", seqs)
    train_bpe(store, K + 6).save(tmp_path / "bpe")
    for tokens, bpe_dir in (("dedup", None), ("bpe", tmp_path / "bpe")):
        out = tmp_path / tokens
        train_lm(tmp_path / "s", out, tiny_config(steps=3), tokens=tokens, bpe_dir=bpe_dir, quiet=True)
        lm = load_lm(out, "cpu")
        meta = lm.meta
        assert meta["frames_per_unit"] == pytest.approx(2.0)
        assert meta["vocab"]["tokenisation"] == tokens
        scores = score_store(lm, tmp_path / "s")
        assert scores[0].tokens == len(lm.tokens(seqs[0])) + 1 < len(seqs[0])
        sample = sample_units(lm, [("x", None)], SampleOptions(seconds=0.4))[0]
        assert sample.units.is_deduplicated and set(sample.units.durations.tolist()) <= {2}
    with pytest.raises(SpeechUnitsError, match="bpe:DIR"):
        train_lm(tmp_path / "s", tmp_path / "x", tiny_config(steps=1), tokens="bpe", quiet=True)


def test_missing_vocoder_is_a_clear_error(trained):
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.sample import vocoder_for

    lm = load_lm(trained / "causal", "cpu")
    import importlib.util

    if importlib.util.find_spec("speechunits.vocoder") is None:
        with pytest.raises(SpeechUnitsError, match="speechunits.vocoder"):
            vocoder_for("nowhere", lm)
    else:  # the vocoder exists (after the merge): a directory that is no vocoder is refused
        with pytest.raises(SpeechUnitsError):
            vocoder_for(str(trained / "store"), lm)


def test_cli_train_score_sample(tmp_path, capsys, caplog):
    from conftest import cli_error
    from speechunits.cli.main import main

    toy_store(tmp_path / "s", toy_sequences(8))
    assert main(["lm", "train", str(tmp_path / "s"), "-o", str(tmp_path / "lm"), "--steps", "3", "--fp32",
                 "--crop-prob", "0.5", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["lm", "score", str(tmp_path / "lm"), str(tmp_path / "s"), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["utterances"]) == 8 and out["objective"] == "causal"
    assert main(["lm", "sample", str(tmp_path / "lm"), "--prompt", str(tmp_path / "s"), "--seconds", "0.2",
                 "-o", str(tmp_path / "samples"), "--quiet"]) == 0
    from speechunits.units.store import UnitStore

    samples = UnitStore.open(tmp_path / "samples", codebook_sha256="a" * 64)
    assert len(samples) == 8 and not samples.dedup
    assert main(["lm", "train", str(tmp_path / "s"), "-o", str(tmp_path / "lm"), "--steps", "5", "--resume",
                 "--quiet"]) == 0
    state = json.loads((tmp_path / "lm" / "training" / "state.json").read_text())
    assert state["step"] == 5 and state["lm"]["bf16"] is False  # the checkpoint's config (--fp32) is kept
    assert state["lm"]["crop_prob"] == 0.5
    toy_store(tmp_path / "b", toy_sequences(2), sha="b" * 64)
    assert "b" * 64 in cli_error(["lm", "score", str(tmp_path / "lm"), str(tmp_path / "b")], caplog)
    assert "bpe:DIR" in cli_error(["lm", "train", str(tmp_path / "s"), "-o", str(tmp_path / "x"), "--tokens",
                                   "words"], caplog)
    assert "no such file" in cli_error(["lm", "score", str(tmp_path / "lm"), str(tmp_path / "x.wav")], caplog)
    import soundfile as sf
    sf.write(tmp_path / "x.wav", np.zeros(1600, dtype=np.float32), 16000)
    assert "holds no codebook" in cli_error(["lm", "score", str(tmp_path / "lm"), str(tmp_path / "x.wav")], caplog)
    assert main(["lm", "train", str(tmp_path / "s"), "-o", str(tmp_path / "lm-dev"), "--steps", "4", "--dev",
                 str(tmp_path / "s"), "--eval-every", "2", "--patience", "3", "--quiet"]) == 0
    dev = json.loads((tmp_path / "lm-dev" / "lm.json").read_text())["dev"]
    assert [h["step"] for h in dev["history"]] == [2, 4] and dev["patience"] == 3
    assert "codebook" in cli_error(["lm", "train", str(tmp_path / "s"), "-o", str(tmp_path / "y"), "--dev",
                                    str(tmp_path / "b")], caplog)
    assert "crop_prob" in cli_error(["lm", "train", str(tmp_path / "s"), "-o", str(tmp_path / "z"), "--crop-prob",
                                     "2"], caplog)


def test_sample_through_a_vocoder_of_contract_a(trained, tmp_path, monkeypatch, caplog):
    """A stand-in for speechunits.vocoder (contract A): the codebook check is called with the LM's
    codebook, a mismatch is the vocoder's clear error, and samples become wavs."""
    from conftest import cli_error
    from speechunits.audio import Audio
    from speechunits.cli.main import main

    calls = []

    class FakeVocoder:
        meta = {"speaker": "none"}
        speakers: list[str] = []

        def check_codebook(self, sha256s, *, source):
            calls.append((sha256s, source))
            if sha256s != "c" * 64:
                raise SpeechUnitsError(f"{source}: units of codebook {sha256s}, vocoder trained on {'c' * 64}")

        def synthesize(self, units, *, speaker=None, reference=None, f0=None):
            assert units.durations is None
            return Audio(np.zeros(160 * len(units), dtype=np.float32), 16000)

    import speechunits.vocoder

    # the real package stays importable (the CLI imports its other modules); only its loader is replaced
    monkeypatch.setattr(speechunits.vocoder, "load_vocoder", lambda path, device="auto": FakeVocoder())
    argv = ["lm", "sample", str(trained / "causal"), "--seconds", "0.1", "--num-samples", "2", "--vocoder", "voc"]
    error = cli_error(argv + ["-o", str(tmp_path / "a")], caplog)
    assert "a" * 64 in error and "c" * 64 in error and str(trained / "causal") in error
    assert not (tmp_path / "a").exists()
    monkeypatch.setattr(FakeVocoder, "check_codebook", lambda self, sha256s, *, source: calls.append(sha256s))
    assert main(argv + ["-o", str(tmp_path / "b"), "--quiet"]) == 0
    wavs = sorted((tmp_path / "b" / "wavs").glob("*.wav"))
    assert [w.name for w in wavs] == ["sample0000.wav", "sample0001.wav"]
    assert Audio.load(wavs[0]).num_samples == 160 * 5  # 0.1 s at 50 Hz = 5 frame-level units
    # a speaker-table vocoder needs a voice it knows: refused before anything is sampled or written
    monkeypatch.setattr(FakeVocoder, "meta", {"speaker": "table"})
    monkeypatch.setattr(FakeVocoder, "speakers", ["spk1", "spk2"])
    error = cli_error(argv + ["-o", str(tmp_path / "c"), "--speaker", "nobody"], caplog)
    assert "spk1, spk2" in error and "nobody" in error and not (tmp_path / "c").exists()
    assert main(argv + ["-o", str(tmp_path / "d"), "--speaker", "spk2", "--quiet"]) == 0


def test_a_dedup_lm_refuses_a_frame_level_vocoder(trained, tmp_path, monkeypatch, caplog):
    """Deduplicated samples carry no durations: a vocoder that reads frame-level units would voice
    every unit as one frame, so it is refused before anything is sampled; a --dedup vocoder is used."""
    from conftest import cli_error
    from speechunits.audio import Audio
    from speechunits.cli.main import main
    from speechunits.lm.train import train_lm

    train_lm(trained / "store", tmp_path / "dedup_lm", tiny_config(steps=2), tokens="dedup", quiet=True)

    class FakeVocoder:
        meta = {"speaker": "none", "dedup": False}
        speakers: list[str] = []

        def check_codebook(self, sha256s, *, source):
            pass

        def synthesize(self, units, *, speaker=None, reference=None, f0=None):
            assert units.durations is None
            return Audio(np.zeros(160 * 2 * len(units), dtype=np.float32), 16000)

    import speechunits.vocoder

    # the real package stays importable (the CLI imports its other modules); only its loader is replaced
    monkeypatch.setattr(speechunits.vocoder, "load_vocoder", lambda path, device="auto": FakeVocoder())
    argv = ["lm", "sample", str(tmp_path / "dedup_lm"), "--seconds", "0.2", "--vocoder", "voc"]
    error = cli_error(argv + ["-o", str(tmp_path / "a")], caplog)
    assert "frame-level" in error and "--dedup" in error and not (tmp_path / "a").exists()
    monkeypatch.setattr(FakeVocoder, "meta", {"speaker": "none", "dedup": True})
    assert main(argv + ["-o", str(tmp_path / "b"), "--quiet"]) == 0
    assert len(list((tmp_path / "b" / "wavs").glob("*.wav"))) == 1


def test_the_shipped_vocoder_refuses_units_of_another_codebook(trained, tmp_path, caplog):
    """The real vocoder of the package (MFCC K=100) and an LM of another codebook: a clear error naming both."""
    from conftest import cli_error
    from speechunits.recipes.demo_audio import shipped_vocoder

    vocoder = shipped_vocoder()
    assert vocoder is not None
    argv = ["lm", "sample", str(trained / "causal"), "--seconds", "0.1", "--vocoder", str(vocoder), "-o",
            str(tmp_path / "x")]
    error = cli_error(argv, caplog)
    lm_sha = json.loads((trained / "causal" / "lm.json").read_text())["consumes"]["codebook_sha256"]
    shipped_sha = json.loads((vocoder / "vocoder.json").read_text())["codebook_sha256"][0]
    assert lm_sha[:12] in error and shipped_sha[:12] in error and not (tmp_path / "x").exists()

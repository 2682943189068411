"""``speechunits probe train|eval`` and ``speechunits transcribe`` end to end on a small synthetic corpus (MFCC)."""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from speechunits.cli.main import main
from speechunits.probe.labels import load_task_labels
from speechunits.probe.metrics import error_rate
from speechunits.probe.splits import Split
from speechunits.synth.testing import small_corpus
from conftest import cli_error


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("probe-corpus"), minutes=1.5, speakers=3)


@pytest.fixture(scope="module")
def phones_probe(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "phones"
    rc = main(["probe", "train", "phones", str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
               "--lr", "1e-2", "--max-steps", "150", "--eval-every", "50", "--device", "cpu",
               "--quiet"])
    assert rc == 0
    return out


def _phone_labels(corpus: Path) -> dict[str, list[str]]:
    ids = [line.split("\t")[0] for line in (corpus / "phones.tsv").read_text().splitlines()]
    return load_task_labels("phones", list(dict.fromkeys(ids)), alignments=corpus / "phones.tsv").labels


def test_phones_probe_beats_the_most_frequent_phone_baseline(phones_probe: Path, corpus: Path):
    meta = json.loads((phones_probe / "probe.json").read_text())
    assert meta["task"] == "phones" and meta["input"]["encoder"] == "mfcc" and meta["input"]["layers"] == [0]
    split = Split.load(phones_probe / "split.json")
    labels = _phone_labels(corpus)
    common = Counter(p for utt in split.train for p in labels[utt]).most_common(1)[0][0]
    refs = [labels[u] for u in split.test]
    baseline = error_rate(refs, [[common] * len(r) for r in refs])
    assert meta["test"]["per"]["mean"] < baseline
    assert meta["throughput"]["feature_x_realtime"] > 1 and meta["throughput"]["train_x_realtime"] > 0
    assert meta["layer_weights"] == [1.0]
    assert (phones_probe / "head.safetensors").is_file() and (phones_probe / "vocab.json").is_file()


def test_probe_eval_json_reproduces_the_test_figure(phones_probe: Path, corpus: Path, capsys):
    capsys.readouterr()
    rc = main(["probe", "eval", str(phones_probe), str(corpus / "manifest.tsv"), "--split", "test", "--json",
               "--device", "cpu", "--quiet"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    meta = json.loads((phones_probe / "probe.json").read_text())
    assert result["task"] == "phones"
    assert result["utterances"] == meta["split"]["test"]
    assert result["per"] == pytest.approx(meta["test"]["per"]["mean"], abs=1e-9)


def test_transcribe_prints_phones_of_the_vocabulary(phones_probe: Path, corpus: Path, capsys):
    wav = sorted((corpus / "wavs").glob("*.wav"))[0]
    capsys.readouterr()
    assert main(["transcribe", str(wav), "--probe", str(phones_probe), "--device", "cpu", "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    utt, phones = line.split("\t")
    assert utt == wav.stem
    vocab = json.loads((phones_probe / "vocab.json").read_text())["tokens"]
    assert phones.split() and all(p in vocab[1:] for p in phones.split())


def test_transcribe_skips_files_it_cannot_read_and_fails_when_all_are(phones_probe: Path, corpus: Path,
                                                                      tmp_path: Path, capsys, caplog):
    import shutil

    import numpy as np
    import soundfile as sf

    (tmp_path / "in").mkdir()
    shutil.copy(sorted((corpus / "wavs").glob("*.wav"))[0], tmp_path / "in" / "good.wav")
    sf.write(tmp_path / "in" / "short.wav", np.zeros(100, dtype=np.float32), 16000)  # shorter than one MFCC window
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF....not a wave")
    capsys.readouterr()
    assert main(["transcribe", str(tmp_path / "in"), "--probe", str(phones_probe), "--device", "cpu", "--quiet"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["good"]
    assert "short: skipped" in caplog.text and "broken: skipped" in caplog.text
    (tmp_path / "in" / "good.wav").unlink()
    assert main(["transcribe", str(tmp_path / "in"), "--probe", str(phones_probe), "--device", "cpu", "--quiet"]) == 1
    assert capsys.readouterr().out == "" and f"{tmp_path / 'in'}: every file failed (2); the first: " in caplog.text


def test_eval_refuses_a_damaged_probe(phones_probe: Path, corpus: Path, tmp_path: Path, caplog):
    import shutil

    shutil.copytree(phones_probe, tmp_path / "probe")
    head = tmp_path / "probe" / "head.safetensors"
    head.write_bytes(head.read_bytes()[:50])
    assert main(["probe", "eval", str(tmp_path / "probe"), str(corpus / "manifest.tsv"), "--device", "cpu",
                 "--quiet"]) == 2
    assert "head.safetensors: unreadable safetensors file" in caplog.text


def test_eval_refuses_features_of_another_encoder(phones_probe: Path, corpus: Path, tmp_path: Path, caplog):
    features = tmp_path / "logmel"
    assert main(["features", str(corpus / "manifest.tsv"), "--encoder", "logmel", "-o", str(features),
                 "--quiet"]) == 0
    with caplog.at_level(logging.ERROR):
        rc = main(["probe", "eval", str(phones_probe), str(corpus / "manifest.tsv"), "--features", str(features),
                   "--quiet"])
    assert rc == 2
    assert "mfcc" in caplog.text and "logmel" in caplog.text


def test_train_needs_exactly_one_input(corpus: Path, tmp_path: Path, caplog):
    with caplog.at_level(logging.ERROR):
        rc = main(["probe", "train", "phones", str(corpus / "manifest.tsv"), "-o", str(tmp_path / "p"), "--quiet"])
    assert rc == 2 and "--encoder" in caplog.text


def test_a_bad_time_mask_is_refused_before_any_input_is_read(tmp_path: Path, caplog):
    with caplog.at_level(logging.ERROR):
        rc = main(["probe", "train", "phones", str(tmp_path / "no-such-corpus.tsv"), "--encoder", "mfcc",
                   "--time-mask", "5:0.9", "-o", str(tmp_path / "p"), "--quiet"])
    assert rc == 2 and "--time-mask" in caplog.text and "(0, 0.5]" in caplog.text


def test_unit_noise_is_refused_for_features_and_for_random_unit_tables(corpus: Path, tmp_path: Path, caplog):
    manifest = str(corpus / "manifest.tsv")
    with caplog.at_level(logging.ERROR):
        assert main(["probe", "train", "phones", manifest, "--encoder", "mfcc", "--unit-noise", "0.1",
                     "--max-steps", "2", "-o", str(tmp_path / "p"), "--device", "cpu", "--quiet"]) == 2
    assert "--unit-noise" in caplog.text and "--embed-init centroids" in caplog.text
    assert not (tmp_path / "p" / "probe.json").exists()


def test_transcribe_refuses_a_speaker_probe(corpus: Path, tmp_path: Path, caplog):
    out = tmp_path / "spk"
    assert main(["probe", "train", "speaker", str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
                 "--lr", "1e-2", "--max-steps", "30", "--eval-every", "10", "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    assert 0.0 <= meta["test"]["accuracy"]["mean"] <= 1.0 and "chance" in meta["test"]
    wav = sorted((corpus / "wavs").glob("*.wav"))[0]
    with caplog.at_level(logging.ERROR):
        assert main(["transcribe", str(wav), "--probe", str(out), "--quiet"]) == 2
    assert "does not transcribe" in caplog.text


def test_the_judge_options_train_record_and_evaluate(corpus: Path, tmp_path: Path, capsys):
    """JUDGE_PHONES_ARGS (the benchmarks' judge) through the CLI: recorded in probe.json, the stacked
    standardised probe scores the same through `probe eval` and transcribes with phones of its vocabulary."""
    from speechunits.probe.defaults import JUDGE_PHONES_ARGS

    out = tmp_path / "judge"
    assert main(["probe", "train", "phones", str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
                 *JUDGE_PHONES_ARGS, "--max-steps", "12", "--eval-every", "6", "--warmup-fraction", "0.2",
                 "--max-minutes", "30", "--time-mask", "3:0.1", "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    model = meta["model"]
    assert (model["head"], model["hidden"], model["lstm_layers"], model["stack"], model["standardize"]) == \
        ("bilstm", 128, 1, 3, True)
    assert model["time_mask"] == {"masks": 3, "max_ratio": 0.1}  # masks while training; `probe eval` below sees all
    assert meta["training"]["batch_frames"] == 4000 and meta["training"]["warmup_fraction"] == 0.2
    assert meta["selection"]["lr"] == pytest.approx(1e-2) and meta["ctc_too_short"] == 0
    capsys.readouterr()
    assert main(["probe", "eval", str(out), str(corpus / "manifest.tsv"), "--split", "dev", "--json",
                 "--device", "cpu", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["per"] == pytest.approx(meta["dev"]["per"]["mean"], abs=1e-9)


def test_asr_probe_on_characters_round_trips(corpus: Path, tmp_path: Path, capsys):
    out = tmp_path / "asr"
    assert main(["probe", "train", "asr", str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
                 "--lr", "1e-2", "--max-steps", "20", "--eval-every", "10", "--device", "cpu", "--quiet"]) == 0
    assert (out / "tokenizer" / "chars.json").is_file()
    capsys.readouterr()
    assert main(["probe", "eval", str(out), str(corpus / "manifest.tsv"), "--split", "dev", "--json",
                 "--device", "cpu", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    meta = json.loads((out / "probe.json").read_text())
    assert result["wer"] == pytest.approx(meta["dev"]["wer"]["mean"], abs=1e-9)
    assert set(result) >= {"wer", "cer", "utterances", "missing_labels"}
    # a word 3-gram of the training part's transcripts, then the beam search with it
    arpa = tmp_path / "words.arpa"
    assert main(["lm", "text-ngram", str(corpus / "text.tsv"), "-o", str(arpa), "--exclude", str(out),
                 "--quiet"]) == 0
    assert arpa.read_text().startswith("\\data\\")
    assert main(["probe", "eval", str(out), str(corpus / "manifest.tsv"), "--split", "dev", "--json",
                 "--lm", str(arpa), "--alpha", "0.8", "--beam", "8", "--device", "cpu", "--quiet"]) == 0
    with_lm = json.loads(capsys.readouterr().out)
    assert with_lm["lm"]["alpha"] == 0.8 and with_lm["lm"]["beam"] == 8 and 0 <= with_lm["wer"]
    assert with_lm["utterances"] == result["utterances"]
    assert main(["transcribe", str(corpus / "wavs"), "--probe", str(out), "--lm", str(arpa), "--json",
                 "--device", "cpu", "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and all(set(line) == {"id", "text"} for line in lines)


def _known_word_share(corpus: Path, probe: Path, vocabulary: frozenset[str], extra: list[str], capsys) -> float:
    """The share of the words ``transcribe`` prints for the corpus's wavs that are in ``vocabulary``."""
    assert main(["transcribe", str(corpus / "wavs"), "--probe", str(probe), "--json", "--device", "cpu",
                 "--quiet", *extra]) == 0
    words = [w for line in capsys.readouterr().out.splitlines() for w in json.loads(line)["text"].split()]
    return sum(w in vocabulary for w in words) / max(len(words), 1)


def test_asr_probe_on_bpe_tokens_decodes_with_a_word_lm(corpus: Path, tmp_path: Path, capsys):
    """--tokenizer N: a BPE of the training text (tokenizer.json, loadable by HF tokenizers); --lm searches
    its word pieces; the words it prints are words of the LM's vocabulary or spelled by the pieces."""
    from tokenizers import Tokenizer

    from speechunits.lm.arpa import read_arpa

    out = tmp_path / "asr-bpe"
    assert main(["probe", "train", "asr", str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
                 "--tokenizer", "40", "--lr", "1e-2", "--max-steps", "20", "--eval-every", "10", "--device", "cpu",
                 "--quiet"]) == 0
    hf = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    assert hf.get_vocab_size() <= 40 and any(t.startswith("\u2581") for t in hf.get_vocab())
    arpa = tmp_path / "words.arpa"
    assert main(["lm", "text-ngram", str(corpus / "text.tsv"), "-o", str(arpa), "--exclude", str(out),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["probe", "eval", str(out), str(corpus / "manifest.tsv"), "--split", "dev", "--json",
                 "--lm", str(arpa), "--alpha", "1.0", "--beam", "8", "--device", "cpu", "--quiet"]) == 0
    with_lm = json.loads(capsys.readouterr().out)
    assert with_lm["lm"]["alpha"] == 1.0 and 0 <= with_lm["wer"]
    vocabulary = read_arpa(arpa).vocabulary

    def known_share(extra: list[str]) -> float:
        return _known_word_share(corpus, out, vocabulary, extra, capsys)

    # a probe of 20 steps spells mostly non-words; the search with the LM turns them into the LM's words
    greedy, searched = known_share([]), known_share(["--lm", str(arpa), "--alpha", "1.0", "--beam", "16"])
    assert searched > greedy + 0.2


def test_lm_decoding_is_refused_for_probes_it_cannot_serve(phones_probe: Path, corpus: Path, tmp_path: Path, caplog):
    arpa = tmp_path / "words.arpa"
    assert main(["lm", "text-ngram", str(corpus / "text.tsv"), "-o", str(arpa), "--quiet"]) == 0
    caplog.clear()
    assert main(["probe", "eval", str(phones_probe), str(corpus / "manifest.tsv"), "--lm", str(arpa),
                 "--device", "cpu", "--quiet"]) != 0
    assert "needs an asr probe" in caplog.text
    assert main(["lm", "text-ngram", str(corpus / "text.tsv"), "-o", str(tmp_path / "x.arpa"),
                 "--exclude", str(tmp_path / "no-probe"), "--quiet"]) != 0


def test_unit_probe_with_bpe_transcribes_through_its_codebook(corpus: Path, tmp_path: Path, capsys, caplog):
    """MFCC K=30 units, deduplicated + BPE, tables from the centroids: train, transcribe with the codebook or the
    probe's own copy of it; a probe without a copy refuses audio without the codebook."""
    manifest = str(corpus / "manifest.tsv")
    assert main(["fit", manifest, "--encoder", "mfcc", "--k", "30", "-o", str(tmp_path / "cb"), "--quiet"]) == 0
    assert main(["encode", manifest, "--codebook", str(tmp_path / "cb"), "-o", str(tmp_path / "units"),
                 "--quiet"]) == 0
    assert main(["bpe", "train", str(tmp_path / "units"), "--vocab", "50", "-o", str(tmp_path / "bpe")]) == 0
    out = tmp_path / "probe"
    train = ["probe", "train", "phones", manifest, "--units", str(tmp_path / "units"), "--dedup", "--bpe",
             str(tmp_path / "bpe"), "--embed-init", "centroids", "--lr", "1e-2", "--max-steps", "40",
             "--eval-every", "20", "--device", "cpu", "--quiet"]
    with caplog.at_level(logging.ERROR):
        assert main([*train, "-o", str(tmp_path / "no-codebook")]) == 2
    assert "--codebook" in caplog.text
    caplog.clear()
    assert main([*train, "--codebook", str(tmp_path / "cb"), "--unit-noise", "0.1:3", "-o", str(out)]) == 0
    meta = json.loads((out / "probe.json").read_text())
    identity = meta["input"]
    assert identity["dedup"] is True and identity["bpe_sha256"]
    assert meta["model"]["embed_init"] == "centroids" and meta["model"]["table_dims"] == [39]
    assert meta["model"]["unit_noise"] == {"prob": 0.1, "neighbours": 3}
    wav = str(sorted((corpus / "wavs").glob("*.wav"))[0])
    capsys.readouterr()
    assert main(["transcribe", wav, "--probe", str(out), "--codebook", str(tmp_path / "cb"), "--json",
                 "--device", "cpu", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"id", "text"}
    # the probe keeps copies of the codebook and BPE it was given: without them, and with the originals
    # gone, it transcribes the same
    (tmp_path / "cb").rename(tmp_path / "cb-moved")
    (tmp_path / "bpe").rename(tmp_path / "bpe-moved")
    assert main(["transcribe", wav, "--probe", str(out), "--json", "--device", "cpu", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == record
    assert main(["probe", "eval", str(out), manifest, "--split", "test", "--json", "--device", "cpu", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["per"] == pytest.approx(meta["test"]["per"]["mean"], abs=1e-9)
    # a unit probe trained without --codebook has no copy: audio needs the codebook
    plain = tmp_path / "plain"
    assert main(["probe", "train", "phones", manifest, "--units", str(tmp_path / "units"), "--dedup", "--lr", "1e-2",
                 "--max-steps", "2", "--device", "cpu", "--quiet", "-o", str(plain)]) == 0
    assert not (plain / "codebooks").exists()
    with caplog.at_level(logging.ERROR):
        assert main(["transcribe", wav, "--probe", str(plain), "--device", "cpu", "--quiet"]) == 2
    assert "--codebook" in caplog.text and "keeps a copy" in caplog.text
    capsys.readouterr()
    assert main(["transcribe", wav, "--probe", str(plain), "--codebook", str(tmp_path / "cb-moved"), "--device", "cpu",
                 "--quiet"]) == 0


def test_hf_encoder_all_layers_and_its_features_directory(corpus: Path, tiny_hubert_dir: Path, tmp_path: Path,
                                                          capsys):
    """A probe trained on the fly over all layers of a model reads a features dump of the same model and layers."""
    manifest = str(corpus / "manifest.tsv")
    out = tmp_path / "frames"
    assert main(["probe", "train", "frames", manifest, "--encoder", str(tiny_hubert_dir), "--layers", "all",
                 "-o", str(out), "--lr", "1e-2", "--max-steps", "20", "--eval-every", "10", "--device", "cpu",
                 "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    assert meta["input"]["layers"] == [0, 1, 2, 3, 4]
    assert len(meta["layer_weights"]) == 5 and sum(meta["layer_weights"]) == pytest.approx(1.0)
    features = tmp_path / "feats"
    assert main(["features", manifest, "--encoder", str(tiny_hubert_dir), "--layers", "0-4", "-o", str(features),
                 "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["probe", "eval", str(out), manifest, "--features", str(features), "--split", "dev", "--json",
                 "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frame_accuracy"] == pytest.approx(meta["dev"]["frame_accuracy"]["mean"], abs=0.02)


def test_hierarchical_conv_bilstm_speaker_probe(corpus: Path, tiny_hubert_dir: Path, tmp_path: Path):
    out = tmp_path / "spk"
    assert main(["probe", "train", "speaker", str(corpus / "manifest.tsv"), "--encoder", str(tiny_hubert_dir),
                 "--layers", "1-3", "--interface", "hierarchical-conv", "--head", "bilstm", "--hidden", "16",
                 "-o", str(out), "--lr", "1e-3,1e-2", "--seeds", "2", "--max-steps", "6", "--eval-every", "3",
                 "--batch-frames", "2000",
                 "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    assert meta["model"]["interface"] == "hierarchical-conv" and meta["model"]["head"] == "bilstm"
    assert len(meta["runs"]) == 4 and meta["selection"]["lr"] in (1e-3, 1e-2)
    assert len(meta["test"]["accuracy"]["values"]) == 2
    assert meta["layer_weights"] is None


def test_classify_split_by_speaker_reports_unlabelled_utterances(corpus: Path, tmp_path: Path, caplog):
    speakers = dict(line.split("\t") for line in (corpus / "speakers.tsv").read_text().splitlines() if line)
    ids = sorted(speakers)
    labels = tmp_path / "labels.tsv"  # an utterance label: is the utterance id even? (not for the last three)
    labels.write_text("".join(f"{u}\t{'even' if i % 2 == 0 else 'odd'}\n" for i, u in enumerate(ids[:-3])))
    out = tmp_path / "cls"
    with caplog.at_level(logging.WARNING):
        assert main(["probe", "train", "classify", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--labels",
                     str(labels), "--split-by", "speaker", "-o", str(out), "--max-steps", "5", "--eval-every", "5",
                     "--device", "cpu", "--quiet"]) == 0
    assert "3 of" in caplog.text and "no classify label" in caplog.text
    meta = json.loads((out / "probe.json").read_text())
    assert meta["missing_labels"] == 3 and meta["split"]["by"] == "speaker"
    split = json.loads((out / "split.json").read_text())
    train_speakers = {speakers[u] for u in split["train"]}
    assert not train_speakers & {speakers[u] for u in split["dev"] + split["test"]}


def test_a_classifier_of_one_class_is_refused(corpus: Path, tmp_path: Path, caplog):
    # one speaker (or one label) everywhere: a probe would score 100 % having learned nothing
    one = tmp_path / "one.tsv"
    one.write_text("".join(f"{line.split(chr(9))[0]}\tsame\n"
                           for line in (corpus / "speakers.tsv").read_text().splitlines() if line))
    for task in ("speaker", "classify"):
        option = "--speakers" if task == "speaker" else "--labels"
        message = cli_error(["probe", "train", task, str(corpus / "manifest.tsv"), "--encoder", "mfcc", option,
                             str(one), "-o", str(tmp_path / task), "--max-steps", "2", "--device", "cpu", "--quiet"],
                            caplog)
        assert f"task {task!r}: the training part has 1 class(es) ('same')" in message
        assert not (tmp_path / task / "probe.json").exists()


def test_finetune_top_blocks(corpus: Path, tiny_hubert_dir: Path, tmp_path: Path, capsys, caplog):
    """--finetune top:2 caches layer 2 of a 4-block model, trains blocks 3-4 with the head; eval reloads them."""
    manifest = str(corpus / "manifest.tsv")
    out = tmp_path / "ft"
    assert main(["probe", "train", "frames", manifest, "--encoder", str(tiny_hubert_dir), "--finetune", "top:2",
                 "-o", str(out), "--lr", "1e-3", "--max-steps", "6", "--eval-every", "3", "--batch-frames", "3000",
                 "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    assert meta["input"]["layers"] == [2] and meta["layers"] == [2, 3, 4]
    assert meta["finetune"] == {"kind": "top", "blocks": 2, "encoder": str(tiny_hubert_dir)}
    assert len(meta["layer_weights"]) == 3
    from safetensors import safe_open

    with safe_open(str(out / "head.safetensors"), "pt") as handle:
        assert any(name.startswith("top.layers.1.") for name in handle.keys())
    capsys.readouterr()
    assert main(["probe", "eval", str(out), manifest, "--split", "dev", "--json", "--device", "cpu", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frame_accuracy"] == pytest.approx(meta["dev"]["frame_accuracy"]["mean"], abs=0.02)
    with caplog.at_level(logging.ERROR):
        assert main(["probe", "train", "frames", manifest, "--encoder", "mfcc", "--finetune", "lora", "-o",
                     str(tmp_path / "x"), "--quiet"]) == 2
    assert "no transformer blocks" in caplog.text


def test_a_lora_asr_probe_decodes_with_a_word_lm(corpus: Path, tiny_hubert_dir: Path, tmp_path: Path, capsys):
    """--lm serves a fine-tuned probe as it serves a frozen one: eval and transcribe run the encoder with the
    probe's low-rank updates, then the beam search turns spelled non-words into the LM's words."""
    from speechunits.lm.arpa import read_arpa

    manifest = str(corpus / "manifest.tsv")
    out = tmp_path / "asr-lora"
    assert main(["probe", "train", "asr", manifest, "--encoder", str(tiny_hubert_dir), "--finetune", "lora:2",
                 "-o", str(out), "--lr", "1e-2", "--max-steps", "20", "--eval-every", "10", "--batch-frames", "3000",
                 "--device", "cpu", "--quiet"]) == 0
    assert json.loads((out / "probe.json").read_text())["finetune"]["kind"] == "lora"
    arpa = tmp_path / "words.arpa"
    assert main(["lm", "text-ngram", str(corpus / "text.tsv"), "-o", str(arpa), "--exclude", str(out),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["probe", "eval", str(out), manifest, "--split", "dev", "--json", "--lm", str(arpa),
                 "--alpha", "1.0", "--beam", "8", "--device", "cpu", "--quiet"]) == 0
    with_lm = json.loads(capsys.readouterr().out)
    assert with_lm["lm"]["beam"] == 8 and 0 <= with_lm["wer"] and with_lm["utterances"] > 0
    vocabulary = read_arpa(arpa).vocabulary

    def known_share(extra: list[str]) -> float:
        return _known_word_share(corpus, out, vocabulary, extra, capsys)

    greedy, searched = known_share([]), known_share(["--lm", str(arpa), "--alpha", "1.0", "--beam", "16"])
    assert searched > greedy + 0.2


def test_a_killed_sweep_is_refused_without_resume_and_finished_with_it(corpus: Path, tmp_path: Path, caplog,
                                                                        monkeypatch):
    from speechunits.training.loop import Trainer

    out = tmp_path / "p"
    argv = ["probe", "train", "phones", str(corpus / "manifest.tsv"), "-o", str(out), "--encoder", "mfcc",
            "--lr", "1e-3,1e-2", "--max-steps", "20", "--eval-every", "5", "--step-schedule", "--device", "cpu",
            "--quiet"]
    original, calls = Trainer.step, []

    def killed_at_step_28(self, index, time_fraction=0.0):  # the second run's step 8 (its checkpoint: step 5)
        if len(calls) == 27:
            raise KeyboardInterrupt
        calls.append(index)
        return original(self, index, time_fraction)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", killed_at_step_28)
        assert main(argv) == 130  # Ctrl-C
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2 and "unfinished sweep" in caplog.text and "--resume" in caplog.text
    calls.clear()
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", lambda self, index, time_fraction=0.0: calls.append(index) or original(
            self, index, time_fraction))
        assert main(argv + ["--resume"]) == 0
    assert calls == list(range(5, 20))
    meta = json.loads((out / "probe.json").read_text())
    assert [r["steps_done"] for r in meta["runs"]] == [20, 20]

"""``speechunits tts train|say``, ``s2ut train`` and ``translate`` end to end on tiny synthetic corpora."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli_error
from speechunits.errors import SpeechUnitsError
from test_seq2seq import FakeVocoder

TINY_TTS = "dim=32,heads=2,ffn=64,encoder_layers=1,decoder_layers=1,duration_hidden=32,ar_hidden=32"
TINY_S2UT = "dim=32,heads=2,ffn=64,encoder_layers=1,decoder_layers=1"
FAST = ["--no-bf16", "--threads", "1", "--quiet", "--device", "cpu", "--warmup-steps", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from speechunits.synth.testing import small_corpus

    return small_corpus(tmp_path_factory.mktemp("tts-corpus"), minutes=0.5, speakers=3)


@pytest.fixture(scope="module")
def codebook(tmp_path_factory, corpus) -> Path:
    """K=16 MFCC codebook from frames of the corpus (every 7th frame as a centroid)."""
    from speechunits.audio import Audio
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.quantize.codebook import encoder_meta

    mfcc = load_encoder("mfcc")
    utt = next(iter(open_corpus(corpus / "manifest.tsv")))
    feats = mfcc.extract(Audio.load(utt.path), [0])[0]
    out = tmp_path_factory.mktemp("cb") / "cb"
    Codebook(torch.from_numpy(feats[::7][:16].copy()), {"layer": 0, **encoder_meta(mfcc.info)}).save(out)
    return out


def _run(argv: list[str], capsys) -> dict:
    from speechunits.cli.main import main

    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture()
def fake_vocoder(monkeypatch, codebook):
    from speechunits.quantize import Codebook
    from speechunits.seq2seq import infer

    voc = FakeVocoder(Codebook.load(codebook).sha256, speakers=("en00", "en01", "en02"))
    made = {}

    def load(path, device):
        made["path"] = path
        return FakeVocoder("f" * 64) if "other" in str(path) else voc

    monkeypatch.setattr(infer, "_load_vocoder", load)
    return voc


def test_tts_train_say_and_resume(tmp_path, corpus, codebook, fake_vocoder, capsys, caplog):
    from speechunits.units.store import UnitStore

    out = tmp_path / "tts"
    summary = _run(["tts", "train", str(corpus), "--codebook", str(codebook), "-o", str(out), "--steps", "3",
                    "--model", TINY_TTS, "--holdout", "0.2", *FAST], capsys)
    assert summary["steps_done"] == 3 and summary["speakers"] == 3 and summary["heldout_utterances"] >= 1
    meta = json.loads((out / "tts.json").read_text())
    assert meta["units"]["sha256"] == json.loads((codebook / "codebook.json").read_text())["sha256"]
    assert meta["input"]["voice"] == "en-us" and set(meta["heldout"]) >= {"uer", "unit_bleu", "diversity"}
    held = set(meta["data"]["heldout_ids"])
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines())
    assert not {texts[i] for i in held} & {t for i, t in texts.items() if i not in held}  # sentences held out

    resumed = _run(["tts", "train", str(corpus), "--codebook", str(codebook), "-o", str(out), "--steps", "5",
                    "--resume", *FAST], capsys)
    assert resumed["steps_done"] == 5
    assert "--resume" in cli_error(["tts", "train", str(corpus), "--codebook", str(codebook), "-o", str(out),
                                    "--steps", "5", *FAST], caplog)

    text = texts[sorted(texts)[0]]
    said = _run(["tts", "say", text, "--tts", str(out), "--vocoder", "VOC", "--speaker", "en01", "-o",
                 str(tmp_path / "a.wav"), "--units-out", str(tmp_path / "units"), "--device", "cpu"], capsys)
    assert said["wavs"] == [str(tmp_path / "a.wav")] and (tmp_path / "a.wav").is_file()
    store = UnitStore.open(tmp_path / "units", codebook_sha256=meta["units"]["sha256"])
    (_, units), = list(store)
    assert store.dedup and units == fake_vocoder.calls[-1]  # the vocoder got the units with their durations

    from speechunits.seq2seq.model_dir import load_tts

    bundle = load_tts(out)
    ids = bundle.tokens(text)
    given = [2] * len(ids)
    (timed,) = bundle.units_of_tokens([ids], "en01", durations=[given])  # durations replace the predicted ones
    assert int(timed.durations.sum()) == 2 * len(ids)
    with pytest.raises(SpeechUnitsError, match="2 duration lists for 1 texts"):
        bundle.units_of_tokens([ids], "en01", durations=[given, given])

    drawn = [_run(["tts", "say", text, "--tts", str(out), "--speaker", "en01", "--temperature", "1", "--seed", "7",
                   "--units-out", str(tmp_path / f"drawn{i}"), "--device", "cpu"], capsys) for i in (1, 2)]
    stores = [list(UnitStore.open(tmp_path / f"drawn{i}")) for i in (1, 2)]
    assert drawn[0] == drawn[1] and stores[0] == stores[1]  # the seed repeats the draws

    lines = tmp_path / "texts.tsv"
    lines.write_text(f"x1\t{text}\nx2\t{texts[sorted(texts)[1]]}\n", encoding="utf-8")
    said = _run(["tts", "say", "--text-file", str(lines), "--tts", str(out), "--vocoder", "VOC", "--speaker",
                 "en00", "-o", str(tmp_path / "many"), "--device", "cpu"], capsys)
    assert sorted(Path(p).name for p in said["wavs"]) == ["x1.wav", "x2.wav"]

    assert "unknown speaker 'nobody'" in cli_error(["tts", "say", text, "--tts", str(out), "--vocoder", "VOC",
                                                    "--speaker", "nobody", "-o", str(tmp_path / "b.wav")], caplog)
    message = cli_error(["tts", "say", text, "--tts", str(out), "--vocoder", "other", "--speaker", "en00",
                         "-o", str(tmp_path / "c.wav")], caplog)
    assert "ffffffffffff" in message and meta["units"]["sha256"][:12] in message


def _unaligned(corpus: Path, out: Path) -> Path:
    """A copy of the corpus without its alignments (phones.tsv, words.tsv, textgrids/): transcripts only."""
    shutil.copytree(corpus, out)
    for name in ("phones.tsv", "words.tsv"):
        (out / name).unlink()
    shutil.rmtree(out / "textgrids")
    return out


def test_tts_train_bad_corpora(tmp_path, corpus, codebook, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    # a folder without audio is named as such before its label files are looked for
    assert "no audio files" in cli_error(["tts", "train", str(empty), "--codebook", str(codebook), "-o",
                                          str(tmp_path / "t0"), *FAST], caplog)
    assert "no such file or directory" in cli_error(["tts", "train", str(tmp_path / "nope"), "--codebook",
                                                     str(codebook), "-o", str(tmp_path / "t5"), *FAST], caplog)
    unaligned = _unaligned(corpus, tmp_path / "unaligned")
    message = cli_error(["tts", "train", str(unaligned / "manifest.tsv"), "--codebook", str(codebook), "-o",
                         str(tmp_path / "t1"), "--durations", "alignments", *FAST], caplog)
    assert "no alignments" in message and "--durations mas" in message
    bare = _unaligned(corpus, tmp_path / "bare")  # neither alignments nor transcripts
    for name in ("text.tsv", "text", "manifest.jsonl"):
        (bare / name).unlink()
    assert "neither alignments" in cli_error(["tts", "train", str(bare), "--codebook", str(codebook), "-o",
                                              str(tmp_path / "t2"), "--speaker", "none", *FAST], caplog)
    assert "needs transcripts" in cli_error(["tts", "train", str(bare), "--codebook", str(codebook), "-o",
                                             str(tmp_path / "t3"), "--speaker", "none", "--durations", "mas",
                                             *FAST], caplog)
    nospeakers = tmp_path / "nospeakers"
    shutil.copytree(corpus, nospeakers)
    (nospeakers / "speakers.tsv").unlink()
    (nospeakers / "manifest.jsonl").unlink()
    assert "speakers.tsv" in cli_error(["tts", "train", str(nospeakers), "--codebook", str(codebook), "-o",
                                        str(tmp_path / "t4"), "--speaker", "table", *FAST], caplog)
    # the default (auto): a speaker table where the corpus names its speakers, else one voice (LJSpeech)
    from speechunits.corpus import read_speakers
    from speechunits.seq2seq.tts_train import _corpus_labels

    assert _corpus_labels(nospeakers, "phones", None, "auto")["speakers"] is None
    assert set(_corpus_labels(corpus, "phones", None, "auto")["speakers"].values()) == \
        set(read_speakers(corpus / "speakers.tsv").values())


def test_tts_train_from_transcripts_only_learns_durations(tmp_path, corpus, codebook, fake_vocoder, capsys, caplog):
    """No phones.tsv: --durations mas phonemises text.tsv, learns durations by MAS, and the model speaks."""
    from speechunits.seq2seq.model_dir import load_tts

    unaligned = _unaligned(corpus, tmp_path / "unaligned")
    out = tmp_path / "tts"
    summary = _run(["tts", "train", str(unaligned), "--codebook", str(codebook), "-o", str(out), "--steps", "3",
                    "--durations", "mas", "--model", TINY_TTS, "--holdout", "0", *FAST], capsys)
    assert summary["durations"] == "mas" and summary["steps_done"] == 3 and summary["train_utterances"] == 12
    meta = json.loads((out / "tts.json").read_text())
    assert meta["training"]["durations"] == "mas" and meta["config"]["alignment_dim"] == 32
    bundle = load_tts(out)
    assert bundle.model.aligner is not None
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines())
    said = _run(["tts", "say", texts[sorted(texts)[0]], "--tts", str(out), "--vocoder", "VOC", "--speaker", "en01",
                 "-o", str(tmp_path / "a.wav"), "--device", "cpu"], capsys)
    assert said["units"][0] >= 1 and (tmp_path / "a.wav").is_file()

    # auto picks mas on an unaligned corpus, alignments on an aligned one; a resume keeps its source
    auto = _run(["tts", "train", str(unaligned), "--codebook", str(codebook), "-o", str(tmp_path / "auto"),
                 "--steps", "1", "--input", "chars", "--speaker", "none", "--model", TINY_TTS, *FAST], capsys)
    assert auto["durations"] == "mas"
    parallel_only = TINY_TTS.replace("ar_hidden=32", "ar_hidden=0")
    aligned = _run(["tts", "train", str(corpus), "--codebook", str(codebook), "-o", str(tmp_path / "aligned"),
                    "--steps", "1", "--model", parallel_only, *FAST], capsys)
    assert aligned["durations"] == "alignments"
    config = json.loads((tmp_path / "aligned" / "tts.json").read_text())["config"]
    assert config["alignment_dim"] == 0 and config["ar_hidden"] == 0  # the parallel head alone, when asked
    assert json.loads((out / "tts.json").read_text())["config"]["ar_hidden"] == 32
    default = _run(["tts", "train", str(corpus), "--codebook", str(codebook), "-o", str(tmp_path / "default"),
                    "--steps", "1", "--model", TINY_TTS.replace(",ar_hidden=32", ""), *FAST], capsys)
    assert default["steps_done"] == 1
    assert json.loads((tmp_path / "default" / "tts.json").read_text())["config"]["ar_hidden"] == 256  # the default head
    message = cli_error(["tts", "train", str(corpus), "--codebook", str(codebook), "-o", str(out), "--steps", "4",
                         "--durations", "alignments", "--resume", *FAST], caplog)
    assert "trained with durations from mas" in message


def test_tts_chars_input_and_no_speaker(tmp_path, corpus, codebook, capsys):
    from speechunits.seq2seq.model_dir import load_tts

    out = tmp_path / "tts"
    _run(["tts", "train", str(corpus), "--codebook", str(codebook), "-o", str(out), "--steps", "2", "--input",
          "chars", "--speaker", "none", "--model", TINY_TTS, *FAST], capsys)
    bundle = load_tts(out)
    assert bundle.speakers == [] and bundle.symbols.kind == "chars" and "|" in bundle.symbols.symbols
    (units,) = bundle.units_of(["a cat"])
    assert units.durations is not None and units.vocab_size == 16


def test_s2ut_train_and_translate(tmp_path, codebook, fake_vocoder, capsys, caplog):
    from speechunits.seq2seq.testing import tiny_pairs
    from speechunits.units.store import UnitStore

    pairs = tiny_pairs(tmp_path / "pairs", dev_every=4)
    out = tmp_path / "s2ut"
    summary = _run(["s2ut", "train", str(pairs), "-o", str(out), "--encoder", "mfcc", "--layer", "0",
                    "--target-codebook", str(codebook), "--ctc-text", "--steps", "3", "--beam", "2",
                    "--model", TINY_S2UT, "--batch-frames", "3000", *FAST], capsys)
    assert summary["steps_done"] == 3 and summary["train_pairs"] > 0
    assert set(summary["scores"]["dev"]) >= {"uer", "unit_bleu", "diversity"}
    meta = json.loads((out / "s2ut.json").read_text())
    assert meta["source"]["encoder"] == "mfcc" and meta["source"]["layers"] == [0] and meta["ctc"]

    result = _run(["translate", str(tmp_path / "pairs" / "src"), "--s2ut", str(out), "--vocoder", "VOC",
                   "--speaker", "en00", "-o", str(tmp_path / "tr"), "--beam", "1", "--device", "cpu"], capsys)
    store = UnitStore.open(tmp_path / "tr" / "units", codebook_sha256=meta["target"]["sha256"])
    assert len(store) == result["utterances"] > 0
    assert len(list((tmp_path / "tr" / "wavs").glob("*.wav"))) == sum(1 for _, u in store if len(u))
    assert all(u.durations is None for u in fake_vocoder.calls)  # no durations: the vocoder predicts them
    message = cli_error(["translate", str(tmp_path / "pairs" / "src"), "--s2ut", str(out), "--vocoder", "other",
                         "-o", str(tmp_path / "tr2")], caplog)
    assert "ffffffffffff" in message and meta["target"]["sha256"][:12] in message
    # the source corpus's own folder, or its manifest with OUT where its wavs/ are: refused before decoding
    src = tmp_path / "pairs" / "src"
    before = {p.name: p.read_bytes() for p in (src / "wavs").glob("*.wav")}
    assert "inside the input directory" in cli_error(["translate", str(src), "--s2ut", str(out), "--vocoder",
                                                      "VOC", "--speaker", "en00", "-o", str(src)], caplog)
    assert "is an input file" in cli_error(["translate", str(src / "manifest.tsv"), "--s2ut", str(out),
                                            "--vocoder", "VOC", "--speaker", "en00", "-o", str(src)], caplog)
    assert {p.name: p.read_bytes() for p in (src / "wavs").glob("*.wav")} == before and before
    refs = tmp_path / "refs.tsv"
    refs.write_text("x\ty\n")
    assert "scores text translations" in cli_error(["translate", str(src), "--s2ut", str(out), "--references",
                                                    str(refs), "-o", str(tmp_path / "tr4")], caplog)


def test_speech_to_text_translation_writes_and_scores_text(tmp_path, codebook, capsys, caplog):
    """SUPERB's ST: features -> text with ``s2ut train --target text``; ``translate`` writes text.tsv."""
    import csv

    from speechunits.seq2seq.testing import tiny_pairs

    pairs = tiny_pairs(tmp_path / "pairs", dev_every=4)
    # as CoVoST users have it: source audio and target text, no target audio (nor target ids)
    shutil.rmtree(tmp_path / "pairs" / "tgt")
    table = [line.split("\t") for line in pairs.read_text(encoding="utf-8").splitlines()]
    column = table[0].index("target")
    pairs.write_text("".join("\t".join(row[:column] + ["" if k else row[column]] + row[column + 1:]) + "\n"
                             for k, row in enumerate(table)), encoding="utf-8")
    out = tmp_path / "st"
    summary = _run(["s2ut", "train", str(pairs), "-o", str(out), "--encoder", "mfcc", "--layer", "0",
                    "--target", "text", "--steps", "3", "--beam", "2", "--model", TINY_S2UT,
                    "--batch-frames", "3000", *FAST], capsys)
    assert set(summary["scores"]["dev"]) == {"cer", "bleu", "diversity"}
    rows = list(csv.DictReader(open(pairs, encoding="utf-8"), delimiter="\t"))
    refs = tmp_path / "refs.tsv"
    refs.write_text("".join(f"{r['source']}\t{r['target_text']}\n" for r in rows[1:]), encoding="utf-8")
    src = tmp_path / "pairs" / "src"
    result = _run(["translate", str(src), "--s2ut", str(out), "-o", str(tmp_path / "tr"), "--beam", "1",
                   "--references", str(refs), "--device", "cpu"], capsys)
    written = dict(line.split("\t") for line in (tmp_path / "tr" / "text.tsv").read_text().splitlines())
    assert len(written) == result["utterances"] == len(rows) and not (tmp_path / "tr" / "units").exists()
    assert result["scored"] == len(rows) - 1 and result["unreferenced"] == 1  # the first has no reference
    assert 0.0 <= result["bleu"] <= 100.0 and result["cer"] >= 0.0
    assert "exists" in cli_error(["translate", str(src), "--s2ut", str(out), "-o", str(tmp_path / "tr")], caplog)
    assert "no units for a vocoder" in cli_error(["translate", str(src), "--s2ut", str(out), "--vocoder", "VOC",
                                                  "-o", str(tmp_path / "tr2")], caplog)
    other = tmp_path / "other.tsv"
    other.write_text("nobody\tsome text\n")
    assert "none of its ids" in cli_error(["translate", str(src), "--s2ut", str(out), "--references", str(other),
                                           "-o", str(tmp_path / "tr3")], caplog)


def test_translation_scores_by_hand():
    from speechunits.seq2seq.infer import score_translations

    same = score_translations({"a": "The cat sat on the mat.", "b": "hello there"},
                              {"a": "the cat sat on the mat", "b": "hello there", "c": "extra"}, "refs")
    assert same == {"bleu": pytest.approx(100.0), "cer": 0.0, "scored": 2, "unreferenced": 1}
    one_char = score_translations({"a": "abcd"}, {"a": "abed"}, "refs")
    assert one_char["cer"] == pytest.approx(0.25)  # one substitution in four characters
    import sacrebleu

    hyps, ref_texts = ["the cat sat on a mat today", "a dog ran"], ["the cat sat on the mat", "the dog ran away"]
    got = score_translations(dict(zip("xy", ref_texts)), dict(zip("xy", hyps)), "refs")
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [ref_texts]).score)


def test_s2ut_on_source_units_refuses_another_source_codebook(tmp_path, codebook, capsys, caplog):
    from speechunits.quantize import Codebook
    from speechunits.seq2seq.testing import tiny_pairs

    pairs = tiny_pairs(tmp_path / "pairs")
    source_audio = tmp_path / "pairs" / "src"
    out = tmp_path / "s2ut"
    _run(["s2ut", "train", str(pairs), "-o", str(out), "--source-input", "units", "--source-codebook",
          str(codebook), "--target-codebook", str(codebook), "--steps", "2", "--model", TINY_S2UT, *FAST], capsys)
    other = tmp_path / "other-cb"
    cb = Codebook.load(codebook)
    Codebook(cb.centroids.flip(0), dict(cb.meta)).save(other)
    message = cli_error(["translate", str(source_audio), "--s2ut", str(out), "--source-codebook",
                         str(other), "-o", str(tmp_path / "tr")], caplog)
    assert cb.sha256[:12] in message and Codebook.load(other).sha256[:12] in message
    assert "--source-codebook" in cli_error(["translate", str(source_audio), "--s2ut", str(out), "-o",
                                             str(tmp_path / "tr3")], caplog)
    assert np.isfinite(json.loads((out / "s2ut.json").read_text())["decoding"]["max_len_a"])


def test_text_translator_for_the_cascade(tmp_path):
    from speechunits.seq2seq.infer import translate_texts
    from speechunits.seq2seq.model_dir import load_s2ut
    from speechunits.seq2seq.s2ut_train import train_s2ut
    from speechunits.seq2seq.testing import tiny_pairs
    from speechunits.training import OptimConfig

    torch.set_num_threads(1)
    pairs = tiny_pairs(tmp_path / "pairs", dev_every=4)
    summary = train_s2ut(pairs, tmp_path / "mt", source_input="text", target="text",
                         model={"dim": 32, "heads": 2, "ffn": 64, "encoder_layers": 1, "decoder_layers": 1},
                         optim=OptimConfig(steps=2, warmup_steps=1, bf16=False), device="cpu", quiet=True)
    assert set(summary["scores"]["dev"]) == {"cer", "bleu", "diversity"}
    bundle = load_s2ut(tmp_path / "mt")
    out = translate_texts(bundle, ["El panadero compró pan fresco.", ""], beam=2)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    from types import SimpleNamespace

    speech_model = SimpleNamespace(path="S2UT", source={"kind": "features"}, target={"kind": "units"})
    with pytest.raises(SpeechUnitsError, match="not a text translator"):
        translate_texts(speech_model, ["hola"])


def test_a_unit_store_of_another_codebook_is_refused(tmp_path, corpus, codebook, caplog):
    from speechunits.quantize import Codebook
    from speechunits.units.store import write_units
    from speechunits.units.units import Units

    cb = Codebook.load(codebook)
    other = Codebook(cb.centroids.flip(0), dict(cb.meta))
    write_units(tmp_path / "store", [("en00_0000", Units(np.array([1, 2, 3]), 100.0, cb.k))], other.meta)
    message = cli_error(["tts", "train", str(corpus), "--codebook", str(codebook), "-o", str(tmp_path / "t"),
                         "--units", str(tmp_path / "store"), *FAST], caplog)
    assert other.sha256 in message and cb.sha256 in message


def test_a_model_of_foreign_alignments_says_phones(tmp_path, corpus, codebook, capsys, caplog):
    """A corpus aligned by another tool (no espeak-ng voice known): training warns, `say` of text names
    --phones, and phones of the model's own inventory are spoken; unknown phones are named."""
    import logging

    bare = tmp_path / "corpus"
    shutil.copytree(corpus, bare)
    (bare / "speaker_info.tsv").unlink()  # what a synth corpus has and a forced aligner's corpus lacks
    out = tmp_path / "tts"
    with caplog.at_level(logging.WARNING):
        _run(["tts", "train", str(bare), "--codebook", str(codebook), "-o", str(out), "--steps", "2",
              "--model", TINY_TTS, "--speaker", "none", *FAST], capsys)
    assert "knows no espeak-ng voice" in caplog.text and "--phones" in caplog.text
    message = cli_error(["tts", "say", "hello there", "--tts", str(out), "--units-out", str(tmp_path / "u0"),
                         "--device", "cpu"], caplog)
    assert "reads phones and knows no espeak-ng voice" in message and "--phones" in message
    first = (bare / "phones.tsv").read_text().splitlines()[:6]
    phones = " ".join(line.split("\t")[3] for line in first)
    said = _run(["tts", "say", phones, "--phones", "--tts", str(out), "--units-out", str(tmp_path / "u1"),
                 "--device", "cpu"], capsys)
    assert said["texts"] == 1 and said["units"][0] > 0
    assert "'zz9' never occurred" in cli_error(["tts", "say", "zz9", "--phones", "--tts", str(out), "--units-out",
                                               str(tmp_path / "u2"), "--device", "cpu"], caplog)

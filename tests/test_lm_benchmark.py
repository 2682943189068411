"""ZeroSpeech 2021 lexical/syntactic scoring: gold files written by hand, accuracies computed by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError

#: Lexical gold in the contract's column order, and the same rows with shuffled columns and an extra one.
LEXICAL = """id,filename,word,correct,voice,frequency,length,phones
1,w1a,kat,1,A,0,4,k a t s
1,n1a,kaf,0,A,0,4,k a f s
1,w1b,kat,1,B,0,4,k a t s
1,n1b,kaf,0,B,0,4,k a f s
2,w2a,dog,1,A,3,4,d o g z
2,n2a,dov,0,A,0,4,d o v z
2,w2b,dog,1,B,3,4,d o g z
2,n2b,dov,0,B,0,4,d o v z
2,w2c,dog,1,C,3,4,d o g z
2,n2c,dov,0,C,0,4,d o v z
3,w3a,elephant,1,A,150,6,e l e f a n
3,n3a,elephamp,0,A,0,6,e l e f a m
"""
#: summed scores: pair results id1 (A 1, B tie 0.5), id2 (A 0, B 1, C 1), id3 (A 0)
SUM = {"w1a": -10.0, "n1a": -12.0, "w1b": -11.0, "n1b": -11.0,
       "w2a": -5.0, "n2a": -3.0, "w2b": -4.0, "n2b": -6.0, "w2c": -4.0, "n2c": -5.0,
       "w3a": -20.0, "n3a": -12.0}
SYNTACTIC = """transcription,subtype,type,voice,correct,id,filename
the dog runs,noun_number,agreement,A,1,1,g1a
the dog run,noun_number,agreement,A,0,1,b1a
the dog runs,noun_number,agreement,B,1,1,g1b
the dog run,noun_number,agreement,B,0,1,b1b
she saw it,svo,word_order,A,1,2,g2a
saw she it,svo,word_order,A,0,2,b2a
they sleep,intransitive,argument_structure,A,1,3,g3a
they sleep it,intransitive,argument_structure,A,0,3,b3a
"""
SYN_SCORES = {"g1a": -3.0, "b1a": -4.0, "g1b": -5.0, "b1b": -4.0, "g2a": -1.0, "b2a": -1.0, "g3a": -2.0, "b3a": -9.0}


def _reorder(csv_text: str) -> str:
    """Same rows, columns in another order plus an extra column."""
    lines = [line.split(",") for line in csv_text.strip().splitlines()]
    order = [6, 0, 7, 4, 2, 1, 5, 3]
    rows = (",".join([line[i] for i in order] + ["x" if n else "extra"]) for n, line in enumerate(lines))
    return "\n".join(rows) + "\n"


def test_lexical_accuracy_by_hand(tmp_path):
    from speechunits.lm.benchmark import make_pairs, pair_accuracy, read_gold, task_groups

    (tmp_path / "gold.csv").write_text(LEXICAL)
    (tmp_path / "shuffled.csv").write_text(_reorder(LEXICAL))
    for name in ("gold.csv", "shuffled.csv"):
        rows = read_gold(tmp_path / name)
        assert len(rows) == 12 and rows[0].fields["phones"] == "k a t s"
        result = pair_accuracy(make_pairs(rows), SUM, task_groups("lexical"))
        # per id: (1 + 0.5)/2, (0 + 1 + 1)/3, 0 -> mean over ids (not over the 6 pairs: 3.5 / 6)
        assert result["accuracy"] == pytest.approx((0.75 + 2 / 3 + 0.0) / 3)
        assert (result["ids"], result["pairs"]) == (3, 6)
        assert result["by_length"]["4"]["accuracy"] == pytest.approx((0.75 + 2 / 3) / 2)
        assert result["by_length"]["6"] == {"accuracy": 0.0, "ids": 1}
        assert {k: v["accuracy"] for k, v in result["by_frequency"].items()} == pytest.approx(
            {"oov": 0.75, "1-5": 2 / 3, ">100": 0.0})


def test_syntactic_accuracy_by_type_and_subtype(tmp_path):
    from speechunits.lm.benchmark import evaluate_scores, read_gold

    (tmp_path / "gold.csv").write_text(SYNTACTIC)
    result = evaluate_scores("syntactic", read_gold(tmp_path / "gold.csv"), {"sum": SYN_SCORES}, "gold.csv")["sum"]
    # id1: A 1, B 0 -> 0.5; id2: tie 0.5; id3: 1
    assert result["accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert result["by_type"]["agreement"]["accuracy"] == 0.5
    assert result["by_subtype"]["intransitive"]["accuracy"] == 1.0
    assert result["by_subtype"]["svo"] == {"accuracy": 0.5, "ids": 1}


def test_bad_gold_files_are_refused(tmp_path):
    from speechunits.lm.benchmark import make_pairs, pair_accuracy, read_gold

    (tmp_path / "nohead.csv").write_text("filename,word\nx,y\n")
    with pytest.raises(SpeechUnitsError, match="lacks the columns"):
        read_gold(tmp_path / "nohead.csv")
    (tmp_path / "two.csv").write_text("id,filename,correct,voice\n1,a,1,A\n1,b,1,A\n")
    with pytest.raises(SpeechUnitsError, match="2 correct and 0 incorrect"):
        make_pairs(read_gold(tmp_path / "two.csv"))
    (tmp_path / "ok.csv").write_text("id,filename,correct,voice\n1,a,1,A\n1,b,0,A\n")
    with pytest.raises(SpeechUnitsError, match="no score for 'b'"):
        pair_accuracy(make_pairs(read_gold(tmp_path / "ok.csv")), {"a": 1.0})
    with pytest.raises(SpeechUnitsError, match="ZeroSpeech 2021 layout"):
        from speechunits.lm.benchmark import find_sets

        find_sets(tmp_path, "dev")


def test_run_benchmark_sum_and_normalised_and_submission(tmp_path):
    from speechunits.lm.benchmark import run_benchmark

    for task, gold in (("lexical", LEXICAL), ("syntactic", SYNTACTIC)):
        (tmp_path / "zr" / task / "dev").mkdir(parents=True)
        (tmp_path / "zr" / task / "dev" / "gold.csv").write_text(gold)
    # positions: real words long, non-words short, so normalising flips id 3 (-20/10 > -12/4)
    lengths = {name: (10 if name.startswith(("w", "g")) else 4) for name in {**SUM, **SYN_SCORES}}
    tables = {"lexical": SUM, "syntactic": SYN_SCORES}
    result = run_benchmark(None, tmp_path / "zr", set_name="dev", submission=tmp_path / "sub",
                           score_fn=lambda d: {k: (v, lengths[k]) for k, v in tables[d.parent.name].items()})
    lexical = result["lexical"]
    # summed: id3 non-word wins (-20 < -12) -> 0; normalised: -2.0 > -3.0 -> 1
    assert lexical["sum"]["by_length"]["6"]["accuracy"] == 0.0
    assert lexical["normalised"]["by_length"]["6"]["accuracy"] == 1.0
    assert lexical["sum"]["accuracy"] == pytest.approx((0.75 + 2 / 3 + 0.0) / 3)
    lines = (tmp_path / "sub" / "sum" / "lexical" / "dev.txt").read_text().splitlines()
    assert len(lines) == 12 and "w1a -10.0" in lines
    norm_file = tmp_path / "sub" / "normalised" / "syntactic" / "dev.txt"
    norm = dict(line.split() for line in norm_file.read_text().splitlines())
    assert float(norm["g1a"]) == pytest.approx(-0.3) and float(norm["b1a"]) == pytest.approx(-1.0)


@pytest.mark.slow
def test_cli_benchmark_on_audio_equals_scores_of_the_same_files(tmp_path, capsys):
    """`lm benchmark` on wavs (through the LM's codebook) = pair accuracy of `lm score` on those wavs."""
    import shutil

    from conftest import write_tone
    from speechunits.cli.main import main
    from speechunits.lm.benchmark import evaluate_scores, read_gold
    from test_invariance import _mfcc_codebook

    names = [line.split(",")[1] for line in LEXICAL.strip().splitlines()[1:]]
    audio = tmp_path / "zr" / "lexical" / "dev"
    for i, name in enumerate(names):
        write_tone(audio / f"{name}.wav", 0.3 + 0.05 * (i % 4), freq=150 + 30 * i, seed=i)
    (audio / "gold.csv").write_text(LEXICAL)
    codebook = _mfcc_codebook(tmp_path, audio)
    assert main(["encode", str(audio), "--codebook", str(codebook), "-o", str(tmp_path / "u"),
                 "--quiet"]) == 0
    assert main(["lm", "train", str(tmp_path / "u"), "-o", str(tmp_path / "lm"), "--steps", "3", "--fp32",
                 "--codebook", str(codebook), "--quiet"]) == 0
    assert main(["lm", "ngram", str(tmp_path / "u"), "-o", str(tmp_path / "ng"), "--order", "3",
                 "--codebook", str(codebook), "--quiet"]) == 0  # the n-gram baseline through the same commands
    shutil.rmtree(tmp_path / "u")
    for lm in ("lm", "ng"):
        capsys.readouterr()
        assert main(["lm", "score", str(tmp_path / lm), str(audio), "--json", "--quiet"]) == 0
        scored = json.loads(capsys.readouterr().out)["utterances"]
        table = {s["id"]: s["logprob"] for s in scored}
        expected = evaluate_scores("lexical", read_gold(audio / "gold.csv"), {"sum": table}, "gold")["sum"]["accuracy"]
        assert main(["lm", "benchmark", str(tmp_path / lm), str(tmp_path / "zr"), "--json", "--quiet"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["lexical"]["sum"]["accuracy"] == pytest.approx(expected)
        assert "syntactic" not in result and result["lexical"]["files"] == 12
        assert np.isfinite(result["lexical"]["normalised"]["accuracy"])

"""The offline demo end to end: a small fast run, and the full CLI run (slow)."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from speechunits.recipes import demo, demo_audio
from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_demo_small_run(tmp_path: Path) -> None:
    result = demo.run_demo(tmp_path / "d", minutes=0.4, speakers=3, k=12, hf_layers=[0, 4], quiet=True)
    names = [r.name for r in result.rows]
    assert names[:4] == ["MFCC features", "MFCC k-means K=12", "random units K=12", "MFCC K=12, alignments +60 ms"]
    assert [n for n in names[4:]] == ["tiny HuBERT (random weights) L0 K=12", "tiny HuBERT (random weights) L4 K=12"]
    main_row, chance, late = result.rows[1], result.rows[2], result.rows[3]
    assert main_row.pnmi > 0.3 and chance.pnmi < 0.15 and late.pnmi < main_row.pnmi
    demo.check_rows(result.rows)
    # 0.4 min of speech holds only a handful of across-speaker ABX triplets (scores move in
    # steps of 0.25-0.5 with any change of the k-means), so only the row's presence is checked
    # here; ABX values are tested in test_abx.py and on the full demo (slow test).
    assert main_row.abx_across is not None and 0.0 <= main_row.abx_across <= 1.0
    assert all(0.0 <= r.pnmi <= 1.0 for r in result.rows if not math.isnan(r.pnmi))
    out = result.out_dir
    assert (out / "demo.png").read_bytes()[:8] == PNG_MAGIC
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "random weights" in report and "| MFCC k-means K=12 |" in report
    assert (out / "tiny-hubert-random" / "config.json").is_file()
    assert (out / "units-mfcc-k12").is_dir() and (out / "codebook-mfcc-k12" / "codebook.json").is_file()
    assert (out / "sweep-tiny-hubert" / "results.csv").is_file()
    table = demo.format_table(result.rows)
    assert table.splitlines()[0].startswith("units") and "MFCC k-means K=12" in table
    # Back to audio through the vocoder shipped with the package: it follows the source's F0
    # (GPE measured against the source track) and its timbre is near the original's (MCD of an
    # unrelated signal is well above 10 dB; WORLD's own analysis-synthesis scores about 3 dB).
    assert demo_audio.shipped_vocoder() is not None
    assert len(result.resynthesis) == demo_audio.NUM_UTTERANCES
    for row in result.resynthesis:
        assert (out / "resynthesis" / f"{row.utt_id}.wav").is_file()
        assert row.gpe < 0.2 and 0.0 < row.mcd_db < 10.0
    assert (out / "resynthesis.png").read_bytes()[:8] == PNG_MAGIC and "## Back to audio" in report

    # A second run from nothing (a fresh directory: corpus, codebooks, units and sweep all made
    # again) gives the same numbers, every column of every row.
    again = demo.run_demo(tmp_path / "fresh", minutes=0.4, speakers=3, k=12, hf_layers=[0, 4], quiet=True)
    assert _numbers(again.rows) == _numbers(result.rows)


def _numbers(rows: list[demo.DemoRow]) -> list[tuple[object, ...]]:
    """Every field of every row, NaN made comparable."""
    return [tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in dataclasses.astuple(r)) for r in rows]


def test_check_rows_catches_a_broken_pipeline() -> None:
    rows = [demo.DemoRow("f", math.nan), demo.DemoRow("u", 0.1), demo.DemoRow("r", 0.2), demo.DemoRow("s", 0.05)]
    with pytest.raises(SpeechUnitsError, match="sanity check failed"):
        demo.check_rows(rows)


@pytest.mark.slow
def test_demo_cli_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-o", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "random weights" in out and "MFCC k-means K=50" in out and "tiny HuBERT" in out
    assert (tmp_path / "demo" / "report.md").is_file() and (tmp_path / "demo" / "demo.png").is_file()
    # The full demo has enough speech for ABX to mean something: MFCC units discriminate
    # phones well within and across speakers (the last two columns, in percent).
    row = next(line for line in out.splitlines() if line.startswith("MFCC k-means K=50"))
    abx_within, abx_across = (float(x) for x in row.split()[-2:])
    assert 0.0 <= abx_within < 20.0 and 0.0 <= abx_across < 40.0

"""Unit text formats: exact round trips, the files' exact text, ordering and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_error
from speechunits.errors import SpeechUnitsError
from speechunits.units import Units
from speechunits.units.formats import FORMATS, export_units, import_units
from speechunits.units.store import UnitStore, write_units

K, RATE = 10, 50.0


def codebook_meta() -> dict:
    return {"k": K, "frame_rate": RATE, "frame_offset_s": 0.0125, "sha256": "f" * 64, "layer": 3, "dim": 4}


def small_store(path: Path, dedup: bool) -> UnitStore:
    items = [("b", Units(np.array([3, 3, 1, 1, 1, 9]), RATE, K)),
             ("a/x", Units(np.array([0]), RATE, K)),
             ("c", Units(np.array([], dtype=np.int64), RATE, K))]
    if dedup:
        items = [(utt, units.dedup()) for utt, units in items]
    seconds = {"b": 0.131, "a/x": 0.0333, "c": 0.01}
    return write_units(path, items, codebook_meta(), durations_s=seconds)


def rows(store: UnitStore) -> list[tuple[str, list[int], list[int] | None, float]]:
    return [(utt, u.ids.tolist(), None if u.durations is None else u.durations.tolist(), secs)
            for utt, u, secs in store.iter_rows()]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dedup", [False, True])
def test_round_trip_is_exact(tmp_path: Path, fmt: str, dedup: bool) -> None:
    store = small_store(tmp_path / "store", dedup)
    export_units(store, fmt, tmp_path / "text")
    back = import_units(fmt, tmp_path / "text", tmp_path / "back")
    assert back.meta == store.meta
    assert rows(back) == rows(store)


def test_exact_file_contents(tmp_path: Path) -> None:
    dedup = small_store(tmp_path / "d", dedup=True)
    frames = small_store(tmp_path / "f", dedup=False)
    export_units(frames, "fairseq", tmp_path / "fs")
    assert (tmp_path / "fs/units.km").read_text() == "3 3 1 1 1 9\n0\n\n"
    assert (tmp_path / "fs/units.ids").read_text() == "b\na/x\nc\n"
    assert (tmp_path / "fs/dict.km.txt").read_text() == "".join(f"{u} 1\n" for u in range(K))
    assert (tmp_path / "fs/utt2dur").read_text() == "b 0.131\na/x 0.0333\nc 0.01\n"
    export_units(dedup, "fairseq", tmp_path / "fs_dedup")  # fairseq is frame-level: expanded
    assert (tmp_path / "fs_dedup/units.km").read_text() == "3 3 1 1 1 9\n0\n\n"
    export_units(dedup, "gslm", tmp_path / "g")
    assert (tmp_path / "g/units.txt").read_text() == "b|3 1 9\na/x|0\nc|\n"
    assert (tmp_path / "g/units.dur.txt").read_text() == "b|2 3 1\na/x|1\nc|\n"
    export_units(dedup, "textless", tmp_path / "t")
    assert (tmp_path / "t/units.units").read_text() == "3 1 9\n0\n\n"
    assert (tmp_path / "t/units.durations").read_text() == "2 3 1\n1\n\n"
    export_units(dedup, "kaldi", tmp_path / "k")
    assert (tmp_path / "k/units.text").read_text() == "b 3 1 9\na/x 0\nc \n"
    export_units(frames, "gslm", tmp_path / "g2")
    assert not (tmp_path / "g2/units.dur.txt").exists()
    assert json.loads((tmp_path / "g/speechunits.json").read_text())["dedup"] is True


def test_export_in_manifest_order(tmp_path: Path) -> None:
    store = small_store(tmp_path / "s", dedup=False)
    manifest = tmp_path / "train.tsv"
    manifest.write_text("/data\nc.wav\t10\nb.flac\t20\na/x.wav\t30\n")
    from speechunits.units.formats import read_order

    export_units(store, "fairseq", tmp_path / "o", name="train", order=read_order(manifest))
    assert (tmp_path / "o/train.km").read_text() == "\n3 3 1 1 1 9\n0\n"
    assert (tmp_path / "o/train.ids").read_text() == "c\nb\na/x\n"
    manifest.write_text("/data\nc.wav\t10\nmissing.wav\t20\n")
    with pytest.raises(SpeechUnitsError, match="not in the store"):
        export_units(store, "fairseq", tmp_path / "o2", order=read_order(manifest))


def test_import_foreign_text_needs_codebook(tmp_path: Path) -> None:
    src = tmp_path / "foreign"
    src.mkdir()
    (src / "train.km").write_text("1 1 2\n4\n")
    (src / "train.ids").write_text("u1\nu2\n")
    with pytest.raises(SpeechUnitsError, match="--codebook"):
        import_units("fairseq", src, tmp_path / "s1")
    store = import_units("fairseq", src, tmp_path / "s2", codebook_meta=codebook_meta(), dedup=True)
    assert rows(store) == [("u1", [1, 2], [2, 1], 0.06), ("u2", [4], [1], 0.02)]
    (src / "text.txt").write_text("u1|1 2\nu2|4\n")
    store = import_units("gslm", src, tmp_path / "s3", codebook_meta=codebook_meta())
    assert store.dedup is False and rows(store)[0][1] == [1, 2]


def test_bad_text_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "x.km").write_text("1 2 x\n")
    (src / "x.ids").write_text("u1\n")
    with pytest.raises(SpeechUnitsError, match=r"x.km:1: non-integer"):
        import_units("fairseq", src, tmp_path / "o1", codebook_meta=codebook_meta())
    (src / "x.km").write_text("1 2 10\n")
    with pytest.raises(SpeechUnitsError, match=r"x.km:1: unit ids must lie in \[0, 10\)"):
        import_units("fairseq", src, tmp_path / "o2", codebook_meta=codebook_meta())
    (src / "x.km").write_text("1\n2\n")
    with pytest.raises(SpeechUnitsError, match="counts differ"):
        import_units("fairseq", src, tmp_path / "o3", codebook_meta=codebook_meta())
    (src / "y.txt").write_text("no separator here\n")
    with pytest.raises(SpeechUnitsError, match=r"expected 'id\|units'"):
        import_units("gslm", src, tmp_path / "o4", codebook_meta=codebook_meta())
    (src / "z.units").write_text("1 2\n")
    (src / "z.durations").write_text("1 0\n")
    (src / "z.ids").write_text("u\n")
    with pytest.raises(SpeechUnitsError, match="durations must be >= 1"):
        import_units("textless", src, tmp_path / "o5", codebook_meta=codebook_meta())
    with pytest.raises(SpeechUnitsError, match="--format"):
        import_units("json", src, tmp_path / "o6", codebook_meta=codebook_meta())
    (src / "y.txt").write_bytes(b"\xff\xfe u|1 2\n")  # UTF-16 or binary, not the UTF-8 the formats are
    with pytest.raises(SpeechUnitsError, match=r"y\.txt: unreadable"):
        import_units("gslm", src, tmp_path / "o7", codebook_meta=codebook_meta())


def test_unrepresentable_ids_are_refused(tmp_path: Path) -> None:
    store = write_units(tmp_path / "s", [("has space", Units(np.array([1]), RATE, K))], codebook_meta())
    with pytest.raises(SpeechUnitsError, match="whitespace"):
        export_units(store, "kaldi", tmp_path / "k")
    store = write_units(tmp_path / "p", [("a|b", Units(np.array([1]), RATE, K))], codebook_meta())
    with pytest.raises(SpeechUnitsError, match=r"'\|'"):
        export_units(store, "gslm", tmp_path / "g")


def test_cli_export_import_info(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                caplog: pytest.LogCaptureFixture) -> None:
    from speechunits.cli.main import main

    store = small_store(tmp_path / "s", dedup=True)
    assert main(["units", "export", str(store.path), "--format", "textless", "-o", str(tmp_path / "t")]) == 0
    assert main(["units", "import", str(tmp_path / "t"), "--format", "textless", "-o", str(tmp_path / "b")]) == 0
    assert rows(UnitStore.open(tmp_path / "b")) == rows(store)
    capsys.readouterr()
    assert main(["units", "info", str(tmp_path / "b")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["utterances"] == 3 and info["units"] == 4 and info["frames"] == 7 and info["dedup"] is True
    cb = tmp_path / "cb"
    cb.mkdir()
    (cb / "codebook.json").write_text(json.dumps(codebook_meta()))
    (tmp_path / "k").mkdir()
    (tmp_path / "k/my.text").write_text("x 1 1 2\n")
    assert main(["units", "import", str(tmp_path / "k"), "--format", "kaldi", "--codebook", str(cb),
                 "--dedup", "-o", str(tmp_path / "kk")]) == 0
    assert rows(UnitStore.open(tmp_path / "kk")) == [("x", [1, 2], [2, 1], 0.06)]
    assert "no speechunits.json" in cli_error(["units", "import", str(tmp_path / "k"), "--format", "kaldi", "-o",
                                               str(tmp_path / "k2")], caplog)

"""Layer x K sweep: results, plots, report, resumability, bad input, and metric sanity on synth speech."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import Segment, load_alignments
from speechunits.measure import sweep as sweep_module
from speechunits.measure.sweep import SweepSettings, read_results, run_sweep, score_units
from speechunits.quantize.fit import fit_sample, memory_source, sample_source
from speechunits.synth.testing import small_corpus

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("sweep"), minutes=0.5, speakers=3)


def _settings(corpus: Path, **kw: object) -> SweepSettings:
    base = SweepSettings(input=str(corpus / "manifest.tsv"), encoder="mfcc", alignments=str(corpus),
                         layers=[0], ks=[8, 16], max_frames=2000, iters=5, device="cpu")
    return replace(base, **kw)  # type: ignore[arg-type]


def test_score_units_hand_cases() -> None:
    """Units that copy phones give PNMI 1 and purities 1; one unit everywhere gives PNMI 0."""
    segs = {"u": [Segment(0.0, 0.04, "a"), Segment(0.04, 0.1, "b"), Segment(0.1, 0.2, "c")]}
    # 100 Hz, offset 0.005: frames 0-3 'a', 4-9 'b', 10-19 'c'
    copy = {"u": np.array([0] * 4 + [1] * 6 + [2] * 10)}
    scores = score_units(copy, segs, 3, 100.0, 0.005)
    assert scores["pnmi"] == pytest.approx(1.0)
    assert scores["phone_purity"] == pytest.approx(1.0) and scores["cluster_purity"] == pytest.approx(1.0)
    assert scores["tokens_per_s"] == pytest.approx(3 / 0.2)
    assert scores["bitrate_uniform"] == pytest.approx(15 * np.log2(3))
    constant = score_units({"u": np.zeros(20, dtype=np.int64)}, segs, 3, 100.0, 0.005)
    assert constant["pnmi"] == pytest.approx(0.0, abs=1e-12)
    assert constant["used_units"] == 1


def sample_frames(feats: dict[str, np.ndarray], max_frames: int, seed: int) -> np.ndarray:
    """The sweep's sample: the one sampler of ``speechunits fit`` over in-memory features."""
    from speechunits.encoders.base import EncoderInfo

    info = EncoderInfo(name="test", sample_rate=100, hop_length=1, receptive_field=1, num_layers=0, dim=2, identity="t")
    return sample_source(memory_source(feats, info, 0), max_frames, seed)


def test_sweep_sample_is_the_fit_commands_sample() -> None:
    """Seeded subset without replacement, and the same frames ``fit`` draws from a stream of blocks."""
    from speechunits.quantize.fit import sample_stream

    feats = {"a": np.arange(10, dtype=np.float32).reshape(5, 2), "b": np.arange(10, 20, dtype=np.float32).reshape(5, 2)}
    x = sample_frames(feats, 4, seed=1)
    assert x.shape == (4, 2) and np.array_equal(x, sample_frames(feats, 4, seed=1))
    rows = {tuple(r) for r in np.concatenate(list(feats.values())).tolist()}
    assert {tuple(r) for r in x.tolist()} <= rows and len({tuple(r) for r in x.tolist()}) == 4
    assert np.array_equal(x, sample_stream(iter([("a", feats["a"]), ("b", feats["b"])]), 4, 1)[0])
    everything = sample_frames(feats, 100, seed=0)
    assert np.array_equal(everything, np.concatenate([feats["a"], feats["b"]]))  # all frames, in corpus order


def test_mfcc_units_beat_random_units_and_shifted_alignments(corpus: Path) -> None:
    """On synth speech: k-means MFCC units >> random units; alignments shifted 60 ms score lower."""
    from speechunits.encoders import load_encoder
    from speechunits.features import iter_features
    from speechunits.corpus import open_corpus

    encoder = load_encoder("mfcc", device="cpu")
    info = encoder.info
    offset = info.frame_offset_s
    feats = {it.utt.id: it.features[0] for it in iter_features(encoder, open_corpus(corpus / "manifest.tsv"), [0],
                                                                quiet=True)}
    alignments = load_alignments(corpus)
    sample = sample_source(memory_source(feats, info, 0), 5000, 0)
    codebook = fit_sample(sample, 32, info, 0, iters=10, seed=0, device="cpu", precision=sweep_module.KMEANS_PRECISION)
    units = sweep_module.assign_units(feats, codebook, "cpu")
    good = score_units(units, alignments, 32, info.frame_rate, offset)["pnmi"]
    rng = np.random.default_rng(0)
    random_units = {u: rng.integers(0, 32, size=v.size) for u, v in units.items()}
    chance = score_units(random_units, alignments, 32, info.frame_rate, offset)["pnmi"]
    shifted = {u: [Segment(s.start + 0.06, s.end + 0.06, s.label) for s in segs] for u, segs in alignments.items()}
    late = score_units(units, shifted, 32, info.frame_rate, offset)["pnmi"]
    assert good > 0.3 and chance < 0.1 and good > 3 * chance
    assert late < good - 0.05


def test_sweep_writes_results_plots_report_and_resumes(corpus: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "report"
    rows = run_sweep(_settings(corpus, abx=True), out, quiet=True)
    assert [(r["layer"], r["k"]) for r in rows] == [(0, 8), (0, 16)]
    for r in rows:
        assert 0.0 < r["pnmi"] <= 1.0 and r["used_units"] <= r["k"]
        assert r["abx_across"] is not None and 0.0 <= r["abx_across"] <= 1.0
        assert r["abx_across_features"] is not None
    assert rows[1]["bitrate_uniform"] > 0
    for name in ("pnmi.png", "abx.png", "bitrate.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    from speechunits.quantize import Codebook

    codebook = Codebook.load(out / "codebooks" / "layer0-k16")
    assert codebook.k == 16 and codebook.layer == 0 and codebook.encoder_name == "mfcc"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| 0 | 16 |" in report and "Best PNMI" in report
    first_csv = (out / "results.csv").read_text(encoding="utf-8")

    calls: list[int] = []
    real_fit = sweep_module.fit_sample

    def counting_fit(x: np.ndarray, k: int, *args: object, **kw: object) -> object:
        calls.append(k)
        return real_fit(x, k, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sweep_module, "fit_sample", counting_fit)
    again = run_sweep(_settings(corpus, abx=True), out, quiet=True)  # nothing left to do
    assert calls == [] and (out / "results.csv").read_text(encoding="utf-8") == first_csv
    assert [(r["layer"], r["k"]) for r in again] == [(0, 8), (0, 16)]
    more = run_sweep(_settings(corpus, abx=True, ks=[4, 8, 16]), out, quiet=True)  # only the new cell
    assert calls == [4]
    assert [(r["layer"], r["k"]) for r in more] == [(0, 4), (0, 8), (0, 16)]
    # The finished cells are kept as the first run wrote them, every column to the byte; the new
    # cell is a real result, not a copy of its neighbour.
    header, *first_lines = first_csv.splitlines()
    header_again, new_line, *kept_lines = (out / "results.csv").read_text(encoding="utf-8").splitlines()
    assert header_again == header and kept_lines == first_lines
    assert more == read_results(out) and more[1:] == rows
    assert new_line.startswith("0,4,") and 0.0 < more[0]["pnmi"] < more[1]["pnmi"] and more[0]["used_units"] <= 4


def test_sweep_counts_utterances_without_alignments(corpus: Path, tmp_path: Path) -> None:
    lines = (corpus / "phones.tsv").read_text(encoding="utf-8").splitlines()
    first = lines[0].split("\t")[0]
    partial = tmp_path / "partial.tsv"
    partial.write_text("\n".join(line for line in lines if not line.startswith(first + "\t")) + "\n", encoding="utf-8")
    run_sweep(_settings(corpus, alignments=str(partial), ks=[4]), tmp_path / "p", quiet=True)
    assert "1 utterances without alignments skipped" in (tmp_path / "p" / "report.md").read_text(encoding="utf-8")


def test_sweep_refuses_other_settings_and_bad_input(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    run_sweep(_settings(corpus, ks=[4]), out, quiet=True)
    with pytest.raises(SpeechUnitsError, match="different settings.*max_frames"):
        run_sweep(_settings(corpus, ks=[4], max_frames=1000), out, quiet=True)
    other = tmp_path / "other.tsv"
    other.write_text("nobody\t0\t1\ta\n", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="no utterance in common"):
        run_sweep(_settings(corpus, alignments=str(other)), tmp_path / "r2", quiet=True)
    with pytest.raises(SpeechUnitsError, match="smaller than the largest K"):
        run_sweep(_settings(corpus, ks=[50], max_frames=10), tmp_path / "r3", quiet=True)
    with pytest.raises(SpeechUnitsError, match="out of range"):
        run_sweep(_settings(corpus, layers=[3]), tmp_path / "r4", quiet=True)


def test_sweep_hf_layers_extract_once_per_layer(corpus: Path, tmp_path: Path, tiny_hubert_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import speechunits.features as features_pkg

    passes: list[list[int]] = []
    real = features_pkg.iter_features

    def counting(encoder: object, utts: object, layers: list[int], **kw: object):  # type: ignore[no-untyped-def]
        passes.append(list(layers))
        return real(encoder, utts, layers, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(features_pkg, "iter_features", counting)
    rows = run_sweep(_settings(corpus, encoder=str(tiny_hubert_dir), layers=[0, 2], ks=[4, 8]), tmp_path / "hf",
                     quiet=True)
    assert passes == [[0], [2]]
    assert [(r["layer"], r["k"]) for r in rows] == [(0, 4), (0, 8), (2, 4), (2, 8)]
    assert all(0.0 <= r["pnmi"] <= 1.0 for r in rows)


def test_cli_sweep(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   caplog: pytest.LogCaptureFixture) -> None:
    code = main(["sweep", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--k", "4", "--alignments",
                 str(corpus), "-o", str(tmp_path / "cli"), "--max-frames", "1000", "--iters", "3", "--device",
                 "cpu", "--quiet"])
    assert code == 0
    assert "| 0 | 4 |" in capsys.readouterr().out
    assert "--k: expected comma-separated integers" in cli_error(["sweep", str(corpus / "manifest.tsv"), "--encoder",
                                                                  "mfcc", "--k", "x", "--alignments", str(corpus), "-o",
                                                                  str(tmp_path / "bad")], caplog)

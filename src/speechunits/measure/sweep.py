"""Layer × K sweeps: which layer and codebook size give the best units?

For every layer the features of the corpus are extracted once (one encoder pass, only up to
that layer); for every K a k-means codebook is fitted on at most ``max_frames`` frames
(the seeded sample of :mod:`speechunits.quantize.fit`, as ``speechunits fit`` draws it), all
frames are assigned, and the units are scored against the phone
alignments (PNMI, purities, entropies, bitrate, unit usage, mean segment length; with
``abx`` also unit ABX (0/1 frame distance) and, once per layer, feature ABX (angular)).

Outputs in the report directory:

* ``results.csv`` — one row per (layer, K), appended as each cell finishes;
* ``pnmi.png``, ``bitrate.png`` and (with ABX) ``abx.png`` — the metric by layer, one line per K;
* ``report.md`` — the table, the best cell and how the sweep was run;
* ``codebooks/layer{L}-k{K}/`` — each cell's codebook, usable by ``speechunits encode``;
* ``sweep.json`` — the settings; a rerun with the same settings skips finished cells
  (resumable), a rerun with different settings is refused.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from speechunits.corpus import SPEAKERS_FILE, read_speakers
from speechunits.id_match import named_by, rekey
from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object
from speechunits.measure.alignments import Segment, load_alignments
from speechunits.quantize.fit import fit_sample, memory_source, sample_source

log = logging.getLogger(__name__)

RESULTS_FILE = "results.csv"
SETTINGS_FILE = "sweep.json"
REPORT_FILE = "report.md"
#: Each cell's codebook is saved under ``codebooks/layer{L}-k{K}/`` (ready for ``speechunits encode``).
CODEBOOKS_DIR = "codebooks"
#: Default cap on the frames used to fit each codebook.
DEFAULT_MAX_FRAMES = 100_000
DEFAULT_KMEANS_ITERS = 20
#: Matmul precision of k-means and assignment (labels are exact either way). "fp32": on these
#: machines the bf16 path ("auto") was 2-16x slower per Lloyd step, small K/D worst.
KMEANS_PRECISION = "fp32"
#: Columns of results.csv, in order.
COLUMNS = (
    "layer", "k", "pnmi", "phone_purity", "cluster_purity", "h_phone", "h_phone_given_unit",
    "bitrate_uniform", "bitrate_entropy", "tokens_per_s", "mean_segment_frames", "used_units",
    "perplexity", "abx_within", "abx_across", "abx_within_features", "abx_across_features",
    "labelled_frames", "fit_frames", "inertia",
)
#: Settings that must match for a report directory to be resumed.
RESUME_KEYS = ("input", "encoder", "alignments", "tier", "max_frames", "seed", "iters", "abx")


@dataclass
class SweepSettings:
    """What a sweep runs (stored as ``sweep.json``)."""

    input: str
    encoder: str
    alignments: str
    layers: list[int]
    ks: list[int]
    tier: str = "phones"
    max_frames: int = DEFAULT_MAX_FRAMES
    seed: int = 0
    iters: int = DEFAULT_KMEANS_ITERS
    abx: bool = False
    frame_rate: float | None = None
    speakers: str | None = None
    device: str = "auto"
    dtype: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ scoring


def score_units(
    units: Mapping[str, np.ndarray],
    alignments: Mapping[str, Sequence[Segment]],
    k: int,
    frame_rate: float,
    frame_offset_s: float,
) -> dict[str, float]:
    """Unit quality of per-frame ids ``{utt: int [T]}`` against alignments.

    Returns:
        The metric columns of :data:`COLUMNS` (``pnmi`` ... ``perplexity``, ``labelled_frames``),
        computed by :func:`speechunits.measure.evaluate.evaluate_units`.
    """
    from speechunits.measure.evaluate import evaluate_units
    from speechunits.units.units import Units

    report = evaluate_units(
        ((utt, Units(ids, frame_rate, k)) for utt, ids in units.items()),
        alignments, frame_rate=frame_rate, frame_offset_s=frame_offset_s, vocab_size=k,
    )
    return {
        "pnmi": report.pnmi,
        "phone_purity": report.phone_purity,
        "cluster_purity": report.cluster_purity,
        "h_phone": report.h_phone,
        "h_phone_given_unit": report.h_phone_given_unit,
        "bitrate_uniform": report.bitrate,
        "bitrate_entropy": report.bitrate_entropy,
        "tokens_per_s": report.tokens_per_s,
        "mean_segment_frames": report.mean_segment_frames,
        "used_units": report.used_units,
        "perplexity": report.unit_perplexity,
        "labelled_frames": report.labelled_frames,
    }


# --------------------------------------------------------------------------------- quantizing


def assign_units(features: Mapping[str, np.ndarray], codebook: Any, device: str) -> dict[str, np.ndarray]:
    """Nearest-centroid ids ``{utt: int64 [T]}`` (one batched assignment over all frames)."""
    utts = list(features)
    sizes = np.array([features[u].shape[0] for u in utts], dtype=np.int64)
    stacked = np.concatenate([features[u] for u in utts]).astype(np.float32, copy=False)
    ids = np.asarray(codebook.assign(stacked, device=device, precision=KMEANS_PRECISION))
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    return {u: ids[bounds[i]: bounds[i + 1]] for i, u in enumerate(utts)}


# ------------------------------------------------------------------------------- persistence


def read_results(out_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` (numbers parsed; empty cells are None)."""
    path = out_dir / RESULTS_FILE
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    row[key] = None
                elif key in ("layer", "k", "used_units", "labelled_frames", "fit_frames"):
                    row[key] = int(value)
                else:
                    row[key] = float(value)
            rows.append(row)
    return rows


def _write_results(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: (r["layer"], r["k"]))
    tmp = out_dir / (RESULTS_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _csv_value(row.get(c)) for c in COLUMNS})
    os.replace(tmp, out_dir / RESULTS_FILE)


def _csv_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _check_settings(out_dir: Path, settings: SweepSettings) -> None:
    path = out_dir / SETTINGS_FILE
    current = asdict(settings)
    if path.is_file():
        previous = read_json_object(path)
        changed = [k for k in RESUME_KEYS if previous.get(k) != current.get(k)]
        if changed:
            raise SpeechUnitsError(
                f"{out_dir}: holds a sweep with different settings ({', '.join(changed)}); "
                "use another output directory"
            )
        current["layers"] = sorted(set(previous.get("layers", [])) | set(settings.layers))
        current["ks"] = sorted(set(previous.get("ks", [])) | set(settings.ks))
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _absolute(settings: SweepSettings) -> SweepSettings:
    """Settings with local paths made absolute, so a resumed run compares like with like."""
    from dataclasses import replace

    def resolve(value: str | None) -> str | None:
        return str(Path(value).resolve()) if value is not None and Path(value).exists() else value

    return replace(settings, input=resolve(settings.input), alignments=resolve(settings.alignments),
                   encoder=resolve(settings.encoder) if settings.encoder not in ("mfcc", "logmel") else settings.encoder,
                   speakers=resolve(settings.speakers))


def find_speakers(input_path: Path, alignments: Path, explicit: str | None) -> dict[str, str] | None:
    """``{utt: speaker}`` from ``explicit``, else the speakers the corpus carries
    (:func:`~speechunits.probe.labels.find_label_files`: ``speakers.tsv``, ``utt2spk``, a LibriSpeech
    tree's ids, a Common Voice TSV ...), else a ``speakers.tsv`` beside the alignments (or in their
    parent folder); ``None`` when there is none."""
    from speechunits.probe.labels import find_label_files

    if explicit:
        return read_speakers(explicit)
    carried = find_label_files(input_path).get("speakers")
    if carried is not None:
        return read_speakers(carried)
    for base in (input_path, alignments):
        folder = base if base.is_dir() else base.parent
        for path in (folder / SPEAKERS_FILE, folder.parent / SPEAKERS_FILE):
            if path.is_file():
                return read_speakers(path)
    return None


# ----------------------------------------------------------------------------------- the sweep


def run_sweep(settings: SweepSettings, out_dir: str | os.PathLike[str], *, quiet: bool = False) -> list[dict[str, Any]]:
    """Run (or resume) a sweep; returns all rows of ``results.csv``.

    Raises:
        SpeechUnitsError: no utterance in common between corpus and alignments, a K larger
            than the frames available, settings that differ from a previous run in ``out_dir``.
    """
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = _absolute(settings)
    if not settings.layers or not settings.ks:
        raise SpeechUnitsError("sweep: need at least one layer and one K")
    if min(settings.ks) < 2:
        raise SpeechUnitsError(f"--k: every K must be >= 2, got {settings.ks}")
    if settings.max_frames < max(settings.ks):
        raise SpeechUnitsError(f"--max-frames {settings.max_frames} is smaller than the largest K {max(settings.ks)}")
    _check_settings(out, settings)
    rows = read_results(out)
    done = {(r["layer"], r["k"]) for r in rows}
    todo = {layer: [k for k in settings.ks if (layer, k) not in done] for layer in settings.layers}
    todo = {layer: ks for layer, ks in todo.items() if ks}
    if not todo:
        log.info("sweep: all %d cells already in %s", len(settings.layers) * len(settings.ks), out / RESULTS_FILE)
        write_report(out, settings, rows)
        return rows

    alignments = load_alignments(settings.alignments, tier=settings.tier, frame_rate=settings.frame_rate)
    corpus = open_corpus(settings.input)
    utts = list(corpus)
    alignments = named_by(alignments, [u.id for u in utts], str(settings.alignments))
    aligned = [u for u in utts if u.id in alignments]
    if not aligned:
        raise SpeechUnitsError(
            f"{settings.input} and {settings.alignments}: no utterance in common "
            f"(corpus ids like {utts[0].id!r}, alignment ids like {next(iter(alignments))!r})"
            if utts else f"{settings.input}: empty corpus"
        )
    if len(aligned) < len(utts):
        log.warning("sweep: %d of %d utterances have no alignment and are skipped", len(utts) - len(aligned), len(utts))
    encoder = load_encoder(settings.encoder, device=settings.device, dtype=settings.dtype)
    encoder.check_layers(settings.layers)
    info = encoder.info
    frame_offset_s = info.frame_offset_s
    speakers = find_speakers(Path(settings.input), Path(settings.alignments), settings.speakers) if settings.abx else None
    if speakers is not None:
        speakers = rekey(speakers, [u.id for u in aligned], "the speakers file")
    items = None
    if settings.abx:
        from speechunits.measure.abx_items import build_items

        items = build_items({u.id: alignments[u.id] for u in aligned}, speakers)

    for layer, ks in sorted(todo.items()):
        features = _extract_layer(encoder, aligned, layer, quiet)
        feature_abx: tuple[float | None, float | None] = (None, None)
        if items is not None:
            feature_abx = _abx(items, features, info.frame_rate, frame_offset_s, "angular", settings.seed)
        sample = sample_source(memory_source(features, info, layer), settings.max_frames, settings.seed)
        for k in ks:
            codebook = fit_sample(sample, k, info, layer, iters=settings.iters, seed=settings.seed,
                                  device=settings.device, precision=KMEANS_PRECISION)
            codebook.save(out / CODEBOOKS_DIR / f"layer{layer}-k{k}")
            units = assign_units(features, codebook, settings.device)
            row: dict[str, Any] = {"layer": layer, "k": k, "fit_frames": int(sample.shape[0]),
                                   "inertia": float(codebook.meta["inertia"])}
            row.update(score_units(units, alignments, k, info.frame_rate, frame_offset_s))
            if items is not None:
                row["abx_within"], row["abx_across"] = _abx(items, units, info.frame_rate, frame_offset_s,
                                                            "hamming", settings.seed)
                row["abx_within_features"], row["abx_across_features"] = feature_abx
            rows.append(row)
            _write_results(out, rows)
            log.info("sweep: layer %d K %d: PNMI %.3f, bitrate %.0f bit/s", layer, k, row["pnmi"],
                     row["bitrate_uniform"])
        del features
    rows = read_results(out)
    write_report(out, settings, rows, encoder_info=asdict(info), num_utterances=len(aligned),
                 num_unaligned=len(utts) - len(aligned))
    return rows


def _extract_layer(encoder: Any, utts: list[Any], layer: int, quiet: bool) -> dict[str, np.ndarray]:
    from speechunits.features import iter_features

    features: dict[str, np.ndarray] = {}
    for item in iter_features(encoder, utts, [layer], quiet=quiet):
        if item.features is None:
            log.warning("sweep: %s skipped (%s)", item.utt.id, item.error)
            continue
        if item.features[layer].shape[0]:
            features[item.utt.id] = item.features[layer]
    if not features:
        raise SpeechUnitsError("sweep: no utterance produced features")
    return features


def _abx(items: Any, frames: Mapping[str, np.ndarray], frame_rate: float, frame_offset_s: float, distance: str,
         seed: int) -> tuple[float | None, float | None]:
    from speechunits.measure.abx import compute_abx

    result = compute_abx(items, frames.items(), frame_rate, frame_offset_s, distance=distance, seed=seed)  # type: ignore[arg-type]
    return result.abx_within, result.abx_across


# ------------------------------------------------------------------------------------- report


def plot_metric(rows: Sequence[Mapping[str, Any]], metric: str, ylabel: str, path: Path, title: str) -> bool:
    """One line per K of ``metric`` by layer (PNG); False when no row has the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({r["k"] for r in rows if r.get(metric) is not None})
    if not ks:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in ks:
        points = sorted((r["layer"], r[metric]) for r in rows if r["k"] == k and r.get(metric) is not None)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"K={k}")
    layers = sorted({r["layer"] for r in rows})
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def results_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """A Markdown table of the main columns."""
    head = "| layer | K | PNMI | phone purity | cluster purity | bitrate (bit/s) | ABX within | ABX across |"
    lines = [head, "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["layer"], r["k"])):
        lines.append(
            f"| {r['layer']} | {r['k']} | {_fmt(r.get('pnmi'))} | {_fmt(r.get('phone_purity'))} | "
            f"{_fmt(r.get('cluster_purity'))} | {_fmt(r.get('bitrate_uniform'), 0)} | "
            f"{_fmt(_pct(r.get('abx_within')), 1)} | {_fmt(_pct(r.get('abx_across')), 1)} |"
        )
    return "\n".join(lines)


def _pct(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


def write_report(out: Path, settings: SweepSettings, rows: list[dict[str, Any]], *,
                 encoder_info: dict[str, Any] | None = None, num_utterances: int | None = None,
                 num_unaligned: int = 0) -> Path:
    """Plots and ``report.md`` from the rows."""
    plots = []
    if plot_metric(rows, "pnmi", "PNMI", out / "pnmi.png", "PNMI by layer"):
        plots.append("pnmi.png")
    if plot_metric(rows, "abx_within", "ABX error within speaker", out / "abx.png", "Unit ABX (within) by layer"):
        plots.append("abx.png")
    if plot_metric(rows, "bitrate_uniform", "bit/s (tokens/s × log2 K)", out / "bitrate.png", "Bitrate by layer"):
        plots.append("bitrate.png")
    lines = [
        "# Layer × K sweep",
        "",
        f"- input: `{settings.input}`" + (f" ({num_utterances} aligned utterances)" if num_utterances else "")
        + (f"; {num_unaligned} utterances without alignments skipped" if num_unaligned else ""),
        f"- encoder: `{settings.encoder}`" + (f" (frame rate {encoder_info['sample_rate'] / encoder_info['hop_length']:g} Hz, "
                                             f"dim {encoder_info['dim']})" if encoder_info else ""),
        f"- alignments: `{settings.alignments}` (tier {settings.tier!r})",
        f"- k-means: at most {settings.max_frames} frames per fit, {settings.iters} iterations, seed {settings.seed}",
        "",
    ]
    valid = [r for r in rows if r.get("pnmi") is not None and not math.isnan(r["pnmi"])]
    if valid:
        best = max(valid, key=lambda r: r["pnmi"])
        lines += [f"Best PNMI: **{best['pnmi']:.3f}** at layer {best['layer']}, K={best['k']}.", ""]
    lines += [results_table(rows), ""]
    lines += [f"![{p[:-4]}]({p})" for p in plots]
    lines += ["", "All columns are in `results.csv`; each cell's codebook is in `codebooks/layer{L}-k{K}/`. "
              "ABX is in percent (unit ABX, 0/1 frame distance)."]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

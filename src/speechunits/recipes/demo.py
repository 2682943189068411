"""The offline demo: synthesise a corpus, make units two ways, measure them, write a report.

1. A small multi-speaker corpus with phone alignments (espeak-ng, :mod:`speechunits.synth`).
2. MFCC path: features, a k-means codebook, the corpus encoded into a unit store,
   evaluated against the alignments (PNMI, purities, bitrate) and ABX (features and units).
   Two sanity rows show the measurement means something: random units of the same K, and
   the same units scored against alignments shifted by 60 ms.
3. Hugging Face path: a tiny HuBERT with *random* weights is saved to the output directory
   and swept over all its layers (:func:`speechunits.measure.sweep.run_sweep`) — this exercises
   the real loading and layer code; random weights make no claim about HuBERT's quality.
4. Back to audio: demo utterances resynthesised through the vocoder shipped with the package
   (:mod:`speechunits.recipes.demo_audio`; skipped without the ``[f0]`` extra).
5. ``report.md`` and ``demo.png`` in the output directory; :func:`format_table` gives the
   table that ``speechunits demo`` prints.

Nothing touches the network. Rerunning reuses the corpus, codebook, units and sweep. Only
public APIs are used: this is what a user's own script would look like.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from speechunits.corpus import SPEAKERS_FILE, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import Segment, load_alignments

log = logging.getLogger(__name__)

DEFAULT_MINUTES = 2.5
DEFAULT_SPEAKERS = 4
DEFAULT_K = 50
#: Alignment shift of the "misaligned" sanity row (seconds).
SHIFT_S = 0.06
#: Tiny random HuBERT: small enough to run a few minutes of audio in seconds on a CPU.
TINY_HUBERT = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128,
                   conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
KMEANS_ITERS = 20
MAX_FIT_FRAMES = 50_000
#: Matmul precision of the MFCC codebook's k-means (as the sweep's; labels are exact either way).
KMEANS_PRECISION = "fp32"


@dataclass
class DemoRow:
    """One line of the demo table (ABX as error fractions)."""

    name: str
    pnmi: float
    phone_purity: float | None = None
    cluster_purity: float | None = None
    bitrate: float | None = None
    abx_within: float | None = None
    abx_across: float | None = None
    note: str = ""


@dataclass
class DemoResult:
    out_dir: Path
    rows: list[DemoRow]
    corpus_minutes: float
    speakers: int
    seconds: dict[str, float] = field(default_factory=dict)
    resynthesis: list[Any] = field(default_factory=list)


def build_tiny_hubert(out_dir: Path, seed: int = 0) -> Path:
    """Save a tiny randomly initialised ``HubertModel`` + feature extractor config to ``out_dir``."""
    if (out_dir / "config.json").is_file():
        return out_dir
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.HubertConfig(
        **TINY_HUBERT, feat_extract_norm="group", do_stable_layer_norm=False, hidden_dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0,
    )
    model = transformers.HubertModel(config).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False, return_attention_mask=False,
    ).save_pretrained(out_dir)
    (out_dir / "README.md").write_text("Random weights (speechunits demo). Not a trained model.\n", encoding="utf-8")
    return out_dir


def _timed(seconds: dict[str, float], name: str, start: float) -> None:
    seconds[name] = time.perf_counter() - start
    log.info("demo: %s done in %.1f s", name, seconds[name])


def run_demo(out_dir: str | Path = "speechunits-demo", *, minutes: float = DEFAULT_MINUTES,
             speakers: int = DEFAULT_SPEAKERS, k: int = DEFAULT_K, hf: bool = True, seed: int = 0,
             hf_layers: Sequence[int] | None = None, quiet: bool = False) -> DemoResult:
    """Run the whole demo into ``out_dir`` (see module docstring).

    Args:
        hf_layers: tiny HuBERT layers to sweep (default: all of them).
    """
    from speechunits.corpus import open_corpus
    from speechunits.synth.corpus import synthesize_corpus

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    corpus_dir = out / "corpus"
    if not (corpus_dir / "corpus.json").is_file():
        if corpus_dir.exists():
            import shutil

            shutil.rmtree(corpus_dir)  # a partial corpus from an interrupted run
        synthesize_corpus(corpus_dir, minutes, speakers, seed=seed, quiet=quiet)
    _timed(seconds, "synth", t)
    manifest = corpus_dir / "manifest.tsv"
    alignments = load_alignments(corpus_dir)
    speaker_of = read_speakers(corpus_dir / SPEAKERS_FILE)
    corpus_seconds = sum(u.num_samples or 0 for u in open_corpus(manifest)) / 16000.0

    rows: list[DemoRow] = []
    t = time.perf_counter()
    rows += _mfcc_rows(out, manifest, alignments, speaker_of, k, seed, quiet)
    _timed(seconds, "mfcc", t)
    if hf:
        t = time.perf_counter()
        rows += _hf_rows(out, manifest, corpus_dir, k, seed, quiet, hf_layers)
        _timed(seconds, "hf", t)
    from speechunits.recipes.demo_audio import report_lines, resynthesize_demo

    t = time.perf_counter()
    resynthesis = resynthesize_demo(out, manifest)
    _timed(seconds, "resynthesis", t)
    write_demo_report(out, rows, corpus_seconds / 60.0, len(set(speaker_of.values())), seconds,
                      extra_lines=report_lines(resynthesis))
    return DemoResult(out, rows, corpus_seconds / 60.0, len(set(speaker_of.values())), seconds, resynthesis)


def _mfcc_rows(out: Path, manifest: Path, alignments: Mapping[str, Sequence[Segment]],
               speakers: Mapping[str, str], k: int, seed: int, quiet: bool) -> list[DemoRow]:
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.features import iter_features
    from speechunits.measure.abx import compute_abx
    from speechunits.measure.abx_items import build_items
    from speechunits.measure.evaluate import evaluate_store, evaluate_units
    from speechunits.units.encode_corpus import encode_corpus
    from speechunits.units.store import UnitStore
    from speechunits.units.tokenizer import UnitTokenizer
    from speechunits.units.units import Units

    encoder = load_encoder("mfcc", device="cpu")
    info = encoder.info
    offset = info.frame_offset_s
    corpus = open_corpus(manifest)
    features = {it.utt.id: it.features[0] for it in iter_features(encoder, corpus, [0], quiet=True)
                if it.features is not None}
    codebook_dir = out / f"codebook-mfcc-k{k}"
    codebook = _fit_codebook(codebook_dir, features, encoder, k, seed)
    store_dir = out / f"units-mfcc-k{k}"
    encode_corpus(corpus, UnitTokenizer(encoder, [codebook]), store_dir, quiet=quiet)
    report = evaluate_store(store_dir, alignments)
    store = UnitStore.open(store_dir)
    units = {utt: u.expand().ids for utt, u in store}

    items = build_items({u: alignments[u] for u in units if u in alignments}, speakers)
    feat_abx = compute_abx(items, features.items(), info.frame_rate, offset, distance="angular", seed=seed)
    unit_abx = compute_abx(items, units.items(), info.frame_rate, offset, distance="hamming", seed=seed)
    rng = np.random.default_rng(seed)
    random_units = {u: rng.integers(0, k, size=ids.size) for u, ids in units.items()}
    chance = evaluate_units(((u, Units(ids, info.frame_rate, k)) for u, ids in random_units.items()), alignments,
                            frame_rate=info.frame_rate, frame_offset_s=offset, vocab_size=k)
    shifted = {u: [Segment(s.start + SHIFT_S, s.end + SHIFT_S, s.label) for s in segs] for u, segs in alignments.items()}
    late = evaluate_units(((u, Units(ids, info.frame_rate, k)) for u, ids in units.items()), shifted,
                          frame_rate=info.frame_rate, frame_offset_s=offset, vocab_size=k)
    return [
        DemoRow("MFCC features", math.nan, abx_within=feat_abx.abx_within, abx_across=feat_abx.abx_across,
                note="continuous features (angular ABX)"),
        DemoRow(f"MFCC k-means K={k}", report.pnmi, report.phone_purity, report.cluster_purity, report.bitrate,
                unit_abx.abx_within, unit_abx.abx_across, note=f"store {store_dir.name}"),
        DemoRow(f"random units K={k}", chance.pnmi, chance.phone_purity, chance.cluster_purity, chance.bitrate,
                note="sanity: PNMI should be near 0"),
        DemoRow(f"MFCC K={k}, alignments +{int(SHIFT_S * 1000)} ms", late.pnmi, late.phone_purity,
                late.cluster_purity, late.bitrate, note="sanity: PNMI should drop"),
    ]


def _fit_codebook(codebook_dir: Path, features: Mapping[str, np.ndarray], encoder: Any, k: int, seed: int) -> Any:
    """Fit (or reload) a k-means codebook on layer 0 of ``encoder`` and save it to ``codebook_dir``."""
    from speechunits.quantize import Codebook
    from speechunits.quantize.fit import fit_codebook, memory_source

    if (codebook_dir / "codebook.json").is_file():
        return Codebook.load(codebook_dir)
    codebook = fit_codebook(memory_source(features, encoder.info, 0), k, max_frames=MAX_FIT_FRAMES, seed=seed,
                            iters=KMEANS_ITERS, device="cpu", precision=KMEANS_PRECISION)
    codebook.save(codebook_dir)
    return codebook


def _hf_rows(out: Path, manifest: Path, corpus_dir: Path, k: int, seed: int, quiet: bool,
             layers: Sequence[int] | None) -> list[DemoRow]:
    from speechunits.measure.sweep import SweepSettings, run_sweep

    if quiet:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    model_dir = build_tiny_hubert(out / "tiny-hubert-random", seed)
    if layers is None:
        layers = list(range(int(TINY_HUBERT["num_hidden_layers"]) + 1))  # type: ignore[call-overload]
    settings = SweepSettings(input=str(manifest), encoder=str(model_dir), alignments=str(corpus_dir), layers=list(layers),
                             ks=[k], abx=True, seed=seed, iters=KMEANS_ITERS, max_frames=MAX_FIT_FRAMES, device="cpu")
    results = run_sweep(settings, out / "sweep-tiny-hubert", quiet=quiet)
    return [
        DemoRow(f"tiny HuBERT (random weights) L{r['layer']} K={r['k']}", r["pnmi"], r["phone_purity"],
                r["cluster_purity"], r["bitrate_uniform"], r.get("abx_within"), r.get("abx_across"),
                note="random init: exercises the HF path, not a quality claim")
        for r in results
    ]


# ------------------------------------------------------------------------------------ output


def _f(value: float | None, digits: int = 3, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{digits}f}"


def format_table(rows: Sequence[DemoRow]) -> str:
    """Fixed-width text table of the demo rows (ABX in percent)."""
    head = ("units", "PNMI", "ph.pur", "cl.pur", "bit/s", "ABX-w %", "ABX-a %")
    body = [(r.name, _f(r.pnmi), _f(r.phone_purity), _f(r.cluster_purity), _f(r.bitrate, 0),
             _f(r.abx_within, 1, 100.0), _f(r.abx_across, 1, 100.0)) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [head, *body]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def plot_demo(rows: Sequence[DemoRow], path: Path) -> None:
    """Bar chart: PNMI and across-speaker ABX error per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.6), sharey=True)
    y = np.arange(len(rows))
    axes[0].barh(y, [0.0 if math.isnan(r.pnmi) else r.pnmi for r in rows], color="tab:blue")
    axes[0].set_xlabel("PNMI (higher is better)")
    axes[1].barh(y, [100.0 * (r.abx_across or 0.0) for r in rows], color="tab:orange")
    axes[1].set_xlabel("ABX across speakers, % (lower is better)")
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(names)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_demo_report(out: Path, rows: Sequence[DemoRow], minutes: float, speakers: int,
                      seconds: Mapping[str, float], extra_lines: Sequence[str] = ()) -> Path:
    plot_demo(rows, out / "demo.png")
    lines = [
        "# speechunits demo",
        "",
        f"Corpus: {minutes:.1f} min of synthetic speech (espeak-ng), {speakers} speakers, phone alignments "
        "from the synthesiser (`corpus/`).",
        "",
        "| units | PNMI | phone purity | cluster purity | bitrate (bit/s) | ABX within % | ABX across % | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r.name} | {_f(r.pnmi)} | {_f(r.phone_purity)} | {_f(r.cluster_purity)} | {_f(r.bitrate, 0)} | "
                     f"{_f(r.abx_within, 1, 100.0)} | {_f(r.abx_across, 1, 100.0)} | {r.note} |")
    lines += [
        "",
        "![demo](demo.png)",
        "",
        "- The tiny HuBERT has **random weights**: its rows show that the Hugging Face path (loading, layer",
        "  selection, k-means, evaluation) works offline, not how good HuBERT is. Its per-layer sweep is in",
        "  `sweep-tiny-hubert/` (results.csv, plots, report.md).",
        "- Synthetic speech is far more regular than real speech (espeak-ng says a word the same way every",
        "  time), so these numbers are not comparable with published LibriSpeech figures; compare rows.",
        "- Stage times: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in seconds.items()) + ".",
        *extra_lines,
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def check_rows(rows: Sequence[DemoRow]) -> None:
    """Raise if the sanity rows contradict the main row (a broken pipeline, not a user error)."""
    main_row, chance, late = rows[1], rows[2], rows[3]
    if not (main_row.pnmi > chance.pnmi and main_row.pnmi > late.pnmi):
        raise SpeechUnitsError(f"demo sanity check failed: PNMI {main_row.pnmi:.3f} vs random {chance.pnmi:.3f} "
                               f"and shifted {late.pnmi:.3f}")

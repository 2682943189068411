"""The demo's last step: units back to audio through the vocoder shipped with the package.

The package ships a small ``cpu``-tier vocoder with its MFCC K=100 codebook
(``recipes/data/demo-vocoder``, written by ``bench/vocoder.py --export-demo``; what it was
trained on is in its ``vocoder.json`` and in docs/vocoder.md). Demo utterances are encoded
through that codebook, re-voiced with their own F0 in the nearest training voice (the
vocoder's speaker table holds the voices it was trained on; the demo's voices are others),
and compared with the originals: GPE against the source F0 and MCD with DTW, plus a figure
of original vs resynthesis spectrograms.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Utterances of the demo corpus that are resynthesised.
NUM_UTTERANCES = 3


@dataclass
class ResynthesisRow:
    """One resynthesised utterance: its voice in the vocoder's table and the two measures."""

    utt_id: str
    voice: str
    gpe: float
    mcd_db: float


def shipped_vocoder() -> Path | None:
    """Directory of the vocoder shipped with the package, or None when this install has none."""
    path = Path(str(resources.files("speechunits.recipes"))) / "data" / "demo-vocoder"
    return path if (path / "vocoder.json").is_file() else None


def nearest_voice(vocoder, track) -> str:
    """The table speaker whose mean log-F0 is nearest the utterance's (first speaker if unvoiced)."""
    voiced = track.f0[track.f0 > 0]
    names = list(vocoder.speakers)
    if voiced.size == 0:
        return names[0]
    mean = float(np.log(voiced).mean())
    return min(names, key=lambda n: abs(vocoder.stats[n].mean_log - mean))


def resynthesize_demo(out: Path, manifest: Path, *, vocoder_dir: Path | None = None,
                      count: int = NUM_UTTERANCES) -> list[ResynthesisRow]:
    """Resynthesise the first ``count`` utterances of ``manifest`` into ``out/resynthesis``.

    Returns [] (with an info line) when no vocoder is shipped or F0 trackers are missing.
    """
    vocoder_dir = vocoder_dir or shipped_vocoder()
    if vocoder_dir is None:
        log.info("demo: no vocoder shipped with this install; skipping resynthesis")
        return []
    from speechunits.errors import SpeechUnitsError
    from speechunits.extras import require_extra

    try:
        require_extra("pyworld", "f0", "the demo's resynthesis (the vocoder's F0 and the MCD)")
    except SpeechUnitsError as exc:
        log.warning("demo: resynthesis skipped: %s", exc)
        return []
    from speechunits.audio import Audio
    from speechunits.corpus import open_corpus
    from speechunits.measure.audio.mcd import mcd_dtw
    from speechunits.measure.audio.pitch_errors import gpe
    from speechunits.pitch import extract_f0
    from speechunits.vocoder import load_vocoder
    from speechunits.vocoder.resynth import analyse, resynthesize

    vocoder = load_vocoder(vocoder_dir, device="cpu")
    tokenizer = vocoder.tokenizer(device="cpu")
    target = out / "resynthesis"
    target.mkdir(parents=True, exist_ok=True)
    rows: list[ResynthesisRow] = []
    offset = float(vocoder.meta["frame_offset_s"])
    for utt in list(open_corpus(manifest))[:count]:
        original = Audio.load(utt.path, sample_rate=vocoder.sample_rate)
        _, track, _ = analyse(vocoder, tokenizer, original)
        voice = nearest_voice(vocoder, track)
        audio = resynthesize(vocoder, tokenizer, original, speaker=voice)
        audio.save(target / f"{utt.id}.wav")
        hyp_track = extract_f0(audio, frame_rate=vocoder.frame_rate, offset_s=offset, num_frames=len(track),
                               method=vocoder.meta["f0_method"])
        rows.append(ResynthesisRow(utt.id, voice, gpe(track, hyp_track), mcd_dtw(original, audio)))
    plot_spectrograms(manifest, target, [r.utt_id for r in rows], out / "resynthesis.png")
    return rows


def plot_spectrograms(manifest: Path, resynth_dir: Path, ids: Sequence[str], path: Path) -> None:
    """Log-mel spectrograms, original (top) over resynthesis (bottom), one column per utterance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechunits.audio import Audio
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder

    logmel = load_encoder("logmel", device="cpu")
    paths = {u.id: u.path for u in open_corpus(manifest)}
    fig, axes = plt.subplots(2, len(ids), figsize=(4.5 * len(ids), 5.0), squeeze=False)
    for col, utt_id in enumerate(ids):
        for row, (label, source) in enumerate((("original", paths[utt_id]), ("resynthesis", resynth_dir / f"{utt_id}.wav"))):
            audio = Audio.load(source, sample_rate=logmel.info.sample_rate)
            spec = logmel.extract(audio, [0])[0]
            ax = axes[row][col]
            ax.imshow(spec.T, origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"{utt_id}: {label}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def report_lines(rows: Sequence[ResynthesisRow], vocoder_dir: Path | None = None) -> list[str]:
    """Markdown section of the demo report (empty when nothing was resynthesised)."""
    if not rows:
        return []
    import json

    meta = json.loads(((vocoder_dir or shipped_vocoder()) / "vocoder.json").read_text(encoding="utf-8"))
    trained = meta.get("trained_on", "see docs/vocoder.md")
    lines = ["", "## Back to audio", "",
             f"The shipped `{meta.get('arch', 'cpu')}`-tier vocoder ({trained}) re-voices demo utterances from their "
             "MFCC K=100 units and their own F0, in the nearest of its training voices (`resynthesis/`):", "",
             "| utterance | voice | GPE % | MCD dB |", "|---|---|---:|---:|"]
    for r in rows:
        g = "-" if math.isnan(r.gpe) else f"{100 * r.gpe:.1f}"
        lines.append(f"| {r.utt_id} | {r.voice} | {g} | {r.mcd_db:.2f} |")
    lines += ["", "![original vs resynthesis](resynthesis.png)", "",
              "- MCD compares timbre, so a resynthesis in another voice than the original's is penalised for the "
              "voice as well as for the content; GPE compares the F0 the vocoder produced with the source's.",
              "- The demo corpus and the vocoder's training corpus come from the same synthesiser and seed, so these "
              "utterances may be among those it was trained on: this shows the path works, it does not measure "
              "generalisation (bench/vocoder.py scores held-out utterances; docs/vocoder.md)."]
    return lines

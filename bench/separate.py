"""Speech separation (SUPERB's SS): ``probe train separate`` on two-speaker mixtures, beside the mixture and oracle masks.

Data: ``speechunits synth mix --sources --max-overlap 1`` over a ``speechunits synth`` corpus (``--corpus``;
made here when missing: 30 min, 20 voices): 600 mixtures of two voices, the second starting anywhere in
the first (full overlap possible), each source written as it lies in the mixture; train 12 speakers,
dev 4, test 4, disjoint (test voices never heard in training).

What is measured on the same test mixtures, in one run:

1. **mixture**: the mixture given as both sources (SI-SDRi 0 by definition; its SI-SDR is the baseline
   every improvement is measured from).
2. ``speechunits probe train separate`` (SUPERB's ``separation_stft2`` downstream: 3-layer BiLSTM, 256
   units, one sigmoid mask per speaker, PIT over the two orders; batches of about 8 utterances as s3prl's;
   learning rate 1e-3 or 1e-2 chosen on dev SI-SDRi, under a time budget) on MFCC, log-mel and, with ``--tiny DIR``, the weighted sum of a tiny
   pretrained model's layers.
3. **oracle mask**: ``min(|S_k| / |X|, 1)`` from the true sources (a ceiling for amplitude masks with the
   mixture's phase, not a system).

No trained separation baseline is run: the usual ones (Conv-TasNet, SepFormer) need hub weights this
machine cannot download. Every system's separated test audio is written to disk and scored here by
``fast_bss_eval``'s SI-SDR with its own permutation solver (an implementation independent of ours); means
overall and by overlap ratio go to ``OUT/results.json`` and ``OUT/table.md``::

    python bench/separate.py --out bench/out/separate --corpus bench/out/diarize/corpus --tiny bench/state/probe3/tiny

``--corpus`` may be real speech without alignments: ``../shared/data/librispeech-sample`` (65 min, 261
speakers) gives Libri2Mix-style mixtures of LibriSpeech itself (its speakers from the ids, split
157/52/52; the RTTM's turns from silero-vad, unused here)::

    python bench/separate.py --out bench/out/separate-real --corpus ../shared/data/librispeech-sample --tiny bench/state/probe3/tiny
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mask_probe import add_training_options, mask_probe_row, training_options  # noqa: E402  (bench/mask_probe.py)
from su import su  # noqa: E402  (bench/su.py)

from speechunits.probe.masking import MaskLabel, apply_mask, load_audio, magnitude_targets

OVERLAP_BANDS = ((0.0, 0.5), (0.5, 0.9), (0.9, 1.01))


def rows_of(split: Path) -> list[dict[str, str]]:
    header, *lines = (split / "mixtures.tsv").read_text(encoding="utf-8").splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]


def read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float64")[0]


def score_folder(split: Path, folder: Path | None) -> dict[str, dict[str, float]]:
    """Per-mixture SI-SDR of the sources in ``folder/s1``, ``folder/s2`` (None: the mixture as both), best
    order by fast_bss_eval, and the mixture's SI-SDR."""
    import fast_bss_eval

    out = {}
    for row in rows_of(split):
        mix = row["mix_id"]
        refs = np.stack([read(split / f"s{k}" / f"{mix}.wav") for k in (1, 2)])
        mixture = read(split / "wavs" / f"{mix}.wav")
        estimates = np.stack([mixture, mixture] if folder is None else
                             [read(folder / f"s{k}" / f"{mix}.wav") for k in (1, 2)])
        separated = float(np.mean(fast_bss_eval.si_sdr(refs, estimates)))
        baseline = float(np.mean(fast_bss_eval.si_sdr(refs, np.stack([mixture, mixture]))))
        out[mix] = {"si_sdr": separated, "si_sdri": separated - baseline, "si_sdr_mixture": baseline}
    return out


def summary(split: Path, scores: dict[str, dict[str, float]]) -> dict:
    ratio = {r["mix_id"]: float(r["overlap_ratio"]) for r in rows_of(split)}

    def mean(ids: list[str]) -> dict[str, float]:
        return {m: float(np.mean([scores[i][m] for i in ids])) if ids else float("nan")
                for m in ("si_sdri", "si_sdr", "si_sdr_mixture")}

    bands = {f"{lo:g}-{min(hi, 1):g}": mean([m for m in scores if lo <= ratio[m] < hi]) for lo, hi in OVERLAP_BANDS}
    counts = {f"{lo:g}-{min(hi, 1):g}": sum(1 for m in scores if lo <= ratio[m] < hi) for lo, hi in OVERLAP_BANDS}
    return {"all": mean(list(scores)), "by_overlap": bands, "counts": counts, "mixtures": len(scores)}


def oracle_system(test: Path, out: Path) -> Path:
    folder = out / "audio-oracle"
    for row in rows_of(test):
        mix = row["mix_id"]
        label = MaskLabel(str(test / "wavs" / f"{mix}.wav"), tuple(str(test / f"s{k}" / f"{mix}.wav") for k in (1, 2)))
        mags = magnitude_targets(label).astype(np.float32)
        masks = np.minimum(mags[:, 1:] / np.maximum(mags[:, :1], 1e-8), 1.0)
        mixture = load_audio(label.mixture)
        for k in (0, 1):
            path = folder / f"s{k + 1}" / f"{mix}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.clip(apply_mask(mixture, masks[:, k]), -1, 32767 / 32768), 16000, subtype="PCM_16")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/separate"))
    parser.add_argument("--corpus", type=Path, default=None, help="a `synth` corpus (made under --out if absent)")
    parser.add_argument("--tiny", default=None, help="a pretrained tiny model directory (weighted sum of its layers)")
    parser.add_argument("--probe-minutes", type=float, default=6.0, help="time budget of each probe sweep")
    add_training_options(parser)
    args = parser.parse_args()
    training, suffix = training_options(args)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus
    if corpus is None:
        corpus = args.out / "corpus"
        if not (corpus / "corpus.json").is_file():
            su("synth", str(corpus), "--minutes", "30", "--speakers", "20", "--quiet")
    mixset = args.out / "mixes" / "mix"
    if not (mixset / "mix.json").is_file():
        su("synth", "mix", str(mixset.parent), "--corpus", str(corpus), "--mixtures", "600", "--max-overlap", "1",
           "--sources", "--quiet")
    test = mixset / "test"
    systems: dict[str, dict] = {"mixture (no separation)": {"scores": summary(test, score_folder(test, None))}}
    inputs = [("mfcc", ["--encoder", "mfcc", "--standardize"]), ("logmel", ["--encoder", "logmel", "--standardize"])]
    if args.tiny:
        inputs.append(("tiny", ["--encoder", args.tiny, "--layers", "all", "--standardize"]))
    for name, reads in inputs:
        started = time.perf_counter()
        folder, info = mask_probe_row("separate", mixset, args.out, name + suffix, reads, args.probe_minutes, training)
        info["seconds"] = round(time.perf_counter() - started, 1)
        systems[f"separate probe, {name}"] = {"scores": summary(test, score_folder(test, folder)), **info}
        print(name, systems[f"separate probe, {name}"]["scores"]["all"], flush=True)
    systems["oracle amplitude masks (a ceiling, not a system)"] = {
        "scores": summary(test, score_folder(test, oracle_system(test, args.out)))}
    (args.out / "results.json").write_text(json.dumps({"set": str(mixset), "systems": systems}, indent=1))
    first = next(iter(systems.values()))["scores"]
    bands = list(first["by_overlap"])
    counted = ", ".join(f"{b}: {first['counts'][b]}" for b in bands)
    lines = [f"test: {first['mixtures']} mixtures ({counted} by overlap ratio)", "",
             "| system | SI-SDRi dB | SI-SDR dB | dev SI-SDRi dB | " + " | ".join(f"SI-SDRi, overlap {b}" for b in bands)
             + " |", "|---" * (4 + len(bands)) + "|"]
    for name, row in systems.items():
        s, dev = row["scores"], row.get("dev_si_sdri")
        lines.append(f"| {name} | {s['all']['si_sdri']:.2f} | {s['all']['si_sdr']:.2f} | "
                     f"{'-' if dev is None else f'{dev:.2f}'} | "
                     + " | ".join(f"{s['by_overlap'][b]['si_sdri']:.2f}" for b in bands) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Speech enhancement (SUPERB's SE): ``probe train enhance`` against spectral gating, the noisy input, an oracle mask.

Data: ``speechunits synth noisy`` over a corpus: each utterance plus one noise (white, pink, brown, mains
hum, or babble of four other voices of its split) at an SNR of 0/5/10/15 dB (train, dev) or 2.5/7.5/12.5/17.5
dB (test: SNRs never trained on, as VoiceBank-DEMAND), splits by speaker (test voices never heard in
training). Two sets: a ``speechunits synth`` corpus (``--corpus``; made here when missing: 30 min, 20
voices) and, with ``--real DIR``, real read speech (``../shared/data/librispeech-sample``: 65 min, 261
speakers).

What is measured on the same test utterances of each set, in one run:

1. **noisy**: the input itself.
2. **noisereduce** (spectral gating, the ``noisereduce`` package; no training): its four settings
   (``stationary`` True/False x ``prop_decrease`` 1.0/0.75) scored on dev, the best by dev PESQ run on test.
3. ``speechunits probe train enhance`` (SUPERB's ``enhancement_stft2`` downstream: 3-layer BiLSTM,
   256 units, sigmoid amplitude mask, L1; batches of about 8 utterances as s3prl's; learning rate 1e-3
   or 1e-2 chosen on dev PESQ, under a time budget) on MFCC, log-mel and, with ``--tiny DIR``, the weighted sum of a tiny pretrained model's layers.
4. **oracle mask**: ``min(|S| / |X|, 1)`` from the clean reference (a ceiling for any amplitude mask
   with the noisy phase, not a system).

Every system's test audio is written to disk and scored here, per utterance, by wide-band PESQ
(``pesq``), STOI (``pystoi``) and SI-SDR; means overall, by SNR and by noise kind go to
``OUT/<set>/results.json`` and ``OUT/table.md``::

    python bench/enhance.py --out bench/out/enhance --corpus bench/out/diarize/corpus \\
        --tiny bench/state/probe3/tiny --real ../shared/data/librispeech-sample
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

from speechunits.probe.masking import MaskLabel, apply_mask, audio_scores, load_audio, magnitude_targets

NOISEREDUCE_GRID = [{"stationary": s, "prop_decrease": p} for s in (False, True) for p in (1.0, 0.75)]


def rows_of(split: Path) -> list[dict[str, str]]:
    header, *lines = (split / "noisy.tsv").read_text(encoding="utf-8").splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]


def write_audio(folder: Path, utt: str, audio: np.ndarray) -> None:
    path = folder / f"{utt}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(audio, -1.0, 32767 / 32768), 16000, subtype="PCM_16")


def noisereduce_audio(noisy: np.ndarray, setting: dict) -> np.ndarray:
    import noisereduce

    return noisereduce.reduce_noise(y=noisy, sr=16000, n_jobs=1, **setting).astype(np.float32)


def score_folder(split: Path, folder: Path | None) -> dict[str, dict[str, float]]:
    """Per-utterance scores of the audio in ``folder`` (None: the noisy input) against the clean references."""
    out = {}
    for row in rows_of(split):
        utt = row["utt"]
        clean = load_audio(str(split / "clean" / f"{utt}.wav"))
        estimate = load_audio(str((split / "wavs" if folder is None else folder) / f"{utt}.wav"))
        out[utt] = audio_scores(clean, estimate)
    return out


def summary(split: Path, scores: dict[str, dict[str, float]]) -> dict:
    rows = {r["utt"]: r for r in rows_of(split)}

    def mean(ids: list[str]) -> dict[str, float]:
        return {m: float(np.nanmean([scores[i][m] for i in ids])) for m in ("pesq", "stoi", "si_sdr")}

    by_snr, by_kind = {}, {}
    for key, table in (("snr_db", by_snr), ("noise", by_kind)):
        for value in sorted({r[key] for r in rows.values()}, key=lambda v: (len(v), v)):
            table[value] = mean([u for u in scores if rows[u][key] == value])
    return {"all": mean(list(scores)), "by_snr": by_snr, "by_noise": by_kind, "utterances": len(scores)}


def noisereduce_system(noisy_set: Path, out: Path) -> tuple[Path, dict]:
    """The grid scored on dev (PESQ), the best setting run on test."""
    dev_pesq = []
    for setting in NOISEREDUCE_GRID:
        values = []
        for row in rows_of(noisy_set / "dev"):
            noisy = load_audio(str(noisy_set / "dev" / "wavs" / f"{row['utt']}.wav"))
            clean = load_audio(str(noisy_set / "dev" / "clean" / f"{row['utt']}.wav"))
            values.append(audio_scores(clean, noisereduce_audio(noisy, setting))["pesq"])
        dev_pesq.append(float(np.nanmean(values)))
    best = NOISEREDUCE_GRID[int(np.argmax(dev_pesq))]
    folder = out / "audio-noisereduce"
    started = time.perf_counter()
    seconds = 0.0
    for row in rows_of(noisy_set / "test"):
        noisy = load_audio(str(noisy_set / "test" / "wavs" / f"{row['utt']}.wav"))
        write_audio(folder, row["utt"], noisereduce_audio(noisy, best))
        seconds += noisy.size / 16000
    elapsed = time.perf_counter() - started
    return folder, {"setting": best, "dev_pesq_by_setting": dict(zip(map(json.dumps, NOISEREDUCE_GRID), dev_pesq)),
                    "dev_pesq": max(dev_pesq), "x_realtime": seconds / elapsed}


def oracle_system(noisy_set: Path, out: Path) -> tuple[Path, dict]:
    folder = out / "audio-oracle"
    for row in rows_of(noisy_set / "test"):
        label = MaskLabel(str(noisy_set / "test" / "wavs" / f"{row['utt']}.wav"),
                          (str(noisy_set / "test" / "clean" / f"{row['utt']}.wav"),))
        mags = magnitude_targets(label).astype(np.float32)
        mask = np.minimum(mags[:, 1] / np.maximum(mags[:, 0], 1e-8), 1.0)
        write_audio(folder, row["utt"], apply_mask(load_audio(label.mixture), mask))
    return folder, {}


def bench_set(name: str, noisy_set: Path, out: Path, tiny: str | None, minutes: float,
              training: tuple[list[str], str] = ([], "")) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    test = noisy_set / "test"
    systems: dict[str, dict] = {"noisy input": {"scores": summary(test, score_folder(test, None))}}
    folder, info = noisereduce_system(noisy_set, out)
    systems["noisereduce (spectral gating; setting by dev PESQ)"] = {"scores": summary(test, score_folder(test, folder)),
                                                                     **info}
    inputs = [("mfcc", ["--encoder", "mfcc", "--standardize"]), ("logmel", ["--encoder", "logmel", "--standardize"])]
    if tiny:
        inputs.append(("tiny", ["--encoder", tiny, "--layers", "all", "--standardize"]))
    for probe_name, reads in inputs:
        started = time.perf_counter()
        folder, info = mask_probe_row("enhance", noisy_set, out, probe_name + training[1], reads, minutes, training[0])
        info["seconds"] = round(time.perf_counter() - started, 1)
        systems[f"enhance probe, {probe_name}"] = {"scores": summary(test, score_folder(test, folder)), **info}
        print(name, probe_name, systems[f"enhance probe, {probe_name}"]["scores"]["all"], flush=True)
    folder, info = oracle_system(noisy_set, out)
    systems["oracle amplitude mask (a ceiling, not a system)"] = {"scores": summary(test, score_folder(test, folder))}
    (out / "results.json").write_text(json.dumps({"set": str(noisy_set), "systems": systems}, indent=1))
    return systems


def table(name: str, systems: dict) -> list[str]:
    first = next(iter(systems.values()))["scores"]
    snrs, kinds = list(first["by_snr"]), list(first["by_noise"])
    lines = [f"### {name} (test: {first['utterances']} utterances)", "",
             "| system | PESQ | STOI | SI-SDR dB | dev PESQ | " + " | ".join(f"PESQ @ {s} dB" for s in snrs) + " | "
             + " | ".join(f"SI-SDR {k}" for k in kinds) + " |",
             "|---" * (5 + len(snrs) + len(kinds)) + "|"]
    for system, row in systems.items():
        s = row["scores"]
        dev = row.get("dev_pesq")
        lines.append(f"| {system} | {s['all']['pesq']:.2f} | {s['all']['stoi']:.3f} | {s['all']['si_sdr']:.1f} | "
                     f"{'-' if dev is None else f'{dev:.2f}'} | "
                     + " | ".join(f"{s['by_snr'][v]['pesq']:.2f}" for v in snrs) + " | "
                     + " | ".join(f"{s['by_noise'][k]['si_sdr']:.1f}" for k in kinds) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/enhance"))
    parser.add_argument("--corpus", type=Path, default=None, help="a `synth` corpus (made under --out if absent)")
    parser.add_argument("--real", type=Path, default=None, help="a real-speech corpus with speakers.tsv")
    parser.add_argument("--tiny", default=None, help="a pretrained tiny model directory (weighted sum of its layers)")
    parser.add_argument("--probe-minutes", type=float, default=6.0, help="time budget of each probe sweep")
    add_training_options(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus
    if corpus is None:
        corpus = args.out / "corpus"
        if not (corpus / "corpus.json").is_file():
            su("synth", str(corpus), "--minutes", "30", "--speakers", "20", "--quiet")
    sets = {"synthetic voices": (corpus, args.out / "sets" / "synth")}
    if args.real is not None:
        sets["real read speech (LibriSpeech sample)"] = (args.real, args.out / "sets" / "real")
    lines = []
    for index, (name, (source, where)) in enumerate(sets.items()):
        if not (where / "noisy" / "noisy.json").is_file():
            su("synth", "noisy", str(where), "--corpus", str(source), "--quiet")
        systems = bench_set(name, where / "noisy", args.out / ("synth" if index == 0 else "real"), args.tiny,
                            args.probe_minutes, training_options(args))
        lines += table(name, systems)
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Speaker diarization (SUPERB's SD) on two-speaker mixtures: ``probe train diarize`` against a pretrained
speaker encoder with clustering, scored with ``speechunits der`` (md-eval's DER, 0.25 s collar).

Data: ``speechunits synth mix`` over a ``speechunits synth`` corpus (made here when missing: 30 min, 20
voices; 600 mixtures: train 12 speakers, dev 4, test 4, disjoint). Test speakers are never heard in
training.

What is measured, on the same test mixtures, in one run:

1. **Resemblyzer + clustering** (no training on this data): a GE2E speaker encoder (Resemblyzer's wheel
   ships its weights) embeds 1.6-s windows every 0.25 s; the windows are clustered into two speakers
   (agglomerative, cosine, average linkage: the oracle number of speakers); each 10-ms frame takes the
   label of the nearest window centre where an energy detector (40 dB below the loudest frame) finds
   speech. One speaker per frame: overlapped speech is half missed by design.
2. **Trivial systems**: nobody talks (DER 100 %), both speakers talk everywhere there is speech in the
   reference (the upper bound of a system with perfect activity and no speaker information).
3. ``speechunits probe train diarize`` (BiLSTM head, SUPERB's; learning rate 1e-3 or 1e-2, step, then
   threshold and median filter over SUPERB's 10-setting grid, all chosen on dev DER) on MFCC, log-mel
   and, with ``--tiny DIR``, the weighted sum of a tiny model's layers; with ``--units-k K`` on MFCC
   K-means units (a codebook fitted on the training mixtures). A sweep left by an earlier run is resumed.

Every system's turns are written as RTTM and scored by ``speechunits der`` against the mixtures' RTTM
(exact times), collar 0.25 s and 0. For the probes, the DER of every setting of the decision grid on
test is also computed (``OUT/test-grid.json``): the grid's best on test is what s3prl's protocol
reports, an oracle beside the dev choice. ``OUT/results.json`` and ``OUT/table.md`` hold the figures::

    python bench/diarize.py --out bench/out/diarize --tiny bench/state/probe3/tiny --units-k 100
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from speechunits.measure.diarization import DiarizationErrors, score_recordings, turns_by_recording
from speechunits.probe.diarize import activity_turns
from speechunits.rttm import read_rttm, speaker_turns, write_rttm
from speechunits.synth.mixtures import merge_segments

FRAME_S = 0.01


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "speechunits", *args, "--quiet"], check=True, stdout=subprocess.DEVNULL)


def der_of(reference: Path, hypothesis: Path, collar: float) -> dict:
    ref = turns_by_recording(read_rttm(reference, {"SPEAKER"}))
    hyp = turns_by_recording(read_rttm(hypothesis, {"SPEAKER"}))
    total = sum(score_recordings(ref, hyp, collar=collar).values(), DiarizationErrors(0.0, 0.0, 0.0, 0.0))
    return total.to_dict()


def speech_frames(audio: np.ndarray, rate: int) -> np.ndarray:
    """Energy detector: 10-ms frames within 40 dB of the loudest one."""
    hop = int(rate * FRAME_S)
    n = len(audio) // hop
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    return db > db.max() - 40


def resemblyzer_system(split: Path, out: Path) -> Path:
    from resemblyzer import VoiceEncoder
    from sklearn.cluster import AgglomerativeClustering

    encoder = VoiceEncoder("cpu", verbose=False)
    records = []
    for line in (split / "wav.scp").read_text().splitlines():
        mix, rel = line.split(maxsplit=1)
        audio, rate = sf.read(split / rel, dtype="float32")
        speech = speech_frames(audio, rate)
        _, partials, slices = encoder.embed_utterance(audio, return_partials=True, rate=4)
        centres = np.array([(s.start + s.stop) / 2 / rate for s in slices])
        clusters = AgglomerativeClustering(n_clusters=2, metric="cosine", linkage="average").fit_predict(partials)
        times = (np.arange(len(speech)) + 0.5) * FRAME_S
        nearest = clusters[np.abs(times[:, None] - centres[None, :]).argmin(axis=1)]
        labels = np.stack([speech & (nearest == k) for k in (0, 1)], axis=1)
        records += speaker_turns(mix, activity_turns(labels, 1 / FRAME_S, FRAME_S / 2, ["c0", "c1"]))
    path = out / "resemblyzer.rttm"
    write_rttm(path, records)
    return path


def everyone_everywhere(reference: Path, out: Path) -> Path:
    """Both reference speakers talking wherever either does (perfect activity, no speaker information)."""
    records = []
    for mix, turns in turns_by_recording(read_rttm(reference, {"SPEAKER"})).items():
        merged = merge_segments(((a, b) for _, a, b in turns), min_pause=0.0)  # touching or overlapping
        records += speaker_turns(mix, [(name, a, b) for a, b in merged for name in ("x", "y")])
    path = out / "everyone.rttm"
    write_rttm(path, records)
    return path


def test_grid(probe_dir: Path, test: Path, units: str | None) -> dict:
    """Test DER (collar 0.25) of every setting of the decision grid, the oracle s3prl reports."""
    from speechunits.probe.diarize import tune_decision
    from speechunits.probe.evaluate import corpus_labels, probe_input
    from speechunits.probe.model_dir import load_probe

    probe = load_probe(probe_dir)
    made = probe_input(probe.identity, test, units=units, device="cpu", quiet=True)
    samples = made.load([line.split()[0] for line in (test / "wav.scp").read_text().splitlines()]).samples
    labels = corpus_labels("diarize", test, list(samples), inputs=made, samples=samples).labels
    logits = probe.logits(samples)
    best, table = tune_decision([labels[i] for i in logits], list(logits.values()), made.frame_rate)
    return {"best_on_test": best.key, "chosen_on_dev": probe.coder.decision.key,
            "der": {key: scores["der"] for key, scores in table.items()}}


def probe_system(parts: str, test: Path, out: Path, name: str, reads: list[str], minutes: float) -> tuple[Path, dict]:
    """Train a ``diarize`` probe (BiLSTM, lr 1e-3 or 1e-2 by dev DER) and write its test turns as RTTM."""
    probe = out / f"probe-{name}"
    if not (probe / "probe.json").is_file():
        subprocess.run([sys.executable, "-m", "speechunits", "probe", "train", "diarize", parts, *reads,
                        "--head", "bilstm", "--lr", "1e-3,1e-2", "--max-steps", "4000", "--eval-every", "100",
                        "--patience", "8", "--max-minutes", str(minutes), "--device", "cpu", "--quiet",
                        "--resume", "-o", str(probe)], check=True, stdout=subprocess.DEVNULL)
    hyp = out / f"{name}.rttm"
    subprocess.run([sys.executable, "-m", "speechunits", "probe", "eval", str(probe), str(test), "--rttm-out",
                    str(hyp), "--json", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    meta = json.loads((probe / "probe.json").read_text())
    info = {"dev_der": meta["dev"]["der"]["mean"], "lr": meta["selection"]["lr"],
            "stopped": sorted({r["stop_reason"] for r in meta["runs"]}),
            "decision": meta["labels"].get("decision"),
            "dev_der_at_0.5": (meta.get("decision_grid") or {}).get("dev_der", {}).get("t0.5-m1"),
            "train_x_realtime": meta.get("throughput", {}).get("train_x_realtime")}
    return hyp, info


def oracle(grid: dict | None) -> str:
    if grid is None:
        return "-"
    return f"{100 * grid['der'][grid['best_on_test']]:.1f} ({grid['best_on_test']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/diarize"))
    parser.add_argument("--set", type=Path, default=None, help="a `synth mix` set (OUT/mix); made under --out if absent")
    parser.add_argument("--tiny", default=None, help="a pretrained tiny model directory (weighted sum of its layers)")
    parser.add_argument("--units-k", type=int, default=None, help="also MFCC K-means units")
    parser.add_argument("--probe-minutes", type=float, default=6.0, help="time budget of each probe sweep")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    mix = args.set
    if mix is None:
        corpus, mix = args.out / "corpus", args.out / "mixes" / "mix"
        if not (corpus / "corpus.json").is_file():
            cli("synth", str(corpus), "--minutes", "30", "--speakers", "20")
        if not (mix / "mix.json").is_file():
            cli("synth", "mix", str(mix.parent), "--corpus", str(corpus), "--mixtures", "600")
    test, reference = mix / "test", mix / "test" / "rttm"
    parts = f"{mix}/{{train,dev,test}}"
    systems: dict[str, tuple[Path, dict]] = {}
    started = time.perf_counter()
    systems["Resemblyzer GE2E + clustering (pretrained, 2 speakers given)"] = (resemblyzer_system(test, args.out), {
        "seconds": round(time.perf_counter() - started, 1)})
    systems["both speakers wherever the reference has speech"] = (everyone_everywhere(reference, args.out), {})
    inputs = [("mfcc", ["--encoder", "mfcc", "--standardize"]), ("logmel", ["--encoder", "logmel", "--standardize"])]
    if args.tiny:
        inputs.append(("tiny", ["--encoder", args.tiny, "--layers", "all", "--standardize"]))
    if args.units_k:
        codebook, store = args.out / f"mfcc-k{args.units_k}", args.out / f"units-mfcc-k{args.units_k}"
        if not (codebook / "codebook.json").is_file():
            cli("fit", str(mix / "train"), "--encoder", "mfcc", "--k", str(args.units_k), "-o", str(codebook))
        inputs.append((f"mfcc-k{args.units_k}-units", ["--units", str(store), "--codebook", str(codebook)]))
        if not any(store.glob("*.parquet")):
            cli("encode", parts, "--codebook", str(codebook), "-o", str(store))
    for name, reads in inputs:
        started = time.perf_counter()
        hyp, info = probe_system(parts, test, args.out, name, reads, args.probe_minutes)
        info["seconds"] = round(time.perf_counter() - started, 1)
        systems[f"diarize probe, {name}"] = (hyp, info)
        print(name, info, flush=True)
    grids = {name: test_grid(args.out / f"probe-{name}", test, reads[1] if reads[0] == "--units" else None)
             for name, reads in inputs}  # after every test figure: the oracle column only
    (args.out / "test-grid.json").write_text(json.dumps(grids, indent=1))
    rows = {}
    for name, (hyp, info) in systems.items():
        rows[name] = {"collar_0.25": der_of(reference, hyp, 0.25), "collar_0": der_of(reference, hyp, 0.0), **info}
    (args.out / "results.json").write_text(json.dumps({"set": str(mix), "rows": rows}, indent=1))
    lines = ["| system | test DER % (collar 0.25) | missed / false alarm / confusion % | test DER % (no collar) | dev DER % "
             "| test DER %, grid's best on test (s3prl) |", "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        c = row["collar_0.25"]
        ref = c["reference_s"]
        dev = row.get("dev_der")
        lines.append(f"| {name} | {100 * c['der']:.1f} | {100 * c['missed_s'] / ref:.1f} / "
                     f"{100 * c['false_alarm_s'] / ref:.1f} / {100 * c['confusion_s'] / ref:.1f} | "
                     f"{100 * row['collar_0']['der']:.1f} | {'-' if dev is None else f'{100 * dev:.1f}'} | "
                     f"{oracle(grids.get(name.removeprefix('diarize probe, ')))} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

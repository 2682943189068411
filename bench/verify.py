"""Speaker verification (SUPERB's ASV) on real speech: ``verify`` probes against Resemblyzer and MFCC statistics.

Corpus: ``../shared/data/librispeech-sample`` (not in the package). Its 10 ``test-other`` speakers x 10
utterances are the test part, scored over every pair of their utterances (450 target and 4,050
non-target trials), speakers the probes never hear in training. Its 251 ``train-clean-100`` speakers
(one utterance each) are the training pool: every utterance is cut into non-overlapping ``--crop``-second
pieces (at most ``--crops`` each, read in place as time ranges of the flac), so that a speaker has several
training utterances. ``--dev-speakers`` of them (drawn with seed 0) are the dev part; the rest train.

What is measured, all on the same test trials, in one run:

1. **Resemblyzer** (GE2E, a 3-layer LSTM trained for speaker verification on LibriSpeech train-other,
   VoxCeleb1 and 2; its wheel ships the weights): ``embed_utterance`` on the VAD-trimmed whole
   utterance, as its README does. The strongest off-the-shelf tool here, trained on far more speakers,
   so a reference rather than a like-for-like baseline.
2. **MFCC statistics**, nothing learned: each utterance's MFCC mean and standard deviation,
   standardised by the training pool's crops, scored by cosine.
3. ``speechunits probe train verify`` (linear head on mean+std pooling to a 256-d embedding, AM-softmax
   s=30 m=0.2, ``--standardize``, ``--lr 1e-3,1e-2`` chosen on dev EER, best step by dev) on MFCC, log-mel
   and, with ``--tiny DIR``, the weighted sum of a tiny model's layers (e.g. ``bench/state/probe3/tiny``,
   pretrained with ``speechunits pretrain`` on the synthetic corpus only).
4. With ``--xvector``: the same probes on MFCC and log-mel with the x-vector head (``--head xvector
   --hidden 256``: SUPERB's ASV network at half its 512 channels, for this CPU).
5. With ``--units-k K``: the speaker leakage of units on unseen speakers. A K-means codebook of MFCC
   (``speechunits fit``, on the training crops only), every utterance encoded (``speechunits encode``), and
   ``verify`` probes on the raw and the deduplicated units (durations kept), the same settings otherwise.
   An EER near 50 % would mean the units carry no speaker identity.

Nothing is chosen on test: the probes' learning rate, step and score normalisation (none, S-norm or
AS-norm against a cohort of the training speakers) are chosen on dev; the settings above are fixed,
the first tried. Each probe's test EER without normalisation (``probe eval --score-norm none``) is
given beside it. A sweep left by an earlier run is resumed (``--resume``). ``OUT/results.json`` and ``OUT/table.md`` hold the figures::

    python bench/verify.py ../shared/data/librispeech-sample --out bench/out/verify --tiny bench/state/probe3/tiny
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


def write_corpus(data: Path, out: Path, crop: float, crops: int, dev_speakers: int) -> tuple[Path, Path, dict]:
    """``OUT/corpus.jsonl`` (crops of the pool, whole test utterances) and ``OUT/split.tsv``."""
    speakers = dict(line.split("\t") for line in (data / "speakers.tsv").read_text().splitlines() if line.strip())
    counts: dict[str, int] = {}
    for s in speakers.values():
        counts[s] = counts.get(s, 0) + 1
    test_speakers = sorted(s for s, n in counts.items() if n >= 10)
    pool = sorted(s for s in counts if s not in test_speakers)
    rng = np.random.default_rng(0)
    dev = set(rng.choice(pool, size=dev_speakers, replace=False).tolist())
    records, split = [], []
    for utt, speaker in sorted(speakers.items()):
        path = (data / "flac" / f"{utt}.flac").resolve()
        if speaker in test_speakers:
            records.append({"id": utt, "path": str(path), "speaker": speaker})
            split.append(f"{utt}\ttest")
            continue
        seconds = sf.info(str(path)).duration
        for k in range(min(crops, int(seconds // crop))):
            records.append({"id": f"{utt}_c{k}", "path": str(path), "offset": k * crop, "duration": crop,
                            "speaker": speaker})
            split.append(f"{utt}_c{k}\t{'dev' if speaker in dev else 'train'}")
    out.mkdir(parents=True, exist_ok=True)
    manifest, split_file = out / "corpus.jsonl", out / "split.tsv"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    split_file.write_text("\n".join(split) + "\n")
    sizes = {part: sum(1 for line in split if line.endswith(part)) for part in ("train", "dev", "test")}
    return manifest, split_file, {"test_speakers": len(test_speakers), "dev_speakers": len(dev),
                                  "train_speakers": len(pool) - len(dev), **sizes}


def resemblyzer_row(records: list[dict]) -> dict:
    from speechunits.audio import Audio
    from speechunits.measure.audio.speaker import SpeakerEmbedder
    from speechunits.probe.verification import verification_metrics

    embedder = SpeakerEmbedder(device="cpu")
    start = time.perf_counter()
    embeddings = {r["id"]: embedder.embed(Audio.load(r["path"])) for r in records}
    seconds = time.perf_counter() - start
    metrics = verification_metrics({r["id"]: r["speaker"] for r in records}, embeddings)
    return {**metrics, "embed_seconds": seconds}


def mfcc_statistics_row(manifest: Path, train_ids: list[str], test: list[dict]) -> dict:
    from speechunits.probe import EncoderInput
    from speechunits.probe.heads import statistics_pooling
    from speechunits.probe.verification import verification_metrics
    import torch

    inputs = EncoderInput("mfcc", None, corpus=str(manifest), device="cpu", quiet=True)
    loaded = inputs.load(train_ids + [r["id"] for r in test]).samples

    def pooled(utt: str) -> np.ndarray:
        x = loaded[utt].features[0].float()[None]  # [1, T, D]
        return statistics_pooling(x, torch.tensor([x.shape[1]]))[0].numpy()

    train = np.stack([pooled(u) for u in train_ids])
    mean, std = train.mean(0), train.std(0) + 1e-8
    embeddings = {r["id"]: (pooled(r["id"]) - mean) / std for r in test}
    return verification_metrics({r["id"]: r["speaker"] for r in test}, embeddings)


def unit_store(manifest: Path, records: list[dict], train_ids: list[str], k: int, out: Path) -> Path:
    """MFCC K-means units of every utterance, the codebook fitted on the training crops only."""
    codebook, store = out / f"codebook-mfcc-k{k}", out / f"units-mfcc-k{k}"
    if not (codebook / "codebook.json").is_file():
        wanted = set(train_ids)
        train_manifest = out / "train.jsonl"
        train_manifest.write_text("".join(json.dumps(r) + "\n" for r in records if r["id"] in wanted))
        subprocess.run([sys.executable, "-m", "speechunits", "fit", str(train_manifest), "--encoder", "mfcc",
                        "--k", str(k), "-o", str(codebook), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    if not store.is_dir():
        subprocess.run([sys.executable, "-m", "speechunits", "encode", str(manifest), "--codebook", str(codebook),
                        "-o", str(store), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return store


def probe_row(manifest: Path, split_file: Path, encoder: str, out: Path, max_minutes: float,
              units: Path | None = None, dedup: bool = False, head: list[str] | None = None) -> dict:
    name = Path(encoder).name if units is None else units.name + ("-dedup" if dedup else "")
    name += "-" + "-".join(head) if head else ""
    probe = out / f"probe-{name}"
    if not (probe / "probe.json").is_file():
        reads = ["--encoder", encoder, "--standardize"] if units is None else \
            ["--units", str(units)] + (["--dedup"] if dedup else [])
        command = [sys.executable, "-m", "speechunits", "probe", "train", "verify", str(manifest),
                   "--split-file", str(split_file), *reads, *(head or []), "--lr", "1e-3,1e-2",
                   "--max-steps", "3000", "--eval-every", "50", "--patience", "10",
                   "--max-minutes", str(max_minutes), "--step-schedule", "--device", "cpu", "--quiet",
                   "--resume", "-o", str(probe)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    meta = json.loads((probe / "probe.json").read_text())
    reads = ["--encoder", encoder] if units is None else ["--units", str(units)]
    plain = json.loads(subprocess.run(
        [sys.executable, "-m", "speechunits", "probe", "eval", str(probe), str(manifest), *reads, "--split", "test",
         "--score-norm", "none", "--json", "--device", "cpu", "--quiet"],
        check=True, capture_output=True, text=True).stdout)
    return {"dev_eer": meta["dev"]["eer"]["mean"], "eer": meta["test"]["eer"]["mean"],
            "min_dcf": meta["test"]["min_dcf"]["mean"], "trials": meta["test"]["trials"]["mean"],
            "lr": meta["selection"]["lr"], "best_step": [r["best_step"] for r in meta["runs"]
                                                          if r["lr"] == meta["selection"]["lr"]][0],
            "stopped": sorted({r["stop_reason"] for r in meta["runs"]}),
            "train_x_realtime": meta["throughput"]["train_x_realtime"],
            "score_norm": (meta.get("scoring") or {}).get("norm"), "dev_eer_by_norm": (meta.get("scoring") or {}).get("dev_eer"),
            "eer_without_norm": plain["eer"], "min_dcf_without_norm": plain["min_dcf"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="librispeech-sample (flac/, speakers.tsv)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/verify"))
    parser.add_argument("--tiny", default=None, help="a pretrained tiny model directory (weighted sum of its layers)")
    parser.add_argument("--crop", type=float, default=3.0, help="seconds per training crop (default %(default)s)")
    parser.add_argument("--crops", type=int, default=5, help="crops per pool utterance at most (default %(default)s)")
    parser.add_argument("--dev-speakers", type=int, default=40)
    parser.add_argument("--probe-minutes", type=float, default=20.0, help="time budget of each probe sweep")
    parser.add_argument("--units-k", type=int, default=None, help="also probe MFCC K-means units (raw, dedup)")
    parser.add_argument("--xvector", action="store_true",
                        help="also the x-vector head (--head xvector --hidden 256) on MFCC and log-mel")
    args = parser.parse_args()

    manifest, split_file, sizes = write_corpus(args.data, args.out, args.crop, args.crops, args.dev_speakers)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    parts = dict(line.split("\t") for line in split_file.read_text().splitlines())
    test = [r for r in records if parts[r["id"]] == "test"]
    train_ids = [r["id"] for r in records if parts[r["id"]] == "train"]
    print(f"corpus: {sizes}", flush=True)

    rows: dict[str, dict] = {}
    rows["Resemblyzer GE2E (pretrained)"] = resemblyzer_row(test)
    rows["MFCC mean+std, cosine (nothing learned)"] = mfcc_statistics_row(manifest, train_ids, test)
    encoders = ["mfcc", "logmel"] + ([args.tiny] if args.tiny else [])
    for encoder in encoders:
        start = time.perf_counter()
        row = probe_row(manifest, split_file, encoder, args.out, args.probe_minutes)
        row["sweep_seconds"] = time.perf_counter() - start
        rows[f"verify probe on {'tiny weighted sum' if encoder == args.tiny else encoder}"] = row
        print(encoder, row, flush=True)
    if args.xvector:
        for encoder in ("mfcc", "logmel"):
            start = time.perf_counter()
            row = probe_row(manifest, split_file, encoder, args.out, args.probe_minutes,
                            head=["--head", "xvector", "--hidden", "256"])
            row["sweep_seconds"] = time.perf_counter() - start
            rows[f"verify probe, x-vector head (256 channels), on {encoder}"] = row
            print(encoder, "xvector", row, flush=True)
    if args.units_k:
        store = unit_store(manifest, records, train_ids, args.units_k, args.out)
        for dedup in (False, True):
            start = time.perf_counter()
            row = probe_row(manifest, split_file, "mfcc", args.out, args.probe_minutes, units=store, dedup=dedup)
            row["sweep_seconds"] = time.perf_counter() - start
            rows[f"verify probe on MFCC K={args.units_k} units{' (dedup)' if dedup else ''}"] = row
            print(store.name, dedup, row, flush=True)

    lines = ["| system | score norm (chosen on dev) | dev EER % | test EER % | test minDCF (0.01) | "
             "test EER % / minDCF without norm | test trials |", "|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        dev = f"{100 * row['dev_eer']:.1f}" if "dev_eer" in row else "-"
        norm = row.get("score_norm") or {}
        chosen = "-" if not norm else (f"as-norm:{norm['top']}" if norm["kind"] == "as-norm" else norm["kind"])
        plain = (f"{100 * row['eer_without_norm']:.1f} / {row['min_dcf_without_norm']:.3f}"
                 if "eer_without_norm" in row else "-")
        lines.append(f"| {name} | {chosen} | {dev} | {100 * row['eer']:.1f} | {row['min_dcf']:.3f} | {plain} | "
                     f"{int(row['trials'])} |")
    table = "\n".join(lines)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps({"corpus": sizes, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Dev-only phone probes of ``bench/pretrain.py`` runs: how well their units read for unseen voices.

``bench/pretrain.py --dev-only`` scores every layer's K=100 units by PNMI and ABX. This script adds
the measure issue 14 cares about: a phone probe's PER on voices it never heard. For every
``--run NAME=DIR`` (a ``bench/pretrain.py`` output directory), it takes the layer that the run's
``selection.json`` chose and

1. fits K=100 on that layer over the training corpus (``speechunits fit``, 200k frames, seed 0)
   and encodes the training and dev corpora (``speechunits encode``);
2. trains a phones probe (by default the judge's one-layer BiLSTM of 128, ``--head`` for another;
   unit tables from the centroids, ``--lr 1e-3,1e-2``, early stopping, 3000 steps at most, 12 minutes per sweep) on
   the training corpus's 8 voices, choosing the learning rate and step on the dev corpus's 6
   unseen voices, and reports that dev PER.

MFCC K=100 units are always a row. ``--features`` adds the same probe on each chosen layer's
features and on MFCC (features standardised, 100 Hz inputs stacked 3 frames at a time), for the "units within 1.5x of
their features" question. There is no test part: bench/pretrain.py's test corpus is not read.

    python bench/pretrain_probe.py --out bench/out/pretrain-probe \\
        --run base=bench/out/pretrain-base --run aug=bench/out/pretrain-aug --features   # ~40 min here
    # the weighted sum of all layers too (issue 14 compares that with MFCC), a longer budget for new probes
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --features \\
        --weighted-sum --probe-minutes 25
    # units of several layers at once, one embedding table per stream (DASB), after the runs above
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --streams 0-6
    # K=500 codebooks instead of K=100 (their own folders and table-k500.md); --dedup: deduplicated units
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --k 500 [--dedup]
    # BPE over the deduplicated units (bench/probe.py's ensure_bpe, trained on the training corpus); --no-mfcc: the
    # pretrained runs' rows only (the MFCC unit rows of the same K are in the earlier tables)
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --k 500 --dedup \
        --bpe-vocab 1000 --no-mfcc
    # the spread over seeds of the feature rows (MFCC, the chosen layer, the weighted sum), no unit probes
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --features \
        --weighted-sum --no-units --seeds 3 --probe-minutes 40
    # probe train's default batch (20,000 padded frames) instead of bench/probe.py's 4,000, and regularisers:
    # unit rows and feature rows each take their own (all in the probes' keys)
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --k 500 --dedup \
        --no-mfcc --lrs 1e-3 --step-schedule --batch-frames 20000 --unit-dropout 0.5 --unit-time-mask 5:0.05 \
        --unit-noise 0.1:5 --probe-minutes 150
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --features \
        --no-units --no-mfcc --lrs 1e-3 --step-schedule --batch-frames 20000 [--feature-time-mask 5:0.05] \
        --probe-minutes 150
    # unit tables fixed at the centroids: the probe reads the quantised features
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --k 2000 --no-mfcc \
        --lrs 1e-3 --step-schedule --head 256x2 --embed-init centroids-frozen --probe-minutes 60
    # a larger BiLSTM head for every probe (two layers of 256, nearer SUPERB's ASR downstream than the judge's)
    python bench/pretrain_probe.py --out bench/out/pretrain-probe --run aug=bench/out/pretrain-aug --k 500 --dedup \
        --features --no-mfcc --lrs 1e-3 --step-schedule --head 256x2 --probe-minutes 150
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from speechunits.cli.common import parse_layers
from speechunits.corpus import SPEAKERS_FILE, open_corpus, read_speakers, write_tsv
from speechunits.encoders import load_encoder
from speechunits.probe.augment import parse_time_mask, parse_unit_noise
from speechunits.probe.featurizers import EMBED_CENTROIDS, EMBED_FROZEN

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe import Bench, ensure_bpe, input_spec, unit_bitrates  # noqa: E402  (bench/probe.py)
from su import fit_codebook, su  # noqa: E402  (bench/su.py)
from probe_units_dev import FULL  # noqa: E402

log = logging.getLogger("bench.pretrain_probe")
PARTS = (("tr", "train"), ("dv", "dev"))
LRS = (1e-3, 1e-2)
#: Every codebook: fitted on the training corpus, 200k frames, seed 0.
FIT_OPTIONS = ("--max-frames", 200000, "--seed", 0, "--device", "cpu")


def joint_corpus(out: Path, train: Path, dev: Path) -> Path:
    """One corpus of both (their utterance ids overlap: prefixed ``tr_`` / ``dv_``, audio symlinked),
    with ``phones.tsv``, ``speakers.tsv`` and ``split.tsv`` (train / dev)."""
    corpus = out / "corpus"
    if (corpus / "split.tsv").is_file():
        return corpus
    (corpus / "wavs").mkdir(parents=True, exist_ok=True)
    rows, phones, speakers, split = [], [], [], []
    for (tag, part), source in zip(PARTS, (train, dev)):
        speaker_of = read_speakers(source / SPEAKERS_FILE)
        for utt in open_corpus(source / "manifest.tsv"):
            link = corpus / "wavs" / f"{tag}_{Path(utt.path).name}"
            if not link.exists():
                link.symlink_to(Path(utt.path).resolve())
            rows.append((link.name, utt.num_samples))
            split.append(f"{tag}_{utt.id}\t{part}")
            speakers.append(f"{tag}_{utt.id}\t{tag}_{speaker_of[utt.id]}")
        phones += [f"{tag}_{line}" for line in (source / "phones.tsv").read_text().splitlines() if line.strip()]
    write_tsv(corpus / "manifest.tsv", str((corpus / "wavs").resolve()), rows)
    for name, lines in (("phones.tsv", phones), ("speakers.tsv", speakers), ("split.tsv", split)):
        (corpus / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return corpus


def chosen_layer(run: Path) -> int:
    selection = run / "selection.json"
    if not selection.is_file():
        raise SystemExit(f"{selection} missing: run bench/pretrain.py --out {run} --dev-only first")
    return int(json.loads(selection.read_text())["layer"])


def unit_lengths(store: Path, dedup: bool, bpe_dir: Path | None, k: int) -> dict[str, float]:
    """Mean tokens per utterance (every utterance) of what a unit row reads, and of the raw units."""
    from speechunits.probe.unit_inputs import UnitInput

    raw = unit_bitrates(UnitInput(store), "raw", k)[1]
    read = raw if not dedup else unit_bitrates(UnitInput(store, dedup=True, bpe_dir=bpe_dir), "dedup", k)[1]
    return {"raw": raw, "read": read, "shorter": raw / read}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/pretrain-probe"))
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                        help="a bench/pretrain.py output directory (its iter1 model and selection.json)")
    parser.add_argument("--train-corpus", type=Path, default=Path("bench/out/synth_train"))
    parser.add_argument("--dev-corpus", type=Path, default=Path("bench/out/synth_heldout"))
    parser.add_argument("--features", action="store_true", help="also probe each chosen layer's features and MFCC")
    parser.add_argument("--weighted-sum", action="store_true",
                        help="also probe each run's weighted sum of all its layers (s3prl's featurizer: issue 14's "
                        "feature row)")
    parser.add_argument("--probe-minutes", type=float, default=None,
                        help=f"time budget per sweep for probes not yet in OUT (default {FULL['probe_minutes']:g})")
    parser.add_argument("--streams", metavar="LAYERS", default=None,
                        help="also probe each run's multi-stream units: K-means (--k) on each of these layers (e.g. 0-6), "
                        "one embedding table per stream (DASB's multi-layer tokens)")
    parser.add_argument("--combine", choices=("sum", "attention"), default="sum",
                        help="how --streams' embeddings are combined (default %(default)s)")
    parser.add_argument("--k", type=int, default=100,
                        help="clusters of every codebook (default %(default)s; other values get their own "
                        "codebook-*-kK / units-*-kK folders in OUT)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="seeds per learning rate (default %(default)s); above 1 the probes get their own "
                        "'seedsN' keys in OUT and the table gives mean +- std over seeds")
    parser.add_argument("--dedup", action="store_true",
                        help="unit rows read deduplicated units with their durations (own ' dedup' keys)")
    parser.add_argument("--bpe-vocab", type=int, default=None, metavar="V",
                        help="unit rows read BPE tokens (vocabulary V) over the deduplicated units (needs --dedup)")
    parser.add_argument("--unit-dropout", type=float, default=None, metavar="P",
                        help="the unit rows' head dropout (probe train --dropout; own ' dP' keys)")
    parser.add_argument("--unit-time-mask", default=None, metavar="N:R",
                        help="the unit rows' time masks (probe train --time-mask; own ' tmNxR' keys)")
    parser.add_argument("--unit-noise", default=None, metavar="P:N",
                        help="the unit rows' unit substitution (probe train --unit-noise; own ' unPxN' keys)")
    parser.add_argument("--lrs", default=None, metavar="LR,LR",
                        help=f"every probe's learning rates (default {','.join(f'{x:g}' for x in LRS)}; own ' lrLR' keys)")
    parser.add_argument("--batch-frames", type=int, default=None, metavar="N",
                        help="every probe's batch in padded frames (default bench/probe.py's BATCH_FRAMES; "
                        "own ' bfN' keys)")
    parser.add_argument("--head", default=None, metavar="HIDDENxLAYERS",
                        help="every probe's BiLSTM head, e.g. 256x2 (bench/probe.py's since 2026-12-04; default "
                        "the phone judge's 128x1, which every earlier study here used; own ' hdHIDDENxLAYERS' keys)")
    parser.add_argument("--feature-dropout", type=float, default=None, metavar="P",
                        help="the feature rows' head dropout (own ' dP' keys)")
    parser.add_argument("--feature-time-mask", default=None, metavar="N:R",
                        help="the feature rows' time masks (own ' tmNxR' keys)")
    parser.add_argument("--embed-init", choices=(EMBED_CENTROIDS, EMBED_FROZEN), default=EMBED_CENTROIDS,
                        help="unit tables: from the centroids and trained (default), or fixed at them, so the probe "
                        "reads the quantised features (runs get a ' frozen' key)")
    parser.add_argument("--no-mfcc", action="store_true", help="leave out the MFCC rows")
    parser.add_argument("--no-units", action="store_true",
                        help="only the feature rows (--features, --weighted-sum): no unit probes")
    parser.add_argument("--jobs", type=int, default=2, help="probe sweeps at once, one thread each")
    parser.add_argument("--step-schedule", action="store_true",
                        help="probes' warmup and decay follow steps only; the budget only stops (give a new --out)")
    args = parser.parse_args()
    if args.bpe_vocab is not None and not args.dedup:
        parser.error("--bpe-vocab needs --dedup (BPE runs over deduplicated units)")
    if args.bpe_vocab is not None and args.streams:
        parser.error("--bpe-vocab reads one stream: leave out --streams")
    head = None
    if args.head is not None:
        hidden, _, layers = args.head.partition("x")
        if not (hidden.isdigit() and layers.isdigit() and int(hidden) > 0 and int(layers) > 0):
            parser.error(f"--head wants HIDDENxLAYERS with positive integers (e.g. 256x2), got {args.head!r}")
        head = (int(hidden), int(layers))
    args.device = "cpu"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("speechunits").setLevel(logging.WARNING)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    corpus = joint_corpus(out, args.train_corpus, args.dev_corpus)
    manifest = corpus / "manifest.tsv"
    sources: list[tuple[str, str, int | None]] = [] if args.no_mfcc else [("MFCC", "mfcc", None)]
    for spec in args.run:
        name, _, directory = spec.partition("=")
        sources.append((name, str(Path(directory) / "iter1"), chosen_layer(Path(directory))))

    cfg = dict(FULL)
    if args.probe_minutes is not None:
        cfg["probe_minutes"] = args.probe_minutes
    if head is not None:  # every probe's BiLSTM (the default is FULL's: the judge's 128 x 1)
        cfg.update(hidden=head[0], lstm_layers=head[1])
    bench = Bench(args, cfg, out, corpus)
    rows: dict[str, dict[str, Any]] = {}
    suffix = "" if args.k == 100 else f"-k{args.k}"  # K=100 keeps the folder names of the first runs
    seeds = "" if args.seeds == 1 else f" seeds{args.seeds}"
    bpe = "" if args.bpe_vocab is None else f" bpe{args.bpe_vocab}"
    lrs = LRS if args.lrs is None else tuple(float(x) for x in args.lrs.split(","))
    lr_key = "" if args.lrs is None else f" lr{args.lrs}"  # in every row's key
    common: dict[str, Any] = {}
    if args.batch_frames is not None:
        if args.batch_frames < 1:
            parser.error("--batch-frames must be positive")
        common["batch_frames"] = args.batch_frames
        lr_key += f" bf{args.batch_frames}"
    if head is not None:  # keys without ' hd' are FULL's head (the judge's), whatever bench/probe.py uses now
        lr_key += f" hd{head[0]}x{head[1]}"
    # the feature rows' own probe settings, in their keys
    feature_options: dict[str, Any] = {}
    feature_key = lr_key
    if args.feature_dropout is not None:
        feature_options["dropout"] = args.feature_dropout
        feature_key += f" d{args.feature_dropout:g}"
    if args.feature_time_mask is not None:
        parse_time_mask(args.feature_time_mask)
        feature_options["time_mask"] = args.feature_time_mask
        feature_key += f" tm{args.feature_time_mask.replace(':', 'x')}"
    # the unit rows' own probe settings, each in their keys (so their probes never reuse other rows')
    unit_options: dict[str, Any] = {"embed_init": args.embed_init}
    reg_key = lr_key + (" frozen" if args.embed_init == EMBED_FROZEN else "")
    if args.unit_dropout is not None:
        unit_options["dropout"] = args.unit_dropout
        reg_key += f" d{args.unit_dropout:g}"
    if args.unit_time_mask is not None:
        parse_time_mask(args.unit_time_mask)  # a bad value fails here, not in a worker
        unit_options["time_mask"] = args.unit_time_mask
        reg_key += f" tm{args.unit_time_mask.replace(':', 'x')}"
    if args.unit_noise is not None:
        parse_unit_noise(args.unit_noise)
        unit_options["unit_noise"] = args.unit_noise
        reg_key += f" un{args.unit_noise.replace(':', 'x')}"
    unit_key = suffix + seeds + (" dedup" if args.dedup else "") + bpe + reg_key  # the unit rows' own keys
    units_label = f"K={args.k} {'dedup ' if args.dedup else ''}{f'+BPE {args.bpe_vocab} ' if bpe else ''}units"
    for name, encoder, layer in sources:
        tag = name.replace(" ", "_")
        label = name if layer is None else f"{name} layer {layer}"
        codebook, store = out / f"codebook-{tag}{suffix}", out / f"units-{tag}{suffix}"
        frame_rate = float(load_encoder(encoder, device="cpu").info.frame_rate)
        if not args.no_units:  # feature rows need no codebook
            fit_codebook(args.train_corpus / "manifest.tsv", codebook, encoder, args.k, layer, *FIT_OPTIONS,
                         child=True)
        sweep = dict(frame_rate=frame_rate, lrs=lrs, split_file=corpus / "split.tsv", **common)
        features = input_spec("encoder", encoder, manifest, "cpu")
        if args.features:
            extra = {} if layer is None else {"interface": "single", "layer": layer}
            bench.submit(f"{tag} features{seeds}{feature_key}", "phones", features, **sweep, **extra,
                         **feature_options)
            rows[f"{tag} features{seeds}{feature_key}"] = {"row": f"{label} features"}
        if args.weighted_sum and layer is not None:  # no interface option: the weighted sum of all layers
            bench.submit(f"{tag} weighted sum{seeds}{feature_key}", "phones", features, **sweep, **feature_options)
            rows[f"{tag} weighted sum{seeds}{feature_key}"] = {"row": f"{name} weighted sum of all layers"}
        if args.no_units:
            continue
        if not store.exists():
            su("encode", manifest, "--codebook", codebook, "-o", store, "--device", "cpu", "--quiet", child=True)
        bpe_dir = None
        if args.bpe_vocab is not None:  # trained on the training corpus's utterances only
            train_ids = [line.split("\t")[0] for line in (corpus / "split.tsv").read_text().splitlines()
                         if line.endswith("\ttrain")]
            bpe_dir = ensure_bpe(out / f"bpe-{tag}{suffix}-v{args.bpe_vocab}", store, train_ids, args.bpe_vocab)
        bench.submit(f"{tag} units{unit_key}", "phones",
                     input_spec("units", store, codebook=codebook, dedup=args.dedup, bpe=bpe_dir),
                     **{**sweep, **unit_options})
        rows[f"{tag} units{unit_key}"] = {"row": f"{label} {units_label}",
                                          "tokens_per_utt": unit_lengths(store, args.dedup, bpe_dir, args.k)}
        if args.streams and layer is not None:
            layers = parse_layers(args.streams)
            # the chosen layer's codebook above is the same fit: reuse it
            codebooks = [codebook if lay == layer else out / f"codebook-{tag}-L{lay}{suffix}" for lay in layers]
            for lay, path in zip(layers, codebooks):
                fit_codebook(args.train_corpus / "manifest.tsv", path, encoder, args.k, lay, *FIT_OPTIONS, child=True)
            streams = out / f"streams-{tag}-{args.streams}{suffix}"
            if not streams.exists():  # one encoder pass, one store per codebook
                su("encode", manifest, *[a for path in codebooks for a in ("--codebook", path)],
                   "-o", streams, "--device", "cpu", "--quiet", child=True)
            stores = [streams / f"stream{j}-layer{lay}-k{args.k}" for j, lay in enumerate(layers)]
            key = f"{tag} streams {args.streams} {args.combine}{unit_key}"
            bench.submit(key, "phones", input_spec("units", stores, codebook=codebooks, dedup=args.dedup),
                         **{**sweep, **unit_options}, combine=args.combine)
            rows[key] = {"row": f"{name} layers {args.streams} {units_label}, {len(layers)} streams ({args.combine})"}
    bench.wait()
    bench.pool.shutdown()

    lines = ["| input | dev PER % (6 unseen voices) | tokens/utt (shorter than raw) | lr | best step | stopped by "
             "| budget |", "|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        meta = bench.results[key]["phones"]
        lr = meta["selection"]["lr"]
        runs = [r for r in meta["runs"] if r["lr"] == lr]  # one per seed
        budget = meta.get("training", {}).get("max_minutes")
        per = meta["dev"]["per"]
        row.update(per=per["mean"], per_std=per["std"], per_values=per["values"], lr=lr,
                   best_step=",".join(str(r.get("best_step")) for r in runs),
                   stop=",".join(r["stop_reason"] for r in runs), budget_minutes=budget)
        spread = "" if len(per["values"]) == 1 else f" ± {100 * per['std']:.2f} ({len(per['values'])} seeds)"
        length = row.get("tokens_per_utt")
        tokens = "-" if length is None else f"{length['read']:.1f} ({length['shorter']:.2f}x)"
        lines.append(f"| {row['row']} | {100 * row['per']:.2f}{spread} | {tokens} | {lr:g} | {row['best_step']} "
                     f"| {row['stop']} "
                     f"| {'-' if budget is None else f'{budget:g} min'} |")
    lines.append(f"\n{bench.configurations} training runs; no test part (the dev corpus chooses lr and step, "
                 "and is the figure)")
    text = "\n".join(lines) + "\n"
    tables = (f" features{seeds}{feature_key}" if args.no_units else unit_key).replace(" ", "-")  # table-k500.md, table-seeds3.md, table-k500-dedup.md, ...
    (out / f"table{tables}.md").write_text(text, encoding="utf-8")
    (out / f"results{tables}.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

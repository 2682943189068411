"""Pretrain the tiny model on a GPU lent for one short call, and bring it back (issues 14-16's lever).

Every quality target of issues 14, 15 and 16 fails because the units of the tiny model pretrained
on this 2-core CPU carry too little of the phones (docs/probe.md, docs/vocoder.md, docs/lm.md).
The device tool lends some sessions a GPU for 15 minutes in all; this script is the one prepared
command for such a session, so that none of those minutes go to writing it:

1. print what the machine has (torch, CUDA, cores) and exit early if CUDA is missing with
   ``--device cuda``;
2. synthesise a large corpus with every core (``speechunits synth``; a seed whose voices the
   benchmarks' corpora do not use: ``--seed``);
3. pretrain iteration 1 with bench/probe.py's recipe (``--recipe cpu``, pitch perturbation, MFCC
   K=100 targets) but with the GPU's budget: ``--minutes``, a larger batch (``--batch-seconds``)
   and the perturbed crops built by ``--loader-workers`` processes (one core builds a 64 s batch
   in ~0.17 s, far slower than a GPU step); export it at once (``OUT/iter1``);
4. fit K=100 on its layer 2 as ``pretrain --iterate`` does (features and k-means on the GPU) and
   train iteration 2 for what is left of ``--deadline`` (at most ``--minutes``), then export it
   (``OUT/model``); when too little time is left it is skipped, and iteration 1 comes back alone;
5. ``OUT/gpu_pretrain.json`` (rewritten after each stage): the machine, every stage's seconds and
   each iteration's summary (steps, audio seconds per second). Models have float16 weights (the
   device tool returns files of at most 16 MiB); 7 files in all (the tool returns at most 8).

On the device (after ``make device-wheels`` here; ``.whl`` is carried)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 python3 bench/gpu_pretrain.py --out $OUT --device cuda \\
        --corpus-minutes 600 --speakers 60 --minutes 2.5

Back here: ``python bench/gpu_pretrain.py --restore FILES_AT -o bench/out/gpu-tiny`` gives a model
directory with float32 weights (iteration 2's, else iteration 1's) that ``bench/probe.py --pretrained``, ``bench/vocoder.py --encoder``
and ``bench/lm.py --encoder`` read. ``--device cpu --corpus-minutes 3 --minutes 0.3`` runs the
whole script here in about two minutes (the check that it works before a GPU session spends on it).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_state import convert_weights, round_weights_to_half  # noqa: E402
from su import su  # noqa: E402

from speechunits.pretrain.iterate import fit_next_targets  # noqa: E402
from speechunits.pretrain.run import saved_config  # noqa: E402

log = logging.getLogger("bench.gpu_pretrain")

#: bench/probe.py's pretraining recipe (RECIPE, ITERATIONS there), so the GPU model differs in compute only.
RECIPE = ("--recipe", "cpu", "--augment", "pitch:-4..4,p=0.5")
#: bench/probe.py's second iteration: K=100 units of iteration 1's layer 2.
ITERATE_LAYER, ITERATE_K = 2, 100
#: Minutes kept back at the end for the export, for iteration 2's own targets (labels of the whole corpus),
#: and the least an iteration is worth running.
EXPORT_MARGIN_MINUTES, TARGETS_ESTIMATE_MINUTES, MIN_ITERATION_MINUTES = 0.3, 1.0, 0.5
#: What a model directory needs (training/ checkpoints stay behind).
MODEL_FILES = ("config.json", "preprocessor_config.json", "model.safetensors")


def machine_report(device: str) -> dict:
    import torch

    report = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "cores": os.cpu_count(),
              "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    try:
        import transformers

        report["transformers"] = transformers.__version__
    except ImportError:
        report["transformers"] = None
    if device == "cuda" and not report["cuda"]:
        raise SystemExit(f"--device cuda, but torch sees no GPU: {report}")
    return report


def export_model(model: Path, target: Path) -> None:
    """``model``'s files with float16 weights (exact: rounded first) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    round_weights_to_half(model / "model.safetensors")
    for name in MODEL_FILES:
        if name == "model.safetensors":
            convert_weights(model / name, target / name, "float16")
        elif (model / name).is_file():
            shutil.copy2(model / name, target / name)


def save_report(out: Path, report: dict, started: float) -> None:
    """``OUT/gpu_pretrain.json``, rewritten after each stage (a run cut short still says how far it got)."""
    report["total_seconds"] = round(time.monotonic() - started, 1)
    (out / "gpu_pretrain.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def restore(files_at: Path, out: Path) -> None:
    """The exported model (``files_at/model``, or ``files_at/iter1`` when iteration 2 did not finish) as a
    directory with float32 weights."""
    source = files_at / "model" if (files_at / "model" / "config.json").is_file() else files_at / "iter1"
    if not (source / "config.json").is_file():
        raise SystemExit(f"{files_at}: no exported model (model/ or iter1/)")
    log.info("restoring %s", source)
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if name == "model.safetensors":
            convert_weights(source / name, out / name, "float32")
        elif (source / name).is_file():
            shutil.copy2(source / name, out / name)
    for summary in files_at.glob("*.json"):
        shutil.copy2(summary, out / summary.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", "-o", type=Path, required=True, help="$OUT on the device; the model folder with --restore")
    parser.add_argument("--restore", type=Path, metavar="FILES_AT", help="turn a device run's files into a model here")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_pretrain"), help="corpus and checkpoints")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--corpus-minutes", type=float, default=600.0)
    parser.add_argument("--speakers", type=int, default=60)
    parser.add_argument("--seed", type=int, default=17, help="corpus seed (bench corpora use 0-2)")
    parser.add_argument("--minutes", type=float, default=3.0, help="pretraining budget of each iteration")
    parser.add_argument("--deadline", type=float, default=8.5,
                        help="minutes the whole script may take: iteration 2 gets what is left (the device call's limit)")
    parser.add_argument("--steps", type=int, default=200000, help="step cap of each iteration (the budget stops first)")
    parser.add_argument("--batch-seconds", type=float, default=64.0, help="audio per batch (the CPU recipe: 16)")
    parser.add_argument("--config", choices=("tiny", "small", "base"), default="tiny")
    parser.add_argument("--loader-workers", type=int, default=max(1, (os.cpu_count() or 2) - 2),
                        help="processes building the augmented batches (default: all cores but two)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.restore:
        restore(args.restore, args.out)
        print(json.dumps({"model": str(args.out)}))
        return 0

    started = time.monotonic()
    report = {"machine": machine_report(args.device), "options": {k: str(v) for k, v in vars(args).items()}}
    print(json.dumps(report["machine"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = args.work / "corpus"
    if not (corpus / "corpus.json").is_file():
        t = time.monotonic()
        su("synth", str(corpus), "--minutes", str(args.corpus_minutes), "--speakers", str(args.speakers),
           "--seed", str(args.seed), "--quiet")
        report["synth_seconds"] = round(time.monotonic() - t, 1)
    manifest = str(corpus / "manifest.tsv")
    common = ["--config", args.config, *RECIPE, "--steps", str(args.steps), "--max-batch-seconds",
              str(args.batch_seconds), "--loader-workers", str(args.loader_workers), "--device", args.device, "--quiet"]
    # iteration 1 (MFCC K=100 targets), exported at once: if iteration 2 runs out of time, it still comes back
    first = args.work / "iter1"
    for stale in (first, args.work / "model"):  # a rerun on a warm machine starts both iterations afresh
        shutil.rmtree(stale, ignore_errors=True)
    t = time.monotonic()
    su("pretrain", manifest, "-o", str(first), *common, "--max-minutes", str(args.minutes), child=True,
       stdout=args.work / "pretrain-iter1.json")
    report["iter1_seconds"] = round(time.monotonic() - t, 1)
    report["iter1"] = json.loads((args.work / "pretrain-iter1.json").read_text())
    export_model(first, args.out / "iter1")
    save_report(args.out, report, started)
    # iteration 2: K=100 of iteration 1's layer ITERATE_LAYER, fitted as `pretrain --iterate` fits it, on the GPU
    t = time.monotonic()
    codebook = fit_next_targets(first, manifest, ITERATE_LAYER, ITERATE_K, saved_config(first), device=args.device)
    report["targets_seconds"] = round(time.monotonic() - t, 1)
    left = args.deadline - (time.monotonic() - started) / 60 - EXPORT_MARGIN_MINUTES - TARGETS_ESTIMATE_MINUTES
    minutes = min(args.minutes, left)
    report["iter2_minutes"] = round(minutes, 2)
    if left < min(MIN_ITERATION_MINUTES, args.minutes):
        log.warning("%.2f min left before the deadline: iteration 2 skipped (iteration 1 is in %s)", left, args.out)
    else:
        t = time.monotonic()
        su("pretrain", manifest, "-o", str(args.work / "model"), *common, "--targets", str(codebook),
           "--max-minutes", f"{minutes:.2f}", child=True, stdout=args.work / "pretrain-iter2.json")
        report["iter2_seconds"] = round(time.monotonic() - t, 1)
        report["iter2"] = json.loads((args.work / "pretrain-iter2.json").read_text())
        export_model(args.work / "model", args.out / "model")
    save_report(args.out, report, started)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pretrain the tiny model on a GPU lent for one short call, and bring it back (issues 14-16's lever).

Every quality target of issues 14, 15 and 16 fails because the units of the tiny model pretrained
on this 2-core CPU carry too little of the phones (docs/probe.md, docs/vocoder.md, docs/lm.md).
The device tool lends some sessions a GPU for 15 minutes in all; this script is the one prepared
command for such a session, so that none of those minutes go to writing it:

1. print what the machine has (torch, CUDA, cores) and exit early if CUDA is missing with
   ``--device cuda``;
2. synthesise a large corpus with every core (``speechunits synth``; a seed whose voices the
   benchmarks' corpora do not use: ``--seed``);
3. pretrain with bench/probe.py's recipe (``--recipe cpu``, pitch perturbation, two HuBERT
   iterations on layer 2) but with the GPU's budget: ``--minutes`` per iteration, a larger batch
   (``--batch-seconds``) and the perturbed crops built by ``--loader-workers`` processes (one core
   builds a 64 s batch in ~0.17 s, far slower than a GPU step), printing the JSON summary (steps,
   audio seconds per second);
4. write the model with float16 weights (under the device tool's 16 MiB a file) and the
   pretraining summaries to ``--out``.

On the device (after ``make device-wheels`` here; ``.whl`` is carried)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 python3 bench/gpu_pretrain.py --out $OUT --device cuda \\
        --corpus-minutes 600 --speakers 60 --minutes 3

Back here: ``python bench/gpu_pretrain.py --restore FILES_AT -o bench/out/gpu-tiny`` gives a model
directory with float32 weights that ``bench/probe.py --pretrained``, ``bench/vocoder.py --encoder``
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

log = logging.getLogger("bench.gpu_pretrain")

#: bench/probe.py's pretraining recipe (RECIPE, ITERATIONS there), so the GPU model differs in compute only.
RECIPE = ("--recipe", "cpu", "--augment", "pitch:-4..4,p=0.5", "--iterate", "2", "--iterate-layer", "2")
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


def restore(files_at: Path, out: Path) -> None:
    """The exported model (``files_at/model``) as a directory with float32 weights."""
    source = files_at / "model"
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
    model = args.work / "model"
    t = time.monotonic()
    su("pretrain", str(corpus / "manifest.tsv"), "-o", str(model), "--config", args.config, *RECIPE,
       "--steps", str(args.steps), "--max-minutes", str(args.minutes), "--max-batch-seconds", str(args.batch_seconds),
       "--loader-workers", str(args.loader_workers), "--device", args.device, "--quiet", child=True,
       stdout=args.out / "pretrain.jsonl")
    report["pretrain_seconds"] = round(time.monotonic() - t, 1)
    export_model(model, args.out / "model")
    report["total_seconds"] = round(time.monotonic() - started, 1)
    (args.out / "gpu_pretrain.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

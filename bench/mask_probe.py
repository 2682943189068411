"""The probe rows of the SE and SS benches (bench/enhance.py, bench/separate.py): one ``probe train
enhance|separate`` sweep under a time budget, then ``probe eval --audio-out`` of its test part."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from su import su

#: Padded 10-ms frames per batch: about s3prl's 8 utterances of 3 s (its SE/SS train_batchsize).
BATCH_FRAMES = 3000


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """``--dev-sample N`` and ``--crop-seconds S``: passed to every probe sweep of the bench."""
    parser.add_argument("--dev-sample", type=int, default=None, metavar="N",
                        help="probe train --dev-sample: watch a fixed sample of N dev utterances while training")
    parser.add_argument("--crop-seconds", type=float, default=None, metavar="S",
                        help="probe train --crop-seconds: train on random crops of S seconds")


def training_options(args: argparse.Namespace) -> tuple[list[str], str]:
    """The ``probe train`` options of :func:`add_training_options` and the folder suffix that keeps
    probes trained with them apart from those trained without (``-ds40-crop4``)."""
    options, suffix = [], ""
    if args.dev_sample is not None:
        options += ["--dev-sample", str(args.dev_sample)]
        suffix += f"-ds{args.dev_sample}"
    if args.crop_seconds is not None:
        options += ["--crop-seconds", f"{args.crop_seconds:g}"]
        suffix += f"-crop{args.crop_seconds:g}"
    return options, suffix


def mask_probe_row(task: str, data: Path, out: Path, name: str, reads: list[str],
                   minutes: float, training: Sequence[str] = ()) -> tuple[Path, dict]:
    """Train (unless ``out/probe-NAME`` holds it) the ``task`` probe on ``DATA/{train,dev,test}`` with
    s3prl's head (3-layer BiLSTM, 256 units), learning rate 1e-3 or 1e-2 by dev, the sweep in ``minutes``
    and the extra ``probe train`` options ``training`` (give NAME a suffix that names them); write its test
    audio to ``out/audio-NAME``. Returns that folder and the row's facts (``dev_<metric>``, the chosen lr,
    ``probe eval``'s JSON, steps, stop reasons, layer weights, training speed)."""
    probe = out / f"probe-{name}"
    if not (probe / "probe.json").is_file():
        su("probe", "train", task, f"{data}/{{train,dev,test}}", *reads, "--head", "bilstm", "--lstm-layers", "3",
           "--hidden", "256", "--lr", "1e-3,1e-2", "--max-steps", "20000", "--eval-every", "100",
           "--batch-frames", BATCH_FRAMES, "--patience", "6", "--max-minutes", minutes, "--device", "cpu",
           *training, "--quiet", "--resume", "-o", probe, child=True)
    folder = out / f"audio-{name}"
    result = su("probe", "eval", probe, data / "test", "--audio-out", folder, "--json", "--quiet")
    meta = json.loads((probe / "probe.json").read_text())
    metric = meta["selection"]["metric"]
    return folder, {f"dev_{metric}": meta["dev"][metric]["mean"], "lr": meta["selection"]["lr"],
                    "probe_eval": result, "test_in_probe_json": meta["test"],
                    "stopped": sorted({r["stop_reason"] for r in meta["runs"]}),
                    "steps": [r["steps_done"] for r in meta["runs"]], "layer_weights": meta.get("layer_weights"),
                    "train_x_realtime": meta.get("throughput", {}).get("train_x_realtime")}

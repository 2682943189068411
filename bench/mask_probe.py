"""The probe rows of the SE and SS benches (bench/enhance.py, bench/separate.py): one ``probe train
enhance|separate`` sweep under a time budget, then ``probe eval --audio-out`` of its test part."""
from __future__ import annotations

import json
from pathlib import Path

from su import su

#: Padded 10-ms frames per batch: about s3prl's 8 utterances of 3 s (its SE/SS train_batchsize).
BATCH_FRAMES = 3000


def mask_probe_row(task: str, data: Path, out: Path, name: str, reads: list[str],
                   minutes: float) -> tuple[Path, dict]:
    """Train (unless ``out/probe-NAME`` holds it) the ``task`` probe on ``DATA/{train,dev,test}`` with
    s3prl's head (3-layer BiLSTM, 256 units), learning rate 1e-3 or 1e-2 by dev, the sweep in ``minutes``;
    write its test audio to ``out/audio-NAME``. Returns that folder and the row's facts (``dev_<metric>``,
    the chosen lr, ``probe eval``'s JSON, steps, stop reasons, layer weights, training speed)."""
    probe = out / f"probe-{name}"
    if not (probe / "probe.json").is_file():
        su("probe", "train", task, f"{data}/{{train,dev,test}}", *reads, "--head", "bilstm", "--lstm-layers", "3",
           "--hidden", "256", "--lr", "1e-3,1e-2", "--max-steps", "20000", "--eval-every", "100",
           "--batch-frames", BATCH_FRAMES, "--patience", "6", "--max-minutes", minutes, "--device", "cpu",
           "--quiet", "--resume", "-o", probe, child=True)
    folder = out / f"audio-{name}"
    result = su("probe", "eval", probe, data / "test", "--audio-out", folder, "--json", "--quiet")
    meta = json.loads((probe / "probe.json").read_text())
    metric = meta["selection"]["metric"]
    return folder, {f"dev_{metric}": meta["dev"][metric]["mean"], "lr": meta["selection"]["lr"],
                    "probe_eval": result, "test_in_probe_json": meta["test"],
                    "stopped": sorted({r["stop_reason"] for r in meta["runs"]}),
                    "steps": [r["steps_done"] for r in meta["runs"]], "layer_weights": meta.get("layer_weights"),
                    "train_x_realtime": meta.get("throughput", {}).get("train_x_realtime")}

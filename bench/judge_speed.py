"""How fast the phone-probe judge learns on CPU: seconds per step and dev PER per audio second seen.

The judge of the vocoder, TTS and translation benchmarks is a ``phones`` probe (MFCC, BiLSTM head)
trained on original audio. This script compares probe configurations on one corpus, split by
utterance with the probe's own splitter (train / dev / test 80/10/10, seed 0; test is never read):

1. **Step cost**, measured in the same process, configurations interleaved round-robin on the same
   batches (so a shared, busy CPU slows them alike): wall seconds and this process's CPU seconds
   per optimizer step (forward, backward, AdamW update). ``old-packed`` is the former BiLSTM head
   (a ``PackedSequence`` LSTM), the cost every probe paid before the padded implementation.
2. **Learning per audio seen**: each configuration trains with ``train_probe`` (the real code
   path: the one training loop, linear warmup and decay, dev evaluations) for the same number of
   epochs, i.e. the same audio seconds seen; the dev PER after each evaluation is recorded against
   the audio seconds seen by then. The packed and padded heads compute the same function (tested),
   so ``old`` learns with the padded head and is charged the packed step cost.

From both, the time to a dev PER target on one quiet core is estimated as
``audio seconds needed / (audio seconds per CPU second)``: CPU seconds of a single-threaded process
are what a quiet core would take in wall time, whatever the load when measured.

    speechunits synth /tmp/judge-corpus --minutes 20 --speakers 6 --seed 0
    python bench/judge_speed.py --corpus /tmp/judge-corpus --out bench/out/judge_speed --epochs 12
    python bench/judge_speed.py ... --configs judge --no-packed --rounds 1 --seed 1   # one curve, seed 1
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from speechunits.probe import EncoderInput, make_split
from speechunits.probe.evaluate import corpus_labels
from speechunits.probe.heads import statistics_pooling
from speechunits.probe.model import build_model
from speechunits.probe.inputs import as_corpus, feature_statistics
from speechunits.probe.task import ProbeTask, batch_loss
from speechunits.probe.train import make_coder, model_spec, train_probe
from speechunits.training.config import OptimConfig
from speechunits.training.loop import step_records
from speechunits.training.optim import make_optimizer

log = logging.getLogger("bench.judge_speed")

#: name -> options of train_probe (head bilstm, hidden 128 throughout: the judges' size); the table of
#: docs/probe.md. "std": standardize, "s3": stack 3, "b4k": 4000-frame batches, "l1": one LSTM layer.
CONFIGS: dict[str, dict[str, Any]] = {
    "old": dict(lr=2e-3, batch_frames=20000),
    "std": dict(lr=2e-3, batch_frames=20000, standardize=True),
    "std-s3-b4k": dict(lr=2e-3, batch_frames=4000, standardize=True, stack=3),
    "s3-b4k": dict(lr=2e-3, batch_frames=4000, stack=3),
    "std-s3-b4k-l1": dict(lr=2e-3, batch_frames=4000, standardize=True, stack=3, lstm_layers=1),
    "s3-b4k-l1": dict(lr=2e-3, batch_frames=4000, stack=3, lstm_layers=1),
    "std-s3-b4k-l1-lr5e-3": dict(lr=5e-3, batch_frames=4000, standardize=True, stack=3, lstm_layers=1),
    "s3-b4k-l1-lr5e-3": dict(lr=5e-3, batch_frames=4000, stack=3, lstm_layers=1),
    "judge": dict(lr=1e-2, batch_frames=4000, standardize=True, stack=3, lstm_layers=1),  # JUDGE_PHONES_ARGS
    "std-b4k-l1": dict(lr=2e-3, batch_frames=4000, standardize=True, lstm_layers=1),
    "std-b20k-l1": dict(lr=2e-3, batch_frames=20000, standardize=True, lstm_layers=1),
}


def packed_forward(head: torch.nn.Module):
    """The former BiLSTM head's forward (a PackedSequence LSTM), bound to ``head``."""
    def forward(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True,
                                                         enforce_sorted=False)
        out, _ = head.lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
        return head.proj(statistics_pooling(y, lengths)) if head.level == "utterance" else head.proj(y)
    return forward


def load(corpus: Path) -> dict[str, Any]:
    manifest = corpus / "manifest.tsv"
    inputs = EncoderInput("mfcc", [0], corpus=manifest, quiet=True)
    ids = [u.id for u in as_corpus(manifest)]
    labels = corpus_labels("phones", manifest, ids)
    split = make_split(list(labels.labels), by="utterance", seed=0)
    samples = inputs.load(split.train + split.dev + split.test).samples
    coder = make_coder("phones", [labels.labels[i] for i in split.train])
    targets = {i: coder.encode(labels.labels[i]) for i in split.train}
    train_audio = sum(samples[i].num_frames for i in split.train) / inputs.frame_rate
    return dict(inputs=inputs, labels=labels, split=split, samples=samples, coder=coder, targets=targets,
                train_audio=train_audio)


def step_costs(data: dict[str, Any], names: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds per optimizer step and audio seconds per step, configurations interleaved."""
    runs = {}
    for name in names:
        options = CONFIGS[name] if name != "old-packed" else CONFIGS["old"]
        spec = model_spec("phones", data["inputs"], data["coder"].num_classes, interface="single", head="bilstm",
                          hidden=128, standardize=options.get("standardize", False), stack=options.get("stack", 1),
                          lstm_layers=options.get("lstm_layers", 2))
        torch.manual_seed(0)
        model = build_model(spec)
        if spec["standardize"]:
            model.set_input_statistics(*feature_statistics(data["samples"], data["split"].train))
        if name == "old-packed":
            model.head.forward = packed_forward(model.head)
        task = ProbeTask("phones", data["samples"], data["targets"], data["split"].train,
                         frame_rate=data["inputs"].frame_rate, batch_frames=options["batch_frames"])
        runs[name] = dict(model=model, task=task, opt=make_optimizer(model, OptimConfig(lr=options["lr"])),
                          wall=0.0, cpu=0.0, audio=0.0, steps=0)
    for index in range(rounds + 1):  # round 0 warms up (allocator, first-call costs) and is not counted
        for name, run in runs.items():
            batch = run["task"].batch(index)
            wall, cpu = time.perf_counter(), time.process_time()
            loss, count, _ = batch_loss(run["model"], batch, "ctc")
            (loss / count).backward()
            torch.nn.utils.clip_grad_norm_(run["model"].parameters(), 10.0)
            run["opt"].step()
            run["opt"].zero_grad(set_to_none=True)
            if index == 0:
                continue
            run["wall"] += time.perf_counter() - wall
            run["cpu"] += time.process_time() - cpu
            run["audio"] += float(batch.lengths.sum()) / data["inputs"].frame_rate
            run["steps"] += 1
        log.info("step costs: round %d of %d done", index, rounds)
    return {name: {"wall_s_per_step": r["wall"] / r["steps"], "cpu_s_per_step": r["cpu"] / r["steps"],
                   "audio_s_per_step": r["audio"] / r["steps"], "audio_s_per_cpu_s": r["audio"] / r["cpu"]}
            for name, r in runs.items()}


class DevLog(logging.Handler):
    """Collects ``(step, per)`` from train_probe's dev evaluation log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("lr %g seed %d step %d dev") and record.args:
            step, metrics = record.args[2], record.args[3]
            self.points.append((int(step), float(str(metrics).split()[1])))


def learning_curve(data: dict[str, Any], name: str, epochs: float, out: Path, seed: int) -> dict[str, Any]:
    """train_probe for ``epochs`` epochs; dev PER against audio seconds seen (and CPU seconds)."""
    options = dict(CONFIGS[name])
    lr, batch_frames = options.pop("lr"), options.pop("batch_frames")
    sampler_task = ProbeTask("phones", data["samples"], data["targets"], data["split"].train,
                             frame_rate=data["inputs"].frame_rate, batch_frames=batch_frames)
    per_epoch = len(sampler_task.sampler)
    steps = max(1, math.ceil(epochs * per_epoch))
    handler = DevLog()
    logger = logging.getLogger("speechunits.probe.train")
    logger.addHandler(handler)
    cpu = time.process_time()
    try:
        train_probe("phones", data["inputs"], data["labels"], data["split"], out / f"{name}-seed{seed}",
                    interface="single", head="bilstm", hidden=128, lrs=(lr,), seeds=(seed,), max_steps=steps,
                    eval_every=max(1, per_epoch // 2), patience=10_000, batch_frames=batch_frames, quiet=True,
                    **options)
    finally:
        logger.removeHandler(handler)
    cpu = time.process_time() - cpu
    amounts = [record["amount"] for record in
               step_records(out / f"{name}-seed{seed}" / "runs" / f"lr{lr:g}-seed{seed}" / "training" / "log.jsonl")]
    seen = [sum(amounts[:step]) for step, _ in handler.points]
    return {"steps": steps, "steps_per_epoch": per_epoch, "cpu_s": cpu,
            "curve": [{"step": s, "audio_s": round(a, 1), "epochs": round(a / data["train_audio"], 2), "dev_per": p}
                      for (s, p), a in zip(handler.points, seen)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a speechunits synth corpus")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names of CONFIGS")
    parser.add_argument("--epochs", type=float, default=12.0, help="audio seen by every configuration, in epochs")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved steps per configuration (step costs), after one uncounted round")
    parser.add_argument("--no-packed", action="store_true", help="skip the packed head's step cost (slow)")
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.25, help="dev PER target for the time estimate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.configs.split(",") if n]
    data = load(args.corpus)
    log.info("train %d utterances, %.0f s of audio; dev %d", len(data["split"].train), data["train_audio"],
             len(data["split"].dev))
    result: dict[str, Any] = {"corpus": str(args.corpus), "train_audio_s": data["train_audio"],
                              "threads": torch.get_num_threads()}
    result["step_costs"] = step_costs(data, ([] if args.no_packed else ["old-packed"]) + names, args.rounds)
    if not args.no_curves:
        result["curves"] = {name: learning_curve(data, name, args.epochs, args.out, args.seed) for name in names}
        for name, curve in result["curves"].items():
            cost = result["step_costs"][name]
            reached = next((p for p in curve["curve"] if p["dev_per"] <= args.target), None)
            curve["audio_s_to_target"] = None if reached is None else reached["audio_s"]
            charged = result["step_costs"]["old-packed"] if name == "old" and not args.no_packed else cost
            curve["quiet_core_minutes_to_target"] = (None if reached is None else
                                                     reached["audio_s"] / charged["audio_s_per_cpu_s"] / 60.0)
    (args.out / "judge_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training loop's CPU flush of subnormal floats: the same probe run with it and without it.

A phones probe (bench/probe.py's one-layer BiLSTM of 128, unit tables from the centroids) at lr 1e-2
saturates its LSTM gates, whose activations and gradients then underflow into subnormal floats, on
which x86 arithmetic is many times slower. This script trains that probe ``--steps`` steps twice,
one thread each, one after the other: as the loop does now (subnormals flushed to zero) and with the
flush switched off (``speechunits.training.loop.cpu_denormals_flushed`` replaced by a no-op), and
prints the median seconds per step over the first and the last 100 steps of each, their ratio, and
whether the two runs' losses agree.

Inputs default to ``bench/pretrain_probe.py``'s output (``--k 500 --dedup --bpe-vocab 1000``, where
the slowdown was seen)::

    python bench/denormals.py --out /tmp/denormals       # ~11 min here
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

PROBE_OUT = Path("bench/out/pretrain-probe-25")
WINDOW = 100


def child(flush: bool, probe_argv: list[str]) -> int:
    """Run ``speechunits probe train`` in this process, the loop's flush left on or switched off."""
    import contextlib

    import speechunits.training.loop as loop
    from speechunits.cli.main import main

    if not flush:
        loop.cpu_denormals_flushed = lambda device: contextlib.nullcontext()
    return main(probe_argv)


def main() -> int:
    from speechunits.training.loop import step_records

    if sys.argv[1:2] == ["--child"]:  # --child on|off PROBE_ARGV...
        return child(sys.argv[2] == "on", sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=PROBE_OUT / "corpus")
    parser.add_argument("--units", type=Path, default=PROBE_OUT / "units-aug-iter2-k500")
    parser.add_argument("--codebook", type=Path, default=PROBE_OUT / "codebook-aug-iter2-k500")
    parser.add_argument("--bpe", type=Path, default=PROBE_OUT / "bpe-aug-iter2-k500-v1000")
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    results = {}
    for arm in ("on", "off"):
        probe = args.out / f"flush-{arm}"
        argv = ["probe", "train", "phones", str(args.corpus / "manifest.tsv"), "-o", str(probe),
                "--units", str(args.units), "--dedup", "--bpe", str(args.bpe), "--codebook", str(args.codebook),
                "--embed-init", "centroids", "--split-file", str(args.corpus / "split.tsv"), "--head", "bilstm",
                "--hidden", "128", "--lstm-layers", "1", "--batch-frames", "4000", "--lr", "1e-2",
                "--max-steps", "3000", "--eval-every", "25", "--patience", "1000", "--threads", "1", "--quiet"]
        log = probe / "runs" / "lr0.01-seed0" / "training" / "log.jsonl"
        process = subprocess.Popen([sys.executable, __file__, "--child", arm, *argv])
        try:  # the schedule is the 3000-step one of the bench; stop once --steps are logged
            while process.poll() is None:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    if len(step_records(log)) >= args.steps:
                        break
        finally:
            process.terminate()
            process.wait()
        rows = step_records(log)
        if len(rows) < args.steps:
            raise SystemExit(f"flush {arm}: the probe ended before {args.steps} steps (exit {process.returncode})")
        rows = rows[:args.steps]
        seconds = [r["wall_seconds"] for r in rows]
        results[arm] = {"first": float(np.median(seconds[:WINDOW])), "last": float(np.median(seconds[-WINDOW:])),
                        "losses": [r["loss"] for r in rows]}
    on, off = results["on"], results["off"]
    agree = next((i for i, (a, b) in enumerate(zip(on["losses"], off["losses"])) if abs(a - b) > 1e-4 * abs(a)),
                 None)
    print(f"median s/step, steps 1-{WINDOW} and {args.steps - WINDOW + 1}-{args.steps} (lr 1e-2, one thread):")
    for arm, row in results.items():
        print(f"  flush {arm:3s}: {row['first']:.3f} -> {row['last']:.3f}")
    print(f"without the flush the last {WINDOW} steps are {off['last'] / on['last']:.1f}x slower; losses agree "
          + ("over all steps" if agree is None else f"up to step {agree}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

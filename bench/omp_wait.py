"""OpenMP's wait policy on this CPU: torch's spinning intra-op threads, alone and with a second job.

torch's CPU kernels run on OpenMP threads (libgomp), which by default spin for a while waiting for
work (``OMP_WAIT_POLICY`` unset: active). When two torch processes share the cores, the spinning
threads of one take the cores the other's threads wait for. This script times two workloads of the
project, each in fresh subprocesses under each policy (``OMP_WAIT_POLICY`` must be set before torch
is imported), once alone and once with two copies running at the same time:

* ``lstm``: training steps of the ``separate`` probe's head (3-layer BiLSTM of 256, a mask layer of
  257 bins) on 18 s of 80-dim frames, the shape of a LibriSpeech mixture;
* ``transformer``: forward passes of a 6-layer transformer encoder (d=256) over 8 x 500 frames, the
  shape of a unit LM or a small SSL encoder at inference.

It prints seconds per step (the mean over the copies when two run); no assertion. ``--quick`` runs a
few steps; ``--spincount N`` times libgomp's ``GOMP_SPINCOUNT=N`` alone (the default's rows are above).

    python bench/omp_wait.py [--steps 20] [--quick] [--spincount N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time, torch
kind, steps = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
if kind == "lstm":
    lstm = torch.nn.LSTM(80, 256, num_layers=3, bidirectional=True, batch_first=True)
    out = torch.nn.Linear(512, 257 * 2)
    params = list(lstm.parameters()) + list(out.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    x = torch.randn(1, 1800, 80)
    def step():
        opt.zero_grad()
        y, _ = lstm(x)
        loss = torch.sigmoid(out(y)).mean()
        loss.backward()
        opt.step()
else:
    layer = torch.nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 6).eval()
    x = torch.randn(8, 500, 256)
    def step():
        with torch.no_grad():
            model(x)
step()
start = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"seconds_per_step": (time.perf_counter() - start) / steps}))
"""


def timed(kind: str, steps: int, setting: dict[str, str], copies: int) -> float:
    """Mean seconds per step of ``copies`` workers started together with the OpenMP ``setting`` (the
    environment's own ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` removed first)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(setting)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, kind, str(steps)], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(copies)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1])["seconds_per_step"] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed ({kind}, {setting}, {copies} copies)")
    return sum(results) / len(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 steps per worker")
    parser.add_argument("--spincount", type=int, default=None, metavar="N",
                        help="time GOMP_SPINCOUNT=N (a spin of N iterations, then sleep) instead of the two "
                        "policies, beside the default")
    args = parser.parse_args()
    steps = 3 if args.quick else args.steps
    settings = {"spinning (default)": {}, "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}
    if args.spincount is not None:
        settings = {f"GOMP_SPINCOUNT={args.spincount}": {"GOMP_SPINCOUNT": str(args.spincount)}}
    print(f"{os.cpu_count()} CPUs; torch threads per process: torch's default; {steps} steps per worker")
    print("| workload | copies at once | " + " | ".join(f"{name}, s/step" for name in settings) + " |")
    print("|---|---|" + "---|" * len(settings))
    for kind in ("lstm", "transformer"):
        for copies in (1, 2):
            started = time.perf_counter()
            seconds = [timed(kind, steps, setting, copies) for setting in settings.values()]
            print(f"| {kind} | {copies} | " + " | ".join(f"{t:.3f}" for t in seconds) + " |"
                  f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

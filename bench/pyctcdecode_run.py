"""pyctcdecode + kenlm on saved CTC log-probabilities: the baseline of bench/probe_lm.py, in its own venv.

pyctcdecode pins numpy < 2, so it cannot live in this project's environment; ``make
bench-pyctcdecode`` builds ``.venv-pyctcdecode`` for it, and bench/probe_lm.py runs this file with
that interpreter. Input (``--job`` JSON): ``logits`` (an .npz of ``[T, V]`` log-probabilities per
utterance id), ``tokens`` (the probe's characters; index 0 the blank, ``|`` the word boundary),
``arpa``, ``beam`` and ``settings`` (a list of ``{alpha, beta}``). Output (``--out`` JSON): per
setting the hypotheses per utterance and the decoding seconds. No scoring here: the caller scores
with the project's metrics, as it does its own decoder.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    job = json.loads(open(args.job, encoding="utf-8").read())
    from pyctcdecode import build_ctcdecoder

    labels = ["" if i == 0 else (" " if t == "|" else t) for i, t in enumerate(job["tokens"])]
    logits = dict(np.load(job["logits"]))
    results = []
    for setting in job["settings"]:
        decoder = build_ctcdecoder(labels, kenlm_model_path=job["arpa"], alpha=setting["alpha"],
                                   beta=setting["beta"])
        t0 = time.perf_counter()
        hyps = {utt: " ".join(decoder.decode(x.astype(np.float32), beam_width=job["beam"]).split())
                for utt, x in logits.items()}
        results.append({**setting, "seconds": time.perf_counter() - t0, "hypotheses": hyps})
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

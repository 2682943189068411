"""evaluate-audio with worker processes against one process, in the same run, on the same pairs.

All per-utterance judges (pocketsphinx ASR, pitch, Resemblyzer, MCD, DNSMOS) over REF/HYP pairs;
``jobs=1`` and ``jobs=N`` alternate ``--rounds`` times so a busy machine slows both alike. Prints wall
seconds, x real time, the ratio, and whether the two gave the same rows.

    python bench/evaluate_audio_jobs.py REF HYP --jobs 2 --rounds 1
"""
from __future__ import annotations

import argparse
import json
import time

from speechunits.measure.audio import evaluate_audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref")
    parser.add_argument("hyp")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    seconds: dict[int, list[float]] = {1: [], args.jobs: []}
    results = {}
    for _ in range(args.rounds):
        for jobs in (1, args.jobs):
            started = time.perf_counter()
            results[jobs] = evaluate_audio(args.ref, args.hyp, device="cpu", quiet=True, jobs=jobs)
            seconds[jobs].append(time.perf_counter() - started)
    audio = sum(row["hyp_duration_s"] for row in results[1]["per_utterance"])
    report = {"utterances": results[1]["utterances"], "hyp_audio_s": round(audio, 1), "judges": results[1]["judges"],
              "same_rows": results[1]["per_utterance"] == results[args.jobs]["per_utterance"]}
    for jobs, times in seconds.items():
        best = min(times)
        report[f"jobs={jobs}"] = {"wall_s": [round(t, 1) for t in times], "x_real_time": round(audio / best, 2)}
    report["speedup"] = round(min(seconds[1]) / min(seconds[args.jobs]), 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Synth speed: ``speechunits synth`` (fork per utterance, alignment, 16 kHz wavs, TextGrids) vs a
plain in-process espeak-ng loop over the same utterances (baseline: synthesis only, no files).

Prints audio seconds per wall second (x real time) of both and their ratio, and audio seconds
per CPU second (this process and all its children), which depends much less on what else runs
on the shared machine. Compare ratios, not absolute numbers.

    python bench/synth.py --minutes 10 --speakers 8 --workers 2
"""
from __future__ import annotations

import argparse
import itertools
import resource
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    from speechunits.synth.corpus import _plan, synthesize_corpus
    from speechunits.synth.speakers import sample_speakers

    work = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        cpu0 = _cpu_seconds()
        start = time.perf_counter()
        out = synthesize_corpus(work / "corpus", args.minutes, args.speakers, workers=args.workers, quiet=True)
        ours_wall = time.perf_counter() - start
        ours_cpu = _cpu_seconds() - cpu0
        lines = (out / "text.tsv").read_text(encoding="utf-8").splitlines()
        audio_s = sum(int(line.split("\t")[1]) for line in (out / "manifest.tsv").read_text().splitlines()[1:]) / 16000

        # Baseline: the same utterances, synthesised back to back in this process (no fork, no files).
        from speechunits.synth.espeak import initialise, synthesise

        initialise()
        tasks = list(itertools.islice(_plan(sample_speakers(args.speakers, ["en"], 0), 0), len(lines)))
        cpu0 = _cpu_seconds()
        start = time.perf_counter()
        base_audio = 0.0
        for task in tasks:
            s = task.speaker
            result = synthesise(task.text, s.voice, rate=s.rate, pitch=s.pitch, pitch_range=s.pitch_range)
            base_audio += result.samples.size / result.sample_rate
        base_wall = time.perf_counter() - start
        base_cpu = _cpu_seconds() - cpu0
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours = audio_s / ours_wall
    base = base_audio / base_wall
    print(f"utterances: {len(lines)}, audio: {audio_s / 60:.1f} min")
    print(f"speechunits synth (workers={args.workers or 'all'}): {ours:7.1f}x real time ({ours_wall:.2f} s)")
    print(f"baseline in-process espeak-ng loop (1 core):   {base:7.1f}x real time ({base_wall:.2f} s)")
    print(f"ratio ours / baseline: {ours / base:.2f}")
    print(f"audio s per CPU s: ours {audio_s / ours_cpu:.0f}, baseline {base_audio / base_cpu:.0f}, "
          f"ratio {audio_s / ours_cpu / (base_audio / base_cpu):.2f}")


def _cpu_seconds() -> float:
    """User + system CPU of this process and its (waited-for) children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()

"""Scale-out speed: local serial vs local overlapped loader vs Ray with 1 and 2 encoder workers.

All four run ``features`` extraction (``speechunits.scale.jobs.feature_items``, the code path of
``speechunits features --backend ...``) over the same corpus in the same process:

* local serial      - ``--loader-workers 0``: decode + resample, then encode, one after the other
* local overlapped  - ``--loader-workers N``: decoding runs ahead in threads (the default)
* ray, 1 worker     - embedded Ray, one encoder actor with 1 CPU (torch threads = 1)
* ray, 2 workers    - two actors with 1 CPU each

The corpus is 44.1 kHz FLAC (so decoding and resampling to 16 kHz cost something, as with real
corpora); the encoder is HuBERT-base sized with random weights (``HubertConfig()``, nothing
downloaded), run up to ``--layer``. Printed per configuration: wall seconds, x real time
(audio seconds / wall second), the ratio to local serial, Ray's start-up (``ray.init``) and
time to the first result (actor start, model load), and per-worker efficiency
(rate with N workers / (N x rate with 1 worker)), end to end and in the steady state (the wall
time minus the fixed cost of a run, measured as a run of one utterance).

    python bench/scale.py                         # 96 utterances, ~300 s of audio; ~4 min on 2 cores
    python bench/scale.py --num-utts 48 --seconds 5 --layer 6 --loader-workers 2
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_corpus(root: Path, count: int, seconds: float, sample_rate: int, seed: int) -> float:
    """Noisy chirps as FLAC at ``sample_rate``; returns total seconds."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i in range(count):
        secs = float(rng.uniform(0.6 * seconds, 1.4 * seconds))
        t = np.arange(int(secs * sample_rate)) / sample_rate
        f0 = 100 + 200 * rng.random()
        wave = 0.3 * np.sin(2 * np.pi * (f0 + 80 * t) * t) + 0.03 * rng.standard_normal(t.size)
        sf.write(str(root / f"utt{i:04d}.flac"), wave.astype(np.float32), sample_rate)
        total += t.size / sample_rate
    return total


def make_model(out: Path) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    model = tf.HubertModel(tf.HubertConfig()).eval()
    model.save_pretrained(out)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False,
                                return_attention_mask=False).save_pretrained(out)
    return out


def timed(options, encoder, corpus, layer: int) -> tuple[float, float]:
    """(wall seconds, seconds to the first result) of one run with ``ScaleOptions`` ``options``."""
    from speechunits.scale.jobs import feature_items

    start = time.perf_counter()
    first = None
    for _ in feature_items(encoder, corpus, [layer], options=options, device="cpu", quiet=True):
        if first is None:
            first = time.perf_counter() - start
    wall = time.perf_counter() - start
    return wall, first if first is not None else wall


def run_config(name: str, args_ns, encoder, corpus, layer: int, audio_s: float) -> dict:
    """Time one configuration. Ray runs also time a run of the first utterance alone: that is the
    fixed cost of a run (planning, actor start, model load), subtracted for the steady-state rate.
    (Results reach the driver in corpus order, so arrival times cannot give that rate.)"""
    overhead = 0.0
    if args_ns.backend == "ray":
        overhead = timed(args_ns, encoder, list(corpus)[:1], layer)[0]
    wall, first = timed(args_ns, encoder, corpus, layer)
    steady = audio_s / max(wall - overhead, 1e-9)
    return {"name": name, "wall": wall, "first": first, "overhead": overhead, "rtf": audio_s / wall,
            "steady": steady}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-utts", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=3.0, help="mean utterance length")
    parser.add_argument("--rate", type=int, default=44100, help="corpus sample rate (resampled to 16 kHz)")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for local runs (1 = the same as one Ray worker; more threads on a "
                        "loaded machine suffer from OpenMP contention)")
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--rows-per-call", type=int, default=None,
                        help="ray: utterances per actor call (default: the library's, 8)")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    audio_s = make_corpus(work / "corpus", args.num_utts, args.seconds, args.rate, seed=0)
    model_dir = make_model(work / "model")
    encoder = load_encoder(str(model_dir), device="cpu")
    corpus = open_corpus(work / "corpus")
    print(f"corpus: {args.num_utts} FLAC files, {audio_s:.1f} s at {args.rate} Hz; HuBERT-base (random) to layer "
          f"{args.layer}; {os.cpu_count()} cores; local torch threads {args.threads}", flush=True)
    rows = []
    from speechunits.scale.options import ScaleOptions

    # warm-up (first model call allocations), not timed
    list(feature_items_warmup(encoder, corpus, args.layer))
    rows.append(run_config("local serial", ScaleOptions(loader_workers=0),
                           encoder, corpus, args.layer, audio_s))
    rows.append(run_config(f"local overlapped ({args.loader_workers} loader threads)",
                           ScaleOptions(loader_workers=args.loader_workers),
                           encoder, corpus, args.layer, audio_s))
    init_s = None
    if not args.skip_ray:
        from speechunits.scale.ray_session import ray_session

        t0 = time.perf_counter()
        with ray_session(None):
            init_s = time.perf_counter() - t0
            for workers in (1, 2):
                ns = ScaleOptions(backend="ray", rows_per_call=args.rows_per_call, num_workers=workers,
                                  cpus_per_worker=1.0)
                rows.append(run_config(f"ray, {workers} worker(s) x 1 CPU", ns, encoder, corpus, args.layer, audio_s))
    serial = rows[0]["rtf"]
    steady_serial = rows[0]["steady"]
    print(f"\n{'configuration':<38} {'wall s':>7} {'x RT':>7} {'vs serial':>9} {'run overhead s':>14} "
          f"{'steady x RT':>11} {'vs serial':>9}")
    for row in rows:
        print(f"{row['name']:<38} {row['wall']:>7.1f} {row['rtf']:>7.2f} {row['rtf'] / serial:>9.2f} "
              f"{row['overhead']:>14.1f} {row['steady']:>11.2f} {row['steady'] / steady_serial:>9.2f}")
    if init_s is not None:
        one, two = rows[2], rows[3]
        print(f"\nray.init (embedded, {os.cpu_count()} CPUs): {init_s:.1f} s once per process; fixed cost per run "
              f"(a 1-utterance run: planning, actor start, model load): {one['overhead']:.1f} s (1 worker), "
              f"{two['overhead']:.1f} s (2 workers)")
        ceiling = machine_parallel_efficiency()
        print(f"per-worker efficiency, 2 workers: {two['rtf'] / (2 * one['rtf']):.2f} (end to end), "
              f"{two['steady'] / (2 * one['steady']):.2f} (steady state); target >= 0.9 where cores allow")
        print(f"this machine's own 2-process efficiency now (plain processes, torch matmuls): {ceiling:.2f} "
              "- the ceiling for the line above")
    # The same two local loops with a cheap encoder (MFCC): decoding is then most of the work, as
    # for a GPU encoder that is faster than the audio files can be read and resampled.
    mfcc = load_encoder("mfcc")
    light = [run_config(f"mfcc, local {label}", ScaleOptions(loader_workers=n),
                        mfcc, corpus, 0, audio_s)
             for label, n in (("serial", 0), (f"overlapped ({args.loader_workers} threads)", args.loader_workers))]
    print(f"\n{'cheap encoder (decode-bound)':<38} {'wall s':>7} {'x RT':>7} {'vs serial':>9}")
    for row in light:
        print(f"{row['name']:<38} {row['wall']:>7.1f} {row['rtf']:>7.2f} {row['rtf'] / light[0]['rtf']:>9.2f}")
    load = os.getloadavg()[0]
    print(f"load average during the run: {load:.1f} on {os.cpu_count()} cores (other jobs share the machine)")
    return 0


def _matmul_seconds(n: int) -> float:
    """Seconds for ``n`` 768x768 matmuls on one torch thread (a pure-compute probe)."""
    import torch

    torch.set_num_threads(1)
    a = torch.randn(768, 768)
    a @ a
    start = time.perf_counter()
    for _ in range(n):
        a @ a
    return time.perf_counter() - start


def machine_parallel_efficiency(n: int = 200) -> float:
    """What two plain processes get on this machine right now: time(1 x work) / time(2 x work in
    parallel). 1.0 on two free cores; lower when other jobs hold the cores. The ceiling for Ray's
    per-worker efficiency in the same run."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_matmul_seconds, [1, 1])
        start = time.perf_counter()
        pool.map(_matmul_seconds, [n])
        one = time.perf_counter() - start
        start = time.perf_counter()
        pool.map(_matmul_seconds, [n, n])
        two = time.perf_counter() - start
    return one / two


def feature_items_warmup(encoder, corpus, layer: int):
    from speechunits.features import iter_features

    first = next(iter(corpus))
    return iter_features(encoder, [first], [layer], quiet=True)


if __name__ == "__main__":
    sys.exit(main())

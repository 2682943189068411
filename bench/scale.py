"""Scale-out speed: Ray against the local backend at its defaults, end to end first, steady state second.

All rows run ``features`` extraction (``speechunits.scale.jobs.feature_items``, the code path of
``speechunits features --backend ...``) over the same corpus in the same process:

* baseline - the local backend with its defaults: torch at its default threads (all cores) and
  the default loader threads (decoding runs ahead in threads); what ``speechunits features``
  does without ``--backend ray``;
* extra    - the local backend with 1 torch thread (what one Ray worker gets), default loader;
* ray, 1 worker x 1 CPU - embedded Ray, one encoder actor;
* ray defaults - one actor per core, 1 CPU each (``--backend ray`` without options).

End to end (the first table columns): wall seconds a user waits, including the model load for
the local backend and ``ray.init`` + actor start + model load for Ray (a fresh
``speechunits features --backend ray`` pays all of it). Steady state (the last columns): audio
seconds / (wall - the fixed cost of a run), the fixed cost measured as a run over one
utterance, for every row alike. Both are given as ratios to the baseline. Then: per-worker
efficiency of Ray (defaults vs 1 worker), this machine's own 2-process efficiency (the ceiling),
and a decode-bound check with a cheap encoder (MFCC): local serial vs default loader threads.

The corpus is 44.1 kHz FLAC (decoding and resampling to 16 kHz cost something, as with real
corpora); the encoder is HuBERT-base sized with random weights (``HubertConfig()``, nothing
downloaded), run up to layer 6. Settings are fixed defaults, not chosen on the results.

Headline command (about 5 minutes on 2 idle cores)::

    python bench/scale.py

Quick check (a minute or two)::

    python bench/scale.py --num-utts 6 --seconds 1
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


def run_config(name: str, options, encoder, corpus, layer: int, audio_s: float,
               startup_s: float, threads: int | None = None) -> dict:
    """Time one configuration: a run over the first utterance alone (the fixed cost of a run:
    planning, thread or actor start, model load in actors), then the full run. ``startup_s``
    (model load, ``ray.init``) is added to the end-to-end wall time. (Results reach the driver
    in corpus order, so arrival times cannot give the steady-state rate.)"""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        overhead = timed(options, encoder, list(corpus)[:1], layer)[0]
        wall, first = timed(options, encoder, corpus, layer)
    finally:
        torch.set_num_threads(before)
    e2e = wall + startup_s
    return {"name": name, "wall": wall, "e2e": e2e, "first": first, "overhead": overhead, "startup": startup_s,
            "rtf": audio_s / e2e, "steady": audio_s / (wall - overhead) if wall > 1.05 * overhead else None}
    # (no steady-state rate when the full run barely outlasts the one-utterance run: corpus too small)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-utts", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=3.0, help="mean utterance length")
    parser.add_argument("--rate", type=int, default=44100, help="corpus sample rate (resampled to 16 kHz)")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the baseline (default: torch's default, all cores)")
    parser.add_argument("--rows-per-call", type=int, default=None,
                        help="ray: utterances per actor call (default: the library's)")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.scale.prefetch import default_loader_workers

    threads = args.threads or torch.get_num_threads()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    audio_s = make_corpus(work / "corpus", args.num_utts, args.seconds, args.rate, seed=0)
    model_dir = make_model(work / "model")
    t0 = time.perf_counter()
    encoder = load_encoder(str(model_dir), device="cpu")
    load_s = time.perf_counter() - t0
    corpus = open_corpus(work / "corpus")
    loaders = default_loader_workers()
    print(f"corpus: {args.num_utts} FLAC files, {audio_s:.1f} s at {args.rate} Hz; HuBERT-base (random) to layer "
          f"{args.layer}; {cores} cores; baseline torch threads {threads}, loader threads {loaders} (defaults)",
          flush=True)
    rows = []
    from speechunits.scale.options import ScaleOptions

    local = ScaleOptions()
    torch.set_num_threads(threads)
    list(feature_items_warmup(encoder, corpus, args.layer))  # first model call allocations, not timed
    rows.append(run_config(f"baseline: local, defaults ({threads} threads)", local, encoder, corpus, args.layer,
                           audio_s, load_s))
    rows.append(run_config("extra: local, 1 torch thread", local, encoder, corpus, args.layer, audio_s, load_s,
                           threads=1))
    init_s = None
    if not args.skip_ray:
        from speechunits.scale.ray_session import ray_session

        t0 = time.perf_counter()
        with ray_session(None):
            init_s = time.perf_counter() - t0
            for workers, label in ((1, "ray, 1 worker x 1 CPU"), (None, f"ray defaults ({cores} workers x 1 CPU)")):
                ns = ScaleOptions(backend="ray", rows_per_call=args.rows_per_call, num_workers=workers)
                rows.append(run_config(label, ns, encoder, corpus, args.layer, audio_s, init_s))
    ref = rows[0]
    print(f"\n{'configuration':<40} {'e2e wall s':>10} {'x RT':>6} {'vs baseline':>11} {'fixed cost s':>12} "
          f"{'steady x RT':>11} {'vs baseline':>11}")
    def steady(row: dict) -> tuple[str, str]:
        if row["steady"] is None:
            return "-", "-"
        return f"{row['steady']:.2f}", f"{row['steady'] / ref['steady']:.2f}" if ref["steady"] else "-"

    for row in rows:
        rate, ratio = steady(row)
        print(f"{row['name']:<40} {row['e2e']:>10.1f} {row['rtf']:>6.2f} {row['rtf'] / ref['rtf']:>11.2f} "
              f"{row['overhead']:>12.1f} {rate:>11s} {ratio:>11s}")
    print(f"(e2e wall includes the model load, {load_s:.1f} s, for local rows"
          + (f", and ray.init, {init_s:.1f} s, for Ray rows, whose actors load the model inside the run)"
             if init_s is not None else ")"))
    if init_s is not None:
        one, many = rows[2], rows[3]
        ceiling = machine_parallel_efficiency()
        steady_eff = (f"{many['steady'] / (cores * one['steady']):.2f}" if many["steady"] and one["steady"] else "-")
        print(f"Ray per-worker efficiency, {cores} workers vs 1: {many['rtf'] / (cores * one['rtf']):.2f} (end to end), "
              f"{steady_eff} (steady state)")
        print(f"this machine's own 2-process efficiency now (plain processes, torch matmuls): {ceiling:.2f} "
              "- the ceiling for the line above")
    # The same local backend with a cheap encoder (MFCC): decoding is then most of the work, as
    # for a GPU encoder that is faster than the audio files can be read and resampled.
    mfcc = load_encoder("mfcc")
    light = [run_config(f"mfcc, local {label}", ScaleOptions(loader_workers=n),
                        mfcc, corpus, 0, audio_s, 0.0)
             for label, n in (("serial (0 loader threads)", 0), (f"defaults ({loaders} loader threads)", None))]
    print(f"\n{'cheap encoder (decode-bound)':<40} {'wall s':>10} {'x RT':>6} {'vs serial':>11}")
    for row in light:
        print(f"{row['name']:<40} {row['wall']:>10.1f} {row['rtf']:>6.2f} {row['rtf'] / light[0]['rtf']:>11.2f}")
    load = os.getloadavg()[0]
    print(f"load average during the run: {load:.1f} on {cores} cores (other jobs share the machine)")
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

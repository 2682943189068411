"""Dev-split choices of issue 15's vocoder (``--perturb-units``), made before bench/vocoder.py's test is read.

    python bench/vocoder_dev.py --out bench/out/vocoder-dev --minutes 15 \\
        --config none= --config perturb=-4,-2,2,4
    python bench/vocoder_dev.py --out bench/out/vocoder-dev --minutes 15 \\
        --config small=-1,1 --config "small-centroids=-1,1 --embed-init centroids"
    python bench/vocoder_dev.py --out bench/out/vocoder-seed2 --corpus-seed 2 --minutes 45 \\
        --units-probe-minutes 10 --config mfcc=-1,1 \\
        --config "iter2=-1,1 --units bench/out/pretrain-aug/iter2:3"

The corpus is bench/vocoder.py's (``synthesize_corpus(minutes=60, speakers=6, seed=0)``, or
``--corpus``) with the same test utterances (each speaker's last 5) left out entirely; the 5
before them are the **dev** set, the rest trains. Each ``--config NAME=SEMITONES [OPTIONS]`` trains the
cpu tier (MFCC K=100 units of the training part + continuous DIO F0 + a speaker table) for
``--minutes`` with ``--threads 1``, all configurations side by side (one core each on this
2-core machine, so give at most two). Then, on the dev utterances: resynthesis and conversion to
the next speaker, judged by a speaker probe and the phone-probe judge trained on the training
part's original audio (MFCC, docs/probe.md's judge settings), GPE and MCD. Prints one table;
writes ``OUT/dev.json``.

A configuration's options may include ``--units ENCODER:LAYER`` (e.g. a ``speechunits pretrain``
model directory and its layer): its K=100 codebook is then fitted on that layer of the training
part instead of MFCC, so MFCC and model units can be compared side by side under the same judges.
``@K`` sets another codebook size (``--units mfcc@500``).
``--units-probe-minutes M`` also trains, for every codebook, a phone probe that reads the units
themselves (bench/vocoder.py's floor estimate). ``--corpus-seed`` synthesises another corpus
(other voices and sentence order), e.g. one that a pretrained encoder never heard.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from su import fit_codebook, su  # noqa: E402  (bench/su.py)
from vocoder import (conversion_targets, convert_all, judge, split_by_speaker,  # noqa: E402  (bench/vocoder.py)
                     units_name, units_per, write_subset)

log = logging.getLogger("bench.vocoder_dev")


def dev_split(speakers: dict[str, str], test_per_speaker: int, dev_per_speaker: int) -> tuple[set, set, set]:
    """(train, dev, test) ids: per speaker (sorted ids), the last ``test_per_speaker`` are test
    (bench/vocoder.py's held-out set), the ``dev_per_speaker`` before them dev."""
    rest, test = split_by_speaker(speakers, test_per_speaker)
    train, dev = split_by_speaker({u: speakers[u] for u in rest}, dev_per_speaker)
    return train, dev, test


def pop_units(options: list[str]) -> tuple[str, list[str]]:
    """(``ENCODER:LAYER`` of a ``--units`` option or ``"mfcc"``, the other options)."""
    if "--units" not in options:
        return "mfcc", options
    i = options.index("--units")
    if i + 1 >= len(options):
        raise SystemExit("--units needs ENCODER:LAYER")
    return options[i + 1], options[:i] + options[i + 2:]


def units_codebook(units: str, train_dir: Path, out: Path) -> Path:
    """The codebook of ``units`` (``mfcc`` or ``ENCODER:LAYER``, either with ``@K``; K=100 by
    default) fitted on the training part."""
    units, _, k = units.partition("@")
    if k and not k.isdigit():
        raise SystemExit(f"--units ...@{k}: K must be a whole number")
    encoder, layer = "mfcc", None
    if units != "mfcc":
        encoder, _, digits = units.rpartition(":")
        if not encoder or not digits.isdigit():
            raise SystemExit(f"--units {units!r}: expected mfcc or ENCODER:LAYER, e.g. bench/out/pretrain-aug/iter2:3")
        layer = int(digits)
    size = int(k or 100)
    return fit_codebook(train_dir / "manifest.tsv", out / f"cb-{units_name(encoder, layer, size)}", encoder,
                        size, layer)


def run_all(commands: list[list[str]]) -> None:
    """Run ``speechunits`` commands side by side; fail if any fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one core each
    procs = [subprocess.Popen([sys.executable, "-m", "speechunits.cli.main", *map(str, c)], env=env) for c in commands]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"failed: {[c for c, code in zip(commands, codes) if code]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--corpus", type=Path, help="bench/vocoder.py's corpus (default: synthesise it again)")
    parser.add_argument("--config", action="append", required=True, metavar="NAME=SEMITONES [OPTIONS]",
                        help="a configuration: its name, --perturb-units list (empty: no perturbation) and any "
                             "further `vocoder train` options, e.g. 'cent=-1,1 --embed-init centroids'")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--probe-minutes", type=float, default=8.0)
    parser.add_argument("--test-per-speaker", type=int, default=5)
    parser.add_argument("--dev-per-speaker", type=int, default=5)
    parser.add_argument("--corpus-seed", type=int, default=0, help="seed of the synthesised corpus (bench/vocoder.py: 0)")
    parser.add_argument("--units-probe-minutes", type=float, default=0.0,
                        help="also train a phone probe on every codebook's units (0: skip)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from speechunits.corpus import read_speakers
    from speechunits.probe.defaults import JUDGE_PHONES_ARGS

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus or out / "corpus"
    if not (corpus / "corpus.json").is_file():
        from speechunits.synth.corpus import synthesize_corpus

        synthesize_corpus(corpus, 60.0, 6, seed=args.corpus_seed)
    speakers = read_speakers(corpus / "speakers.tsv")
    train_ids, dev_ids, _ = dev_split(speakers, args.test_per_speaker, args.dev_per_speaker)
    train_dir, dev_dir = write_subset(corpus, out / "train", train_ids), write_subset(corpus, out / "dev", dev_ids)

    configs = dict(c.split("=", 1) for c in args.config)
    todo, codebooks = [], {}
    for name, spec in configs.items():
        voc = out / f"voc-{name}"
        shifts, *extra = spec.split() or [""]
        if shifts.startswith("--"):  # no shifts, only options
            shifts, extra = "", [shifts, *extra]
        units, extra = pop_units(extra)
        cb = units_codebook(units, train_dir, out)  # fitted once: a fitted codebook is kept
        codebooks[cb.name] = cb  # by folder, so `mfcc` and `mfcc@100` probe one codebook
        if not (voc / "vocoder.json").is_file():
            todo.append(["vocoder", "train", train_dir, "--codebook", cb, "-o", voc, "--speaker", "table",
                         "--f0", "continuous", "--minutes", args.minutes, "--threads", 1, "--quiet",
                         *([f"--perturb-units={shifts}"] if shifts else []), *extra])
    run_all(todo)
    probes = {task: out / f"probe-{task}" for task in ("phones", "speaker")}
    run_all([["probe", "train", task, train_dir / "manifest.tsv", "--encoder", "mfcc", "-o", path,
              "--max-minutes", args.probe_minutes, "--quiet",
              *(JUDGE_PHONES_ARGS if task == "phones" else [])]
             for task, path in probes.items() if not (path / "probe.json").is_file()])

    targets = conversion_targets(read_speakers(dev_dir / "speakers.tsv"))
    ref = dev_dir / "manifest.tsv"
    common = dict(text=None, probe=probes["phones"], speaker_probe=probes["speaker"], phones=dev_dir / "phones.tsv")
    results = {"original": judge(ref, ref, **common)["metrics"]}
    for name in configs:
        voc = out / f"voc-{name}"
        resynth, converted = out / f"resynth-{name}", out / f"convert-{name}"
        su("resynth", dev_dir, "--vocoder", voc, "-o", resynth, "--quiet")
        convert_all(voc, dev_dir, targets, converted)
        results[name] = judge(ref, resynth, **common)["metrics"]
        results[f"{name} conversion"] = judge(ref, converted, **common,
                                              target_speakers=converted / "speakers.tsv")["metrics"]
        results[name]["steps"] = json.loads((voc / "vocoder.json").read_text())["trained"]["steps"]
    if args.units_probe_minutes > 0:
        for cb in codebooks.values():
            floor = out / f"floor-{cb.name}"
            floor.mkdir(exist_ok=True)
            results[f"a phone probe reading {cb.name}"] = units_per(train_dir, dev_dir, cb, floor,
                                                                   args.units_probe_minutes)
    (out / "dev.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    cols = ["probe_per", "speaker_probe_accuracy", "gpe", "mcd", "speaker_similarity", "dnsmos_ovrl", "steps"]
    print("| dev | " + " | ".join(cols) + " |\n|---" * 1 + "|---" * len(cols) + "|")
    for system, m in results.items():
        print(f"| {system} | " + " | ".join(f"{m[c]:.3f}" if isinstance(m.get(c), (int, float)) else "-"
                                          for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

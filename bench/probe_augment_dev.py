"""Dev study for issue 14's unit probes: regularisers against their overfitting (dev only).

A deduplicated-units phones probe fits its training utterances to a CTC loss near 1e-4 while its
dev PER (unseen speakers) stays far above the features'. This script trains the same probe under
several regularisers, one arm each, and prints every arm's best dev PER, where it was reached and
how the run ended:

* ``d05``: the head's dropout 0.5 (``--dropout``, what bench/probe.py's unit rows use);
* ``d05-tm5``: and SpecAugment time masks, 5 per utterance of up to 5 % each (``--time-mask 5:0.05``,
  the kind ESPnet's asr2 recipes put on embedded tokens);
* ``d05-un10``: and unit substitution, each unit swapped with probability 0.1 for one of its 5 nearest
  units by centroid distance (``--unit-noise 0.1:5``);
* ``d05-tm5-un10``: both.

Each setting was fixed before its run; none was tuned on this split. The corpus is
bench/probe_lm.py's (``speechunits synth``, 60 min, 20 speakers, grammar text, seed 5), split by
speaker with the probes' default split (80/10/10, seed 0). Its test part is dropped from the split
file, so no probe here reads it. Units: MFCC K=100 fitted on the training part, deduplicated, tables
from the centroids. Head: the judge's (one BiLSTM layer of 128), lr 1e-3, one seed, 3000 steps at most
with the learning rate decaying over them (``--step-schedule``: no time budget, so a run repeats step
for step), dev every 25 steps, patience 20, batches of the CLI's default 20,000 padded frames (with
bench/probe.py's 4,000 the regularisers raise the PER instead: docs/probe.md, "The same regularisers at
bench/probe.py's batch size"). Arms run ``--jobs`` at a time, one thread each.

    python bench/probe_augment_dev.py --out bench/out/probe-augment-dev    # ~2 h here (4 arms, 2 cores)
    python bench/probe_augment_dev.py --quick                               # checks the script (~2 min)
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from su import CommandFailed, fit_codebook, su  # noqa: E402  (bench/su.py)

log = logging.getLogger("bench.probe_augment_dev")

ARMS: dict[str, list[str]] = {
    "d05": ["--dropout", "0.5"],
    "d05-tm5": ["--dropout", "0.5", "--time-mask", "5:0.05"],
    "d05-un10": ["--dropout", "0.5", "--unit-noise", "0.1:5"],
    "d05-tm5-un10": ["--dropout", "0.5", "--time-mask", "5:0.05", "--unit-noise", "0.1:5"],
}
FULL = dict(minutes=60.0, speakers=20, max_steps=3000, eval_every=25, patience=20, hidden=128)
QUICK = dict(minutes=3.0, speakers=6, max_steps=30, eval_every=10, patience=3, hidden=32)


def prepare(out: Path, cfg: dict[str, Any]) -> dict[str, Path]:
    """Corpus, split file without its test part, MFCC K=100 codebook (training part) and unit store."""
    from speechunits.corpus import open_corpus, read_speakers, write_tsv_subset
    from speechunits.probe.splits import make_split

    corpus = out / "corpus"
    if not (corpus / "manifest.tsv").is_file():
        su("synth", corpus, "--minutes", cfg["minutes"], "--speakers", cfg["speakers"], "--text", "grammar",
           "--seed", 5, "--quiet")
    speakers = read_speakers(corpus / "speakers.tsv")
    ids = [utt.id for utt in open_corpus(corpus / "manifest.tsv")]  # corpus order, as `probe train` reads it
    split = make_split(ids, by="speaker", speakers=speakers)
    split_file = out / "split.tsv"  # train and dev only: the test part is never given to a probe
    split_file.write_text("".join(f"{u}\t{part}\n" for part in ("train", "dev") for u in split.part(part)))
    train_manifest = out / "train-manifest.tsv"
    write_tsv_subset(corpus / "manifest.tsv", set(split.part("train")), train_manifest)
    codebook = fit_codebook(train_manifest, out / "codebook-k100", "mfcc", 100)
    store = out / "units-k100"
    if not (store / ".speechunits.json").is_file():
        su("encode", corpus / "manifest.tsv", "--codebook", codebook, "-o", store, "--quiet")
    return {"corpus": corpus, "split": split_file, "codebook": codebook, "store": store}


def train_arm(name: str, paths: dict[str, Path], out: Path, cfg: dict[str, Any]) -> Path:
    """One arm's probe (in a child process with one thread), unless it is there."""
    probe = out / f"arm-{name}"
    if not (probe / "probe.json").is_file():
        su("probe", "train", "phones", paths["corpus"] / "manifest.tsv", "--units", paths["store"], "--dedup",
           "--codebook", paths["codebook"], "--embed-init", "centroids",
           "--alignments", paths["corpus"] / "phones.tsv", "--split-file", paths["split"],
           "--head", "bilstm", "--hidden", cfg["hidden"], "--lstm-layers", 1, "--lr", "1e-3", "--seeds", 1,
           "--max-steps", cfg["max_steps"], "--eval-every", cfg["eval_every"], "--patience", cfg["patience"],
           "--step-schedule", *ARMS[name], "--threads", 1, "-o", probe, "--quiet", child=True,
           stdout=out / f"arm-{name}.json")
    return probe


def best_by_step(probe: Path, steps: list[int]) -> dict[int, float | None]:
    """The best dev PER logged up to each of ``steps`` (None past the last evaluation): arms compared
    at equal steps, since an arm with more regularisation learns more slowly."""
    from speechunits.training.loop import recorded_values

    log_file = next((probe / "runs").glob("*/training/log.jsonl"))
    curve = [(r["step"], r["dev"]["per"]) for r in recorded_values(log_file, "dev")]
    last = max((step for step, _ in curve), default=0)
    return {n: min((per for step, per in curve if step <= n), default=None) if n <= last else None for n in steps}


def summary(probe: Path, steps: list[int]) -> dict[str, Any]:
    """Best dev PER, its step, steps run and why the run ended (from ``probe.json``), and the best
    dev PER up to each of ``steps``."""
    run = json.loads((probe / "probe.json").read_text(encoding="utf-8"))["runs"][0]
    return {"per": run["dev"]["per"], "best_step": run["best_step"], "steps": run["steps_done"],
            "stop": run["stop_reason"], "minutes": run["train_seconds"] / 60,
            "best_by_step": best_by_step(probe, steps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/out/probe-augment-dev (/tmp/probe-augment-dev-quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a 3-minute corpus and 30 steps: checks the script")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"which arms (default all: {','.join(ARMS)})")
    parser.add_argument("--jobs", type=int, default=2, help="arms trained at a time (default %(default)s)")
    args = parser.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        parser.error(f"--arms: choose from {', '.join(ARMS)}")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    cfg = QUICK if args.quick else FULL
    out = args.out or Path("/tmp/probe-augment-dev-quick" if args.quick else "bench/out/probe-augment-dev")
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = prepare(out, cfg)
    with ThreadPoolExecutor(args.jobs) as pool:
        probes = dict(zip(arms, pool.map(lambda a: train_arm(a, paths, out, cfg), arms)))
    steps = [cfg["max_steps"] * i // 6 for i in range(1, 6)]
    rows = {name: summary(probe, steps) for name, probe in probes.items()}
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\nphones probes on MFCC K=100 units (dedup, centroid tables), dev speakers unseen, one seed, dev only\n")
    print("| arm | options | dev PER % | best step | steps run | ended by | minutes | "
          + " | ".join(f"best by {n}" for n in steps) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(steps))
    for name, r in rows.items():
        by_step = " | ".join("-" if v is None else f"{100 * v:.2f}" for v in r["best_by_step"].values())
        print(f"| {name} | `{' '.join(ARMS[name])}` | {100 * r['per']:.2f} | {r['best_step']} | {r['steps']} | "
              f"{r['stop']} | {r['minutes']:.0f} | {by_step} |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CommandFailed as error:
        log.error("%s", error)
        sys.exit(1)

"""Must-show of issue 18: does a CPU-pretrained model give better K=100 units than MFCC on *real* speech?

Data (nothing here is in the package or needed by the tests):

* **training**: ``../shared/data/librispeech-sample`` (65 min, 261 speakers; no alignments);
  the K=100 codebooks of MFCC and of every model layer are fitted on ``--fit-minutes`` of it;
* **dev** (every choice: configuration, budget, layer): the even-numbered utterances of
  ``../shared/data/ivr-prompts-en`` in sorted id order (one speaker, phone-aligned: PNMI and
  within-speaker ABX) and the synthetic dev corpus (``bench/out/synth_heldout``, 6 espeak-ng
  voices: across-speaker ABX, the only multi-speaker aligned speech here);
* **test** (read once, after the choice, by ``--test``): the odd-numbered ivr utterances and the
  synthetic test corpus (``bench/out/synth_test``).

Every configuration in :data:`CONFIGS` is trained under a wall-clock budget with ``--train NAME
--minutes M`` (the model lands in ``OUT/NAME-Mm``; two runs at ``--threads 1`` side by side on the
2-core CPU) and scored on dev at every layer; ``--report`` prints all dev rows so far and draws
``curve.png`` (the chosen layer's PNMI and unit ABX within, relative to MFCC, against minutes of
training on real speech); ``--test RUN`` writes ``test.json`` once (refused a second time) and prints
the test table with the dev-chosen layer marked. The transfer runs start from the synthetic model
of ``bench/pretrain.py`` (:data:`SYNTH_MODEL`; run that first).

The commands of docs/train.md's table (2026-11-30), in order::

    python bench/pretrain_real.py --eval bench/out/pretrain/iter1          # synthetic model alone
    python bench/pretrain_real.py --train D --minutes 20 --threads 1
    python bench/pretrain_real.py --train D-synth-init --minutes 20 --threads 1
    python bench/pretrain_real.py --train D-synth-init-aug --minutes 20 --threads 1
    python bench/pretrain_real.py --train D-synth-init --minutes 45 --threads 1
    python bench/pretrain_real.py --train synth20-then-real --minutes 45 --threads 1
    python bench/pretrain_real.py --threads 1 --test D-synth-init-45m    # after the choice
    python bench/pretrain_real.py --train D-synth-init-half --minutes 45 --threads 1   # curve points
    python bench/pretrain_real.py --train D-synth-init --minutes 10 --threads 1
    python bench/pretrain_real.py --train iter2-L0 --minutes 15 --threads 1
    python bench/pretrain_real.py --train D-synth-init-k500 --minutes 15 --threads 2
    python bench/pretrain_real.py --report
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain import choose_layer as choose_by_rank  # noqa: E402  (bench/pretrain.py's layer rule,
from pretrain import ensure_corpus, pnmi  # noqa: E402   synthetic corpora and PNMI)

from speechunits.corpus import SPEAKERS_FILE, open_corpus, read_speakers  # noqa: E402
from speechunits.encoders import load_encoder  # noqa: E402
from speechunits.measure.abx import compute_abx  # noqa: E402
from speechunits.measure.abx_items import build_items  # noqa: E402
from speechunits.measure.alignments import load_alignments  # noqa: E402
from speechunits.pretrain.config import RECIPES  # noqa: E402
from speechunits.pretrain.data import load_waves  # noqa: E402
from speechunits.pretrain.iterate import layer_features  # noqa: E402
from speechunits.pretrain.targets import nearest  # noqa: E402
from speechunits.quantize.kmeans import fit_kmeans  # noqa: E402

log = logging.getLogger("bench.pretrain_real")
SR = 16000
K = 100
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

#: `speechunits pretrain --recipe cpu` (run D of docs/train.md, chosen on synthetic speech): every configuration's base.
RUN_D = dict(RECIPES["cpu"], model="tiny", targets=f"mfcc:{K}", steps=100000, log_every=10)
#: the 40-minute synthetic-speech model of bench/pretrain.py (run it first): the --init of the transfer runs.
SYNTH_MODEL = "bench/out/pretrain/iter1"
AUGMENT = "pitch:-3..3,noise:5..30,reverb:0.2..0.8,p=0.5"
#: name -> (PretrainConfig overrides of RUN_D, what it tests)
CONFIGS: dict[str, tuple[dict, str]] = {
    "D": ({}, "run D on real speech (the issue's starting point)"),
    "D-synth-init": ({"init": SYNTH_MODEL},
                     "+ initialised from the 40-min synthetic run D model (bench/pretrain.py)"),
    "D-synth-init-aug": ({"init": SYNTH_MODEL, "augment": AUGMENT},
                         "synthetic init + input perturbation"),
    "synth20-then-real": ({"synth_minutes": 20.0},
                          "20 min on the synthetic training corpus, then the rest of --minutes on real speech "
                          "from it: all training inside the budget"),
    "D-synth-init-half": ({"init": SYNTH_MODEL, "data_fraction": 0.5},
                          "synthetic init, real stage on half of the training speakers (data-size curve)"),
    "D-synth-init-k500": ({"init": SYNTH_MODEL, "targets": "mfcc:500"},
                          "synthetic init, MFCC K=500 targets (finer than the K=100 units measured; dev only, "
                          "after the test was read)"),
    "iter2-L0": ({"iterate_from": "D-synth-init-45m", "iterate_layer": 0},
                 "HuBERT's second iteration after the chosen run: targets = K=100 of its layer 0 on the "
                 "training audio, weights continued from it (a dev-only look after the test was read)"),
}


# -- data ------------------------------------------------------------------------------------------

def ivr_split(name: str) -> tuple[list[tuple[str, np.ndarray]], dict, list]:
    """Waves, alignments and (within-speaker) ABX items of the dev (even) or test (odd) ivr half."""
    root = SHARED / "ivr-prompts-en"
    alignments = load_alignments(root / "phones.tsv")
    waves = sorted(load_waves(open_corpus(root / "flac"), SR, 400))
    keep = {u for i, (u, _) in enumerate(waves) if i % 2 == (0 if name == "dev" else 1)}
    waves = [(u, w) for u, w in waves if u in keep]
    alignments = {u: a for u, a in alignments.items() if u in keep}
    items = build_items(alignments, read_speakers(root / SPEAKERS_FILE))
    return waves, alignments, items


def synth_split(name: str) -> tuple[list[tuple[str, np.ndarray]], dict, list]:
    """The synthetic dev (seed 1) or test (seed 2) corpus of bench/pretrain.py: across-speaker ABX."""
    path = ensure_corpus(Path("bench/out/synth_heldout" if name == "dev" else "bench/out/synth_test"), 12, 6,
                         1 if name == "dev" else 2)
    alignments = load_alignments(path / "phones.tsv")
    items = build_items(alignments, read_speakers(path / SPEAKERS_FILE))
    return load_waves(open_corpus(path / "manifest.tsv"), SR, 400), alignments, items


@functools.cache
def fit_waves(minutes: float) -> list[tuple[str, np.ndarray]]:
    """A fixed random ``minutes`` of the training audio (seed 0) for every K-means fit (read once, when needed)."""
    waves = load_waves(open_corpus(SHARED / "librispeech-sample" / "flac"), SR, 400)
    order = np.random.default_rng(0).permutation(len(waves))
    out, total = [], 0.0
    for i in order:
        if total >= minutes * 60:
            break
        out.append(waves[i])
        total += len(waves[i][1]) / SR
    return out


# -- scoring ---------------------------------------------------------------------------------------

def score(units: dict[str, np.ndarray], feats: dict[str, np.ndarray] | None, rate: float, offset: float,
          split: tuple, kind: str) -> dict:
    """PNMI + unit ABX (+ feature ABX) on one split; ``kind`` "ivr" (within) or "synth" (across)."""
    _, alignments, items = split
    if kind == "ivr":
        abx = compute_abx(items, units.items(), rate, offset, distance="hamming", modes=("within",))
        row = {"pnmi": pnmi(units, alignments, rate, offset, K), "unit_abx_within": abx.abx_within}
        if feats is not None:
            row["feature_abx_within"] = compute_abx(items, feats.items(), rate, offset,
                                                    modes=("within",)).abx_within
        return row
    abx = compute_abx(items, units.items(), rate, offset, distance="hamming")
    row = {"synth_pnmi": pnmi(units, alignments, rate, offset, K), "synth_unit_abx_within": abx.abx_within,
           "synth_unit_abx_across": abx.abx_across}
    if feats is not None:
        row["synth_feature_abx_across"] = compute_abx(items, feats.items(), rate, offset,
                                                      modes=("across",)).abx_across
    return row


def mfcc_rows(split_name: str, fit: list, splits: dict) -> list[dict]:
    """MFCC K=100 (codebook on the training audio): the baseline, at 100 Hz and every 2nd frame."""
    mfcc = load_encoder("mfcc")
    off = mfcc.info.receptive_field / (2 * SR)
    centroids = fit_kmeans(torch.from_numpy(np.concatenate([mfcc.extract_batch([w], [0])[0][0] for _, w in fit])),
                           K, iters=30, init="k-means++", seed=0, device="cpu").centroids
    full = {kind: {u: mfcc.extract_batch([w], [0])[0][0] for u, w in split[0]} for kind, split in splits.items()}
    rows = []
    for stride, name in ((1, "MFCC K=100 (100 Hz)"), (2, "MFCC K=100 (every 2nd frame, 50 Hz)")):
        row = {"system": name, "layer": None}
        for kind, split in splits.items():
            feats = {u: f[::stride] for u, f in full[kind].items()}
            units = {u: nearest(torch.from_numpy(f), centroids) for u, f in feats.items()}
            row.update(score(units, feats, mfcc.info.frame_rate / stride, off, split, kind))
        rows.append(row)
        log.info("%s %s: %s", split_name, name, row)
    return rows


def model_rows(model_dir: Path, fit: list, splits: dict, tag: str) -> list[dict]:
    """Every layer of ``model_dir``: K=100 fitted on ``fit``, scored on both parts of one split."""
    encoder = load_encoder(str(model_dir), device="cpu")
    layers = list(range(encoder.info.num_layers + 1))
    off = encoder.info.receptive_field / (2 * SR)
    fit_feats = layer_features(model_dir, fit, layers)
    held = {kind: layer_features(model_dir, split[0], layers) for kind, split in splits.items()}
    rows = []
    for layer in layers:
        start = time.perf_counter()
        centroids = fit_kmeans(torch.from_numpy(np.concatenate(fit_feats[layer])), K, iters=30, init="k-means++",
                               seed=0, device="cpu").centroids
        row = {"system": f"{tag} layer {layer}", "layer": layer}
        for kind, split in splits.items():
            feats = {u: f for (u, _), f in zip(split[0], held[kind][layer])}
            units = {u: nearest(torch.from_numpy(f), centroids) for u, f in feats.items()}
            row.update(score(units, feats, encoder.info.frame_rate, off, split, kind))
        row["seconds"] = time.perf_counter() - start
        log.info("%s: %s", row["system"], {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
        rows.append(row)
    return rows


def choose_layer(rows: list[dict]) -> int:
    """Best mean rank over ivr PNMI (higher), ivr unit ABX within and synthetic unit ABX across (lower)."""
    return choose_by_rank(rows, ("pnmi", "unit_abx_within", "synth_unit_abx_across"))


# -- training --------------------------------------------------------------------------------------

def training_manifest(out: Path, fraction: float) -> Path:
    """The LibriSpeech sample, or the utterances of a random ``fraction`` of its speakers (seed 0)."""
    root = SHARED / "librispeech-sample" / "flac"
    if fraction >= 1.0:
        return root
    import soundfile

    from speechunits.corpus import write_tsv

    files = sorted(root.glob("*.flac"))
    speakers = sorted({f.name.split("-")[0] for f in files})
    keep = set(np.random.default_rng(0).permutation(speakers)[: round(fraction * len(speakers))])
    path = out / f"train-{fraction:g}.tsv"
    write_tsv(path, str(root), [(f.name, soundfile.info(str(f)).frames) for f in files
                                if f.name.split("-")[0] in keep])
    return path


def train(name: str, minutes: float, out: Path, threads: int | None, keep_every: int) -> Path:
    from speechunits.pretrain import pretrain
    from speechunits.pretrain.config import PretrainConfig

    overrides, _ = CONFIGS[name]
    overrides = dict(overrides)
    model_dir = out / f"{name}-{minutes:g}m"
    if (model_dir / "train.json").is_file():
        return model_dir
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    if overrides.get("init") and not (Path(overrides["init"]) / "config.json").is_file():
        raise SystemExit(f"{name} starts from {overrides['init']}: run `python bench/pretrain.py` first (40 min)")
    if "iterate_from" in overrides:  # iteration 2: K-means of a layer of an earlier run as targets
        from speechunits.pretrain.iterate import fit_layer_codebook

        parent, layer = out / overrides.pop("iterate_from"), overrides.pop("iterate_layer")
        codebook = out / f"{parent.name}-codebook-L{layer}"
        if not (codebook / "codebook.json").is_file():
            fit_layer_codebook(parent, load_waves(open_corpus(SHARED / "librispeech-sample" / "flac"), SR, SR),
                               layer, K, 0, codebook)
        overrides.update(init=str(parent), targets=str(codebook))
    synth_minutes = overrides.pop("synth_minutes", 0.0)
    if synth_minutes:  # a synthetic stage inside the budget; the real stage starts from it
        synth_dir = out / f"synth-{synth_minutes:g}m"
        if not (synth_dir / "config.json").is_file():
            corpus = ensure_corpus(Path("bench/out/synth_train"), 62, 8, 0)
            pretrain(corpus / "manifest.tsv", synth_dir, PretrainConfig(**{**RUN_D, "max_minutes": synth_minutes}),
                     device="cpu", quiet=True)
            (synth_dir / "wall.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
        overrides["init"] = str(synth_dir)
    spent = json.loads((synth_dir / "wall.json").read_text())["seconds"] if synth_minutes else 0.0
    left = minutes - spent / 60  # the real stage gets what the synthetic stage (targets included) left
    source = training_manifest(out, overrides.pop("data_fraction", 1.0))
    cfg = PretrainConfig(**{**RUN_D, **overrides, "max_minutes": left, "checkpoint_every": keep_every})
    result = pretrain(source, model_dir, cfg, device="cpu", quiet=True)
    hist = result.history
    summary = {"config": name, "minutes": minutes, "wall_seconds": time.perf_counter() - start,
               "steps": len(hist), "audio_seconds_seen": sum(h.amount for h in hist),
               "audio_per_second": sum(h.amount for h in hist) / max(sum(h.wall_seconds for h in hist), 1e-9),
               "final_masked_acc": float(np.mean([h.metrics["masked_acc"] for h in hist[-25:]])),
               "threads": torch.get_num_threads(), "synth_stage_seconds": spent}
    (model_dir / "train.json").write_text(json.dumps(summary, indent=2))
    return model_dir


def dev_eval(model_dir: Path, fit: Callable[[], list]) -> list[dict]:
    path = model_dir / "dev.json"
    if path.is_file():
        return json.loads(path.read_text())
    splits = {"ivr": ivr_split("dev"), "synth": synth_split("dev")}
    rows = model_rows(model_dir, fit(), splits, model_dir.name)
    path.write_text(json.dumps(rows, indent=2))
    return rows


def baseline(out: Path, split_name: str, fit: Callable[[], list]) -> list[dict]:
    path = out / f"mfcc-{split_name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    splits = {"ivr": ivr_split(split_name), "synth": synth_split(split_name)}
    rows = mfcc_rows(split_name, fit(), splits)
    path.write_text(json.dumps(rows, indent=2))
    return rows


COLUMNS = (("pnmi", "PNMI", 1), ("unit_abx_within", "uABXw%", 100), ("feature_abx_within", "fABXw%", 100),
           ("synth_unit_abx_across", "s-uABXa%", 100), ("synth_feature_abx_across", "s-fABXa%", 100),
           ("synth_pnmi", "s-PNMI", 1))


def print_table(title: str, base: dict, rows: list[dict], mark: str | None = None) -> None:
    print(f"\n{title}")
    print(f"{'system':40s}" + "".join(f"{h:>10s}" for _, h, _ in COLUMNS) + f"{'PNMI xMFCC':>12s}")
    for row in [base, *rows]:
        cells = "".join(f"{row[k] * s:10.4g}" if row.get(k) is not None else f"{'-':>10s}" for k, _, s in COLUMNS)
        flag = "  <- chosen on dev" if mark and row["system"] == mark else ""
        print(f"{row['system']:40s}{cells}{row['pnmi'] / base['pnmi']:12.3f}{flag}")


def plot_curve(out: Path, base: dict, runs: list[Path], synth_only: dict | None) -> Path:
    """``curve.png``: dev PNMI / MFCC's and unit ABX within / MFCC's at each run's chosen layer
    against its real-speech training minutes, one line per configuration family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, list[tuple[float, dict]]] = {}
    for run in runs:
        info = json.loads((run / "train.json").read_text())
        rows = json.loads((run / "dev.json").read_text())
        row = next(r for r in rows if r["layer"] == choose_layer(rows))
        real_minutes = info["minutes"] - info.get("synth_stage_seconds", 0.0) / 60
        points.setdefault(info["config"], []).append((real_minutes, row))
    if synth_only is not None and "D-synth-init" in points:
        points["D-synth-init"].append((0.0, synth_only))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, pts in sorted(points.items()):
        pts.sort(key=lambda p: p[0])
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1]["pnmi"] / base["pnmi"] for p in pts], "o-", label=name)
        axes[1].plot(xs, [p[1]["unit_abx_within"] / base["unit_abx_within"] for p in pts], "o-", label=name)
    for ax, what, goal in ((axes[0], "PNMI / MFCC's (higher is better)", 1.05),
                           (axes[1], "unit ABX within / MFCC's (lower is better)", 1.0)):
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(goal, color="red", lw=0.8, ls="--")
        ax.set_xlabel("minutes of training on real speech")
        ax.set_title(what, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/pretrain_real"))
    parser.add_argument("--train", choices=sorted(CONFIGS), help="train this configuration, then score it on dev")
    parser.add_argument("--minutes", type=float, default=45.0, help="training wall-clock budget")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for training")
    parser.add_argument("--keep-every", type=int, default=500, help="steps between checkpoints (each replaces the last)")
    parser.add_argument("--eval", type=Path, help="score an existing model directory on dev")
    parser.add_argument("--report", action="store_true", help="print every dev row so far")
    parser.add_argument("--test", help="RUN (a directory under --out): read the test split once")
    parser.add_argument("--fit-minutes", type=float, default=15.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    fit = functools.partial(fit_waves, args.fit_minutes)
    dev_base = baseline(out, "dev", fit)[0]
    if args.train:
        dev_eval(train(args.train, args.minutes, out, args.threads, args.keep_every), fit)
    if args.eval:
        dev_eval(args.eval, fit)
    if args.report or args.train or args.eval:
        runs = sorted(p.parent for p in out.glob("*/dev.json"))
        for run in runs:
            rows = json.loads((run / "dev.json").read_text())
            info = json.loads((run / "train.json").read_text()) if (run / "train.json").is_file() else {}
            title = (f"dev: {run.name}  ({info.get('steps', '?')} steps, masked acc "
                     f"{info.get('final_masked_acc', float('nan')):.3f}; chosen layer {choose_layer(rows)})")
            print_table(title, dev_base, rows)
        synth = Path(SYNTH_MODEL) / "dev.json"  # `--eval bench/out/pretrain/iter1`: the curve's 0-minute point
        synth_rows = json.loads(synth.read_text()) if synth.is_file() else None
        synth_only = (next(r for r in synth_rows if r["layer"] == choose_layer(synth_rows))
                      if synth_rows else None)
        log.info("curve: %s", plot_curve(out, dev_base, [r for r in runs if (r / "train.json").is_file()],
                                         synth_only))
    if args.test:
        run = out / args.test
        if (run / "test.json").is_file():
            raise SystemExit(f"{run}/test.json exists: the test split is read once")
        chosen = choose_layer(json.loads((run / "dev.json").read_text()))
        (run / "selection.json").write_text(json.dumps({"layer": chosen, "configs_tried": len(
            list(out.glob("*/dev.json")))}, indent=2))
        test_base = baseline(out, "test", fit)[0]
        rows = model_rows(run, fit(), {"ivr": ivr_split("test"), "synth": synth_split("test")}, run.name)
        (run / "test.json").write_text(json.dumps(rows, indent=2))
        print_table(f"TEST (read once): {run.name}", test_base, rows, mark=f"{run.name} layer {chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

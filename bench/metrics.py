"""Benchmark: ABX and evaluate (PNMI ...), each against the reference implementation of the field, same run, same inputs.

1. ABX. Baseline: Libri-Light's own ABX code as packaged on PyPI (``zerospeech-libriabx2``,
   module ``zrc_abx2``, Cython DTW), run through its ``EvalABX.eval_abx`` with its defaults
   for features (``distance_mode="cosine"``, ``max_size_group=10``, ``max_x_across=5``,
   ``seed=3459``), ``context_mode="within"`` (the classic Libri-Light score; ``"any"`` is the
   package's newer variant), ``speaker_mode="all"``, ``feature_size=1/frame_rate``. Ours:
   :func:`speechunits.measure.abx.compute_abx` with the same distance, group size and X
   speakers. Both read the same ``.item`` file (written once by ``write_items``) and the same
   per-utterance ``.npy`` files; both timings include reading them. Printed: seconds of
   each, the ratio, and the within/across error rates side by side with their differences.
   Expected differences, none of them a bug on either side: Libri-Light takes the frames
   ``ceil(r*onset - 0.5) .. floor(r*offset - 0.5) - 1`` and so drops an item's last frame when
   its centre lies inside the item but ``r*offset - 0.5`` is not a whole number (ours keeps
   every frame whose centre lies in ``[onset, offset)``; we give ours frame centres at
   ``(i + 0.5) / r``, Libri-Light's convention, so that nothing else differs); and the two
   subsample groups larger than 10 items and X speakers with different random generators.
   A third, untimed row runs ours on the items cut to Libri-Light's frames: on a small corpus
   (no group large enough to be subsampled) it equals Libri-Light's scores to float precision.
   Features: 768-d at 50 Hz, synthetic but phone-structured (``--signal`` x a per-phone random
   direction + 0.3 x a per-speaker one + N(0, 1) noise per frame, frames labelled by the
   alignment), over a synth (espeak-ng) corpus. ``--signal 0.2`` was set so that the error
   rates land near 25 % (0.3 gives 0 %, 0.1 chance), where the agreement check means something.
   The package needs ``torchaudio`` only for its CPC model loader, which this bench does not
   use; when ``torchaudio`` is missing or does not load against this torch, a stub module is
   put in its place before the import (said so in the output).
2. evaluate. Ours: :func:`speechunits.measure.evaluate.evaluate_units` from phone *segments*
   (it labels the frames itself, timed). Baselines, given *frame labels* (the labelling is
   done beforehand and not timed, as in fairseq where the labels come from files):
   (a) fairseq ``examples/hubert/measure_teacher_quality.py``'s approach: a ``Counter`` over
   ``zip(refs, hyps)`` per utterance (labels as strings, as read from its text files), a dense
   joint-probability table from it, purities and MI / H(ref) with natural logs and its
   ``+1e-8`` inside the log; (b) the same with vectorised numpy (integer ids, one
   ``np.add.at`` into the contingency table); (c) ``sklearn.metrics.mutual_info_score`` on
   the concatenated label arrays (MI only). PNMI of every method is printed and must agree.

Headline command (about 5-10 minutes on 2 idle cores, most of it Libri-Light's ABX; the synth
corpus is written once and cached)::

    python bench/metrics.py

Quick check (a minute or two)::

    python bench/metrics.py --minutes 1 --eval-frames 100000
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import math
import sys
import tempfile
import time
import types
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from speechunits.corpus import SPEAKERS_FILE, read_speakers
from speechunits.measure import abx, abx_items
from speechunits.measure.alignments import Segment, load_alignments
from speechunits.measure.evaluate import evaluate_units
from speechunits.units.units import Units

FRAME_RATE = 50.0
HOP = 320
RECEPTIVE_FIELD = 400
#: Frame i is centred at (i + 0.5) / FRAME_RATE for both ABX implementations (Libri-Light's convention).
ABX_FRAME_OFFSET_S = 0.5 / FRAME_RATE
#: evaluate's frame centres: HuBERT's receptive field / 2 (what a HuBERT unit store records).
EVAL_FRAME_OFFSET_S = RECEPTIVE_FIELD / (2 * 16000)


# ------------------------------------------------------------------------------------------ ABX

def import_libri_light_abx() -> tuple[types.ModuleType, str]:
    """``zrc_abx2.eval_ABX`` and a note on how it was imported."""
    note = ""
    try:
        importlib.import_module("torchaudio")  # only zrc_abx2's CPC model loader needs it
    except ModuleNotFoundError:
        note = "torchaudio is not installed: a stub stands in (only zrc_abx2's CPC model loader uses it)"
    except (OSError, ImportError) as err:
        note = f"torchaudio does not load here ({str(err).splitlines()[0][:80]}): a stub stands in"
    if note:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        return importlib.import_module("zrc_abx2.eval_ABX"), note
    except ModuleNotFoundError as err:
        raise SystemExit(f"bench/metrics.py: Libri-Light's ABX is not installed ({err}); "
                         "make bench-deps (installs zerospeech-libriabx2 without its torchaudio requirement)") from None


def phone_structured_features(root: Path, alignments, speakers: dict[str, str], dim: int, signal: float,
                              seed: int = 0) -> dict[str, np.ndarray]:
    """Per utterance ``[T, dim]`` float32: signal x phone direction + 0.3 x speaker direction + N(0, 1)."""
    rng = np.random.default_rng(seed)
    phones = sorted({s.label for segs in alignments.values() for s in segs})
    phone_dir = {p: rng.standard_normal(dim).astype(np.float32) for p in phones}
    speaker_dir = {s: rng.standard_normal(dim).astype(np.float32) for s in sorted(set(speakers.values()))}
    feats = {}
    for line in (root / "manifest.tsv").read_text().splitlines()[1:]:
        rel, num = line.split("\t")
        utt = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        frames = (int(num) - RECEPTIVE_FIELD) // HOP + 1
        x = rng.standard_normal((frames, dim)).astype(np.float32)
        x += 0.3 * speaker_dir.get(speakers.get(utt, ""), np.zeros(dim, np.float32))
        centres = ABX_FRAME_OFFSET_S + np.arange(frames) / FRAME_RATE
        for seg in alignments.get(utt, []):
            x[(centres >= seg.start) & (centres < seg.end)] += signal * phone_dir[seg.label]
        feats[utt] = x
    return feats


def bench_abx(minutes: float, dim: int, signal: float, workdir: Path, repeats: int) -> None:
    from speechunits.synth.testing import small_corpus

    eval_abx, import_note = import_libri_light_abx()
    root = small_corpus(workdir, minutes=minutes, speakers=4)
    alignments = load_alignments(root)
    speakers = read_speakers(root / SPEAKERS_FILE)
    feats = phone_structured_features(root, alignments, speakers, dim, signal)
    feat_dir = workdir / "abx_features"
    feat_dir.mkdir(parents=True, exist_ok=True)
    for utt, x in feats.items():
        np.save(feat_dir / f"{utt}.npy", x)
    item_file = workdir / "abx.item"
    abx_items.write_items(item_file, abx_items.build_items(alignments, speakers))
    audio_s = sum(f.shape[0] for f in feats.values()) / FRAME_RATE

    def ours():
        items = abx_items.read_items(item_file)
        frames = ((p.stem, np.load(p)) for p in sorted(feat_dir.glob("*.npy")))
        return abx.compute_abx(items, frames, FRAME_RATE, ABX_FRAME_OFFSET_S, distance="angular",
                               max_size_group=10, max_x_across=5)

    def libri_light():
        args = eval_abx.EvalArgs(path_data=str(feat_dir), path_item_file=str(item_file), file_extension=".npy",
                                 feature_size=1 / FRAME_RATE, cuda=False, speaker_mode="all",
                                 context_mode="within", distance_mode="cosine", max_size_group=10,
                                 max_x_across=5)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecated torch.sparse calls, its dataset-name guess
            results = eval_abx.EvalABX().eval_abx(args)
        return {r["abx-s-condition"]: r["score"] for r in results}

    ours_times, ll_times = [], []
    for r in range(repeats):  # alternate, keep the best of each: the machine's load changes
        for fn, store in ((ours, ours_times), (libri_light, ll_times)) if r % 2 == 0 else \
                ((libri_light, ll_times), (ours, ours_times)):
            t0 = time.perf_counter()
            result = fn()
            store.append(time.perf_counter() - t0)
            if fn is ours:
                ours_result = result
            else:
                ll_scores = result
    t_ours, t_ll = min(ours_times), min(ll_times)
    print(f"ABX  {audio_s / 60:.1f} min of audio, {dim}-d phone-structured synthetic features (signal {signal}), "
          f"{ours_result.num_items} items, {ours_result.num_pairs} DTW pairs (ours), "
          f"{ours_result.num_within_cells}+{ours_result.num_across_cells} cells (ours); best of {repeats} runs each, "
          "reading the same .item and .npy files")
    if import_note:
        print(f"     note: {import_note}")
    print(f"     {'':44s} {'seconds':>8s} {'within':>8s} {'across':>8s}")
    print(f"     {'Libri-Light ABX (zrc_abx2, Cython DTW)':44s} {t_ll:8.2f} {100 * ll_scores['within']:7.2f}% "
          f"{100 * ll_scores['across']:7.2f}%")
    print(f"     {'speechunits compute_abx (batched DTW)':44s} {t_ours:8.2f} {100 * ours_result.abx_within:7.2f}% "
          f"{100 * ours_result.abx_across:7.2f}%")
    # Diagnostic (untimed): ours on the items cut to the frames Libri-Light takes (its end index
    # floor(r*offset - 0.5)); what remains between the two is then only group/X-speaker sampling.
    rate = FRAME_RATE
    cut = [dataclasses.replace(it, offset=(math.floor(rate * it.offset - 0.5) + 0.5) / rate - 1e-4)
           for it in abx_items.read_items(item_file)]
    cut = [it for it in cut if it.offset > it.onset]
    cut_result = abx.compute_abx(cut, feats.items(), rate, ABX_FRAME_OFFSET_S, distance="angular",
                                 max_size_group=10, max_x_across=5)
    print(f"     {'  ours on items cut to Libri-Light frames':44s} {'-':>8s} {100 * cut_result.abx_within:7.2f}% "
          f"{100 * cut_result.abx_across:7.2f}%")
    print(f"     ours faster by {t_ll / t_ours:.2f}x; score differences (ours - Libri-Light): within "
          f"{100 * (ours_result.abx_within - ll_scores['within']):+.2f} points, across "
          f"{100 * (ours_result.abx_across - ll_scores['across']):+.2f} points; on cut items: within "
          f"{100 * (cut_result.abx_within - ll_scores['within']):+.4f}, across "
          f"{100 * (cut_result.abx_across - ll_scores['across']):+.4f} points")


# ------------------------------------------------------------------------------------- evaluate

def synthetic_eval_data(num_frames: int, utt_frames: int, num_phones: int, k: int, seed: int = 0):
    """Units correlated with phones (so PNMI is neither 0 nor 1) and contiguous phone segments."""
    rng = np.random.default_rng(seed)
    rows, alignments = [], {}
    phone_unit = rng.integers(0, k, size=num_phones)
    for u in range(num_frames // utt_frames):
        durs = rng.integers(2, 9, size=utt_frames // 2)
        bounds = np.concatenate(([0], np.cumsum(durs)))
        bounds = bounds[bounds <= utt_frames] / FRAME_RATE
        labels = rng.integers(0, num_phones, size=bounds.size - 1)
        alignments[f"u{u}"] = [Segment(float(s), float(e), f"p{lab}")
                               for s, e, lab in zip(bounds[:-1], bounds[1:], labels)]
        ids = rng.integers(0, k, size=utt_frames)
        centres = EVAL_FRAME_OFFSET_S + np.arange(utt_frames) / FRAME_RATE
        seg = np.searchsorted(bounds, centres, side="right") - 1
        inside = (seg >= 0) & (seg < labels.size)
        keep = inside & (rng.random(utt_frames) < 0.5)  # half the frames carry their phone's unit
        ids[keep] = phone_unit[labels[seg[keep]]]
        rows.append((f"u{u}", Units(ids, FRAME_RATE, k)))
    return rows, alignments


def frame_labels_given(rows, alignments) -> tuple[dict[str, list[str]], dict[str, list[str]],
                                                   list[np.ndarray], list[np.ndarray], list[str]]:
    """What fairseq's script reads from its files: per utterance, the phone of every labelled frame
    (strings) and the unit of the same frames (strings); plus the same as integer arrays."""
    refs, hyps, ref_ids, hyp_ids = {}, {}, [], []
    phones = sorted({s.label for segs in alignments.values() for s in segs})
    phone_id = {p: i for i, p in enumerate(phones)}
    for utt, units in rows:
        segs = alignments[utt]
        starts = np.array([s.start for s in segs])
        ends = np.array([s.end for s in segs])
        seg_phone = np.array([phone_id[s.label] for s in segs])
        centres = EVAL_FRAME_OFFSET_S + np.arange(len(units.ids)) / FRAME_RATE
        idx = np.searchsorted(starts, centres, side="right") - 1
        ok = (idx >= 0) & (centres < ends[np.clip(idx, 0, None)])
        r = seg_phone[idx[ok]]
        h = np.asarray(units.ids)[ok]
        refs[utt] = [phones[i] for i in r.tolist()]
        hyps[utt] = [str(v) for v in h.tolist()]
        ref_ids.append(r)
        hyp_ids.append(h)
    return refs, hyps, ref_ids, hyp_ids, phones


def pnmi_from_table(table: np.ndarray) -> tuple[float, float, float]:
    """(PNMI = MI / H(ref), phone purity, cluster purity) of a [refs, hyps] count table, written
    the way measure_teacher_quality.py computes them (natural log, +1e-8 inside the log)."""
    p = table / table.sum()
    p_ref = p.sum(1, keepdims=True)
    p_hyp = p.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = float(np.nansum(p * np.log(p / (p_ref @ p_hyp) + 1e-8)))
    h_ref = float(-(p_ref * np.log(p_ref + 1e-8)).sum())
    # phone ("ref") purity: per unit the majority phone's share; cluster ("hyp") purity: the reverse
    return mi / h_ref, float(p.max(0).sum()), float(p.max(1).sum())


def fairseq_counter_pnmi(refs: dict[str, list[str]], hyps: dict[str, list[str]]) -> tuple[float, float, float]:
    """(a) fairseq's approach: Counter over zipped (ref, hyp) pairs, then a dense table."""
    counts: Counter = Counter()
    for utt, ref in refs.items():
        hyp = hyps[utt]
        n = min(len(ref), len(hyp))
        counts.update(zip(ref[:n], hyp[:n]))
    ref_index = {r: i for i, r in enumerate(sorted({r for r, _ in counts}))}
    hyp_index = {h: i for i, h in enumerate(sorted({h for _, h in counts}))}
    table = np.zeros((len(ref_index), len(hyp_index)))
    for (r, h), c in counts.items():
        table[ref_index[r], hyp_index[h]] = c
    return pnmi_from_table(table)


def numpy_pnmi(ref_ids: list[np.ndarray], hyp_ids: list[np.ndarray], num_phones: int,
               k: int) -> tuple[float, float, float]:
    """(b) the same, vectorised: one np.add.at into a [phones, K] table."""
    r, h = np.concatenate(ref_ids), np.concatenate(hyp_ids)
    table = np.zeros((num_phones, k))
    np.add.at(table, (r, h), 1)
    table = table[:, table.sum(0) > 0]
    return pnmi_from_table(table[table.sum(1) > 0])


def bench_evaluate(num_frames: int, repeats: int) -> None:
    from sklearn.metrics import mutual_info_score

    k, num_phones = 500, 40
    rows, alignments = synthetic_eval_data(num_frames, 250, num_phones, k)
    refs, hyps, ref_ids, hyp_ids, phones = frame_labels_given(rows, alignments)
    r_all, h_all = np.concatenate(ref_ids), np.concatenate(hyp_ids)

    def timed(fn):
        best, out = math.inf, None
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return best, out

    t_ours, report = timed(lambda: evaluate_units(rows, alignments, frame_rate=FRAME_RATE,
                                                  frame_offset_s=EVAL_FRAME_OFFSET_S, vocab_size=k))
    t_fs, fs = timed(lambda: fairseq_counter_pnmi(refs, hyps))
    t_np, npv = timed(lambda: numpy_pnmi(ref_ids, hyp_ids, len(phones), k))
    t_sk, sk_mi = timed(lambda: mutual_info_score(r_all, h_all))
    h_ref = float(-sum(c / r_all.size * math.log(c / r_all.size) for c in np.bincount(r_all) if c))
    sk_pnmi = sk_mi / h_ref
    frames = report.labelled_frames
    print(f"\nevaluate  {report.frames} frames ({frames} labelled), K={k}, {report.num_phones} phones; "
          f"best of {repeats}; baselines are given frame labels (labelling untimed), ours labels from segments")
    print(f"     {'':62s} {'seconds':>8s} {'M frames/s':>10s} {'PNMI':>10s} {'ours faster by':>15s}")
    print(f"     {'speechunits evaluate_units (all metrics, from segments)':62s} {t_ours:8.3f} "
          f"{frames / t_ours / 1e6:10.2f} {report.pnmi:10.6f} {'-':>15s}")
    for name, secs, pnmi in (("fairseq measure_teacher_quality approach (Counter, strings)", t_fs, fs[0]),
                             ("same, vectorised numpy (np.add.at table)", t_np, npv[0]),
                             ("sklearn mutual_info_score / H(phone) (MI only)", t_sk, sk_pnmi)):
        print(f"     {name:62s} {secs:8.3f} {frames / secs / 1e6:10.2f} {pnmi:10.6f} {secs / t_ours:14.2f}x")
    worst = max(abs(report.pnmi - v) for v in (fs[0], npv[0], sk_pnmi))
    print(f"     PNMI agreement: max |ours - baseline| = {worst:.1e}; phone purity ours {report.phone_purity:.6f} "
          f"vs fairseq-style {fs[1]:.6f}; cluster purity ours {report.cluster_purity:.6f} vs {fs[2]:.6f}")
    # End to end from a Parquet unit store (reading included), as `speechunits evaluate` runs.
    from speechunits.measure.evaluate import evaluate_store
    from speechunits.units.store import write_units

    with tempfile.TemporaryDirectory() as tmp:
        meta = {"k": k, "frame_rate": FRAME_RATE, "frame_offset_s": EVAL_FRAME_OFFSET_S, "sha256": "0" * 64}
        write_units(Path(tmp) / "store", rows, meta)
        t_store, _ = timed(lambda: evaluate_store(Path(tmp) / "store", alignments))
    print(f"     ours from a Parquet unit store (reading included): {t_store:.3f} s, "
          f"{frames / t_store / 1e6:.2f} M labelled frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="synth corpus for ABX")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--signal", type=float, default=0.2,
                        help="phone direction weight of the ABX features (0.2: error rates near 25 %%, far from 0 and 50 %%)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-frames", type=int, default=2_000_000)
    parser.add_argument("--workdir", default=None, help="where the synth corpus and features go (default: temp)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; our ABX itself runs its distances on one thread)")
    parser.add_argument("--skip-abx", action="store_true")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    if not args.skip_abx:
        with tempfile.TemporaryDirectory() as tmp:
            bench_abx(args.minutes, args.dim, args.signal, Path(args.workdir or tmp), args.repeats)
    bench_evaluate(args.eval_frames, args.repeats)


if __name__ == "__main__":
    main()

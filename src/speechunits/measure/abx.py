"""ABX phone discriminability (Libri-Light / ZeroSpeech protocol) of triphone items.

Items (:mod:`speechunits.measure.abx_items`) are triphone occurrences with a centre phone,
its context (prev, next) and the speaker. A triplet (A, B, X) has A, B
and X in the same context, A and X with the same centre phone, B with another one; the
error is ``[d(A, X) > d(B, X)] + 0.5 [d(A, X) = d(B, X)]``.

* within speaker: A, B and X from one speaker (X != A);
* across speakers: A and B from one speaker, X from another (at most ``max_x_across``
  X speakers, sampled per (context, speaker, phone)).

Errors are averaged per cell (context, speaker(s), phone a, phone b), then over contexts
(and X speakers), then over speakers, then over phone pairs — Libri-Light's reduction.
Groups (context, speaker, phone) larger than ``max_size_group`` are subsampled once,
deterministically for a seed.

d is the DTW-aligned average frame distance (:func:`speechunits.measure.dtw.dtw_batch`);
the frame distance is the angle
``arccos(cos) / pi`` for dense features and ``[u != v]`` (0/1) for units. A frame belongs
to an item when its centre time ``frame_offset_s + i / frame_rate`` lies in
``[onset, offset)``. :mod:`speechunits.measure.frame_source` opens the frames of a
features directory or a unit store.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.measure.abx_items import AbxItem
from speechunits.measure.dtw import Distance, dtw_batch

log = logging.getLogger(__name__)

DEFAULT_MAX_SIZE_GROUP = 10
DEFAULT_MAX_X_ACROSS = 5
#: Elements of one batched DTW cost tensor ``[pairs, N, M]`` (bounds memory).
DTW_BATCH_ELEMENTS = 1 << 23
#: Entries of the per-group-pair frame distance matrices held at once (bounds memory).
GRAM_BUDGET_ELEMENTS = 1 << 25
#: torch threads while computing ABX distances (restored afterwards): the DTW's many small
#: elementwise ops gain nothing from intra-op threads, and on a busy shared machine the thread
#: hand-offs made the whole computation 5x slower (measured: 4 s with 1 thread, 23 s with 2).
ABX_TORCH_THREADS = 1
#: Tolerance (s) when comparing frame centres with item boundaries (float rounding).
TIME_EPS = 1e-6


@dataclass(frozen=True)
class AbxResult:
    """ABX error rates (fractions in [0, 1]; None when no triplet of that kind exists)."""

    abx_within: float | None
    abx_across: float | None
    num_items: int
    num_items_used: int
    num_items_empty: int
    num_items_missing_utterance: int
    num_within_cells: int
    num_across_cells: int
    num_pairs: int
    distance: str
    missing_utterances: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------- frame tables


@dataclass
class _ItemFrames:
    """Concatenated frames of the utterances that hold items, and each item's frame span."""

    data: torch.Tensor  # [F, D] unit-norm float32 (angular) or [F] int64 (hamming)
    start: np.ndarray  # [I] int64 into data
    size: np.ndarray  # [I] int64 frames (0 = empty item)
    found: np.ndarray  # [I] bool: the item's utterance has frames
    usable: np.ndarray  # [I] bool: found and item non-empty
    missing: list[str]
    num_missing_items: int


def _slice_items(items: Sequence[AbxItem], frames: Iterable[tuple[str, np.ndarray]], frame_rate: float,
                 frame_offset_s: float, distance: Distance) -> _ItemFrames:
    by_utt: dict[str, list[int]] = defaultdict(list)
    for idx, it in enumerate(items):
        by_utt[it.utt_id].append(idx)
    start = np.zeros(len(items), dtype=np.int64)
    size = np.zeros(len(items), dtype=np.int64)
    found = np.zeros(len(items), dtype=bool)
    chunks: list[np.ndarray] = []
    total = 0
    for utt_id, arr in frames:
        idxs = by_utt.get(utt_id)
        if not idxs:
            continue
        arr = np.asarray(arr)
        if distance == "angular" and arr.ndim != 2:
            raise SpeechUnitsError(f"{utt_id}: angular ABX needs features [frames, dim], got shape {arr.shape}")
        if distance == "hamming" and arr.ndim != 1:
            raise SpeechUnitsError(f"{utt_id}: unit ABX needs ids [frames], got shape {arr.shape}")
        num = arr.shape[0]
        onsets = np.array([items[i].onset for i in idxs])
        offsets = np.array([items[i].offset for i in idxs])
        lo = np.clip(np.ceil((onsets - frame_offset_s) * frame_rate - TIME_EPS), 0, num).astype(np.int64)
        hi = np.clip(np.ceil((offsets - frame_offset_s) * frame_rate - TIME_EPS), 0, num).astype(np.int64)
        hi = np.maximum(hi, lo)
        # Keep only frames inside some item (drops silences; memory-mapped inputs stay on disk).
        delta = np.zeros(num + 1, dtype=np.int64)
        np.add.at(delta, lo, 1)
        np.add.at(delta, hi, -1)
        covered = np.cumsum(delta[:-1]) > 0
        new_index = np.cumsum(covered) - 1
        start[idxs] = total + np.where(hi > lo, new_index[np.minimum(lo, num - 1)] if num else 0, 0)
        size[idxs] = hi - lo
        found[idxs] = True
        kept = np.asarray(arr[covered], dtype=np.float32 if distance == "angular" else np.int64)
        chunks.append(kept)
        total += kept.shape[0]
        by_utt.pop(utt_id)
    missing = sorted(by_utt)
    if chunks:
        data = torch.from_numpy(np.concatenate(chunks))
    else:
        data = torch.zeros((0, 1) if distance == "angular" else (0,), dtype=torch.float32 if distance == "angular" else torch.int64)
    if distance == "angular" and data.numel():
        data = data / data.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return _ItemFrames(data, start, size, found, found & (size > 0), missing, int(sum(len(v) for v in by_utt.values())))


# ------------------------------------------------------------------------------------ distances


def _pair_distances(frames: _ItemFrames, left: np.ndarray, right: np.ndarray, group: np.ndarray,
                    distance: Distance) -> np.ndarray:
    """DTW distances of item pairs ``(left[q], right[q])``.

    Items are grouped (ABX uses one group per (context, speaker)); frame distances come from
    one matrix product per pair of groups that some item pair needs (big matmuls, only the
    blocks needed), processed in chunks of at most ``GRAM_BUDGET_ELEMENTS`` matrix entries;
    each chunk's pairs run through :func:`dtw_batch` in length-sorted batches.
    """
    out = np.empty(left.size, dtype=np.float64)
    if left.size == 0:
        return out
    # Orient every pair so that its left group id is the smaller one.
    swap = group[left] > group[right]
    left, right = np.where(swap, right, left), np.where(swap, left, right)
    # Members of each group (items in some pair) and their first-frame row inside the group.
    members = np.unique(np.concatenate((left, right)))
    members = members[np.lexsort((members, group[members]))]
    sizes = frames.size[members]
    group_of = group[members]
    firsts = np.flatnonzero(np.r_[True, group_of[1:] != group_of[:-1]])
    group_frames = np.add.reduceat(sizes, firsts)  # [G'] frames per group
    cum = np.cumsum(sizes) - sizes
    row = np.zeros(frames.size.size, dtype=np.int64)
    row[members] = cum - np.repeat(cum[firsts], np.diff(np.r_[firsts, members.size]))
    width_of_group = np.zeros(int(group.max()) + 1, dtype=np.int64)
    width_of_group[group_of[firsts]] = group_frames
    member_slices = {int(group_of[f]): members[f:e] for f, e in zip(firsts, np.r_[firsts[1:], members.size])}

    num_groups = int(group.max()) + 1
    block = group[left] * num_groups + group[right]
    order = np.argsort(block, kind="stable")
    blocks, first = np.unique(block[order], return_index=True)
    cost = width_of_group[blocks // num_groups] * width_of_group[blocks % num_groups]
    start = 0
    while start < blocks.size:
        stop = start + max(1, int(np.searchsorted(np.cumsum(cost[start:]), GRAM_BUDGET_ELEMENTS, side="right")))
        stop = min(stop, blocks.size)
        chunk = order[first[start]:(first[stop] if stop < blocks.size else order.size)]
        buffer, base = _block_distances(frames, blocks[start:stop], num_groups, member_slices, distance)
        pair_base = base[np.searchsorted(blocks[start:stop], block[chunk])]
        out[chunk] = _dtw_pairs(frames.size, buffer, pair_base, width_of_group[group[right[chunk]]], row,
                                left[chunk], right[chunk])
        start = stop
    return out


def _block_distances(frames: _ItemFrames, blocks: np.ndarray, num_groups: int,
                     member_slices: dict[int, np.ndarray], distance: Distance) -> tuple[torch.Tensor, np.ndarray]:
    """Frame distance matrices ``[f_g1, f_g2]`` of group pairs ``blocks`` (``g1 * num_groups + g2``), flattened.

    Returns:
        The flat buffer and each block's offset in it.
    """
    cache: dict[int, torch.Tensor] = {}

    def group_frames(g: int) -> torch.Tensor:
        if g not in cache:
            items = member_slices[g]
            sizes = frames.size[items]
            rows = np.cumsum(sizes) - sizes
            idx = np.repeat(frames.start[items] - rows, sizes) + np.arange(int(sizes.sum()))
            cache[g] = frames.data[torch.from_numpy(idx)]
        return cache[g]

    pieces: list[torch.Tensor] = []
    base = np.zeros(blocks.size, dtype=np.int64)
    offset = 0
    for k, code in enumerate(blocks.tolist()):
        x, y = group_frames(code // num_groups), group_frames(code % num_groups)
        if distance == "angular":
            mat = (x @ y.T).clamp_(-1.0, 1.0).acos_().div_(math.pi)
        else:
            mat = (x[:, None] != y[None, :]).float()
        pieces.append(mat.reshape(-1))
        base[k] = offset
        offset += mat.numel()
    return torch.cat(pieces), base


def _dtw_pairs(size: np.ndarray, buffer: torch.Tensor, pair_base: np.ndarray, pair_width: np.ndarray,
               row: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """DTW of pairs whose frame distances lie in ``buffer``: frame (r, c) of pair q is at
    ``pair_base[q] + (row[left[q]] + r) * pair_width[q] + row[right[q]] + c``."""
    out = np.empty(left.size, dtype=np.float64)
    n_all, m_all = size[left], size[right]
    order = np.lexsort((m_all, n_all))
    pos = 0
    while pos < order.size:
        # Largest batch whose padded [P, N, M] fits the budget (n grows along `order`).
        window = order[pos:pos + DTW_BATCH_ELEMENTS]
        m_run = np.maximum.accumulate(m_all[window])
        elements = np.arange(1, window.size + 1) * (n_all[window] + 1) * (m_run + 1)
        hi = pos + max(1, int(np.searchsorted(elements, DTW_BATCH_ELEMENTS, side="right")))
        sel = order[pos:hi]
        n, m = n_all[sel], m_all[sel]
        big_n, big_m = int(n.max()), int(m.max())
        r = np.minimum(np.arange(big_n)[None, :], (n - 1)[:, None])  # [P, N] (padding repeats the last frame)
        c = np.minimum(np.arange(big_m)[None, :], (m - 1)[:, None])  # [P, M]
        flat = (pair_base[sel][:, None, None] + (row[left[sel]][:, None] + r)[:, :, None] * pair_width[sel][:, None, None]
                + (row[right[sel]][:, None] + c)[:, None, :])
        dist = buffer[torch.from_numpy(flat)]
        out[sel] = dtw_batch(dist, torch.from_numpy(n), torch.from_numpy(m)).double().numpy()
        pos = hi
    return out


# ----------------------------------------------------------------------------------------- ABX


@dataclass
class _Cell:
    key: tuple  # (speaker, a, b, context[, x speaker])
    x: np.ndarray
    a: np.ndarray  # A items (the X group itself for within-speaker cells)
    b: np.ndarray
    within: bool


Context = tuple[str, str]  # (prev, next)


def _groups(items: Sequence[AbxItem], usable: np.ndarray, max_size_group: int,
            rng: np.random.Generator) -> dict[tuple[Context, str, str], np.ndarray]:
    """(context, speaker, phone) -> item indices (subsampled to ``max_size_group``)."""
    groups: dict[tuple[Context, str, str], list[int]] = defaultdict(list)
    for idx, it in enumerate(items):
        if usable[idx]:
            groups[((it.prev, it.next), it.speaker, it.phone)].append(idx)
    out = {}
    for key in sorted(groups):
        idxs = np.asarray(groups[key], dtype=np.int64)
        if idxs.size > max_size_group:
            idxs = np.sort(rng.choice(idxs, size=max_size_group, replace=False))
        out[key] = idxs
    return out


def _cells(groups: dict[tuple[Context, str, str], np.ndarray], max_x_across: int, rng: np.random.Generator,
           within: bool, across: bool) -> list[_Cell]:
    """Triplet cells: within (X and A from one group) and across (X from another speaker's group)."""
    by_cs: dict[tuple[Context, str], list[str]] = defaultdict(list)
    speakers_of: dict[tuple[Context, str], list[str]] = defaultdict(list)
    for context, speaker, phone in groups:
        by_cs[(context, speaker)].append(phone)
        speakers_of[(context, phone)].append(speaker)
    cells = []
    for (context, speaker), phones in by_cs.items():
        if len(phones) < 2:
            continue
        for pa in phones:
            ga = groups[(context, speaker, pa)]
            x_speakers: list[str] = []
            if across:
                others = [s for s in speakers_of[(context, pa)] if s != speaker]
                if len(others) > max_x_across:
                    others = [others[i] for i in sorted(rng.choice(len(others), size=max_x_across, replace=False))]
                x_speakers = others
            for pb in phones:
                if pb == pa:
                    continue
                gb = groups[(context, speaker, pb)]
                if within and ga.size > 1:
                    cells.append(_Cell((speaker, pa, pb, context), ga, ga, gb, True))
                for sx in x_speakers:
                    cells.append(_Cell((speaker, pa, pb, context, sx), groups[(context, sx, pa)], ga, gb, False))
    return cells


def _reduce(cell_scores: list[tuple[tuple, float]]) -> float | None:
    """Libri-Light's reduction: mean over contexts (and X speakers), then speakers, then phone pairs."""
    if not cell_scores:
        return None
    per_sab: dict[tuple, list[float]] = defaultdict(list)
    for key, score in cell_scores:
        per_sab[key[:3]].append(score)
    per_ab: dict[tuple, list[float]] = defaultdict(list)
    for (speaker, pa, pb), scores in per_sab.items():
        per_ab[(pa, pb)].append(float(np.mean(scores)))
    return float(np.mean([np.mean(v) for v in per_ab.values()]))


def compute_abx(items: Sequence[AbxItem], frames: Iterable[tuple[str, np.ndarray]], frame_rate: float,
                frame_offset_s: float, *, distance: Distance = "angular", max_size_group: int = DEFAULT_MAX_SIZE_GROUP,
                max_x_across: int = DEFAULT_MAX_X_ACROSS, seed: int = 0, modes: Sequence[str] = ("within", "across"),
                ) -> AbxResult:
    """ABX error rates of ``items`` on per-utterance frames.

    Args:
        items: triphone items (from :func:`build_items` or :func:`read_items`).
        frames: ``(utt_id, array)`` pairs: float features ``[T, D]`` (``distance="angular"``)
            or unit ids ``[T]`` (``distance="hamming"``); utterances without items are skipped.
        frame_rate, frame_offset_s: frame i is centred at ``frame_offset_s + i / frame_rate``.
        max_size_group: items kept per (context, speaker, phone) group (subsampled with ``seed``).
        max_x_across: X speakers sampled per (context, speaker, phone) for the across score.
    """
    if distance not in ("angular", "hamming"):
        raise SpeechUnitsError(f"ABX distance must be 'angular' or 'hamming', got {distance!r}")
    if frame_rate <= 0:
        raise SpeechUnitsError(f"frame_rate must be > 0, got {frame_rate}")
    if max_size_group < 2 or max_x_across < 1:
        raise SpeechUnitsError("max_size_group must be >= 2 and max_x_across >= 1")
    bad_modes = set(modes) - {"within", "across"}
    if bad_modes:
        raise SpeechUnitsError(f"ABX modes must be 'within'/'across', got {sorted(bad_modes)}")
    if not items:
        raise SpeechUnitsError("ABX: no items (alignments with fewer than three non-silence phones in a row?)")
    table = _slice_items(items, frames, frame_rate, frame_offset_s, distance)
    if table.missing:
        log.warning("ABX: %d utterance(s) with items have no frames (e.g. %s); their %d items are skipped",
                    len(table.missing), table.missing[0], table.num_missing_items)
    if not table.usable.any():
        raise SpeechUnitsError("ABX: no item has frames: the features/units and the items share no utterance "
                               "(or every item lies outside its utterance)")
    rng = np.random.default_rng(seed)
    groups = _groups(items, table.usable, max_size_group, rng)
    cells = _cells(groups, max_x_across, rng, "within" in modes, "across" in modes)

    # All item pairs needed, as unique (lo, hi) codes; each cell keeps its [X, A] and [X, B] codes.
    num = len(items)
    codes = [np.minimum(c.x[:, None], arr[None, :]) * num + np.maximum(c.x[:, None], arr[None, :])
             for c in cells for arr in (c.a, c.b)]
    flat_codes = np.concatenate([c.reshape(-1) for c in codes]) if codes else np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(flat_codes, return_inverse=True)
    keep = uniq // num != uniq % num  # self-pairs (X == A) are never scored
    group_names: dict[tuple[str, str, str], int] = {}
    group = np.array([group_names.setdefault((it.prev, it.next, it.speaker), len(group_names)) for it in items],
                     dtype=np.int64)
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, ABX_TORCH_THREADS))
    try:
        dists = np.full(uniq.size, np.nan)
        dists[keep] = _pair_distances(table, uniq[keep] // num, uniq[keep] % num, group, distance)
    finally:
        torch.set_num_threads(before)
    flat_dists = dists[inverse]

    within_scores: list[tuple[tuple, float]] = []
    across_scores: list[tuple[tuple, float]] = []
    pos = 0
    for k, cell in enumerate(cells):
        shape_a, shape_b = codes[2 * k].shape, codes[2 * k + 1].shape
        dxa = flat_dists[pos:pos + codes[2 * k].size].reshape(shape_a)  # [X, A]
        pos += codes[2 * k].size
        dxb = flat_dists[pos:pos + codes[2 * k + 1].size].reshape(shape_b)  # [X, B]
        pos += codes[2 * k + 1].size
        err = (dxa[:, :, None] > dxb[:, None, :]) + 0.5 * (dxa[:, :, None] == dxb[:, None, :])
        if cell.within:
            # X != A: drop the diagonal (its distance is NaN and never compares true anyway).
            total = err.sum() - err[np.arange(cell.x.size), np.arange(cell.x.size)].sum()
            within_scores.append((cell.key, float(total) / (cell.x.size * (cell.x.size - 1) * cell.b.size)))
        else:
            across_scores.append((cell.key, float(err.sum()) / err.size))
    return AbxResult(
        abx_within=_reduce(within_scores),
        abx_across=_reduce(across_scores),
        num_items=len(items),
        num_items_used=int(table.usable.sum()),
        num_items_empty=int((table.found & (table.size == 0)).sum()),
        num_items_missing_utterance=table.num_missing_items,
        num_within_cells=len(within_scores),
        num_across_cells=len(across_scores),
        num_pairs=int(keep.sum()),
        distance=distance,
        missing_utterances=table.missing,
    )

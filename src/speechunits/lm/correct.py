"""Unit correction by a masked unit LM: iterative mask-and-repredict of improbable units.

Per utterance and iteration:

1. every position's probability of its own unit given the rest, ``p(x_i | x without x_i)``:
   positions are masked in ``stride`` interleaved groups (group r = positions ``i % stride == r``;
   ``stride`` 1 is the exact one-at-a-time estimate), one batched forward per group;
2. positions with ``p < threshold`` are candidates, lowest first, until ``max_fraction`` of the
   utterance's positions have been changed (over all iterations);
3. those positions are masked together and each replaced by the LM's most probable unit.

It stops after ``iterations`` or when nothing changes. The LM's tokenisation decides what a
position is: a frame (``units``) or a run of equal units (``dedup``: a replaced run keeps its
duration, and runs that become equal are merged). BPE LMs are refused (a token is several
units). The output store has the input's codebook identity and dedup setting.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.lm.data import with_specials
from speechunits.lm.model_dir import UnitLM
from speechunits.lm.vocab import MASK_ID, NUM_SPECIAL
from speechunits.units.units import Units

log = logging.getLogger(__name__)


@dataclass
class CorrectOptions:
    threshold: float = 0.05
    iterations: int = 3
    max_fraction: float = 0.2
    stride: int = 8

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise SpeechUnitsError(f"--threshold must lie in (0, 1], got {self.threshold}")
        if self.iterations < 1:
            raise SpeechUnitsError(f"--iterations must be >= 1, got {self.iterations}")
        if not 0.0 < self.max_fraction <= 1.0:
            raise SpeechUnitsError(f"--max-fraction must lie in (0, 1], got {self.max_fraction}")
        if self.stride < 1:
            raise SpeechUnitsError(f"--stride must be >= 1, got {self.stride}")


@dataclass
class CorrectReport:
    utterances: int = 0
    positions: int = 0
    changed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed_fraction": self.changed / max(self.positions, 1)}


def _unit_logits(lm: UnitLM, inputs: torch.Tensor) -> torch.Tensor:
    """Logits over units only, ``[R, L, K]`` (specials, words and BPE are excluded)."""
    logits = lm.model(input_ids=inputs.to(lm.device), attention_mask=torch.ones_like(inputs).to(lm.device)).logits
    return logits[..., NUM_SPECIAL:NUM_SPECIAL + lm.vocab.unit_vocab_size].float().cpu()


@torch.inference_mode()
def own_probabilities(lm: UnitLM, units: np.ndarray, stride: int) -> np.ndarray:
    """``p(x_i | rest)`` of every position (masked in ``stride`` groups), float64 ``[N]``."""
    n = units.size
    seq = torch.from_numpy(with_specials(units + NUM_SPECIAL))
    groups = [r for r in range(min(stride, n))]
    inputs = seq.repeat(len(groups), 1)
    positions = np.arange(n)
    for row, r in enumerate(groups):
        inputs[row, 1 + positions[positions % stride == r]] = MASK_ID
    probs = _unit_logits(lm, inputs).softmax(-1)
    out = np.empty(n, dtype=np.float64)
    for row, r in enumerate(groups):
        where = positions[positions % stride == r]
        out[where] = probs[row, 1 + where, units[where]].double().numpy()
    return out


@torch.inference_mode()
def correct_sequence(lm: UnitLM, units: np.ndarray, options: CorrectOptions) -> np.ndarray:
    """The corrected unit sequence (same length; positions as the LM's tokenisation defines them).

    A sequence longer than the LM's training length (``max_tokens - 2`` units between ``<s>`` and
    ``</s>``) is corrected in cores of half that length, left to right, each read with a quarter
    window of context on either side (corrections already made to its left included), so no
    position is predicted from a longer context than the model was trained on.
    """
    units = np.asarray(units, dtype=np.int64).copy()
    n, width = units.size, lm.trained_length - 2
    if n <= width:
        return _correct_window(lm, units, options, 0, n)
    core = max(1, width // 2)
    margin = (width - core) // 2
    for start in range(0, n, core):
        stop = min(n, start + core)
        left, right = max(0, start - margin), min(n, stop + margin)
        units[left:right] = _correct_window(lm, units[left:right], options, start - left, stop - left)
    return units


def _correct_window(lm: UnitLM, units: np.ndarray, options: CorrectOptions, core_start: int,
                    core_stop: int) -> np.ndarray:
    """``units`` with positions ``[core_start, core_stop)`` corrected (the rest is context), iteratively:
    the least probable units under ``options.threshold`` re-predicted, at most ``max_fraction`` of the core."""
    units = units.copy()
    n = units.size
    budget = int(np.floor(options.max_fraction * (core_stop - core_start)))
    changed = np.zeros(n, dtype=bool)
    in_core = np.zeros(n, dtype=bool)
    in_core[core_start:core_stop] = True
    for _ in range(options.iterations):
        if n == 0 or changed.sum() >= budget:
            break
        probs = own_probabilities(lm, units, options.stride)
        order = np.argsort(probs, kind="stable")
        picks = [int(i) for i in order if in_core[i] and probs[i] < options.threshold and not changed[i]]
        picks = picks[:budget - int(changed.sum())]
        if not picks:
            break
        inputs = torch.from_numpy(with_specials(units + NUM_SPECIAL)).unsqueeze(0)
        inputs[0, 1 + np.asarray(picks)] = MASK_ID
        best = _unit_logits(lm, inputs)[0, 1 + np.asarray(picks)].argmax(-1).numpy()
        moved = best != units[picks]
        if not moved.any():
            break
        index = np.asarray(picks)[moved]
        units[index] = best[moved]
        changed[index] = True
    return units


def correct_units(lm: UnitLM, units: Units, options: CorrectOptions) -> tuple[Units, int]:
    """Corrected :class:`Units` (same dedup form as the input) and the positions changed."""
    if lm.vocab.tokenisation == "bpe":
        raise SpeechUnitsError(f"{lm.path}: a BPE LM cannot correct units (a token covers several units); "
                               "train the masked LM with --tokens units or dedup")
    if lm.vocab.frame_level:
        frames = units.expand()
        fixed = correct_sequence(lm, frames.ids, options)
        out = Units(fixed, units.frame_rate, units.vocab_size)
        changed = int((fixed != frames.ids).sum())
        return (out.dedup() if units.is_deduplicated else out), changed
    runs = units.dedup()
    fixed = correct_sequence(lm, runs.ids, options)
    changed = int((fixed != runs.ids).sum())
    merged = Units(np.repeat(fixed, runs.durations), units.frame_rate, units.vocab_size).dedup()
    return (merged if units.is_deduplicated else merged.expand()), changed


def correct_store(lm: UnitLM, store_path: str | Path, out_dir: str | Path, options: CorrectOptions) -> CorrectReport:
    """Correct every utterance of a unit store into a new store (same codebook and dedup setting)."""
    from speechunits.units.store import UnitStore, write_units

    if lm.objective != "masked":
        raise SpeechUnitsError(f"{lm.path}: correction needs a masked LM (`speechunits lm train --objective masked`)")
    store = UnitStore.open(store_path)
    lm.check_store(store)
    if len(store) == 0:
        raise SpeechUnitsError(f"{store_path}: the unit store is empty; nothing to correct")
    report = CorrectReport()
    seconds: dict[str, float] = {}

    def items():
        for utt_id, units, secs in store.iter_rows():
            fixed, changed = correct_units(lm, units, options)
            report.utterances += 1
            report.positions += units.num_frames if lm.vocab.frame_level else units.dedup().ids.size
            report.changed += changed
            seconds[utt_id] = secs
            yield utt_id, fixed

    write_units(out_dir, items(), store.meta["codebook"], dedup=store.dedup, durations_s=seconds)
    return report

"""Log-probabilities of utterances under a unit LM, batched.

Causal LMs: ``log P(x_1..x_n, </s> | <s>) = sum_t log p(x_t | x_<t)``, over the n tokens and the
end token (so an utterance that stops where the LM expects more is penalised); ``tokens`` =
n + 1 positions scored. Masked LMs: the pseudo-log-likelihood (Salazar et al., 2020)
``sum_t log p(x_t | x without x_t)`` with ``<s> ... </s>`` around, each token masked in turn
(n forward rows per utterance, batched); ``tokens`` = n. n-gram LMs: as causal ones, from their
ARPA file. ``normalised`` = ``logprob / tokens``.
All in natural log, fp32 unless ``dtype="bf16"``.

Utterances longer than the LM's training length ``L`` (``max_tokens``, specials included) are scored
in windows of ``L`` tokens that each start with ``<s>``, as the training pieces did: causal LMs slide by
half a window and score in each window only the positions not scored before (each with at least half
a window of context); a masked LM masks each token in the window of ``L - 2`` tokens around it. So
no position is ever predicted from a longer context than the model was trained on, and an utterance
that fits is scored exactly as before.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.lm.data import pad_batch, with_specials
from speechunits.lm.model_dir import UnitLM
from speechunits.lm.vocab import BOS_ID, EOS_ID, MASK_ID

log = logging.getLogger(__name__)

DEFAULT_BATCH_TOKENS = 16384


@dataclass
class UtteranceScore:
    """Score of one utterance: summed log-probability, positions scored, and their mean."""

    id: str
    logprob: float
    tokens: int
    normalised: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(lengths: Sequence[int], budget: int) -> Iterator[list[int]]:
    """Indices in length order, cut so that ``len(batch) * longest <= budget`` (a long one alone)."""
    if budget < 1:
        raise SpeechUnitsError(f"--batch-tokens must be >= 1, got {budget}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1) * max(lengths[i], 1) > budget:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "fp32":
        return contextlib.nullcontext()
    from speechunits.device import resolve_dtype

    return torch.autocast(device.type, dtype=resolve_dtype(dtype))


def causal_windows(sequence: np.ndarray, length: int) -> list[tuple[np.ndarray, int]]:
    """``(input, first scored input position)`` windows of a full sequence ``<s> x_1 .. x_n </s>``.

    One window (the sequence, from position 1) when it fits in ``length``; else windows
    ``<s> + sequence[a : a + length - 1]`` with ``a`` advancing by ``(length - 1) // 2``, each scoring the
    targets after the previous window's last, so every target is scored once.
    """
    if len(sequence) <= length:
        return [(sequence, 1)]
    if length < 3:
        raise SpeechUnitsError(f"a training length of {length} tokens leaves no room to score in windows")
    stride = (length - 1) // 2
    windows: list[tuple[np.ndarray, int]] = []
    start = scored_end = 1  # sequence index after the window's <s>; targets before scored_end are done
    while scored_end < len(sequence):
        stop = min(start + length - 1, len(sequence))
        windows.append((np.concatenate(([BOS_ID], sequence[start:stop])).astype(np.int64), scored_end - start + 1))
        scored_end, start = stop, start + stride
    return windows


@torch.inference_mode()
def causal_logprobs(model: Any, sequences: Sequence[np.ndarray], device: torch.device, *,
                    batch_tokens: int = DEFAULT_BATCH_TOKENS, dtype: str = "fp32",
                    length: int | None = None) -> list[tuple[float, int]]:
    """``(sum log p, positions)`` of every full sequence (``<s> ... </s>``), all positions after the first;
    a sequence longer than ``length`` in :func:`causal_windows`."""
    rows = [(i, window, first) for i, seq in enumerate(sequences)
            for window, first in (causal_windows(seq, length) if length else [(seq, 1)])]
    sums = np.zeros(len(sequences), dtype=np.float64)
    for batch in _batches([len(r[1]) for r in rows], batch_tokens):
        ids, attention = pad_batch([rows[r][1] for r in batch])
        ids, attention = ids.to(device), attention.to(device)
        with _autocast(device, dtype):
            logits = model(input_ids=ids, attention_mask=attention).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        target = ids[:, 1:]
        positions = torch.arange(1, ids.shape[1], device=device)[None]
        firsts = torch.tensor([rows[r][2] for r in batch], device=device)[:, None]
        scored = attention[:, 1:] * (positions >= firsts)
        picked = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * scored
        np.add.at(sums, [rows[r][0] for r in batch], picked.sum(-1).double().cpu().numpy())
    return [(float(sums[i]), max(len(seq) - 1, 0)) for i, seq in enumerate(sequences)]


def masked_window(sequence: np.ndarray, position: int, length: int) -> tuple[np.ndarray, int]:
    """``(input, position of the target in it)``: the sequence when it fits in ``length``, else
    ``<s>`` + the ``length - 2`` inner tokens around ``position`` (clipped to the sequence) + ``</s>``."""
    if len(sequence) <= length:
        return sequence, position
    width = length - 2
    if width < 1:
        raise SpeechUnitsError(f"a training length of {length} tokens leaves no room to score in windows")
    inner = len(sequence) - 2
    start = min(max(position - width // 2, 1), inner - width + 1)
    window = np.concatenate(([BOS_ID], sequence[start:start + width], [EOS_ID])).astype(np.int64)
    return window, position - start + 1


@torch.inference_mode()
def masked_logprobs(model: Any, sequences: Sequence[np.ndarray], device: torch.device, *,
                    batch_tokens: int = DEFAULT_BATCH_TOKENS, dtype: str = "fp32",
                    length: int | None = None) -> list[tuple[float, int]]:
    """Pseudo-log-likelihood ``(sum, positions)`` of every full sequence, its inner tokens masked one at a
    time (each in its :func:`masked_window` when the sequence is longer than ``length``)."""
    rows = [(i, *(masked_window(seq, t, length) if length else (seq, t)))
            for i, seq in enumerate(sequences) for t in range(1, len(seq) - 1)]
    sums = np.zeros(len(sequences), dtype=np.float64)
    for batch in _batches([len(rows[r][1]) for r in range(len(rows))], batch_tokens):
        ids, attention = pad_batch([rows[r][1] for r in batch])
        positions = torch.tensor([rows[r][2] for r in batch])
        arange = torch.arange(len(batch))
        targets = ids[arange, positions].clone()
        ids[arange, positions] = MASK_ID
        ids, attention = ids.to(device), attention.to(device)
        with _autocast(device, dtype):
            logits = model(input_ids=ids, attention_mask=attention).logits
        picked = logits[arange.to(device), positions.to(device)].float().log_softmax(-1)
        values = picked.gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1).double().cpu().numpy()
        np.add.at(sums, [rows[r][0] for r in batch], values)
    return [(float(sums[i]), max(len(seq) - 2, 0)) for i, seq in enumerate(sequences)]


def score_tokens(lm: UnitLM, tokens: Sequence[np.ndarray], *, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                 dtype: str = "fp32") -> list[tuple[float, int]]:
    """``(sum log p, positions scored)`` of token sequences without specials (see the module docstring)."""
    if lm.objective == "ngram":
        from speechunits.lm.ngram_dir import score_ngram

        return score_ngram(lm, list(tokens))
    sequences = [with_specials(t) for t in tokens]
    scorer = causal_logprobs if lm.objective == "causal" else masked_logprobs
    return scorer(lm.model, sequences, lm.device, batch_tokens=batch_tokens, dtype=dtype, length=lm.trained_length)


def _scores(ids: list[str], results: list[tuple[float, int]]) -> list[UtteranceScore]:
    return [UtteranceScore(utt, total, n, total / n if n else None) for utt, (total, n) in zip(ids, results)]


def score_units(lm: UnitLM, items: Iterable[tuple[str, Any]], *, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                dtype: str = "fp32") -> list[UtteranceScore]:
    """Scores of ``(id, Units)`` items (units of the LM's codebook, checked by the caller)."""
    ids: list[str] = []
    tokens: list[np.ndarray] = []
    for utt_id, units in items:
        ids.append(utt_id)
        tokens.append(lm.tokens(units.ids, units.durations))
    return _scores(ids, score_tokens(lm, tokens, batch_tokens=batch_tokens, dtype=dtype))


def score_store(lm: UnitLM, store_path: str | Path, *, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                dtype: str = "fp32") -> list[UtteranceScore]:
    """Scores of every utterance of a unit store (refused unless it holds the LM's units)."""
    from speechunits.units.store import UnitStore

    store = UnitStore.open(store_path)
    lm.check_store(store)
    if len(store) == 0:
        raise SpeechUnitsError(f"{store_path}: the unit store is empty; nothing to score")
    return score_units(lm, store, batch_tokens=batch_tokens, dtype=dtype)


def score_corpus(lm: UnitLM, corpus_path: str | Path, *, codebook: str | Path | None = None,
                 encoder: str | None = None, batch_tokens: int = DEFAULT_BATCH_TOKENS, dtype: str = "fp32",
                 quiet: bool = True) -> tuple[list[UtteranceScore], dict[str, str]]:
    """Scores of every audio file of a corpus, encoded through the LM's codebook; also the errors."""
    from speechunits.lm.audio import encode_audio

    units, errors = encode_audio(lm, corpus_path, codebook=codebook, encoder=encoder, quiet=quiet)
    if not units:
        raise SpeechUnitsError(f"{corpus_path}: no utterance could be encoded"
                               + (f" (first error: {next(iter(errors.values()))})" if errors else ""))
    return score_units(lm, units, batch_tokens=batch_tokens, dtype=dtype), errors


def is_unit_store(path: str | Path) -> bool:
    """True for a unit store directory (Parquet shards or store metadata), False for audio."""
    from speechunits.units.parquet_dir import SIDECAR, shard_files

    path = Path(path)
    return path.is_dir() and (bool(shard_files(path)) or (path / SIDECAR).is_file())

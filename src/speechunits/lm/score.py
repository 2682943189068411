"""Log-probabilities of utterances under a unit LM, batched.

Causal LMs: ``log P(x_1..x_n, </s> | <s>) = sum_t log p(x_t | x_<t)``, over the n tokens and the
end token (so an utterance that stops where the LM expects more is penalised); ``tokens`` =
n + 1 positions scored. Masked LMs: the pseudo-log-likelihood (Salazar et al., 2020)
``sum_t log p(x_t | x without x_t)`` with ``<s> ... </s>`` around, each token masked in turn
(n forward rows per utterance, batched); ``tokens`` = n. n-gram LMs: as causal ones, from their
ARPA file. ``normalised`` = ``logprob / tokens``.
All in natural log, fp32 unless ``dtype="bf16"``.
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
from speechunits.lm.vocab import MASK_ID

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


@torch.inference_mode()
def causal_logprobs(model: Any, sequences: Sequence[np.ndarray], device: torch.device, *,
                    batch_tokens: int = DEFAULT_BATCH_TOKENS, dtype: str = "fp32") -> list[tuple[float, int]]:
    """``(sum log p, positions)`` of every full sequence (``<s> ... </s>``), all positions after the first."""
    out: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    for batch in _batches([len(s) for s in sequences], batch_tokens):
        ids, attention = pad_batch([sequences[i] for i in batch])
        ids, attention = ids.to(device), attention.to(device)
        with _autocast(device, dtype):
            logits = model(input_ids=ids, attention_mask=attention).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        target = ids[:, 1:]
        picked = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * attention[:, 1:]
        sums = picked.sum(-1).double().cpu().tolist()
        counts = attention[:, 1:].sum(-1).cpu().tolist()
        for row, i in enumerate(batch):
            out[i] = (float(sums[row]), int(counts[row]))
    return out


@torch.inference_mode()
def masked_logprobs(model: Any, sequences: Sequence[np.ndarray], device: torch.device, *,
                    batch_tokens: int = DEFAULT_BATCH_TOKENS, dtype: str = "fp32") -> list[tuple[float, int]]:
    """Pseudo-log-likelihood ``(sum, positions)`` of every full sequence, its inner tokens masked one at a time."""
    rows = [(i, t) for i, seq in enumerate(sequences) for t in range(1, len(seq) - 1)]
    sums = np.zeros(len(sequences), dtype=np.float64)
    lengths = [len(sequences[i]) for i, _ in rows]
    for batch in _batches(lengths, batch_tokens):
        seqs = [sequences[rows[r][0]] for r in batch]
        ids, attention = pad_batch(seqs)
        positions = torch.tensor([rows[r][1] for r in batch])
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
    return scorer(lm.model, sequences, lm.device, batch_tokens=batch_tokens, dtype=dtype)


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

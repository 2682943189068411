"""Decoding a :class:`~speechunits.seq2seq.s2ut_model.Seq2SeqModel`: greedy and beam search.

Beam search (one source at a time, the beam as the batch):

* every step extends each live hypothesis by every symbol (log-probabilities; ``<pad>``,
  ``<s>`` and ``<unk>`` are never chosen) and keeps the ``2 * beam`` best candidates by
  summed log-probability;
* a candidate ending in ``</s>`` is finished and scored ``logp / length ** length_penalty``
  (length counts the ``</s>``, as fairseq does); the ``beam`` best finished ones are kept;
  the other candidates refill the beam up to ``beam`` live hypotheses;
* the search stops when ``beam`` hypotheses have finished and the worst of them scores at
  least the best live one normalised by its current length (Hugging Face's stopping rule: a
  weak hypothesis that ends early cannot end the search while a better one is still going),
  or after ``max_len`` symbols (the live hypotheses then finish as they are); the best
  normalised score wins.

With ``beam = 1`` this is greedy decoding (argmax each step, stop at ``</s>``), which
:func:`greedy_decode` does for a whole batch at once. Both step the decoder one position at a
time on its key/value cache (:mod:`speechunits.seq2seq.decoder`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from speechunits.errors import SpeechUnitsError
from speechunits.seq2seq.symbols import BOS, EOS, PAD, UNK

_BANNED = (PAD, BOS, UNK)


@dataclass(frozen=True)
class Hypothesis:
    """A finished output: symbol ids without ``<s>``/``</s>``, summed log-probability and the normalised score."""

    ids: list[int]
    logprob: float
    score: float


def _next_logprobs(model, last: torch.Tensor, state) -> torch.Tensor:
    logp = torch.log_softmax(model.decode_step(last, state).float(), dim=-1)
    logp[:, list(_BANNED)] = float("-inf")
    return logp


@torch.no_grad()
def greedy_decode(model, source: torch.Tensor, lengths: torch.Tensor, max_len: int | torch.Tensor) -> list[list[int]]:
    """Argmax decoding of a batch: symbol ids per source (without ``<s>``/``</s>``).

    ``max_len``: the most symbols (``</s>`` excluded) per source, one int or an int ``[B]``.
    """
    memory, memory_lengths = model.encode(source, lengths)
    batch = source.shape[0]
    limits = torch.as_tensor(max_len, device=source.device).expand(batch) if not isinstance(max_len, int) \
        else torch.full((batch,), max_len, device=source.device)
    state = model.start_decoding(memory, memory_lengths)
    last = torch.full((batch,), BOS, dtype=torch.long, device=source.device)
    done = torch.zeros(batch, dtype=torch.bool, device=source.device)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    for step in range(int(limits.max()) + 1):
        best = _next_logprobs(model, last, state).argmax(-1)
        over = step >= limits
        for b in range(batch):
            if done[b]:
                continue
            if best[b] == EOS or over[b]:
                done[b] = True
            else:
                outputs[b].append(int(best[b]))
        if bool(done.all()):
            break
        last = best.masked_fill(done, PAD)
    return outputs


@torch.no_grad()
def beam_search(model, source: torch.Tensor, length: int, *, beam: int = 5, max_len: int = 200,
                length_penalty: float = 1.0) -> Hypothesis:
    """The best hypothesis for one source (``source [1, T, ...]``, ``length`` valid frames); see module docstring."""
    if beam < 1:
        raise SpeechUnitsError(f"--beam must be >= 1, got {beam}")
    if source.shape[0] != 1:
        raise SpeechUnitsError("beam_search decodes one source at a time")
    memory, memory_lengths = model.encode(source, torch.tensor([length], device=source.device))
    state = model.start_decoding(memory, memory_lengths)
    prefixes = torch.full((1, 1), BOS, dtype=torch.long, device=source.device)
    scores = torch.zeros(1, device=source.device)
    finished: list[Hypothesis] = []

    def finish(ids: list[int], logprob: float) -> None:
        finished.append(Hypothesis(ids, logprob, logprob / (len(ids) + 1) ** length_penalty))
        finished.sort(key=lambda h: -h.score)
        del finished[beam:]

    for step in range(max_len + 1):
        n = prefixes.shape[0]
        logp = _next_logprobs(model, prefixes[:, -1], state)
        if step == max_len:  # out of room: every live hypothesis ends here
            for i in range(n):
                finish(prefixes[i, 1:].tolist(), float(scores[i] + logp[i, EOS]))
            break
        candidates = (scores[:, None] + logp).reshape(-1)
        top_scores, top_index = candidates.topk(min(2 * beam, candidates.numel()))
        vocab = logp.shape[1]
        keep_rows, keep_tokens, keep_scores = [], [], []
        for score, index in zip(top_scores.tolist(), top_index.tolist()):
            if score == float("-inf"):
                break
            row, token = divmod(index, vocab)
            if token == EOS:
                finish(prefixes[row, 1:].tolist(), score)
            else:
                keep_rows.append(row)
                keep_tokens.append(token)
                keep_scores.append(score)
                if len(keep_rows) >= beam:
                    break
        if not keep_rows:
            break
        if len(finished) >= beam and finished[-1].score >= max(keep_scores) / (step + 1) ** length_penalty:
            break
        rows = torch.tensor(keep_rows, device=source.device)
        state = state.select(rows)
        prefixes = torch.cat([prefixes[rows], torch.tensor(keep_tokens, device=source.device)[:, None]], dim=1)
        scores = torch.tensor(keep_scores, device=source.device)
    return max(finished, key=lambda h: h.score)

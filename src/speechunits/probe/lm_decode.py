"""CTC prefix beam search with a word n-gram LM (shallow fusion), for ``asr`` probes over characters or BPE.

The score of a hypothesis is ``log P_ctc(prefix) + alpha * log P_lm(words) + beta * |words|``
(natural log; Hannun et al. 2014's prefix search). Tokens spell words in one of two ways: a
character vocabulary has a word-boundary token (``|``), a BPE vocabulary marks the tokens that
begin a word (``▁ab``; the Metaspace convention of :func:`speechunits.probe.vocab.bpe_tokenizer`).
Both are one rule here: a token that begins with the boundary string closes the word being spelled
and begins a new one with the rest of the token. A word is scored when the token that closes it is
emitted, and the last word together with ``</s>`` when the frames end. Words outside
the LM's vocabulary get its ``<unk>`` probability plus ``unk_offset``, and while a word is being
spelled, a hypothesis whose letters so far begin no LM word ranks ``unk_offset`` lower (the
vocabulary-prefix check pyctcdecode also makes). ``alpha`` and ``beta`` are to be chosen on dev.

pyctcdecode is the usual tool for this, but it pins numpy < 2 and cannot be installed beside this
project's numpy; torchaudio's flashlight decoder has no build for torch 2.13. So the search is
written here; the LM is any ARPA file (:mod:`speechunits.lm.arpa`, e.g. from
``speechunits lm text-ngram`` or kenlm's ``lmplz``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.lm.arpa import ArpaLM, read_arpa

NEG_INF = -math.inf


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


@dataclass(frozen=True)
class BeamOptions:
    """Search settings: LM weight, word bonus, beam width, and the pruning of unlikely tokens/prefixes."""

    alpha: float = 0.5
    beta: float = 1.0
    beam: int = 32
    token_min_logp: float = -5.0
    prune_logp: float = -10.0
    #: added to a hypothesis whose unfinished word is no prefix of an LM word, and to every word the
    #: LM does not know (beside its <unk> probability): keeps the beam on spellable words
    unk_offset: float = -10.0

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise SpeechUnitsError(f"--beam must be >= 1, got {self.beam}")
        if self.alpha < 0:
            raise SpeechUnitsError(f"--alpha must be >= 0, got {self.alpha}")


class WordLMDecoder:
    """Decode ``[T, V]`` CTC log-probabilities over ``tokens`` into normalised text with an :class:`ArpaLM` of words.

    ``tokens[blank]`` is the blank; a token that starts with ``boundary`` begins a word (``"|"``
    for characters: the boundary itself, spelling nothing; ``"▁"`` for BPE: ``"▁ab"`` begins a
    word with ``ab``); any other token continues the word being spelled.
    """

    def __init__(self, tokens: Sequence[str], boundary: str, lm: ArpaLM, options: BeamOptions = BeamOptions(),
                 blank: int = 0):
        if not boundary:
            raise SpeechUnitsError("the word boundary must be a non-empty string")
        self.tokens = list(tokens)
        self.blank = blank
        #: per token: does it begin a word, and the letters it spells
        self._opens = [i != blank and t.startswith(boundary) for i, t in enumerate(self.tokens)]
        self._letters = [t[len(boundary):] if opens else t for t, opens in zip(self.tokens, self._opens)]
        if not any(self._opens):
            raise SpeechUnitsError(f"no token of the probe begins with the word boundary {boundary!r}; "
                                   "an LM needs words")
        self.lm = lm
        self.options = options
        self._word_cache: dict[tuple[str, ...], float] = {}
        self.vocabulary = lm.vocabulary
        self.prefixes = lm.word_prefixes

    # -- LM ------------------------------------------------------------------------------------------
    def _word_gain(self, history: tuple[str, ...], word: str) -> float:
        """``alpha * ln P(word | history)``, plus ``unk_offset`` for a word the LM does not know (no ``beta``)."""
        key = history + (word,)
        value = self._word_cache.get(key)
        if value is None:
            value = self.options.alpha * self.lm.log10_prob(word, list(history)) * math.log(10.0)
            if word != "</s>" and self.vocabulary and word not in self.vocabulary:
                value += self.options.unk_offset
            self._word_cache[key] = value
        return value

    def _partial_penalty(self, partial: str) -> float:
        return self.options.unk_offset if partial and self.prefixes and partial not in self.prefixes else 0.0

    def _context(self, words: tuple[str, ...]) -> tuple[str, ...]:
        keep = max(0, self.lm.order - 1)
        return (("<s>",) + words)[-keep:] if keep else ()

    # -- search --------------------------------------------------------------------------------------
    def decode(self, log_probs: np.ndarray) -> str:
        """The best hypothesis' text (words joined by single spaces) for one utterance's ``[T, V]``."""
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if log_probs.ndim != 2 or log_probs.shape[1] != len(self.tokens):
            raise SpeechUnitsError(f"expected log-probabilities [T, {len(self.tokens)}], got {log_probs.shape}")
        # normalise in case raw logits come in
        log_probs = log_probs - np.logaddexp.reduce(log_probs, axis=1, keepdims=True)
        opts = self.options
        # a beam entry: (words done, partial word, last token) -> [p_blank, p_nonblank, lm score]
        beams: dict[tuple[tuple[str, ...], str, int], list[float]] = {((), "", -1): [0.0, NEG_INF, 0.0]}
        for frame in log_probs:
            best_token = int(frame.argmax())
            candidates = [int(c) for c in np.flatnonzero(frame >= opts.token_min_logp)]
            if best_token not in candidates:
                candidates.append(best_token)
            nxt: dict[tuple[tuple[str, ...], str, int], list[float]] = {}

            def add(key: tuple[tuple[str, ...], str, int], p_blank: float, p_nonblank: float, lm: float) -> None:
                entry = nxt.get(key)
                if entry is None:
                    nxt[key] = [p_blank, p_nonblank, lm]
                else:
                    entry[0] = _logaddexp(entry[0], p_blank)
                    entry[1] = _logaddexp(entry[1], p_nonblank)

            for (words, partial, last), (pb, pnb, lm) in beams.items():
                total = _logaddexp(pb, pnb)
                for c in candidates:
                    p = float(frame[c])
                    if c == self.blank:
                        add((words, partial, last), total + p, NEG_INF, lm)
                        continue
                    if c == last:  # repeat: stays the same prefix, unless a blank separated the two
                        add((words, partial, last), NEG_INF, pnb + p, lm)
                        if pb == NEG_INF:
                            continue
                        source = pb + p
                    else:
                        source = total + p
                    if not self._opens[c]:
                        add((words, partial + self._letters[c], c), NEG_INF, source, lm)
                    elif not partial:  # nothing spelled yet: no word to close
                        add((words, self._letters[c], c), NEG_INF, source, lm)
                    else:
                        gain = self._word_gain(self._context(words), partial) + opts.beta
                        add((words + (partial,), self._letters[c], c), NEG_INF, source, lm + gain)
            scored = sorted(((_logaddexp(v[0], v[1]) + v[2] + self._partial_penalty(k[1]), k, v)
                             for k, v in nxt.items()), key=lambda item: item[0], reverse=True)
            top = scored[0][0]
            beams = {k: v for score, k, v in scored[:opts.beam] if score >= top + opts.prune_logp}
        # a trailing boundary or none spells the same words: their paths are summed
        finals: dict[tuple[str, ...], list[float]] = {}
        for (words, partial, _), (pb, pnb, lm) in beams.items():
            if partial:
                lm += self._word_gain(self._context(words), partial) + opts.beta
                words = words + (partial,)
            entry = finals.setdefault(words, [NEG_INF, lm + self._word_gain(self._context(words), "</s>")])
            entry[0] = _logaddexp(entry[0], _logaddexp(pb, pnb))
        best = max(finals.items(), key=lambda kv: kv[1][0] + kv[1][1])
        return " ".join(best[0])


def word_lm_decoder(probe: object, lm: str | Path | ArpaLM, options: BeamOptions = BeamOptions()) -> WordLMDecoder:
    """The decoder of a loaded ``asr`` probe (characters or BPE) with a word LM: an ARPA path or a read one."""
    from speechunits.probe.vocab import BPE_WORD_START, WORD_BOUNDARY

    coder = probe.coder  # type: ignore[attr-defined]
    if probe.task != "asr":  # type: ignore[attr-defined]
        raise SpeechUnitsError(f"--lm decodes words: it needs an asr probe, not a {probe.task!r} one")  # type: ignore[attr-defined]
    tokenizer = coder.tokenizer
    if tokenizer is None or tokenizer.kind not in ("chars", "bpe"):
        raise SpeechUnitsError("--lm needs an asr probe whose tokenizer is characters or a BPE")
    boundary = WORD_BOUNDARY if tokenizer.kind == "chars" else BPE_WORD_START
    return WordLMDecoder(tokenizer.tokens, boundary, lm if isinstance(lm, ArpaLM) else read_arpa(lm), options,
                         blank=tokenizer.blank)

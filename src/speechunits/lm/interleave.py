"""Interleaved unit-text sequences from word alignments (the joint unit-text LM's data).

An utterance with word alignments (``words.tsv`` of a synthetic corpus, TextGrids ...) is cut
into pieces: the units of each word (frames whose centre lies inside the word) and the units
between words (silence). At every training batch each word independently is shown as its
text token ``[word]`` with probability ``p`` instead of its units, so the model sees the same
sentences in both modalities and switches between them mid-sentence. Pieces are tokenised
separately (a BPE merge never crosses a word boundary); words are lower-cased.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.lm.vocab import LMVocab
from speechunits.units.units import Units


@dataclass
class InterleavedUtterance:
    """Token pieces of one utterance: ``pieces[i]`` (token ids) and ``words[i]`` (the word token
    that may replace it, or -1 for a piece between words). ``merge_runs`` (deduplicated units):
    a run of equal units cut by a word boundary is one token again when both sides stay units."""

    pieces: list[np.ndarray]
    words: list[int]
    merge_runs: bool = False

    def tokens(self, swap: np.ndarray) -> np.ndarray:
        """Token ids with the words where ``swap`` (bool per piece) is true shown as text."""
        parts: list[np.ndarray] = []
        last_unit: int | None = None  # the last token emitted, while it is a unit token
        for piece, word, shown in zip(self.pieces, self.words, swap):
            if word >= 0 and shown:
                parts.append(np.array([word], dtype=np.int64))
                last_unit = None
                continue
            if self.merge_runs and last_unit is not None and piece.size and int(piece[0]) == last_unit:
                piece = piece[1:]
            if piece.size:
                parts.append(piece)
                last_unit = int(piece[-1])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @property
    def num_words(self) -> int:
        return sum(1 for w in self.words if w >= 0)


def normalise_word(label: str) -> str:
    return label.strip().lower()


def read_words(path: str | Path) -> dict[str, list]:
    """``{utt_id: [Segment]}`` of the word tier (silence dropped)."""
    from speechunits.measure.alignments import load_alignments

    return load_alignments(path, tier="words", silence=None)


def word_vocabulary(alignments: dict[str, list]) -> list[str]:
    """Every word of the alignments, normalised and sorted."""
    return sorted({normalise_word(s.label) for segs in alignments.values() for s in segs if normalise_word(s.label)})


def split_units(units: Units, segments: list, frame_offset_s: float, vocab: LMVocab) -> InterleavedUtterance:
    """Cut one utterance's units at its word boundaries and tokenise every piece.

    ``units`` may be frame-level or deduplicated (expanded first); a word no frame centre falls
    into is dropped (it has no units to swap).
    """
    from speechunits.measure.alignments import frame_segment_indices

    frames = units.expand().ids
    owner = frame_segment_indices(segments, frames.size, units.frame_rate, frame_offset_s)
    if frames.size == 0:
        return InterleavedUtterance([], [])
    cuts = np.flatnonzero(owner[1:] != owner[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [frames.size]))
    raw_pieces = [vocab.unit_sequence(frames[a:b]) for a, b in zip(starts, ends)]
    pieces = vocab.encode_units_batch(raw_pieces)
    words = []
    for a in starts:
        index = int(owner[a])
        word = normalise_word(segments[index].label) if index >= 0 else ""
        words.append(vocab.word_id(word) if word else -1)
    return InterleavedUtterance(pieces, words, merge_runs=vocab.tokenisation == "dedup")


def check_coverage(store_ids: list[str], alignments: dict[str, list], source: str) -> None:
    """Refuse alignments that cover none of the store's utterances."""
    if not set(store_ids) & set(alignments):
        raise SpeechUnitsError(f"{source}: no word alignments for any utterance of the unit store "
                               f"(ids such as {store_ids[:3]})")

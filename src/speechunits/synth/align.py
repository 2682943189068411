"""Phone and word segments from espeak-ng events.

Rules (measured, see ``docs/measure-synth.md``):

* a phone lasts from its event to the next phone event (the last one to the end of audio);
* pause phones (empty IPA) and the audio before the first phone are silence, labelled
  :data:`SILENCE`; zero-length segments are dropped;
* stress marks are stripped from labels;
* espeak emits a stop's closure as exact digital silence *before* the stop's event: the
  boundary is moved back over that run of zero samples, so the closure belongs to the stop
  (not after a pause, where closure and pause cannot be told apart);
* a word spans its first to its last non-silent phone; its label is the text from the word
  event's character position to the next word event (espeak glues some short words to the
  previous one, e.g. "of the" gets one event, so such labels hold two words).
"""
from __future__ import annotations

import numpy as np

from speechunits.measure.alignments import SILENCE, Segment
from speechunits.synth.espeak import Synthesis

#: Stress and syllable marks removed from IPA labels.
STRESS_MARKS = "ˈˌ',"
#: A run of exact zeros shorter than this (seconds) is a zero crossing, not a stop closure.
MIN_CLOSURE_S = 0.002
#: Punctuation stripped from word labels.
WORD_PUNCTUATION = ".,;:!?¿¡\"'«»()-"


def clean_label(label: str) -> str:
    """Strip stress marks from an IPA phone label."""
    return "".join(ch for ch in label if ch not in STRESS_MARKS)


def _closure_start(nonzero: np.ndarray, index: int, floor: int, min_run: int) -> int:
    """Start of the run of exact zeros ending at ``index`` (not before ``floor``), or ``index``.

    ``nonzero`` holds the sorted indices of non-zero samples.
    """
    k = int(np.searchsorted(nonzero, index, side="left"))  # nonzero[k - 1] < index
    start = int(nonzero[k - 1]) + 1 if k > 0 else 0
    start = max(start, floor)
    return start if index - start >= min_run else index


def segments_from_events(synthesis: Synthesis, text: str) -> tuple[list[Segment], list[Segment]]:
    """Phone and word segments (seconds) of one utterance.

    Returns:
        ``(phones, words)``, each sorted, non-overlapping; phones cover the whole audio
        (silence included), words only spoken words.
    """
    samples = synthesis.samples
    rate = synthesis.sample_rate
    total = int(samples.size)
    min_run = int(MIN_CLOSURE_S * rate)
    nonzero = np.flatnonzero(samples)

    # Phone boundaries in samples.
    starts: list[int] = []
    labels: list[str] = []
    for event in synthesis.phones:
        index = min(max(event.sample, 0), total)
        label = clean_label(event.label)
        if starts and index < starts[-1]:
            index = starts[-1]
        if label and starts and labels[-1]:
            index = _closure_start(nonzero, index, starts[-1], min_run)
        starts.append(index)
        labels.append(label)
    bounds = starts + [total]
    if not starts or starts[0] > 0:
        bounds = [0] + bounds
        labels = [""] + labels

    phone_spans: list[tuple[int, int, str]] = []
    for begin, end, label in zip(bounds[:-1], bounds[1:], labels):
        if end <= begin:
            continue
        label = label or SILENCE
        if phone_spans and phone_spans[-1][2] == SILENCE and label == SILENCE:
            phone_spans[-1] = (phone_spans[-1][0], end, SILENCE)
        else:
            phone_spans.append((begin, end, label))
    phones = [Segment(_seconds(b, rate), _seconds(e, rate), lab) for b, e, lab in phone_spans]

    # Words: the phones whose (uncorrected) event lies between this word's event and the next;
    # ``starts`` holds one corrected boundary per phone event, in event order.
    words: list[Segment] = []
    events = synthesis.phones
    word_events = synthesis.words
    for w, word in enumerate(word_events):
        next_sample = word_events[w + 1].sample if w + 1 < len(word_events) else None
        spans = [
            i for i, ev in enumerate(events)
            if ev.sample >= word.sample and (next_sample is None or ev.sample < next_sample) and clean_label(ev.label)
        ]
        if not spans:
            continue
        begin = starts[spans[0]]
        end_index = spans[-1] + 1
        end = starts[end_index] if end_index < len(starts) else total
        # espeak may glue short words to the previous one ("of the" has one event): the label is
        # all text up to the next word event.
        text_end = word_events[w + 1].text_position - 1 if w + 1 < len(word_events) else len(text)
        text_end = max(text_end, word.text_position - 1 + word.length)
        label = " ".join(text[word.text_position - 1 : text_end].split()).strip(WORD_PUNCTUATION + " ")
        if end <= begin or not label:
            continue
        start_s, end_s = _seconds(begin, rate), _seconds(end, rate)
        if words and start_s < words[-1].end:
            start_s = words[-1].end
            if end_s <= start_s:
                continue
        words.append(Segment(start_s, end_s, label))
    return phones, words


def _seconds(index: int, rate: int) -> float:
    """Sample index to seconds, rounded to 10 µs so TSV and TextGrid carry the same value."""
    return round(index / rate, 5)

"""Intelligibility judged by an ASR the project does not train: pocketsphinx's English model.

The pocketsphinx wheel (5.x) ships CMU's US-English acoustic model, dictionary and language model;
:class:`PocketsphinxASR` decodes with that default configuration (16 kHz, 16-bit input: audio is
resampled with soxr and clipped to [-1, 1] first); feature extraction is reset before every utterance,
so a transcript does not depend on the utterances decoded before it. Error rates (:func:`error_rates`) compare
normalised text (:func:`speechunits.probe.vocab.normalize_text`: Unicode NFKC, lower case,
punctuation replaced by spaces except apostrophes inside words, whitespace collapsed) with jiwer
through :mod:`speechunits.probe.metrics`, corpus level (total edits / total reference words or
characters).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.deps import require

log = logging.getLogger(__name__)

#: pocketsphinx's default acoustic model is trained on 16 kHz speech.
SAMPLE_RATE = 16000


class PocketsphinxASR:
    """English speech recogniser (pocketsphinx's default model from its wheel); one decoder, reused.

    Raises:
        SpeechUnitsError: pocketsphinx is not installed (names the ``[eval]`` extra).
    """

    def __init__(self) -> None:
        pocketsphinx = require("pocketsphinx", "the ASR judge (pocketsphinx)")
        self._decoder = pocketsphinx.Decoder(loglevel="FATAL")
        self.sample_rate = int(self._decoder.config["samprate"])

    def transcribe(self, audio: Audio) -> str:
        """The words pocketsphinx hears in ``audio`` (lower case, space-separated; "" for none)."""
        if audio.sample_rate != self.sample_rate:
            audio = audio.resample(self.sample_rate)
        pcm = np.round(np.clip(audio.samples, -1.0, 1.0) * 32767.0).astype("<i2")
        if pcm.size == 0:
            return ""
        # Live cepstral mean normalisation carries its estimate across utterances: start afresh so that a
        # transcript does not depend on what was decoded before (the same as a new decoder, far cheaper).
        self._decoder.reinit_feat()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return " ".join(hyp.hypstr.split()) if hyp is not None else ""


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float | int]:
    """Corpus WER and CER of ``hypotheses`` against ``references`` after normalisation.

    Pairs whose normalised reference is empty are left out (counted in ``empty_references``).

    Returns:
        ``{"wer", "cer", "utterances", "reference_words", "empty_references"}``; wer/cer are NaN
        when no reference has a word.

    Raises:
        SpeechUnitsError: different numbers of references and hypotheses.
    """
    from speechunits.probe import metrics
    from speechunits.probe.vocab import normalize_text

    if len(references) != len(hypotheses):
        raise SpeechUnitsError(f"error rates: {len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(references, hypotheses)]
    kept = [(r, h) for r, h in pairs if r]
    empty = len(pairs) - len(kept)
    if empty:
        log.warning("%d utterances with an empty reference are left out of WER/CER", empty)
    if not kept:
        return {"wer": float("nan"), "cer": float("nan"), "utterances": 0, "reference_words": 0,
                "empty_references": empty}
    refs, hyps = [k[0] for k in kept], [k[1] for k in kept]
    return {"wer": metrics.wer(refs, hyps), "cer": metrics.cer(refs, hyps), "utterances": len(kept),
            "reference_words": sum(len(r.split()) for r in refs), "empty_references": empty}


def utterance_wer(reference: str, hypothesis: str) -> float | None:
    """WER of one utterance after normalisation (None when the reference has no word)."""
    from speechunits.probe import metrics
    from speechunits.probe.vocab import normalize_text

    ref = normalize_text(reference)
    return metrics.wer([ref], [normalize_text(hypothesis)]) if ref else None

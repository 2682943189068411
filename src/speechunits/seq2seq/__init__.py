"""Sequence models that predict units: text -> units (TTS) and speech -> units (S2UT).

* :mod:`~speechunits.seq2seq.tts_model` / :mod:`~speechunits.seq2seq.tts_train`: a
  non-autoregressive FastSpeech-like model (symbols -> durations -> frame units), trained on a
  corpus's alignments or on transcripts alone (durations from :mod:`~speechunits.seq2seq.alignment`:
  a learned aligner and monotonic alignment search);
* :mod:`~speechunits.seq2seq.s2ut_model` / :mod:`~speechunits.seq2seq.s2ut_train`: a transformer
  encoder-decoder from encoder features, source units or text to deduplicated target units
  (or text), with :mod:`~speechunits.seq2seq.beam` search and an optional auxiliary CTC;
* :mod:`~speechunits.seq2seq.tasks`: their tasks on the one training loop; :mod:`~speechunits.seq2seq.data`
  (units of a corpus, TTS targets, parallel pairs); :mod:`~speechunits.seq2seq.model_dir`
  (model directories, codebook and vocoder checks); :mod:`~speechunits.seq2seq.infer`
  (text or audio in, units and speech out). See docs/seq2seq.md.
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

_LAZY = {
    "train_tts": "speechunits.seq2seq.tts_train",
    "train_s2ut": "speechunits.seq2seq.s2ut_train",
    "load_tts": "speechunits.seq2seq.model_dir",
    "load_s2ut": "speechunits.seq2seq.model_dir",
    "check_vocoder": "speechunits.seq2seq.model_dir",
    "beam_search": "speechunits.seq2seq.beam",
    "greedy_decode": "speechunits.seq2seq.beam",
    "say": "speechunits.seq2seq.infer",
    "translate": "speechunits.seq2seq.infer",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)

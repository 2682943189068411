"""Unit language models: train, score, sample, benchmark (ZeroSpeech 2021 sWUGGY/sBLIMP layout), correct.

A unit LM is a Hugging Face model directory (``LlamaForCausalLM`` or ``BertForMaskedLM``) with
its tokenizer and ``lm.json`` (what it consumes: codebook sha256, K, tokenisation); the n-gram
baseline is the same directory with an ARPA file instead (``lm.arpa``); see docs/lm.md.
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

_LAZY = {
    "LMVocab": "speechunits.lm.vocab",
    "LMConfig": "speechunits.lm.config",
    "train_lm": "speechunits.lm.train",
    "UnitLM": "speechunits.lm.model_dir",
    "load_lm": "speechunits.lm.model_dir",
    "score_store": "speechunits.lm.score",
    "score_corpus": "speechunits.lm.score",
    "sample_units": "speechunits.lm.sample",
    "run_benchmark": "speechunits.lm.benchmark",
    "read_gold": "speechunits.lm.benchmark",
    "pair_accuracy": "speechunits.lm.benchmark",
    "correct_store": "speechunits.lm.correct",
    "NGramLM": "speechunits.lm.ngram",
    "train_ngram_lm": "speechunits.lm.ngram_dir",
    "read_arpa": "speechunits.lm.arpa",
    "ArpaLM": "speechunits.lm.arpa",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)

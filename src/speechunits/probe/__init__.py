"""SUPERB-style probes and unit ASR on frozen features or unit stores.

Data side: :mod:`~speechunits.probe.labels` (task labels and their readers),
:mod:`~speechunits.probe.vocab` (label vocabularies, character/BPE text tokenizers),
:mod:`~speechunits.probe.splits` (train/dev/test, by utterance or speaker),
:mod:`~speechunits.probe.metrics` (CTC greedy decoding, PER, WER/CER, accuracy, speaker leakage).
Names below are imported on first use, so ``import speechunits.probe`` stays light.
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

_LAZY = {
    "TASKS": "speechunits.probe.labels",
    "IGNORE_INDEX": "speechunits.probe.labels",
    "LabelSet": "speechunits.probe.labels",
    "load_task_labels": "speechunits.probe.labels",
    "find_label_files": "speechunits.probe.labels",
    "Vocabulary": "speechunits.probe.vocab",
    "TextTokenizer": "speechunits.probe.vocab",
    "normalize_text": "speechunits.probe.vocab",
    "Split": "speechunits.probe.splits",
    "make_split": "speechunits.probe.splits",
    "split_from_file": "speechunits.probe.splits",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

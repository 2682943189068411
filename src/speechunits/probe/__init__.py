"""SUPERB-style probes and unit ASR on frozen features or unit stores.

Data side: :mod:`~speechunits.probe.labels` (task labels and their readers),
:mod:`~speechunits.probe.vocab` (label vocabularies, character/BPE text tokenizers),
:mod:`~speechunits.probe.splits` (train/dev/test, by utterance or speaker),
:mod:`~speechunits.probe.metrics` (CTC greedy decoding, PER, WER/CER, accuracy, speaker leakage),
:mod:`~speechunits.probe.diarize` (speaker activity per frame, PIT loss and DER of ``diarize`` probes),
:mod:`~speechunits.probe.masking` (spectral masks, their PIT loss, the estimated audio, PESQ/STOI/SI-SDR
of ``enhance`` and SI-SDR improvement of ``separate`` probes).

Model side: :mod:`~speechunits.probe.inputs` (what a probe reads and its identity), with
:mod:`~speechunits.probe.feature_inputs` (encoder features on the fly, a features directory) and
:mod:`~speechunits.probe.unit_inputs` (unit stores), :mod:`~speechunits.probe.featurizers` (weighted-sum /
hierarchical-conv / single featurizers, unit embeddings), :mod:`~speechunits.probe.heads` (linear and
BiLSTM heads), :mod:`~speechunits.probe.finetune` (``--finetune`` blocks: top N, LoRA, adapters),
:mod:`~speechunits.probe.model` (the probe model built from its spec),
:mod:`~speechunits.probe.task` (the training-loop task of each objective),
:mod:`~speechunits.probe.train` (the lr x seed sweep, best by dev, test once),
:mod:`~speechunits.probe.run` (one run of it: dev evaluations, early stopping, the best weights),
:mod:`~speechunits.probe.resume` (a killed sweep's state on disk), :mod:`~speechunits.probe.model_dir`
(the probe directory) and :mod:`~speechunits.probe.evaluate` (metrics, ``evaluate_probe``, ``transcribe``).
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
    "EncoderInput": "speechunits.probe.feature_inputs",
    "FeaturesDirInput": "speechunits.probe.feature_inputs",
    "UnitInput": "speechunits.probe.unit_inputs",
    "ArrayInput": "speechunits.probe.feature_inputs",
    "ProbeModel": "speechunits.probe.model",
    "WeightedSum": "speechunits.probe.featurizers",
    "train_probe": "speechunits.probe.train",
    "train_probe_on_corpus": "speechunits.probe.train",
    "ProbeResult": "speechunits.probe.train",
    "load_probe": "speechunits.probe.model_dir",
    "Probe": "speechunits.probe.model_dir",
    "evaluate_probe": "speechunits.probe.evaluate",
    "transcribe": "speechunits.probe.evaluate",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

"""The field's corpus layouts that need more than a folder scan or a manifest line per utterance.

* :mod:`~speechunits.layouts.hf_datasets`: Hugging Face ``datasets`` tables (Parquet, Arrow), rows as utterances;
* :mod:`~speechunits.layouts.lhotse_manifests`: Lhotse CutSets, SupervisionSets, RecordingSets and Shar;
* :mod:`~speechunits.layouts.tar_shards`: audio inside tar archives (WebDataset, NeMo tarred, Shar's tars);
* :mod:`~speechunits.layouts.speech_commands`: Speech Commands' noise clips and SUPERB keywords;
* :mod:`~speechunits.layouts.iemocap`: IEMOCAP's utterances, emotions, actors and session folds.

:func:`speechunits.corpus.open_corpus` and the label readers dispatch to them; the simpler layouts
(Kaldi, fairseq, JSONL/CSV manifests, Common Voice, LibriSpeech, VCTK, VoxCeleb) live in
:mod:`speechunits.corpus` itself.
"""

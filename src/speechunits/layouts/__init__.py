"""The field's corpus layouts beyond a folder scan and a fairseq manifest.

* :mod:`~speechunits.layouts.kaldi`: Kaldi/ESPnet ``wav.scp``, ``segments`` (time ranges), ``utt2spk``;
* :mod:`~speechunits.layouts.manifests`: JSONL manifests (NeMo's too), AudioFolder metadata, CSV manifests;
* :mod:`~speechunits.layouts.common_voice`: Common Voice TSVs;
* :mod:`~speechunits.layouts.librispeech`: LibriSpeech / LibriTTS chapter transcripts;
* :mod:`~speechunits.layouts.hf_datasets`: Hugging Face ``datasets`` tables (Parquet, Arrow), rows as utterances;
* :mod:`~speechunits.layouts.lhotse_manifests`: Lhotse CutSets, SupervisionSets, RecordingSets and Shar;
* :mod:`~speechunits.layouts.tar_shards`: audio inside tar archives (WebDataset, NeMo tarred, Shar's tars);
* :mod:`~speechunits.layouts.speech_commands`: Speech Commands' noise clips and SUPERB keywords;
* :mod:`~speechunits.layouts.iemocap`: IEMOCAP's utterances, emotions, actors and session folds;
* :mod:`~speechunits.layouts.snips`: Audio SNIPS (SUPERB's slot filling) and its voice split.

:func:`speechunits.corpus.open_corpus` and the label readers dispatch to them; the VCTK and VoxCeleb
folder rules live in :mod:`speechunits.corpus` itself. :func:`collect_label` is the one way a layout
whose entries carry several labels gives one of them.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from speechunits.errors import SpeechUnitsError


def collect_label(entries: Iterable[tuple[str, Mapping[str, str]]], key: str, *, source: object, what: str,
                  missing: str) -> dict[str, str]:
    """``{id: labels[key]}`` over ``(id, labels)`` entries that carry ``key``.

    Raises:
        SpeechUnitsError: an id twice (``"{source}: {what} {id!r} appears twice"``), or no entry with
            ``key`` (``missing``).
    """
    result: dict[str, str] = {}
    for utt, labels in entries:
        if key not in labels:
            continue
        if utt in result:
            raise SpeechUnitsError(f"{source}: {what} {utt!r} appears twice")
        result[utt] = labels[key]
    if not result:
        raise SpeechUnitsError(missing)
    return result

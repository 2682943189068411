"""The Speech Commands layout (Warden 2018) and SUPERB's keyword-spotting setting on it.

A Speech Commands tree holds one folder per word (``yes/0a7c2a8d_nohash_0.wav``), the lists of its
dev and test files (``validation_list.txt``, ``testing_list.txt``) and ``_background_noise_/``: a few
minute-long noise recordings from which the dataset's authors and SUPERB draw one-second
``_silence_`` examples. Scanned as a corpus, such a tree gives each noise recording as its
one-second clips (time ranges, :mod:`speechunits.spans`; ids ``_background_noise_/NAME_SSSSSSS-EEEEEEE``,
centiseconds), labelled ``_silence_``; clip ``k`` of a recording goes to dev when ``k % 10 == 8``, to
test when ``k % 10 == 9``, else to training.

SUPERB's task (s3prl's ``speech_commands`` downstream) keeps ten keywords (:data:`SUPERB_KEYWORDS`)
and maps every other word to ``_unknown_`` (the probes' ``--classes superb-ks``,
:mod:`speechunits.probe.classes`). Its reported accuracy is on the separate
``speech_commands_test_set_v0.01``, whose folders are already the twelve classes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

NOISE_FOLDER = "_background_noise_"
SILENCE, UNKNOWN = "_silence_", "_unknown_"
#: The dev and test lists a tree ships, by part.
SPLIT_LISTS = {"dev": "validation_list.txt", "test": "testing_list.txt"}
#: The ten keywords of SUPERB's (and the TensorFlow tutorial's) twelve-class task.
SUPERB_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLIP_SECONDS = 1.0
#: Of every ten consecutive noise clips, the one at this position is dev and the next test.
_DEV_CLIP, _TEST_CLIP = 8, 9


def is_speech_commands_tree(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a directory holding both split lists and a ``_background_noise_`` folder."""
    path = Path(root)
    return (path / NOISE_FOLDER).is_dir() and all((path / name).is_file() for name in SPLIT_LISTS.values())


def noise_clips(root: Path, recording: Path) -> Iterator[tuple[str, str]]:
    """``(utterance id, path)`` of each whole one-second clip of a noise recording of tree ``root``
    (an unreadable recording gives one utterance, the file, so that the pass reading it reports it)."""
    import soundfile as sf

    from speechunits.spans import span_path

    stem = recording.relative_to(root).with_suffix("").as_posix()
    try:
        info = sf.info(str(recording))
        seconds = info.frames / info.samplerate
    except Exception:  # noqa: BLE001 - libsndfile raises several types; the reader reports the file
        yield stem, str(recording)
        return
    for k in range(int(seconds // CLIP_SECONDS)):
        start, end = k * CLIP_SECONDS, (k + 1) * CLIP_SECONDS
        yield f"{stem}_{round(start * 100):07d}-{round(end * 100):07d}", span_path(recording, start, end)


def noise_clip_part(utt_id: str) -> str | None:
    """``train``, ``dev`` or ``test`` for the id of a noise clip (see the module docstring), else ``None``."""
    folder, _, name = utt_id.rpartition("/")
    if Path(folder).name != NOISE_FOLDER or "_" not in name:
        return None
    start = name.rsplit("_", 1)[1].split("-", 1)[0]
    if not start.isdigit():
        return None
    position = int(round(int(start) / (CLIP_SECONDS * 100))) % 10
    return "dev" if position == _DEV_CLIP else "test" if position == _TEST_CLIP else "train"

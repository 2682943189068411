"""Kaldi/ESPnet data directories: ``wav.scp`` (recordings), ``segments`` (time ranges of them), ``utt2spk``.

Readers give ``(utterance id, audio path)``; :func:`speechunits.corpus.open_corpus` makes the utterances.
Transcripts (``text``) are read by :mod:`speechunits.probe.labels`, speakers by
:func:`speechunits.corpus.read_speakers`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from speechunits.errors import SpeechUnitsError
from speechunits.files import iter_text_lines
from speechunits.spans import span_path

#: A Kaldi/ESPnet data directory's list of recordings: ``utt_id path`` lines.
KALDI_WAV_SCP = "wav.scp"


#: A Kaldi/ESPnet data directory's time ranges: ``utt_id recording_id start_s end_s`` lines.
KALDI_SEGMENTS = "segments"
#: A Kaldi/ESPnet data directory's speaker list: ``utt_id speaker`` lines.
KALDI_UTT2SPK = "utt2spk"


def iter_segments(scp: Path, segments: Path) -> Iterator[tuple[str, str]]:
    """``(utterance id, path)`` of a ``segments`` file's utterances: time ranges (:mod:`speechunits.spans`)
    of the recordings ``wav.scp`` lists (an end of ``-1``: to the recording's end)."""
    recordings = dict(iter_scp(scp))
    for line_no, line in iter_text_lines(segments, "Kaldi segments"):
        fields = line.split()
        if len(fields) != 4:
            raise SpeechUnitsError(f"{segments}:{line_no}: expected 'utt_id recording_id start end', got {line[:80]!r}")
        utt_id, recording, start_text, end_text = fields
        if recording not in recordings:
            raise SpeechUnitsError(f"{segments}:{line_no}: recording {recording!r} is not in {scp}")
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            raise SpeechUnitsError(f"{segments}:{line_no}: start and end must be seconds, got {line[:80]!r}") from None
        if start < 0 or (end != -1 and end <= start):
            raise SpeechUnitsError(f"{segments}:{line_no}: needs 0 <= start < end (or end -1), got {start_text} {end_text}")
        yield utt_id, span_path(recordings[recording], start, None if end == -1 else end)


def _scp_base(scp: Path, first_path: str) -> Path:
    """Where an ``.scp`` file's relative paths start: the working directory (Kaldi's and ESPnet's
    convention: the recipe directory), else the first folder above the ``.scp`` where the first path exists."""
    if Path(first_path).exists():
        return Path(".")
    for base in scp.resolve().parents:
        if (base / first_path).exists():
            return base
    return Path(".")


def iter_scp(scp: Path) -> Iterator[tuple[str, str]]:
    """``(utterance id, audio path)`` of a ``wav.scp`` (relative paths from :func:`_scp_base`; piped commands refused)."""
    base: Path | None = None
    for line_no, line in iter_text_lines(scp, "Kaldi wav.scp"):
        fields = line.split(None, 1)
        if len(fields) != 2:
            raise SpeechUnitsError(f"{scp}:{line_no}: expected 'utt_id path', got {line[:80]!r}")
        utt_id, where = fields[0], fields[1].strip()
        if where.endswith("|"):
            raise SpeechUnitsError(f"{scp}:{line_no}: {utt_id} is a shell command ({where[:60]!r}); speechunits reads "
                                   "audio files only: write them out first (ESPnet's format_wav_scp.sh, Kaldi's "
                                   "wav-copy) and give the wav.scp that lists the files")
        if base is None:
            base = _scp_base(scp, where)
        path = Path(where)
        yield utt_id, str(path if path.is_absolute() else base / path)

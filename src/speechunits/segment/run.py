"""Cut every file of a corpus into speech segments (the library side of ``speechunits segment``).

Output directory layout::

    <utt_id>/<name>_<start_ms>-<end_ms>.flac   one file per segment, cut from the source file
                                               (its rate and channels; 24-bit if the source has
                                               more than 16 bits); <name> = last part of utt_id
    manifest.tsv    fairseq manifest of the segment files (absolute root = OUT), open_corpus reads it
    manifest.jsonl  instead, without audio (``write_audio=False``): {"id", "path", "source"} per segment,
                    its path the time range of the source (``SOURCE#t=START,END``, speechunits.spans)
    segments.tsv    segment_id<TAB>source_utt<TAB>start_s<TAB>end_s (Kaldi ``segments`` column order)
    errors.jsonl    {"id", "path", "reason"} per source file skipped in the last run
    segment.json    the settings (options, VAD model, input) and the summary of the last run
    .journal.tsv    what is done, per source file (resuming reads it)

A segment id is its file's path relative to ``OUT`` without the extension (what
``open_corpus`` makes of the manifest). Times are exact: ``start_s = start_sample / rate``.

Resuming: the journal gets a source file's rows only after all its segment files are written,
so running the same command again after a crash skips the files done and redoes the rest;
manifest, segments and summary are rewritten from the journal at the end of every run.
Different settings for a directory that holds a journal are an error.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np

from speechunits.audio import Audio, open_sound_file
from speechunits.corpus import Corpus, Utterance, refuse_output_in_input, total_audio_seconds
from speechunits.errors import SpeechUnitsError
from speechunits.progress import AudioProgress
from speechunits.segment.segments import SegmentOptions, SpeechSegment, find_segments
from speechunits.segment.vad import SAMPLE_RATE, WINDOW_S, SileroVAD
from speechunits.spans import span_path

#: Seconds of source audio read at a time.
DEFAULT_BLOCK_SECONDS = 60.0

log = logging.getLogger(__name__)

MANIFEST = "manifest.tsv"
SPAN_MANIFEST = "manifest.jsonl"
SEGMENTS = "segments.tsv"
ERRORS = "errors.jsonl"
SETTINGS = "segment.json"
JOURNAL = ".journal.tsv"
#: Source subtypes with more than 16 bits: their segments are written as 24-bit FLAC.
_DEEP_SUBTYPES = {"PCM_24", "PCM_32", "FLOAT", "DOUBLE"}


@dataclass(frozen=True)
class FileSpeech:
    """The speech found in one source file.

    Attributes:
        segments: in time order, in seconds of the source.
        sample_rate: the source's rate.
        num_frames: the source's length in samples.
        probs: speech probability per 32 ms window ``[ceil(T16 / 512)]``.
    """

    segments: list[SpeechSegment]
    sample_rate: int
    num_frames: int
    probs: np.ndarray

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sample_rate


@dataclass(frozen=True)
class SegmentRow:
    """One segment: id, source, sample range at the source rate, and its file (relative to OUT)."""

    segment_id: str
    source_id: str
    start_sample: int
    end_sample: int
    sample_rate: int
    relpath: str

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end_sample / self.sample_rate


@dataclass(frozen=True)
class SegmentReport:
    """What one run did (sources are input files, segments are output utterances).

    Attributes:
        segmented: source files segmented in this run.
        already_done: source files skipped because the journal had them.
        failed: source files skipped because of bad input (see ``OUT/errors.jsonl``).
        segments: segments written in this run.
        audio_seconds: source audio read in this run.
        speech_seconds: total length of this run's segments.
        wall_seconds: wall time of the run.
    """

    segmented: int
    already_done: int
    failed: int
    segments: int
    audio_seconds: float
    speech_seconds: float
    wall_seconds: float
    out_dir: Path


def find_speech(vad: SileroVAD, path: str | os.PathLike[str], options: SegmentOptions = SegmentOptions(), *,
                channel: int | None = None, block_seconds: float = DEFAULT_BLOCK_SECONDS,
                on_block: Callable[[float], None] | None = None) -> FileSpeech:
    """Run the VAD over ``path`` block by block and turn its probabilities into segments.

    ``on_block(source_seconds)`` is called after each block (progress). Raises
    :class:`SpeechUnitsError` for bad input (see :meth:`speechunits.audio.Audio.stream`).
    """
    stream = vad.stream()
    probs: list[np.ndarray] = []
    frames, rate = 0, 0
    for block in Audio.stream(path, SAMPLE_RATE, channel=channel, block_seconds=block_seconds):
        probs.append(stream.feed(block.samples))
        frames, rate = frames + block.source_frames, block.source_rate
        if on_block is not None:
            on_block(block.source_frames / block.source_rate)
    probs.append(stream.finish())
    all_probs = np.concatenate(probs)
    return FileSpeech(find_segments(all_probs, WINDOW_S, frames / rate, options), rate, frames, all_probs)


def segment_rows(utt: Utterance, speech: FileSpeech) -> list[SegmentRow]:
    """Name the segments of ``utt``: ``<utt_id>/<name>_<start_ms>-<end_ms>`` (ms zero-padded to 8)."""
    _check_id(utt)
    name = PurePosixPath(utt.id).name
    rows = []
    for seg in speech.segments:
        start = int(round(seg.start_s * speech.sample_rate))
        end = min(int(round(seg.end_s * speech.sample_rate)), speech.num_frames)
        if end <= start:
            continue
        start_ms = int(round(1000 * start / speech.sample_rate))
        end_ms = int(round(1000 * end / speech.sample_rate))
        relpath = f"{utt.id}/{name}_{start_ms:08d}-{end_ms:08d}.flac"
        rows.append(SegmentRow(relpath[: -len(".flac")], utt.id, start, end, speech.sample_rate, relpath))
    return rows


def write_segment_audio(source: str | os.PathLike[str], rows: list[SegmentRow], out_dir: str | os.PathLike[str],
                        channel: int | None = None) -> None:
    """Cut ``rows`` out of ``source`` into FLAC files under ``out_dir`` (one segment in memory at a time)."""
    import soundfile as sf

    out_dir = Path(out_dir)
    handle = open_sound_file(source)
    written: list[Path] = []
    with handle:
        subtype = "PCM_24" if handle.subtype in _DEEP_SUBTYPES else "PCM_16"
        try:
            for row in rows:
                try:
                    handle.seek(row.start_sample)
                    data = handle.read(row.end_sample - row.start_sample, dtype="float32", always_2d=True)
                except Exception as exc:  # noqa: BLE001
                    raise SpeechUnitsError(f"{source}: cannot read {row.start_s:.3f}-{row.end_s:.3f} s ({exc})") from exc
                if channel is not None:
                    data = data[:, [channel]]
                target = out_dir / row.relpath
                target.parent.mkdir(parents=True, exist_ok=True)
                written.append(target)
                sf.write(str(target), data, handle.samplerate, subtype=subtype, format="FLAC")
        except BaseException:
            for path in written:  # no partial set of segments of a skipped source
                path.unlink(missing_ok=True)
            raise


def segment_corpus(corpus: Corpus, out_dir: str | os.PathLike[str], vad: SileroVAD,
                   options: SegmentOptions = SegmentOptions(), *, write_audio: bool = True,
                   channel: int | None = None, on_error: str = "skip", quiet: bool = False,
                   block_seconds: float = DEFAULT_BLOCK_SECONDS, input_name: str | None = None) -> SegmentReport:
    """Segment every utterance of ``corpus`` into ``out_dir`` (layout in the module docstring).

    Args:
        write_audio: write segment files and ``manifest.tsv``; ``False`` writes ``segments.tsv`` and
            ``manifest.jsonl``, whose paths are the time ranges of the sources (:mod:`speechunits.spans`).
        channel: use this channel (0-based) for the VAD and the segment files instead of the
            downmix (VAD) and all channels (files).
        on_error: ``"skip"`` records bad input in ``errors.jsonl`` and goes on; ``"fail"`` raises.
        input_name: what to record as the input in ``segment.json`` (default: ``corpus.source``).

    Errors other than bad input (a bug, out of memory) propagate: the journal keeps what was
    done, and the same call resumes.
    """
    if on_error not in ("skip", "fail"):
        raise SpeechUnitsError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    out = Path(out_dir)
    refuse_output_in_input(corpus.source, out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "input": str(input_name if input_name is not None else corpus.source),
        "options": asdict(options),
        "write_audio": write_audio,
        "channel": channel,
        "vad": vad.identity,
    }
    journal = Journal(out / JOURNAL, settings, out / SETTINGS)
    started = time.perf_counter()
    errors: list[dict[str, str]] = []
    try:
        report = _segment_all(corpus, out, vad, options, journal, write_audio=write_audio, channel=channel,
                              on_error=on_error, quiet=quiet, block_seconds=block_seconds, errors=errors)
    except BaseException:
        journal.close()
        raise
    report = replace(report, wall_seconds=time.perf_counter() - started)
    # without audio, the segments are listed as time ranges of the sources (of every shard run so far)
    sources = None if write_audio else {utt.id: utt.path for utt in corpus.whole()}
    _write_outputs(out, journal, errors, write_audio, settings, report, sources)
    return report


def _segment_all(corpus: Corpus, out: Path, vad: SileroVAD, options: SegmentOptions, journal: "Journal", *,
                 write_audio: bool, channel: int | None, on_error: str, quiet: bool, block_seconds: float,
                 errors: list[dict[str, str]]) -> SegmentReport:
    """The loop of :func:`segment_corpus` (``wall_seconds`` left at 0)."""
    done = already = segments = 0
    audio_s = speech_s = 0.0
    todo = corpus.filter(lambda u: u.id not in journal.done)
    total = None if quiet else total_audio_seconds(todo)
    with AudioProgress(total, desc="segment", quiet=quiet) as progress:
        for utt in corpus:
            if utt.id in journal.done:
                already += 1
                continue
            try:
                _check_id(utt)
                speech = find_speech(vad, utt.path, options, channel=channel, block_seconds=block_seconds,
                                     on_block=progress.update)
                rows = segment_rows(utt, speech)
                if write_audio:
                    write_segment_audio(utt.path, rows, out, channel)
            except SpeechUnitsError as exc:
                if on_error == "fail":
                    raise
                log.warning("skipped %s", exc)
                errors.append({"id": utt.id, "path": utt.path, "reason": str(exc)})
                continue
            journal.record(utt.id, rows, speech.duration_s)
            done += 1
            segments += len(rows)
            audio_s += speech.duration_s
            speech_s += sum(r.end_s - r.start_s for r in rows)
    return SegmentReport(done, already, len(errors), segments, audio_s, speech_s, 0.0, out)


class Journal:
    """``OUT/.journal.tsv``: ``S<TAB>segment_id<TAB>source<TAB>start<TAB>end<TAB>rate<TAB>relpath`` rows
    of a source file, then ``U<TAB>source<TAB>duration_s<TAB>count`` once its files are written.

    Opening drops a trailing unfinished source (rows without their ``U`` line, a torn last
    line) and checks that ``settings`` equal those recorded in ``settings_path``.
    """

    def __init__(self, path: Path, settings: dict, settings_path: Path):
        self.path = path
        self.done: set[str] = set()
        keep = 0
        if path.is_file():
            _check_settings(settings_path, settings)
            with open(path, "rb") as handle:
                offset = 0
                for raw in handle:
                    offset += len(raw)
                    if raw.endswith(b"\n") and raw.startswith(b"U\t"):
                        self.done.add(raw.decode("utf-8").split("\t")[1])
                        keep = offset
            if keep < path.stat().st_size:
                log.info("%s: dropping the rows of an unfinished source file", path)
                os.truncate(path, keep)
        else:
            _atomic_write(settings_path, json.dumps({"settings": settings, "summary": None}, indent=2) + "\n")
        self._handle = open(path, "a", encoding="utf-8")

    def record(self, source_id: str, rows: list[SegmentRow], duration_s: float) -> None:
        lines = [f"S\t{r.segment_id}\t{r.source_id}\t{r.start_sample}\t{r.end_sample}\t{r.sample_rate}\t{r.relpath}\n"
                 for r in rows]
        lines.append(f"U\t{source_id}\t{duration_s:.6f}\t{len(rows)}\n")
        self._handle.write("".join(lines))
        self._handle.flush()
        self.done.add(source_id)

    def rows(self) -> Iterator[SegmentRow]:
        self._handle.flush()
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("S\t"):
                    _, seg_id, source, start, end, rate, relpath = line.rstrip("\n").split("\t")
                    yield SegmentRow(seg_id, source, int(start), int(end), int(rate), relpath)

    def close(self) -> None:
        self._handle.close()


def _write_outputs(out: Path, journal: Journal, errors: list[dict[str, str]], write_audio: bool,
                   settings: dict, report: SegmentReport, sources: dict[str, str] | None = None) -> None:
    """manifest.tsv (with audio) or manifest.jsonl (without: time ranges of ``sources``, id -> path),
    segments.tsv, errors.jsonl, then segment.json's summary."""
    manifest_name = MANIFEST if write_audio else SPAN_MANIFEST
    try:
        manifest = segments = None
        try:
            segments = open(out / (SEGMENTS + ".partial"), "w", encoding="utf-8")
            manifest = open(out / (manifest_name + ".partial"), "w", encoding="utf-8")
            if write_audio:
                manifest.write(f"{out.resolve()}\n")
            count = 0
            for row in journal.rows():
                segments.write(f"{row.segment_id}\t{row.source_id}\t{row.start_s:.6f}\t{row.end_s:.6f}\n")
                if write_audio:
                    manifest.write(f"{row.relpath}\t{row.end_sample - row.start_sample}\n")
                elif sources is not None and row.source_id in sources:
                    path = span_path(os.path.abspath(sources[row.source_id]), row.start_s, row.end_s)
                    manifest.write(json.dumps({"id": row.segment_id, "path": path, "source": row.source_id}) + "\n")
                count += 1
        finally:
            for handle in (segments, manifest):
                if handle is not None:
                    handle.close()
        os.replace(out / (SEGMENTS + ".partial"), out / SEGMENTS)
        os.replace(out / (manifest_name + ".partial"), out / manifest_name)
        _atomic_write(out / ERRORS, "".join(json.dumps(e) + "\n" for e in errors))
        summary = {
            "segments_total": count,
            "sources_total": len(journal.done),
            "last_run": {k: v for k, v in asdict(report).items() if k != "out_dir"},
        }
        _atomic_write(out / SETTINGS, json.dumps({"settings": settings, "summary": summary}, indent=2) + "\n")
    finally:
        journal.close()


def _check_settings(settings_path: Path, settings: dict) -> None:
    try:
        recorded = json.loads(settings_path.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SpeechUnitsError(
            f"{settings_path.parent}: holds a segmentation journal but no readable {SETTINGS}; "
            "use a new output directory") from None
    if recorded != json.loads(json.dumps(settings)):
        changed = sorted(k for k in settings if recorded.get(k) != json.loads(json.dumps(settings[k])))
        raise SpeechUnitsError(
            f"{settings_path.parent}: was segmented with other settings ({', '.join(changed)} differ); "
            "rerun with the same settings to resume, or use a new output directory")


def _check_id(utt: Utterance) -> None:
    """Segment files live under ``OUT/<utt_id>/``: the id must be a safe relative path."""
    parts = PurePosixPath(utt.id).parts
    if (not parts or PurePosixPath(utt.id).is_absolute() or any(p in ("", ".", "..") for p in parts)
            or any(c in utt.id for c in "\t\n\r\\")):
        raise SpeechUnitsError(f"{utt.path}: utterance id {utt.id!r} cannot name an output directory")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

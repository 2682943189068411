"""Labels of the probe tasks: readers, and which utterances of a corpus have them.

Tasks (:data:`TASKS`) and where their labels come from:

* ``phones``: phone sequences from alignments (``phones.tsv``, TextGrids, a synth corpus
  directory; read by :func:`speechunits.measure.alignments.load_alignments`, silences dropped,
  see :func:`phone_sequences`) or phone transcripts ``utt<TAB>p1 p2 ...``
  (:func:`read_phone_transcripts`);
* ``asr``: transcripts (:func:`read_transcripts`): ``text.tsv`` (``utt<TAB>text``), a JSONL
  manifest with ``id`` and ``text`` fields, or a Kaldi ``text`` file (``uttid word word ...``);
* ``speaker``: ``speakers.tsv`` (:func:`speechunits.corpus.read_speakers`);
* ``classify``: any utterance label, ``utt<TAB>label`` (:func:`read_utterance_labels`);
* ``frames``: one label per frame from alignments (:func:`frame_targets`), silence included
  as a class; frames no segment covers get :data:`IGNORE_INDEX`;
* ``diarize``: who talks in each frame, from an RTTM's ``SPEAKER`` turns (:func:`read_speaker_turns`,
  a Kaldi/LibriMix data directory's ``rttm``), one
  :class:`~speechunits.probe.diarize.SpeakerActivity` per recording (the frame-centre rule of ``frames``).

:func:`load_task_labels` reads what a task needs and keeps the corpus's utterances that have a
label; those without one are listed in :attr:`LabelSet.missing` (and skipped by the probe); a
corpus none of whose utterances has a label is an error naming the label file.
:func:`find_label_files` finds the files a corpus carries by convention (what ``speechunits
synth`` writes).

Two-column files (``utt<TAB>value``) have no header line; blank lines are skipped; an
utterance listed twice is an error (file:line).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from speechunits.audio import AUDIO_EXTENSIONS
from speechunits.corpus import is_voxceleb_tree, iter_vctk, vctk_audio_dir
from speechunits.layouts.manifests import (AUDIOFOLDER_METADATA, SPEAKER_FIELDS, first_record_field, iter_jsonl_field,
                                           read_manifest_columns)
from speechunits.layouts.librispeech import LIBRISPEECH_TRANSCRIPTS, LIBRITTS_TRANSCRIPTS, iter_librispeech_transcripts
from speechunits.layouts.common_voice import common_voice_columns, common_voice_id, iter_common_voice
from speechunits.files import iter_text_lines, read_pairs
from speechunits.errors import SpeechUnitsError
from speechunits.files import read_text_file
from speechunits.id_match import match_ids, rekey
from speechunits.layouts.hf_datasets import (LABEL_COLUMN, SPEAKER_COLUMNS, TEXT_COLUMNS, has_column, is_table_source,
                                             read_column)
from speechunits.layouts.iemocap import is_iemocap_tree, read_emotions
from speechunits.layouts.lhotse_manifests import label_keys as lhotse_label_keys
from speechunits.layouts.lhotse_manifests import manifest_kind
from speechunits.layouts.lhotse_manifests import read_labels as read_lhotse_labels
from speechunits.layouts.snips import SNIPS_LABELS, is_iob_file, read_iob
from speechunits.layouts.tar_shards import is_tar_source
from speechunits.layouts.tar_shards import label_keys as tar_label_keys
from speechunits.layouts.tar_shards import read_labels as read_tar_labels
from speechunits.measure.alignments import Alignments, Segment, frame_segment_indices, load_alignments
from speechunits.probe.splits import split_lists_of
from speechunits.probe.vocab import Vocabulary, class_vocabulary
from speechunits.sources import expand_source, merged_over_sources, split_suffix, union_pattern

log = logging.getLogger(__name__)

TASKS = ("phones", "asr", "speaker", "classify", "frames", "verify", "slots", "diarize", "enhance", "separate")
#: Labels dropped from phone sequences (compared after strip and lower-casing): the empty
#: label, ``sil``/``sp``/``spn`` (Kaldi, MFA, PocketSphinx), espeak-ng's pauses and ``<eps>``.
SILENCE_LABELS = frozenset({"", "sil", "sp", "spn", "_", "_:", "_!", "<sil>", "<eps>"})
#: Target of frames without a label (PyTorch's ``cross_entropy`` default ``ignore_index``).
IGNORE_INDEX = -100
#: Files a corpus may carry, looked up by :func:`find_label_files` in this order.
ALIGNMENT_FILES = ("phones.tsv", "textgrids")
TRANSCRIPT_FILES = ("text.tsv", "text")
SPEAKER_FILES = ("speakers.tsv", "utt2spk")
#: Speaker turns (``diarize``): a Kaldi/LibriMix data directory's RTTM.
RTTM_FILES = ("rttm",)
#: References (``enhance``, ``separate``): an ESPnet enhancement or separation data directory's first source.
REFERENCE_FILES = ("spk1.scp",)
#: LJSpeech's transcripts beside its wavs/ folder.
LJSPEECH_METADATA = "metadata.csv"
MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv")  # .csv: an AudioFolder's metadata.csv
#: The file that marks a ``speechunits synth`` corpus directory.
SYNTH_MARKER = "corpus.json"


# -- readers -----------------------------------------------------------------------------------
def _add(result: dict[str, Any], path: Path, line_no: int, utt: str, value: Any) -> None:
    if utt in result:
        raise SpeechUnitsError(f"{path}:{line_no}: utterance {utt!r} listed twice")
    result[utt] = value


@merged_over_sources
def read_transcripts(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{utt: text}`` from ``text.tsv``, a JSONL manifest, a Kaldi ``text`` file, a Common Voice TSV
    (``sentence``), LJSpeech's ``metadata.csv`` (``id|text|normalised``: the normalised text), a
    LibriTTS ``*.trans.tsv`` (``id<TAB>original<TAB>normalised``: the normalised text), a directory
    holding LibriSpeech's per-chapter ``*.trans.txt`` files (Kaldi lines) or LibriTTS's (read
    recursively), a Hugging Face table or a Lhotse manifest.

    Format: ``.jsonl``/``.json`` → JSONL (one object per line, ``text`` field; the id is ``id``,
    else the stem of its audio path (``path`` or NeMo's ``audio_filepath``) as in
    :func:`speechunits.corpus.open_corpus`; lines without
    ``text`` are utterances without a transcript); otherwise ``utt<TAB>text`` when the first
    non-blank line holds a tab (or the name ends in ``.tsv``), else Kaldi ``uttid word ...``
    (split at the first whitespace; a line with only an id is an empty transcript).
    Text is returned as written (stripped); normalisation is the tokenizer's job.

    Raises:
        SpeechUnitsError: missing file, not UTF-8, bad JSON, a ``.tsv`` line without exactly one
            tab, a non-string ``text``, an utterance twice (all naming ``file:line``), no transcript.
    """
    if is_table_source(path):  # a Hugging Face table's text column
        return read_column(path, TEXT_COLUMNS, "transcript")
    if manifest_kind(path) is not None:  # a Lhotse manifest's supervisions
        return read_lhotse_labels(path, "text")
    if is_tar_source(path):  # WebDataset samples' .txt members or .json text fields
        return read_tar_labels(path, "text")
    path = Path(path)
    if path.is_dir() and vctk_audio_dir(path) is not None:  # VCTK: txt/SPK/SENTENCE.txt, keyed by each audio file
        return _read_vctk_text(path)
    if path.is_dir():
        result = {}
        for chapter in iter_librispeech_transcripts(path):
            for utt, text in read_transcripts(chapter).items():
                if utt in result:
                    raise SpeechUnitsError(f"{chapter}: utterance {utt!r} is also in another *{LIBRISPEECH_TRANSCRIPTS}")
                result[utt] = text
        if not result:
            raise SpeechUnitsError(f"{path}: no LibriSpeech or LibriTTS transcripts (*{LIBRISPEECH_TRANSCRIPTS}, "
                                   f"*{LIBRITTS_TRANSCRIPTS}) in this directory")
    elif path.name.endswith(LIBRITTS_TRANSCRIPTS):  # id<TAB>original<TAB>normalised
        result = _read_columns(path, "\t", 3, "LibriTTS transcripts")
    elif is_ljspeech_metadata(path):  # id|text|normalised text
        result = _read_columns(path, "|", 3, "LJSpeech metadata")
    elif path.suffix.lower() in MANIFEST_SUFFIXES:
        result = _read_jsonl_text(path)
    elif common_voice_columns(path) is not None:
        result = {common_voice_id(row["path"]): " ".join(row["sentence"].split()) for _, row in iter_common_voice(path)}
    else:
        lines = iter_text_lines(path, "transcripts")
        first = next(lines, None)
        if first is None:
            raise SpeechUnitsError(f"{path}: empty transcript file")
        tsv = path.suffix.lower() == ".tsv" or "\t" in first[1]
        result = {}
        for line_no, line in (first, *lines):
            if tsv:
                parts = line.split("\t")
                if len(parts) != 2 or not parts[0].strip():
                    raise SpeechUnitsError(f"{path}:{line_no}: expected utt<TAB>text (one tab), got {line[:80]!r}")
                utt, text = parts
            else:  # Kaldi: fields separated by any whitespace
                fields = line.split(None, 1)
                utt, text = fields[0], (fields[1] if len(fields) > 1 else "")
            _add(result, path, line_no, utt.strip(), " ".join(text.split()))
    if not result:
        raise SpeechUnitsError(f"{path}: no transcripts")
    return result


def _read_vctk_text(root: Path) -> dict[str, str]:
    """``{audio stem: text}`` of a VCTK corpus: both microphones' files get their sentence's text."""
    texts: dict[Path, str] = {}
    result = {}
    for stem, _, text_file in iter_vctk(root):
        if text_file is None:
            continue
        if text_file not in texts:
            texts[text_file] = " ".join(read_text_file(text_file).split())
        result[stem] = texts[text_file]
    if not result:
        raise SpeechUnitsError(f"{root}: no audio file of txt/ has a transcript")
    return result


def is_ljspeech_metadata(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is LJSpeech's ``metadata.csv``: ``id|text|normalised text`` lines, no header."""
    path = Path(path)
    if path.name != LJSPEECH_METADATA or not path.is_file():
        return False
    try:
        first = next(iter_text_lines(path, "LJSpeech metadata"), None)
    except SpeechUnitsError:
        return False
    return first is not None and len(first[1].split("|")) in (2, 3) and "file_name" not in first[1]


def _read_columns(path: Path, separator: str, columns: int, what: str) -> dict[str, str]:
    """``{id: text}`` of ``id SEP text [SEP normalised text]`` lines: the normalised text where given
    (numbers and abbreviations spelled out), else the text."""
    result: dict[str, str] = {}
    for line_no, line in iter_text_lines(path, what):
        fields = line.split(separator)
        if not 2 <= len(fields) <= columns or not fields[0].strip():
            raise SpeechUnitsError(f"{path}:{line_no}: expected id{separator}text{separator}normalised text, "
                                   f"got {line[:80]!r}")
        text = fields[2] if len(fields) == 3 and fields[2].strip() else fields[1]
        _add(result, path, line_no, fields[0].strip(), " ".join(text.split()))
    return result


def _read_jsonl_text(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    field = first_record_field(path, TEXT_COLUMNS) or TEXT_COLUMNS[0]
    for line_no, utt, text in iter_jsonl_field(path, field):
        if not isinstance(text, str):
            raise SpeechUnitsError(f"{path}:{line_no}: '{field}' must be a string, got {type(text).__name__}")
        result[utt] = " ".join(text.split())
    return result


def folder_labels(root: str | os.PathLike[str]) -> dict[str, str]:
    """``{utt: label}`` for the audio files under ``root``: the name of the folder holding each file
    (Speech Commands' ``yes/0a7c2a8d_nohash_0.wav``, a ``datasets`` AudioFolder's class folders),
    ids as a scan of ``root`` gives them. Files directly in ``root`` give no label. The one-second
    clips a Speech Commands tree's ``_background_noise_`` recordings are scanned as are ``_silence_``
    (:mod:`speechunits.layouts.speech_commands`; whole noise recordings elsewhere give no label); its test
    set's ``_silence_`` and ``_unknown_`` folders are classes like any other.

    Raises:
        SpeechUnitsError: no audio file in a labelling folder.
    """
    from speechunits.corpus import open_corpus
    from speechunits.layouts.speech_commands import NOISE_FOLDER, SILENCE
    from speechunits.spans import parse_span_path

    result = {}
    for utt in open_corpus(root):
        folder = Path(utt.id).parent.name
        if folder == NOISE_FOLDER:
            if parse_span_path(utt.path) is not None:  # a clip of a noise recording
                result[utt.id] = SILENCE
        elif folder:
            result[utt.id] = folder
    if not result:
        raise SpeechUnitsError(f"{root}: no audio file in a sub-folder to take its label from")
    return result


@merged_over_sources
def read_slot_labels(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{utt: slot text}`` (:mod:`speechunits.probe.slots`) from a SNIPS IOB file (``ID BOS w1 .. wn
    EOS<TAB>O t1 .. tn INTENT``, SUPERB's ``all.iob.snips.txt``) or ``utt<TAB>slot text`` lines
    (``play B-artist the beatles E-artist``).

    Raises:
        SpeechUnitsError: see :func:`~speechunits.layouts.snips.read_iob` and
            :func:`~speechunits.files.read_pairs`; a tag that is not closed or closed twice (naming
            ``file:utt``).
    """
    from speechunits.probe.slots import check_slot_text, slot_text

    if is_iob_file(path):
        return {utt: slot_text(words, types) for utt, (words, types, _) in read_iob(path).items()}
    pairs = read_pairs(path, what="slot label file", value_name="slot text")
    return {utt: check_slot_text(text, f"{path}:{utt}") for utt, text in pairs.items()}


@merged_over_sources
def read_utterance_labels(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{utt: label}`` from ``utt<TAB>label`` lines (``classify``: keyword, emotion, caller ...), a
    manifest's ``label`` fields (``MANIFEST::COLUMN`` another; ``MANIFEST::A+B`` several joined with
    ``+``), a Hugging Face table's ``label`` column (``TABLE::COLUMN`` likewise), WebDataset samples'
    labels, an IEMOCAP release's emotions, a SNIPS IOB file's intents, or, for a directory, the folders
    its files are in (:func:`folder_labels`).

    Raises:
        SpeechUnitsError: missing file, a line that is not two non-empty tab-separated fields,
            an utterance listed twice (naming ``file:line``), no label at all.
    """
    if is_table_source(path):  # a Hugging Face table's 'label' column, or PATH::COLUMN
        return read_column(path, (LABEL_COLUMN,), "label")
    if is_tar_source(path):  # WebDataset samples' .cls members or .json label fields
        return read_tar_labels(path, "label")
    if is_iemocap_tree(path):  # IEMOCAP: the emotions of its EmoEvaluation files
        return read_emotions(path)
    if is_iob_file(path):  # SNIPS (SUPERB's SF corpus): the intent that ends each line
        return {utt: intent for utt, (_, _, intent) in read_iob(path).items()}
    head, columns = split_suffix(path)
    if columns is not None and Path(head).suffix.lower() in MANIFEST_SUFFIXES:  # MANIFEST::COLUMN[+COLUMN]
        return read_manifest_columns(head, columns.split("+"))
    path = Path(path)
    if path.is_dir():
        return folder_labels(path)
    if path.suffix.lower() in MANIFEST_SUFFIXES:  # a manifest's (an AudioFolder's metadata) 'label' fields
        result = {utt: " ".join(str(label).split()) for _, utt, label in iter_jsonl_field(path, LABEL_COLUMN)}
        if not result:
            raise SpeechUnitsError(f"{path}: no record has a '{LABEL_COLUMN}'")
        return result
    result = read_pairs(path, what="label file", value_name="label")
    if not result:
        raise SpeechUnitsError(f"{path}: no labels")
    return result


def _is_silence(label: str, drop: frozenset[str]) -> bool:
    return label.strip().lower() in drop


def _lowered(drop: Sequence[str] | frozenset[str]) -> frozenset[str]:
    return frozenset(d.strip().lower() for d in drop)


def phone_sequences(alignments: Mapping[str, Sequence[Segment]],
                    drop: Sequence[str] | frozenset[str] = SILENCE_LABELS) -> dict[str, list[str]]:
    """Phone sequence of each utterance from ``load_alignments`` output.

    Segments whose label is in ``drop`` (after strip and lower-casing) are silences and left
    out; consecutive equal phones are kept (they are real phones, e.g. across a word boundary).
    An utterance of silence only gets an empty sequence.
    """
    drop = _lowered(drop)
    return {utt: [s.label.strip() for s in segments if not _is_silence(s.label, drop)]
            for utt, segments in alignments.items()}


@merged_over_sources
def read_phone_transcripts(path: str | os.PathLike[str],
                           drop: Sequence[str] | frozenset[str] = SILENCE_LABELS) -> dict[str, list[str]]:
    """``{utt: [phone, ...]}`` from ``utt<TAB>p1 p2 ...`` lines (phones split on whitespace).

    Labels in ``drop`` are left out, as in :func:`phone_sequences`.

    Raises:
        SpeechUnitsError: missing file, a line without exactly one tab, an utterance twice
            (naming ``file:line``), no line at all.
    """
    path = Path(path)
    lowered = _lowered(drop)
    columns = read_pairs(path, what="phone transcripts", value_name="p1 p2 ...", allow_empty=True)
    if not columns:
        raise SpeechUnitsError(f"{path}: no phone transcripts")
    return {utt: [p for p in text.split() if not _is_silence(p, lowered)] for utt, text in columns.items()}


@merged_over_sources
def read_speaker_turns(path: str | os.PathLike[str]) -> dict[str, list[tuple[str, float, float]]]:
    """``{recording: [(speaker, start_s, end_s)]}`` of an RTTM file's ``SPEAKER`` lines
    (:func:`speechunits.rttm.read_rttm`); a pattern over several RTTMs merges them.

    Raises:
        SpeechUnitsError: unreadable or malformed RTTM (naming the line), or one without ``SPEAKER`` lines.
    """
    from speechunits.measure.diarization import turns_by_recording
    from speechunits.rttm import read_rttm

    turns = turns_by_recording(read_rttm(path, types={"SPEAKER"}))
    if not turns:
        raise SpeechUnitsError(f"{path}: no SPEAKER lines (an RTTM of speaker turns is expected)")
    return turns


def frame_vocabulary(alignments: Mapping[str, Sequence[Segment]]) -> Vocabulary:
    """Class vocabulary of every segment label of ``alignments`` (silence included), sorted."""
    return class_vocabulary(s.label for segments in alignments.values() for s in segments)


def frame_targets(alignments: Mapping[str, Sequence[Segment]], num_frames: Mapping[str, int], frame_rate: float,
                  frame_offset_s: float, vocabulary: Vocabulary | None = None) -> dict[str, np.ndarray]:
    """Label id of every frame, int64 ``[num_frames[utt]]``; :data:`IGNORE_INDEX` where no segment covers it.

    Frame ``i`` is labelled with the segment covering its centre ``frame_offset_s + i / frame_rate``
    (the rule of :func:`speechunits.measure.alignments.frame_segment_indices`, shared with PNMI).
    Only utterances in both ``alignments`` and ``num_frames`` are returned.

    Args:
        num_frames: frames per utterance of the probe's input (``EncoderInfo`` frame counts).
        frame_rate: frames per second; frame_offset_s: centre of frame 0 (``EncoderInfo.frame_offset_s``).
        vocabulary: a class vocabulary (default :func:`frame_vocabulary` of ``alignments``);
            a label outside it raises :class:`SpeechUnitsError`.
    """
    vocabulary = vocabulary if vocabulary is not None else frame_vocabulary(alignments)
    result: dict[str, np.ndarray] = {}
    for utt, segments in alignments.items():
        if utt not in num_frames:
            continue
        count = int(num_frames[utt])
        if count < 0:
            raise SpeechUnitsError(f"utterance {utt!r}: negative frame count {count}")
        index = frame_segment_indices(segments, count, frame_rate, frame_offset_s)
        segment_ids = np.array(vocabulary.encode(s.label for s in segments) + [IGNORE_INDEX], dtype=np.int64)
        result[utt] = segment_ids[index]
    return result


# -- one task's labels for a corpus ------------------------------------------------------------
@dataclass
class LabelSet:
    """The labels of one task for a corpus.

    Attributes:
        task: one of :data:`TASKS`.
        labels: ``{utt: label}`` in corpus order, only for utterances that have one: a phone
            list (``phones``), a transcript string (``asr``), a speaker or class string
            (``speaker``, ``classify``), int64 frame ids ``[T]`` (``frames``), a
            :class:`~speechunits.probe.diarize.SpeakerActivity` (``diarize``).
        missing: corpus utterances without a label, in corpus order (the probe skips them).
        source: the label file (or a description) the labels came from.
        unused: labelled utterances that are not in the corpus, sorted (a sign of mismatched ids).
        vocabulary: for ``frames``, the class vocabulary of the ids; otherwise ``None`` (the
            probe builds its vocabulary on the training split).
    """

    task: str
    labels: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    source: str = ""
    unused: list[str] = field(default_factory=list)
    vocabulary: Vocabulary | None = None


def _as_alignments(alignments: Alignments | str | os.PathLike[str]) -> tuple[Alignments, str]:
    if isinstance(alignments, Mapping):
        return dict(alignments), "the given alignments"
    return load_alignments(alignments), str(alignments)


def load_task_labels(
    task: str,
    corpus_ids: Sequence[str],
    *,
    alignments: Alignments | str | os.PathLike[str] | None = None,
    transcripts: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    speakers: str | os.PathLike[str] | Mapping[str, str] | None = None,
    frame_rate: float | None = None,
    frame_offset_s: float | None = None,
    num_frames: Mapping[str, int] | None = None,
    vocabulary: Vocabulary | None = None,
    speaker_slots: int | None = None,
    audio: Mapping[str, tuple[str, Any]] | None = None,
) -> LabelSet:
    """Read the labels ``task`` needs and match them to ``corpus_ids`` (:func:`~speechunits.id_match.match_ids`).

    What each task reads:
        ``phones``: ``alignments`` (a path for ``load_alignments`` or its output), or else
        ``labels`` as phone transcripts (``utt<TAB>p1 p2 ...``);
        ``asr``: ``transcripts``; ``speaker``, ``verify``: ``speakers`` (a path or ``{utt: speaker}``);
        ``classify``: ``labels``; ``slots``: ``labels`` (:func:`read_slot_labels`); ``frames``:
        ``alignments`` + ``frame_rate`` + ``frame_offset_s``
        + ``num_frames`` (an utterance without a frame count counts as missing), ids of
        ``vocabulary`` when given (a trained probe's), else of :func:`frame_vocabulary` over
        the corpus's aligned utterances. ``vocabulary`` is used by ``frames`` only.
        ``diarize``: ``labels`` (an RTTM, :func:`read_speaker_turns`) + ``frame_rate`` +
        ``frame_offset_s`` + ``num_frames``, as ``frames``; recordings keyed by the corpus's ids
        (:func:`~speechunits.id_match.rekey`); with ``speaker_slots``, a recording with more
        speakers than that is an error naming it.
        ``enhance``, ``separate``: ``labels`` (references: an scp such as ESPnet's ``spk1.scp``, or for
        ``enhance`` a folder; ``separate`` reads its ``spkK.scp`` siblings too) + ``audio`` (``{utt:
        (mixture path, raw format)}``) + ``frame_rate`` (:mod:`speechunits.probe.masking`).

    Raises:
        SpeechUnitsError: unknown task, the needed input not given, unreadable label file, or
            none of the corpus's utterances labelled (the message names the label file and
            shows ids of both sides, since mismatched ids are the usual cause).
    """
    if task not in TASKS:
        raise SpeechUnitsError(f"unknown probe task {task!r}; choose one of {', '.join(TASKS)}")
    frame_vocab = None
    found: dict[str, Any]
    if task == "phones":
        if alignments is not None:
            aligned, source = _as_alignments(alignments)
            found = phone_sequences(aligned)
        elif labels is not None:
            found, source = read_phone_transcripts(labels), str(labels)
        else:
            raise SpeechUnitsError("task 'phones' needs alignments (phones.tsv, TextGrids) or phone transcripts "
                                   "(utt<TAB>p1 p2 ...)")
    elif task == "asr":
        if transcripts is None:
            raise SpeechUnitsError("task 'asr' needs transcripts (text.tsv, a JSONL manifest with 'text', or a "
                                   "Kaldi text file)")
        found, source = read_transcripts(transcripts), str(transcripts)
    elif task in ("speaker", "verify"):
        if speakers is None:
            raise SpeechUnitsError(f"task {task!r} needs a speakers file (utt<TAB>speaker, e.g. speakers.tsv)")
        if isinstance(speakers, Mapping):
            found, source = dict(speakers), "the given speakers"
        else:
            from speechunits.corpus import read_speakers

            found, source = read_speakers(speakers), str(speakers)
    elif task == "classify":
        if labels is None:
            raise SpeechUnitsError("task 'classify' needs a label file (utt<TAB>label; a Hugging Face table's "
                                   "'label' column, or TABLE::COLUMN for another)")
        found, source = read_utterance_labels(labels), str(labels)
    elif task == "slots":
        if labels is None:
            raise SpeechUnitsError("task 'slots' needs slot labels: a SNIPS IOB file (all.iob.snips.txt) or "
                                   "utt<TAB>text with B-TYPE ... E-TYPE around each slot's words")
        found, source = read_slot_labels(labels), str(labels)
    elif task == "diarize":
        from speechunits.probe.diarize import check_speaker_slots, speaker_activity

        if labels is None:
            raise SpeechUnitsError("task 'diarize' needs speaker turns: an RTTM file (--labels FILE.rttm, or a "
                                   "file named 'rttm' in the corpus's data directory)")
        if frame_rate is None or frame_offset_s is None or num_frames is None:
            raise SpeechUnitsError("task 'diarize' needs the input's frame rate, frame offset and frame counts")
        source = str(labels)
        turns = read_speaker_turns(labels)
        turns = rekey(turns, corpus_ids, source) or turns
        found = {rec: speaker_activity(t, int(num_frames[rec]), frame_rate, frame_offset_s)
                 for rec, t in turns.items() if rec in num_frames}
        if speaker_slots is not None:
            check_speaker_slots(found, speaker_slots, source)
    elif task in ("enhance", "separate"):
        from speechunits.probe.masking import mask_labels

        if labels is None:
            what = ("clean references: an scp (utt path; a file named 'spk1.scp' in the corpus's data directory, "
                    "as ESPnet's) or a folder of clean files named as the noisy ones" if task == "enhance" else
                    "each source's scp: spk1.scp, spk2.scp, ... (utt path) in the corpus's data directory, as "
                    "ESPnet's, or the first of them")
            raise SpeechUnitsError(f"task {task!r} needs {what} (--labels)")
        if audio is None or frame_rate is None:
            raise SpeechUnitsError(f"task {task!r} needs the audio of each utterance and the input's frame rate")
        source = str(labels)
        found, first = mask_labels(task, labels, corpus_ids, audio, frame_rate)
        if not found:  # no id matched: keyed by the file's own ids, so that _match reports the mismatch
            found = dict(first)
    else:  # frames
        if alignments is None:
            raise SpeechUnitsError("task 'frames' needs alignments (phones.tsv, TextGrids)")
        if frame_rate is None or frame_offset_s is None or num_frames is None:
            raise SpeechUnitsError("task 'frames' needs the input's frame rate, frame offset and frame counts")
        aligned, source = _as_alignments(alignments)
        # keyed by the corpus's ids (all of them when none matches, so that _match reports the mismatch)
        aligned = rekey(aligned, corpus_ids, source) or aligned
        frame_vocab = vocabulary if vocabulary is not None else frame_vocabulary(aligned)
        found = frame_targets(aligned, num_frames, frame_rate, frame_offset_s, frame_vocab)
    return _match(task, corpus_ids, found, source, frame_vocab)


def _match(task: str, corpus_ids: Sequence[str], found: dict[str, Any], source: str,
           vocabulary: Vocabulary | None) -> LabelSet:
    label_of = match_ids(corpus_ids, found, source)
    matched = {utt: found[label_of[utt]] for utt in corpus_ids if utt in label_of}
    missing = [utt for utt in corpus_ids if utt not in label_of]
    used = set(label_of.values())
    unused = sorted(utt for utt in found if utt not in used)
    if not matched:
        corpus_shown = ", ".join(repr(u) for u in list(corpus_ids)[:3]) or "none"
        file_shown = ", ".join(repr(u) for u in list(found)[:3]) or "none"
        raise SpeechUnitsError(
            f"{source}: none of the corpus's {len(corpus_ids)} utterances has a {task} label "
            f"(corpus ids such as {corpus_shown}; label file ids such as {file_shown})")
    if missing:
        log.warning("%s: %d of %d utterances have no %s label and are skipped (first: %s)", source, len(missing),
                    len(corpus_ids), task, ", ".join(missing[:5]))
    return LabelSet(task, matched, missing, source, unused, vocabulary)


def find_label_files(corpus_root: str | os.PathLike[str]) -> dict[str, Path]:
    """Label files a corpus carries by convention, as ``{"alignments", "transcripts", "speakers", "labels",
    "rttm", "references", ...: path}``.

    Where: ``corpus_root`` itself when it is a directory, else the manifest's directory; also
    the parent of an audio directory whose parent is a synth corpus (holds ``corpus.json``),
    so that ``CORPUS/wavs`` finds ``CORPUS/text.tsv``. What: ``phones.tsv`` or ``textgrids/``
    (alignments); a JSONL manifest whose first record has ``text``, else ``text.tsv``, else a Kaldi
    ``text`` file (a Kaldi data directory's), else, for a directory, the directory itself when
    LibriSpeech ``*.trans.txt`` files lie under it (transcripts); a JSONL manifest whose first record
    has ``speaker``, else ``speakers.tsv``, else Kaldi's ``utt2spk``, else that LibriSpeech directory
    (speakers from its ids); a file named ``rttm`` (speaker turns, a LibriMix/Kaldi data directory's);
    ``spk1.scp`` (``references``: the first source of an ESPnet enhancement or separation data directory).
    A Common Voice TSV gives both. A Hugging Face table
    (:mod:`speechunits.layouts.hf_datasets`) is its own ``transcripts``, ``speakers`` and ``labels``
    (``classify``) source when it has such a column; so is an AudioFolder's ``metadata.csv`` or
    ``metadata.jsonl`` beside the audio. A directory shipping Speech Commands' dev/test lists is its
    own ``labels`` source (:func:`folder_labels`). For a pattern naming several corpora
    (:mod:`speechunits.sources`), each key that every corpus has, as a brace pattern over their
    files (which the label readers merge). Keys without a file are left out.
    """
    parts = expand_source(corpus_root)
    if parts is not None:  # several corpora: each label source that all of them carry, as one pattern
        # an audio file carries what its folder does: looked up once per folder (a glob may name 100k files)
        lookup_key = {p: str(Path(p).parent) if Path(p).suffix.lower() in AUDIO_EXTENSIONS else p for p in parts}
        found_by_key: dict[str, dict[str, Path]] = {}
        for part, key in lookup_key.items():
            if key not in found_by_key:
                found_by_key[key] = find_label_files(part)
        per_part = [found_by_key[lookup_key[part]] for part in parts]
        together = {key: union_pattern([found[key] for found in per_part]) for key in per_part[0]
                    if all(key in found for found in per_part)}
        return {key: pattern for key, pattern in together.items() if pattern is not None}
    root = Path(corpus_root)
    found: dict[str, Path] = {}
    table = is_table_source(root)
    if table:  # a Hugging Face table: its text and speaker columns
        if has_column(root, TEXT_COLUMNS):
            found["transcripts"] = root
        if has_column(root, SPEAKER_COLUMNS):
            found["speakers"] = root
        if has_column(root, (LABEL_COLUMN,)):
            found["labels"] = root
    if manifest_kind(root) is not None:  # a Lhotse manifest: its supervisions' texts and speakers
        carried = lhotse_label_keys(root)
        found.update({key: root for key, label in (("transcripts", "text"), ("speakers", "speaker"))
                      if label in carried})
    elif not table and is_tar_source(root):  # WebDataset shards: their samples' text, speaker, label
        carried = tar_label_keys(root)
        found.update({key: root for key, label in (("transcripts", "text"), ("speakers", "speaker"),
                                                   ("labels", "label")) if label in carried})
    if root.is_dir():
        places = [root] + ([root.parent] if (root.parent / SYNTH_MARKER).is_file() else [])
    else:
        places = [root.parent]
    manifests = [root] if root.is_file() and root.suffix.lower() in MANIFEST_SUFFIXES else \
        [place / name for place in places for name in AUDIOFOLDER_METADATA if (place / name).is_file()]
    for manifest in manifests[:1]:  # a JSONL manifest, or the AudioFolder metadata beside the audio
        for key, fields in (("transcripts", TEXT_COLUMNS), ("speakers", SPEAKER_FIELDS),
                            ("labels", (LABEL_COLUMN,))):
            if key not in found and first_record_field(manifest, fields) is not None:
                found[key] = manifest
    if common_voice_columns(root) is not None:  # a Common Voice TSV: sentences and client ids
        found["transcripts"] = found["speakers"] = root
    for key, names in (("alignments", ALIGNMENT_FILES), ("transcripts", TRANSCRIPT_FILES),
                       ("speakers", SPEAKER_FILES), ("rttm", RTTM_FILES),
                       ("references", REFERENCE_FILES)):
        if key in found:
            continue
        for place in places:
            hit = next((place / n for n in names if (place / n).exists()), None)
            if hit is not None:
                found[key] = hit
                break
    if "transcripts" not in found:  # LJSpeech: metadata.csv beside wavs/
        found.update({"transcripts": place / LJSPEECH_METADATA for place in places[:1]
                      if is_ljspeech_metadata(place / LJSPEECH_METADATA)})
    if "labels" not in found and split_lists_of(root) is not None:  # Speech Commands: the folders are the keywords
        found["labels"] = root
    if root.is_dir() and vctk_audio_dir(root) is not None:  # VCTK: txt/ and the speaker folders
        found.setdefault("transcripts", root)
        found.setdefault("speakers", root)
    if is_voxceleb_tree(root):  # VoxCeleb: the speaker folders
        found.setdefault("speakers", root)
    if is_iemocap_tree(root):  # IEMOCAP: emotions and actors
        found.setdefault("labels", root)
        found.setdefault("speakers", root)
    for place in places:  # SNIPS (SUPERB's SF): slots, and intents for classify
        if is_iob_file(place / SNIPS_LABELS):
            found.setdefault("slot_labels", place / SNIPS_LABELS)
            found.setdefault("labels", place / SNIPS_LABELS)
            break
    if root.is_dir() and not {"transcripts", "speakers"} <= set(found) and not table \
            and next(iter_librispeech_transcripts(root), None) is not None:
        # a LibriSpeech tree: its *.trans.txt files give the transcripts, their ids the speakers
        # (read_transcripts and read_speakers read such a directory)
        found.setdefault("transcripts", root)
        found.setdefault("speakers", root)
    return found



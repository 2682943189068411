"""Data of the sequence models: units of a corpus, TTS targets from alignments, parallel pairs.

TTS targets (:func:`tts_examples`). For every utterance with units and alignments:

* the input symbols are the phone labels of the alignment (``phones``; silence ``sil``), or
  the utterance's characters (``chars``, see :func:`speechunits.seq2seq.text.text_chars`),
  each word's frames shared evenly among its characters and the silences given to the ``|``
  between words (an approximation: only word boundaries are aligned);
* the duration of a symbol is the number of *unit frames* whose centre time
  (``frame_offset_s + i / frame_rate``, the codebook's timing) falls inside its segment
  (:func:`speechunits.measure.alignments.frame_segment_indices`); frames no segment covers
  go to the nearest segment before them (the first segment for leading ones). Durations sum
  to the utterance's frame count exactly; a symbol may get 0 frames;
* the target is the frame-level unit id of every frame.

Without alignments (:func:`transcript_examples`) the input symbols come from the transcript
(:func:`speechunits.seq2seq.text.transcript_tokens`) and the durations are left to the model
(monotonic alignment search, :mod:`speechunits.seq2seq.alignment`); an utterance with fewer unit
frames than symbols cannot give every symbol a frame and is skipped.

Parallel pairs (:func:`read_parallel_pairs`): ``pairs.tsv`` of ``speechunits synth parallel``
(header ``id source target source_text target_text split``, read by name), with the source and
target corpora beside it (:func:`find_pair_corpora`).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from speechunits.corpus import Corpus, open_corpus
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import Segment, frame_segment_indices
from speechunits.units.units import Units

log = logging.getLogger(__name__)

MANIFEST = "manifest.tsv"
PAIR_COLUMNS = ("id", "source", "target", "source_text", "target_text", "split")
SPLITS = ("train", "dev", "test")


# -- corpora and their units -----------------------------------------------------------------------

def corpus_root(path: str | Path) -> Path:
    """Where a corpus's label files live: the directory itself, or a manifest's directory."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def codebook_record(codebook: Any) -> dict[str, Any]:
    """What a model records of a codebook it reads or predicts (JSON)."""
    meta = codebook.meta
    offset = meta.get("frame_offset_s")
    if offset is None and meta.get("receptive_field") and meta.get("sample_rate"):
        offset = meta["receptive_field"] / (2 * meta["sample_rate"])
    return {"sha256": codebook.sha256, "k": int(codebook.k), "encoder": meta.get("encoder"),
            "encoder_identity": meta.get("encoder_identity"), "layer": meta.get("layer"),
            "frame_rate": float(meta["frame_rate"]) if meta.get("frame_rate") else None,
            "frame_offset_s": float(offset or 0.0)}


def load_codebook(path: str | Path) -> Any:
    """A single-stream codebook that names its encoder and frame rate (what the models need)."""
    from speechunits.quantize import Codebook

    codebook = Codebook.load(path)
    if getattr(codebook, "streams", 1) > 1:
        raise SpeechUnitsError(f"{path}: a multi-stream codebook ({codebook.meta.get('kind')}); sequence models "
                               "predict one unit stream")
    if not codebook.encoder_name or not codebook.meta.get("frame_rate"):
        raise SpeechUnitsError(f"{path}: the codebook does not record its encoder and frame rate")
    return codebook


def corpus_units(corpus: Corpus | Iterable[Any], codebook: Any, *, device: str = "auto", dtype: str = "fp32",
                 encoder: Any = None, quiet: bool = False) -> tuple[dict[str, Units], dict[str, str]]:
    """Frame-level units of every utterance through ``codebook`` (its encoder and layer).

    Returns:
        ``({id: Units}, {id: error})``: unreadable or too-short files are reported, not raised.
    """
    from speechunits.encoders import load_encoder
    from speechunits.features import iter_features
    from speechunits.units.tokenizer import UnitTokenizer

    encoder = encoder if encoder is not None else load_encoder(codebook.encoder_name, device=device, dtype=dtype)
    tokenizer = UnitTokenizer(encoder, [codebook])
    units: dict[str, Units] = {}
    errors: dict[str, str] = {}
    for item in iter_features(encoder, list(corpus), tokenizer.layers, quiet=quiet):
        if item.features is None:
            errors[item.utt.id] = str(item.error)
        else:
            units[item.utt.id] = tokenizer.units_from_features(item.features)[0]
    return units, errors


def store_units(path: str | Path, codebook_sha256: str) -> dict[str, Units]:
    """Frame-level units of a unit store that holds units of ``codebook_sha256`` (deduplicated ones expanded)."""
    from speechunits.units.store import UnitStore

    store = UnitStore.open(path, codebook_sha256=codebook_sha256)
    return {utt: units.expand() for utt, units in store}


# -- TTS targets -----------------------------------------------------------------------------------

def token_durations(segments: Sequence[Segment], num_frames: int, frame_rate: float,
                    frame_offset_s: float) -> np.ndarray:
    """Frames of each segment, int64 ``[len(segments)]`` summing to ``num_frames`` (see module docstring)."""
    if not segments:
        raise SpeechUnitsError("no segments to take durations from")
    index = frame_segment_indices(segments, num_frames, frame_rate, frame_offset_s)
    if index.size and index[0] < 0:
        first = np.flatnonzero(index >= 0)
        index[: first[0] if first.size else index.size] = 0
    for i in np.flatnonzero(index < 0):  # uncovered frames join the segment before them
        index[i] = index[i - 1]
    return np.bincount(index, minlength=len(segments)).astype(np.int64)


def char_segments(text: str, words: Sequence[Segment], end_s: float) -> list[Segment]:
    """Character segments of ``text`` from word segments (see module docstring); raises if they disagree.

    The word labels (normalised, possibly two glued words) must spell the text's words in order.
    """
    from speechunits.probe.vocab import WORD_BOUNDARY, normalize_text

    spoken = normalize_text(text).split()
    labels = [normalize_text(w.label).split() for w in words]
    if [x for group in labels for x in group] != spoken:
        raise SpeechUnitsError(f"word alignments {[w.label for w in words]} do not spell the text {text[:60]!r}")
    out: list[Segment] = []
    cursor = 0.0
    for word, group in zip(words, labels):
        if not group:
            continue
        out.append(Segment(cursor, max(word.start, cursor), WORD_BOUNDARY))
        chars = list(WORD_BOUNDARY.join(group))
        start = max(word.start, cursor)
        step = (word.end - start) / len(chars)
        for i, ch in enumerate(chars):
            out.append(Segment(start + i * step, start + (i + 1) * step, ch))
        cursor = max(word.end, start)
    out.append(Segment(cursor, max(end_s, cursor), WORD_BOUNDARY))
    return out


@dataclass
class TTSExample:
    """One training utterance of a TTS model.

    Attributes:
        tokens: input symbols ``[N]``; durations: int64 ``[N]`` frames per symbol (sum = frames), or None
        when the model learns them (no alignments);
        units: int64 ``[frames]`` frame-level unit ids; speaker: the speaker's name, or None; text.
    """

    utt_id: str
    tokens: list[str]
    durations: np.ndarray | None
    units: np.ndarray
    speaker: str | None
    text: str | None = None


def tts_examples(units: Mapping[str, Units], *, input_kind: str, frame_offset_s: float,
                 phones: Mapping[str, list[Segment]] | None = None,
                 words: Mapping[str, list[Segment]] | None = None,
                 texts: Mapping[str, str] | None = None,
                 speakers: Mapping[str, str] | None = None) -> tuple[list[TTSExample], dict[str, str]]:
    """Examples of every utterance of ``units`` that has what ``input_kind`` needs.

    ``phones`` input needs ``phones`` alignments; ``chars`` needs ``words`` alignments and ``texts``.
    Returns ``(examples, {id: why skipped})`` in the order of ``units``.
    """
    from speechunits.seq2seq.text import CHARS, PHONES

    examples: list[TTSExample] = []
    skipped: dict[str, str] = {}
    for utt, unit in units.items():
        frames = unit.expand()
        if frames.num_frames == 0:
            skipped[utt] = "no unit frames"
            continue
        try:
            if input_kind == PHONES:
                if phones is None or utt not in phones:
                    raise SpeechUnitsError("no phone alignment")
                segments = phones[utt]
            elif input_kind == CHARS:
                if words is None or utt not in words or texts is None or utt not in texts:
                    raise SpeechUnitsError("no word alignment or transcript")
                end_s = frame_offset_s + frames.num_frames / frames.frame_rate
                segments = char_segments(texts[utt], words[utt], end_s)
            else:
                raise SpeechUnitsError(f"unknown input kind {input_kind!r}")
            durations = token_durations(segments, frames.num_frames, frames.frame_rate, frame_offset_s)
        except SpeechUnitsError as exc:
            skipped[utt] = str(exc)
            continue
        speaker = None if speakers is None else speakers.get(utt)
        examples.append(TTSExample(utt, [s.label for s in segments], durations, frames.ids, speaker,
                                   None if texts is None else texts.get(utt)))
    return examples, skipped


def transcript_examples(units: Mapping[str, Units], tokens: Mapping[str, list[str]], *,
                        texts: Mapping[str, str] | None = None,
                        speakers: Mapping[str, str] | None = None) -> tuple[list[TTSExample], dict[str, str]]:
    """Examples without durations (to be learned) of every utterance of ``units`` with ``tokens``.

    Returns ``(examples, {id: why skipped})`` in the order of ``units``: utterances without tokens,
    without frames, or with fewer frames than tokens are skipped.
    """
    examples: list[TTSExample] = []
    skipped: dict[str, str] = {}
    for utt, unit in units.items():
        frames = unit.expand()
        if utt not in tokens:
            skipped[utt] = "no transcript"
        elif frames.num_frames < len(tokens[utt]):
            skipped[utt] = (f"{frames.num_frames} unit frames for {len(tokens[utt])} symbols: every symbol "
                            "needs at least one frame")
        else:
            speaker = None if speakers is None else speakers.get(utt)
            examples.append(TTSExample(utt, list(tokens[utt]), None, frames.ids, speaker,
                                       None if texts is None else texts.get(utt)))
    return examples, skipped


# -- parallel pairs --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParallelPair:
    """One row of ``pairs.tsv``: utterance ids in the source and target corpora, their texts and split."""

    id: str
    source: str
    target: str
    source_text: str
    target_text: str
    split: str


def read_parallel_pairs(path: str | Path) -> list[ParallelPair]:
    """Rows of a ``pairs.tsv`` (columns found by header name; extra columns ignored).

    Raises:
        SpeechUnitsError: missing file or columns, short rows, unknown split, an id twice, no rows.
    """
    from speechunits.files import iter_text_lines

    path = Path(path)
    lines = iter_text_lines(path, "pairs file")
    first = next(lines, None)
    if first is None:
        raise SpeechUnitsError(f"{path}: empty pairs file")
    header = first[1].split("\t")
    missing = [c for c in PAIR_COLUMNS if c not in header]
    if missing:
        raise SpeechUnitsError(f"{path}: header lacks {missing} (expected {'<TAB>'.join(PAIR_COLUMNS)})")
    where = {c: header.index(c) for c in PAIR_COLUMNS}
    pairs: list[ParallelPair] = []
    seen: set[str] = set()
    for line_no, line in lines:
        cols = line.split("\t")
        if len(cols) < len(header):
            raise SpeechUnitsError(f"{path}:{line_no}: {len(cols)} columns, the header has {len(header)}")
        pair = ParallelPair(**{c: cols[where[c]].strip() for c in PAIR_COLUMNS})
        if pair.split not in SPLITS:
            raise SpeechUnitsError(f"{path}:{line_no}: split {pair.split!r} is not one of {SPLITS}")
        if pair.id in seen:
            raise SpeechUnitsError(f"{path}:{line_no}: pair {pair.id!r} listed twice")
        seen.add(pair.id)
        pairs.append(pair)
    if not pairs:
        raise SpeechUnitsError(f"{path}: no pairs")
    return pairs


def find_pair_corpora(pairs_path: str | Path, pairs: Sequence[ParallelPair], *,
                      source: str | Path | None = None, target: str | Path | None = None,
                      need_source: bool = True, need_target: bool = True) -> tuple[Path | None, Path | None]:
    """The source and target corpus directories of ``pairs``: given, or the sub-directories of
    ``pairs.tsv``'s directory whose manifests hold the first pair's source / target id. A side that
    is not needed (text, not audio: speech-to-text translation has no target audio) is None unless given."""
    root = Path(pairs_path).parent

    @functools.cache
    def corpora() -> dict[Path, set[str]]:  # read only when a side has to be found
        candidates = sorted(p for p in root.iterdir()
                            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())
        return {p: {u.id for u in open_corpus(p / MANIFEST)} for p in candidates}

    def side(given: str | Path | None, needed: bool, utt: str) -> Path | None:
        if given is not None or not needed:
            return Path(given) if given is not None else None
        hits = [p for p, held in corpora().items() if utt in held]
        if len(hits) != 1:
            raise SpeechUnitsError(f"{root}: {'no' if not hits else 'more than one'} corpus directory holds "
                                   f"utterance {utt!r}; give --source-corpus and --target-corpus")
        return hits[0]

    return side(source, need_source, pairs[0].source), side(target, need_target, pairs[0].target)

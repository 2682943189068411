"""Training a TTS model (text or phones -> units) on a corpus, on the one training loop.

``train_tts(corpus, codebook, out_dir, ...)``:

1. units of every utterance: the codebook's encoder and layer over the corpus (frame level),
   or a unit store of that codebook (``units``);
2. symbols and durations (``durations``): from the corpus's alignments
   (:func:`speechunits.seq2seq.data.tts_examples`), or, without alignments (``"mas"``; ``"auto"``
   picks alignments when the corpus has them), symbols from its transcripts (espeak-ng phones or
   characters, :func:`speechunits.seq2seq.text.transcript_tokens`) and durations learned during
   training: the model's aligner and monotonic alignment search (:mod:`speechunits.seq2seq.alignment`).
   The model directory records the source (``training.durations``). A corpus with neither
   alignments nor transcripts is refused with what to do about it;
3. a held-out share of the *sentences* (``holdout``; every utterance of a held-out sentence)
   is kept out of training and scored at the end: unit error rate, unit BLEU, diversity of
   the predicted deduplicated units against the reference ones;
4. the :class:`~speechunits.seq2seq.tasks.TTSTask` on :class:`speechunits.training.Trainer`
   (AdamW, warmup + decay, bf16, time budget, DDP, exact resume from ``out_dir/training``),
   the model directory (:mod:`speechunits.seq2seq.model_dir`) exported at every checkpoint.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.seq2seq.data import TTSExample

log = logging.getLogger(__name__)

SPEAKER_MODES = ("auto", "table", "none")
DEFAULT_HOLDOUT = 0.05
#: Model settings under the caller's ``model`` overrides: the autoregressive unit head, which
#: nearly halved the judge's PER of synthesised dev sentences against the parallel head's argmax
#: (docs/seq2seq.md, result of 2026-12-01; ``ar_hidden=0`` for the parallel head alone).
DEFAULT_MODEL = {"ar_hidden": 256}
#: Where the durations of the input symbols come from (``auto``: alignments when the corpus has them, else MAS).
DURATION_SOURCES = ("auto", "alignments", "mas")


def sentence_holdout(ids: Sequence[str], texts: Mapping[str, str] | None, fraction: float,
                     seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train, held_out)`` ids: a ``fraction`` of the distinct sentences (all their utterances) held out.

    Without transcripts the utterances themselves are drawn. ``fraction`` 0 holds out nothing.
    """
    if not 0.0 <= fraction < 1.0:
        raise SpeechUnitsError(f"--holdout must lie in [0, 1), got {fraction}")
    if fraction == 0.0:
        return list(ids), []
    key = {i: (" ".join(texts[i].lower().split()) if texts and i in texts else i) for i in ids}
    distinct = sorted(set(key.values()))
    count = max(1, int(round(fraction * len(distinct)))) if len(distinct) > 1 else 0
    rng = np.random.default_rng(seed)
    held = {distinct[j] for j in rng.permutation(len(distinct))[:count].tolist()}
    return [i for i in ids if key[i] not in held], [i for i in ids if key[i] in held]


def _corpus_labels(corpus: str | Path, input_kind: str, alignments: str | Path | None,
                   speaker_mode: str, durations: str = "auto") -> dict[str, Any]:
    """Alignments or transcripts, and speakers, of a corpus, or a SpeechUnitsError saying what is missing.

    ``labels["durations"]`` is the duration source ``durations`` resolves to (``alignments`` or ``mas``).
    """
    from speechunits.corpus import read_speakers
    from speechunits.measure.alignments import load_alignments
    from speechunits.probe.labels import find_label_files, read_transcripts
    from speechunits.seq2seq.data import corpus_root
    from speechunits.seq2seq.text import CHARS, INPUT_KINDS, PHONES

    if durations not in DURATION_SOURCES:
        raise SpeechUnitsError(f"--durations must be one of {DURATION_SOURCES}, got {durations!r}")
    if input_kind not in INPUT_KINDS:
        raise SpeechUnitsError(f"--input must be phones or chars, got {input_kind!r}")
    found = find_label_files(corpus)
    source = Path(alignments) if alignments is not None else found.get("alignments")
    labels: dict[str, Any] = {"texts": read_transcripts(found["transcripts"]) if "transcripts" in found else None}
    if durations == "auto":
        if source is None and labels["texts"] is None:
            raise SpeechUnitsError(
                f"{corpus}: neither alignments (phones.tsv, textgrids/ or --alignments) nor transcripts (text.tsv, "
                "a JSONL manifest with 'text', or a Kaldi text file): TTS training needs at least a transcript of "
                "every utterance (the durations are then learned)")
        durations = "alignments" if source is not None else "mas"
    labels["durations"] = durations
    if durations == "mas":
        if labels["texts"] is None:
            raise SpeechUnitsError(f"{corpus}: --durations mas needs transcripts (text.tsv, a JSONL manifest with "
                                   "'text', or a Kaldi text file)")
    elif source is None:
        raise SpeechUnitsError(
            f"{corpus}: no alignments (phones.tsv, textgrids/ or --alignments): --durations alignments needs the "
            "duration of every phone in unit frames. Align the corpus first (e.g. Montreal Forced Aligner TextGrids "
            "with 'phones' and 'words' tiers) and pass them with --alignments, or learn the durations from the "
            "transcripts with --durations mas")
    elif input_kind == PHONES:
        labels["phones"] = load_alignments(source, tier="phones")
    elif input_kind == CHARS:
        words_source = source if source.suffix.lower() == ".textgrid" or source.is_dir() else corpus_root(corpus)
        labels["words"] = load_alignments(words_source, tier="words", silence=None)
        if labels["texts"] is None:
            raise SpeechUnitsError(f"{corpus}: --input chars needs transcripts (text.tsv, a JSONL manifest with "
                                   "'text', or a Kaldi text file)")
    labels["speakers"] = None
    if speaker_mode == "auto":  # a table when the corpus names its speakers, else one voice (LJSpeech)
        speaker_mode = "table" if "speakers" in found else "none"
        if speaker_mode == "none":
            log.info("%s: no speakers file: one voice (--speaker none)", corpus)
    if speaker_mode == "table":
        if "speakers" not in found:
            raise SpeechUnitsError(f"{corpus}: --speaker table needs speakers.tsv (utt<TAB>speaker); "
                                   "use --speaker none for a single-voice model")
        labels["speakers"] = read_speakers(found["speakers"])
    elif speaker_mode != "none":
        raise SpeechUnitsError(f"--speaker must be one of {SPEAKER_MODES}, got {speaker_mode!r}")
    return labels


def corpus_examples(units: Mapping[str, Any], labels: Mapping[str, Any], *, input_kind: str, frame_offset_s: float,
                    voice: str | None, rate: int | None) -> tuple[list[TTSExample], dict[str, str]]:
    """TTS examples of the utterances with units, by the labels' duration source: ``(examples, {id: why skipped})``."""
    from speechunits.id_match import rekey
    from speechunits.seq2seq.data import transcript_examples, tts_examples
    from speechunits.seq2seq.text import PHONES, transcript_tokens

    # keyed by the units' ids (a corpus folder's flac/u1 is its phones.tsv's u1: speechunits.id_match)
    labels = {**labels, **{key: rekey(labels[key], units, f"the corpus's {key}")
                           for key in ("phones", "words", "texts", "speakers") if labels.get(key) is not None}}
    if labels["durations"] == "alignments":
        return tts_examples(units, input_kind=input_kind, frame_offset_s=frame_offset_s, phones=labels.get("phones"),
                            words=labels.get("words"), texts=labels["texts"], speakers=labels["speakers"])
    if input_kind == PHONES and not voice:
        raise SpeechUnitsError("phones from transcripts need the espeak-ng voice of the corpus's language: give "
                               "--voice (e.g. en-us), or use --input chars")
    texts = {utt: text for utt, text in labels["texts"].items() if utt in units}
    tokens, skipped = transcript_tokens(texts, input_kind, voice, rate)
    examples, more = transcript_examples(units, tokens, texts=labels["texts"], speakers=labels["speakers"])
    return examples, {**more, **skipped}


def corpus_voice(corpus: str | Path) -> tuple[str | None, int | None]:
    """The espeak-ng voice (variant stripped) of a synth corpus's first speaker and the median speaking
    rate of its speakers, from ``speaker_info.tsv``; ``(None, None)`` without one.

    Raises:
        SpeechUnitsError: a ``speaker_info.tsv`` that is there but malformed.
    """
    from speechunits.seq2seq.data import corpus_root
    from speechunits.seq2seq.text import base_voice
    from speechunits.synth.speakers import read_speaker_info

    path = corpus_root(corpus) / "speaker_info.tsv"
    if not path.is_file():
        return None, None
    speakers = read_speaker_info(path)
    return base_voice(speakers[0].voice), int(np.median([s.rate for s in speakers]))


def encode_examples(examples: Sequence[TTSExample], symbols: Any, speakers: Sequence[str]) -> list[Any]:
    """Examples as :class:`~speechunits.seq2seq.tasks.TTSItem` (symbol ids, speaker rows)."""
    from speechunits.seq2seq.tasks import TTSItem

    rows = {name: i for i, name in enumerate(speakers)}
    items = []
    for ex in examples:
        if speakers and ex.speaker not in rows:
            raise SpeechUnitsError(f"{ex.utt_id}: speaker {ex.speaker!r} is not in the model's speaker table")
        items.append(TTSItem(np.asarray(symbols.encode(ex.tokens, source=ex.utt_id), dtype=np.int64),
                             ex.durations, ex.units, rows[ex.speaker] if speakers else None))
    return items


def score_tts(bundle: Any, examples: Sequence[TTSExample], *, device: Any = "cpu") -> dict[str, float]:
    """Sequence scores of the units ``bundle`` predicts from the examples' symbols against their units (deduplicated)."""
    from speechunits.measure.sequences import sequence_scores
    from speechunits.units.units import Units

    if not examples:
        return {}
    k, rate = int(bundle.units["k"]), float(bundle.units["frame_rate"])
    hyps, refs = [], []
    for ex in examples:
        ids = bundle.symbols.encode(ex.tokens, unknown="unk")
        hyps.append(bundle.units_of_tokens([ids], ex.speaker if bundle.speakers else None, device=device)[0].ids)
        refs.append(Units(ex.units, rate, k).dedup().ids)
    return sequence_scores(refs, hyps)


def train_tts(corpus: str | Path, codebook: str | Path, out_dir: str | Path, *, units: str | Path | None = None,
              input_kind: str = "phones", speaker: str = "auto", alignments: str | Path | None = None,
              voice: str | None = None, holdout: float = DEFAULT_HOLDOUT, model: Mapping[str, Any] | None = None,
              optim: Any = None, batch_frames: int = 6000, duration_weight: float = 1.0, durations: str = "auto",
              alignment_weight: float = 1.0, resume: bool = False, device: str = "auto", dtype: str = "fp32",
              quiet: bool = False) -> dict[str, Any] | None:
    """Train a TTS model into ``out_dir`` (see the module docstring); the summary (None on ranks other than 0).

    Args:
        corpus: audio corpus with alignments or transcripts, and speakers, beside it (a synth corpus).
        codebook: the codebook whose units the model predicts. units: a store of those units (else encoded).
        input_kind: ``"phones"`` or ``"chars"``. speaker: ``"table"``, ``"none"``, or ``"auto"`` (a table
            when the corpus has a speakers file, else one voice).
        voice: espeak-ng voice to phonemise new text with (default: the corpus's); also the
            transcripts' when the durations are learned.
        durations: ``"alignments"``, ``"mas"`` (learned from transcripts) or ``"auto"`` (see the module docstring).
        alignment_weight: of the aligner's forward-sum loss (``mas``).
        model: :class:`~speechunits.seq2seq.tts_model.TTSConfig` fields to override.
        optim: an :class:`~speechunits.training.OptimConfig` (default: 4000 steps, lr 1e-3).
    """
    from speechunits.corpus import open_corpus_via_manifest
    from speechunits.seq2seq.data import codebook_record, corpus_units, load_codebook, store_units
    from speechunits.seq2seq.model_dir import TTS_FILE, load_tts, read_meta, write_model_dir
    from speechunits.seq2seq.symbols import SymbolTable, symbols_of
    from speechunits.seq2seq.tasks import TTSTask
    from speechunits.seq2seq.text import PHONES
    from speechunits.seq2seq.tts_model import TTSConfig, TTSModel
    from speechunits.training import OptimConfig, Trainer, init_distributed
    from speechunits.training.checkpoint import has_checkpoint

    out = Path(out_dir)
    if has_checkpoint(out) and not resume:
        raise SpeechUnitsError(f"{out}: holds a training checkpoint; pass --resume to continue it, or another -o")
    if resume and not has_checkpoint(out):
        raise SpeechUnitsError(f"{out}: no checkpoint to resume")
    optim = optim or OptimConfig(steps=4000, lr=1e-3, warmup_steps=200, schedule="cosine")
    dist, dev = init_distributed(device)
    cb = load_codebook(codebook)
    record = codebook_record(cb)
    utterances = open_corpus_via_manifest(corpus).require_utterances()  # a missing corpus before its label files
    labels = _corpus_labels(corpus, input_kind, alignments, speaker, durations)
    source = labels["durations"]
    if units is not None:
        unit_map = store_units(units, cb.sha256)
        errors: dict[str, str] = {}
    else:
        unit_map, errors = corpus_units(utterances, cb, device=str(dev), dtype=dtype, quiet=quiet or not dist.is_main)
    if not unit_map:
        raise SpeechUnitsError(f"{corpus}: no utterance gave units ({len(errors)} errors)")
    found_voice, found_rate = corpus_voice(corpus)
    if input_kind == PHONES and source == "alignments" and not (voice or found_voice) and not resume:
        log.warning("%s: the model reads the phones of its alignments and knows no espeak-ng voice: `tts say` will "
                    "need phones (--phones 'p l iy z'); give --voice if the alignments' phones are espeak-ng's, or "
                    "train on characters (--input chars) to read text", corpus)
    examples, skipped = corpus_examples(unit_map, labels, input_kind=input_kind,
                                        frame_offset_s=record["frame_offset_s"], voice=voice or found_voice,
                                        rate=found_rate)
    if labels["speakers"] is not None:
        missing = [ex.utt_id for ex in examples if ex.speaker is None]
        if missing:
            raise SpeechUnitsError(f"{corpus}: {len(missing)} utterances have no speaker (first: {missing[0]})")
    if not examples:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
        what = "alignments" if source == "alignments" else "a usable transcript"
        raise SpeechUnitsError(f"{corpus}: no utterance has both units and {what} ({reasons})")
    if skipped:
        log.warning("%d utterances skipped (first: %s)", len(skipped),
                    "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3]))
    train_ids, held_ids = sentence_holdout([ex.utt_id for ex in examples], labels["texts"], holdout, optim.seed)
    by_id = {ex.utt_id: ex for ex in examples}
    train_examples = [by_id[i] for i in train_ids]
    held_examples = [by_id[i] for i in held_ids]
    if not train_examples:
        raise SpeechUnitsError(f"{corpus}: nothing left to train on after holding out {len(held_ids)} utterances")

    if resume:
        old = read_meta(out, TTS_FILE, "TTS model")
        if old["units"]["sha256"] != cb.sha256:
            raise SpeechUnitsError(f"{out} predicts units of codebook {old['units']['sha256'][:12]}; "
                                   f"{codebook} is {cb.sha256[:12]}")
        trained_with = old.get("training", {}).get("durations", "alignments")
        if trained_with != source:
            raise SpeechUnitsError(f"{out} was trained with durations from {trained_with}; this run would take them "
                                   f"from {source} (--durations {trained_with} to resume it)")
        symbols = SymbolTable.from_json(old["input"]["symbols"], str(out))
        speakers = list(old.get("speakers") or [])
        config = TTSConfig.from_dict(old["config"])
    else:
        symbols = symbols_of((ex.tokens for ex in examples), input_kind)
        speakers = sorted({ex.speaker for ex in examples if ex.speaker is not None}) \
            if labels["speakers"] is not None else []
        overrides = {**DEFAULT_MODEL, **dict(model or {})}
        if source == "alignments" and overrides.get("alignment_dim"):
            raise SpeechUnitsError("alignment_dim: the aligner learns durations, which this corpus's alignments "
                                   "give (--durations mas to learn them instead)")
        aligner = {"alignment_dim": int(overrides.get("dim", TTSConfig.dim))} if source == "mas" else {}
        config = TTSConfig(**{"vocab_size": len(symbols), "num_units": cb.k, "num_speakers": len(speakers),
                              **aligner, **overrides})
    if source == "mas" and not config.alignment_dim:
        raise SpeechUnitsError("--durations mas learns the durations with the model's aligner: alignment_dim must "
                               "be > 0")
    items = encode_examples(train_examples, symbols, speakers)
    meta = {"kind": "tts", "config": config.to_dict(),
            "input": {"kind": input_kind, "symbols": symbols.to_json(), "voice": voice or found_voice,
                      "rate": found_rate},
            "speakers": speakers, "units": {**record, "dedup_output": True}, "codebook_meta": cb.meta,
            "data": {"corpus": str(corpus), "train_utterances": len(train_examples),
                     "heldout_utterances": len(held_examples), "skipped": len(skipped) + len(errors),
                     "train_seconds": float(sum(len(ex.units) for ex in train_examples) / record["frame_rate"]),
                     "heldout_ids": held_ids},
            "training": {"batch_frames": batch_frames, "duration_weight": duration_weight, "durations": source,
                         **({"alignment_weight": alignment_weight} if source == "mas" else {})}}
    net = TTSModel(config).to(dev)
    task = TTSTask(items, frame_rate=record["frame_rate"], batch_frames=batch_frames, seed=optim.seed,
                   duration_weight=duration_weight, alignment_weight=alignment_weight)
    trainer = Trainer(net, task, optim, out, device=dev, dist=dist,
                      state={"consumes": {"input": input_kind, "codebook_sha256": cb.sha256}, "tts": meta["training"]},
                      export=lambda m, d: write_model_dir(d, m, meta, TTS_FILE), desc="tts", amount_unit="s audio",
                      quiet=quiet)
    start = trainer.restore()["step"] if resume else 0
    started = time.perf_counter()
    result = trainer.run(start)
    if not dist.is_main:
        return None
    bundle = load_tts(out, device=dev)
    scores = score_tts(bundle, held_examples, device=dev)
    meta["heldout"] = scores
    meta["result"] = {"steps_done": result.steps_done, "steps_max": result.steps_max,
                      "stop_reason": result.stop_reason, "train_minutes": (time.perf_counter() - started) / 60.0,
                      "final_loss": result.history[-1].loss if result.history else None}
    write_model_dir(out, bundle.model, meta, TTS_FILE)
    return {"tts": str(out), "durations": source, "train_utterances": len(train_examples),
            "heldout_utterances": len(held_examples),
            "skipped": len(skipped) + len(errors), "speakers": len(speakers), **meta["result"], "heldout": scores}

"""Using trained sequence models: text -> units -> speech (:func:`say`), speech -> units -> speech
and speech -> text (:func:`translate`), and text -> text (:func:`translate_texts`, the cascade's translator).

Units go to the vocoder of contract A (``speechunits.vocoder.load_vocoder(...).synthesize``)
after :func:`speechunits.seq2seq.model_dir.check_vocoder` has made sure it speaks the
model's codebook:

* a deduplicating vocoder gets deduplicated units: with the TTS model's durations, or (S2UT,
  which predicts no durations) without, for its own duration predictor;
* a frame-level vocoder gets the TTS units expanded by their durations; S2UT units cannot
  be expanded, and such a vocoder is refused.

Unit stores written here are deduplicated; S2UT stores carry duration 1 for every unit (the
model does not predict durations).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def vocoder_units(units: Any, vocoder: Any, *, model: str) -> Any:
    """``units`` in the form ``vocoder`` reads (see the module docstring)."""
    if bool(vocoder.meta.get("dedup")):
        return units
    if units.durations is None:
        raise SpeechUnitsError(f"{model} predicts deduplicated units without durations; this vocoder reads "
                               "frame-level units: use a vocoder trained on deduplicated units (it predicts durations)")
    return units.expand()


def _load_vocoder(path: str | Path, device: str) -> Any:
    try:
        from speechunits.vocoder import load_vocoder
    except ImportError:
        raise SpeechUnitsError("speech output needs speechunits.vocoder (unit vocoders), not in this install") from None
    return load_vocoder(path, device=device)


def _write_store(path: Path, ids: Sequence[str], units: Sequence[Any], codebook_meta: dict | None) -> None:
    from speechunits.units.store import write_units
    from speechunits.units.units import Units

    if codebook_meta is None:
        raise SpeechUnitsError("the model does not record its codebook's metadata: cannot write a unit store")
    rows = [(i, u if u.durations is not None else Units(u.ids, u.frame_rate, u.vocab_size, np.ones(len(u), np.int64)))
            for i, u in zip(ids, units)]
    write_units(path, rows, codebook_meta, dedup=True)


def say(tts: str | Path, texts: Sequence[str], *, ids: Sequence[str] | None = None, out: str | Path | None = None,
        units_out: str | Path | None = None, vocoder: str | Path | None = None, speaker: str | None = None,
        vocoder_speaker: str | None = None, voice: str | None = None, phones: bool = False,
        duration_scale: float = 1.0, temperature: float = 0.0, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """Speak ``texts`` with a TTS model and a vocoder.

    Args:
        out: a ``.wav`` path for one text, or a directory for several (``<id>.wav``); needs ``vocoder``.
        units_out: a new unit store of the predicted (deduplicated) units.
        speaker: the TTS speaker; vocoder_speaker: the vocoder's (default: the same name).
        temperature, seed: frame units drawn at this temperature (0: argmax), see ``TTSBundle.units_of``.
        phones: ``texts`` are space-separated phone symbols of the model's inventory, not text.

    Returns:
        ``{"units": [Units], "wavs": [paths]}``.
    """
    from speechunits.device import resolve_device
    from speechunits.seq2seq.model_dir import check_vocoder, load_tts

    if not texts:
        raise SpeechUnitsError("no text to say")
    if out is None and units_out is None:
        raise SpeechUnitsError("say: give an output (-o out.wav or a directory) or a unit store (--units-out)")
    ids = list(ids) if ids is not None else [f"{i:04d}" for i in range(len(texts))]
    dev = resolve_device(device)
    bundle = load_tts(tts, device=dev)
    bundle.speaker_row(speaker)  # an unknown speaker fails before any work
    voc = None
    if out is not None:
        if vocoder is None:
            raise SpeechUnitsError("audio output needs a vocoder (--vocoder)")
        voc = _load_vocoder(vocoder, str(dev))
        check_vocoder(voc, bundle.units, model=str(tts), vocoder_path=str(vocoder))
    units = bundle.units_of(texts, speaker, voice=voice, phones=phones, duration_scale=duration_scale,
                            temperature=temperature, seed=seed, device=dev)
    if units_out is not None:
        _write_store(Path(units_out), ids, units, bundle.meta.get("codebook_meta"))
    wavs: list[Path] = []
    if voc is not None and out is not None:
        paths = _wav_paths(Path(out), ids)
        for path, unit in zip(paths, units):
            audio = voc.synthesize(vocoder_units(unit, voc, model=str(tts)), speaker=vocoder_speaker or speaker)
            path.parent.mkdir(parents=True, exist_ok=True)
            audio.save(path)
            wavs.append(path)
    return {"units": units, "wavs": wavs}


def _translation_wav(out: Path, utt_id: str) -> Path:
    """Where ``translate`` writes the audio of ``utt_id``."""
    return out / "wavs" / f"{utt_id.replace('/', '_')}.wav"


def _wav_paths(out: Path, ids: Sequence[str]) -> list[Path]:
    if out.suffix.lower() == ".wav":
        if len(ids) != 1:
            raise SpeechUnitsError(f"{out}: one .wav file for {len(ids)} texts; give a directory")
        return [out]
    return [out / f"{i}.wav" for i in ids]


def read_text_file(path: str | Path) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of a text file: ``id<TAB>text`` lines, or plain lines (ids ``0000``, ``0001`` ...)."""
    from speechunits.files import iter_text_lines

    ids, texts = [], []
    for n, (line_no, line) in enumerate(iter_text_lines(path, "text file")):
        if "\t" in line:
            utt, text = line.split("\t", 1)
        else:
            utt, text = f"{n:04d}", line
        if not text.strip():
            raise SpeechUnitsError(f"{path}:{line_no}: empty text")
        ids.append(utt.strip())
        texts.append(text.strip())
    if not texts:
        raise SpeechUnitsError(f"{path}: no text")
    if len(set(ids)) != len(ids):
        raise SpeechUnitsError(f"{path}: an id is listed twice")
    return ids, texts


def source_inputs(bundle: Any, corpus: Any, *, source_codebook: str | Path | None = None,
                  encoder: str | None = None, device: str = "auto", quiet: bool = False
                  ) -> tuple[dict[str, Any], dict[str, str], float]:
    """What the S2UT model reads of each utterance of ``corpus``: ``(sources, errors, audio seconds)``.

    The source is checked against the model's record: encoder identity and layers, or codebook sha256.
    """
    from speechunits.seq2seq.data import corpus_units, load_codebook
    from speechunits.seq2seq.model_dir import check_codebook
    from speechunits.seq2seq.symbols import units_to_ids

    record = bundle.source
    if record["kind"] == "features":
        from speechunits.probe.feature_inputs import EncoderInput
        from speechunits.probe.inputs import check_identity

        inputs = EncoderInput(encoder or record["encoder"], record["layers"], corpus=corpus, device=device,
                              quiet=quiet)
        check_identity({**record, "kind": "features"}, inputs.identity())
        loaded = inputs.load()
        sources = {i: s.features[0] for i, s in loaded.samples.items()}
        seconds = sum(s.shape[0] for s in sources.values()) / inputs.frame_rate
        return sources, loaded.errors, seconds
    if record["kind"] == "units":
        if source_codebook is None:
            raise SpeechUnitsError(f"{bundle.path} reads units of codebook {str(record['sha256'])[:12]}: give that "
                                   "codebook (--source-codebook) to turn the audio into them")
        codebook = load_codebook(source_codebook)
        check_codebook(record, codebook.sha256, model=bundle.path, role="reads", source=str(source_codebook))
        units, errors = corpus_units(corpus, codebook, device=device, quiet=quiet)
        sources = {i: np.asarray(units_to_ids(u.dedup().ids), dtype=np.int64) for i, u in units.items()}
        return sources, errors, sum(u.duration_s for u in units.values())
    raise SpeechUnitsError(f"{bundle.path} reads {record['kind']}, not audio")


def translate(inputs: str | Path, s2ut: str | Path, out_dir: str | Path, *, vocoder: str | Path | None = None,
              speaker: str | None = None, beam: int | None = None, source_codebook: str | Path | None = None,
              encoder: str | None = None, references: str | Path | None = None, device: str = "auto",
              quiet: bool = False) -> dict[str, Any]:
    """Translate audio with a model trained on speech sources.

    A unit target gives ``OUT/units/`` (unit store) and, with ``vocoder``, ``OUT/wavs/<id>.wav``; a text
    target (speech-to-text translation, SUPERB's ST) gives ``OUT/text.tsv`` (``id<TAB>translation``),
    scored against ``references`` (``id<TAB>text`` lines) by corpus BLEU and CER when given.
    Utterances that could not be read are listed in ``OUT/errors.tsv``.

    Returns:
        ``{"utterances", "errors", "audio_seconds", "decode_seconds"}`` and ``"units": {id: Units}`` or
        ``"texts": {id: str}`` (with ``references``: ``"bleu"``, ``"cer"``, ``"scored"``, ``"unreferenced"``).
    """
    import time

    from speechunits.device import resolve_device
    from speechunits.corpus import open_corpus_via_manifest, refuse_output_in_input, refuse_overwriting_input
    from speechunits.seq2seq.model_dir import check_vocoder, load_s2ut
    from speechunits.seq2seq.symbols import ids_to_units
    from speechunits.units.units import Units

    out = Path(out_dir)
    dev = resolve_device(device)
    bundle = load_s2ut(s2ut, device=dev)
    target = bundle.target
    if target["kind"] not in ("units", "text"):
        raise SpeechUnitsError(f"{s2ut} predicts {target['kind']}, not units or text")
    text_out = target["kind"] == "text"
    if text_out and vocoder is not None:
        raise SpeechUnitsError(f"{s2ut} translates speech into text: there are no units for a vocoder to voice")
    if references is not None and not text_out:
        raise SpeechUnitsError(f"--references scores text translations; {s2ut} predicts units (score them "
                               "with evaluate-audio's ASR after the vocoder)")
    written = out / ("text.tsv" if text_out else "units")
    if written.exists():
        raise SpeechUnitsError(f"{written} exists: translate into a new directory")
    refuse_output_in_input(inputs, out)
    reference_texts = dict(zip(*read_text_file(references))) if references is not None else None  # before decoding
    voc = None
    if vocoder is not None:
        voc = _load_vocoder(vocoder, str(dev))
        check_vocoder(voc, target, model=str(s2ut), vocoder_path=str(vocoder))
        if not bool(voc.meta.get("dedup")):
            raise SpeechUnitsError(f"{s2ut} predicts deduplicated units without durations; the vocoder {vocoder} "
                                   "reads frame-level units: use a vocoder trained on deduplicated units")
    corpus = open_corpus_via_manifest(inputs)
    sources, errors, seconds = source_inputs(bundle, corpus, source_codebook=source_codebook,
                                             encoder=encoder, device=str(dev), quiet=quiet)
    if not sources:
        raise SpeechUnitsError(f"{inputs}: no utterance could be read ({len(errors)} errors)")
    ids = list(sources)
    if voc is not None:  # a manifest's audio may lie under OUT/wavs: check every target before any is written
        input_paths = {utt.id: utt.path for utt in corpus}
        for utt in ids:
            refuse_overwriting_input(_translation_wav(out, utt), input_paths[utt])
    started = time.perf_counter()
    decoded = bundle.decode([sources[i] for i in ids], beam=beam, device=dev)
    decode_seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    if errors:
        (out / "errors.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in errors.items()), encoding="utf-8")
    result: dict[str, Any] = {"utterances": len(ids), "errors": len(errors), "audio_seconds": seconds,
                              "decode_seconds": decode_seconds}
    if text_out:
        from speechunits.files import write_lines
        from speechunits.seq2seq.s2ut_train import symbols_text

        texts = {utt: symbols_text(bundle.target_symbols.decode(h)) for utt, h in zip(ids, decoded)}
        write_lines(written, (f"{utt}\t{text}" for utt, text in texts.items()))
        result["texts"] = texts
        if reference_texts is not None:
            result.update(score_translations(reference_texts, texts, str(references)))
        return result
    units = [Units(np.asarray(ids_to_units(h), dtype=np.int64), float(target["frame_rate"]), int(target["k"]))
             for h in decoded]
    _write_store(written, ids, units, bundle.meta.get("codebook_meta"))
    if voc is not None:
        (out / "wavs").mkdir(exist_ok=True)
        for utt, unit in zip(ids, units):
            if len(unit) == 0:
                log.warning("%s: empty translation, no audio written", utt)
                continue
            voc.synthesize(unit, speaker=speaker).save(_translation_wav(out, utt))
    result["units"] = dict(zip(ids, units))
    return result


def score_translations(references: dict[str, str], texts: dict[str, str], source: str) -> dict[str, Any]:
    """Corpus BLEU (sacrebleu, normalised text) and CER of ``texts`` against the ``references`` of the
    same ids; ids without a reference are counted in ``unreferenced`` (none at all: SpeechUnitsError)."""
    from speechunits.measure.sequences import asr_bleu
    from speechunits.probe.metrics import cer
    from speechunits.probe.vocab import normalize_text

    scored = [utt for utt in texts if utt in references]
    if not scored:
        raise SpeechUnitsError(f"{source}: none of its ids is a translated utterance (such as "
                               f"{', '.join(repr(i) for i in list(texts)[:3])})")
    unreferenced = len(texts) - len(scored)
    if unreferenced:
        log.warning("%s: %d translated utterances have no reference and are not scored", source, unreferenced)
    refs, hyps = [references[u] for u in scored], [texts[u] for u in scored]
    return {"bleu": asr_bleu(refs, hyps), "cer": cer([normalize_text(r) for r in refs], [normalize_text(h) for h in hyps]),
            "scored": len(scored), "unreferenced": unreferenced}


def translate_texts(s2ut: Any, texts: Sequence[str], *, beam: int | None = None, device: str = "cpu") -> list[str]:
    """Text -> text with a translator trained on ``source_input="text"``, ``target="text"`` (a loaded bundle)."""
    from speechunits.seq2seq.s2ut_train import symbols_text, text_symbols

    if s2ut.source["kind"] != "text" or s2ut.target["kind"] != "text":
        raise SpeechUnitsError(f"{s2ut.path} is not a text translator (source {s2ut.source['kind']}, "
                               f"target {s2ut.target['kind']})")
    sources = [np.asarray(s2ut.source_symbols.encode(text_symbols(t) or ["|"], unknown="unk"), dtype=np.int64)
               for t in texts]
    return [symbols_text(s2ut.target_symbols.decode(h)) for h in s2ut.decode(sources, beam=beam, device=device)]

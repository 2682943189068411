"""Scoring probes: decoding, each task's metrics, ``evaluate_probe`` and ``transcribe``.

Metrics (:func:`score`; the first of each is the one dev selection and ``probe.json`` use):

* ``phones``: ``per`` (total phone edits / total reference phones, greedy CTC);
* ``asr``: ``wer`` and ``cer`` (jiwer, corpus level) on :func:`normalize_text`-ed references;
* ``frames``: ``frame_accuracy`` over labelled frames;
* ``speaker``, ``classify``: ``accuracy`` (a speaker probe also reports ``chance`` and
  ``majority``, the speaker-leakage figures of :func:`speechunits.probe.metrics.speaker_leakage`);
* ``slots``: ``slot_type_f1``, ``slot_value_cer`` and the words' ``wer``/``cer`` (SUPERB's SF,
  :mod:`speechunits.probe.slots`);
* ``verify``: ``eer`` and ``min_dcf`` of cosine scoring between utterance embeddings, over every
  pair of the scored utterances or a trial file (:mod:`speechunits.probe.verification`);
* ``diarize``: ``der`` (diarization error rate, 0.25 s collar as SUPERB's md-eval), ``der_collar0``
  and the ``missed``, ``false_alarm`` and ``confusion`` shares, summed over recordings; a slot talks
  under the probe's dev-chosen threshold and median filter (:mod:`speechunits.probe.diarize`).
  References are the frame targets turned back into turns, so they are at frame resolution;
* ``enhance``: ``pesq`` (wide band), ``stoi`` and ``si_sdr`` of the enhanced audio against the clean
  reference, and the same of the noisy input (``pesq_noisy`` ...); ``separate``: ``si_sdri`` (SI-SDR
  improvement), ``si_sdr`` and ``si_sdr_mixture``, under the best order of the sources
  (:mod:`speechunits.probe.masking`).

Labels of a corpus come from the files it carries (:func:`speechunits.probe.labels.find_label_files`:
``phones.tsv``/TextGrids, ``text.tsv``/Kaldi ``text``/JSONL ``text``, ``speakers.tsv``) or from
the files given.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.probe.feature_inputs import EncoderInput, FeaturesDirInput
from speechunits.probe.inputs import FEATURES, UNITS, ProbeInput, Sample, as_corpus, describe_identity
from speechunits.probe.unit_inputs import UnitInput, unit_sample
from speechunits.probe.task import CTC, FRAME, MASK, PIT, objective_of

log = logging.getLogger(__name__)

#: Task -> (primary metric, lower is better).
PRIMARY = {"phones": ("per", True), "asr": ("wer", True), "frames": ("frame_accuracy", False),
           "speaker": ("accuracy", False), "classify": ("accuracy", False), "verify": ("eer", True),
           "slots": ("slot_type_f1", False), "diarize": ("der", True),
           "enhance": ("pesq", False), "separate": ("si_sdri", False)}
#: Tasks whose labels are per input frame (they need the input's frame counts and timing).
FRAME_LABEL_TASKS = ("frames", "diarize", "enhance", "separate")
#: Tasks whose predictions are spectral masks (:mod:`speechunits.probe.masking`).
MASK_TASKS = ("enhance", "separate")


# -- decoding and metrics --------------------------------------------------------------------------

def decode_logits(coder: Any, logits: np.ndarray, decoder: Any = None) -> Any:
    """One utterance's logits (``[T, C]`` or ``[C]``) to its prediction through ``coder``
    (a :class:`~speechunits.probe.model_dir.LabelCoder`): greedy CTC, per-frame or class argmax;
    ``decoder`` (a :class:`~speechunits.probe.lm_decode.WordLMDecoder`) replaces greedy CTC; PIT
    (``diarize``): uint8 ``[T, S]``, the slots that talk under the coder's decision (threshold and
    median filter chosen on dev; sigmoid above 0.5 before that)."""
    from speechunits.probe.metrics import ctc_greedy

    if decoder is not None:
        return decoder.decode(logits)
    if coder.objective == CTC:
        return coder.decode(ctc_greedy(logits, blank=0))
    if coder.objective == FRAME:
        return np.asarray(logits).argmax(-1).astype(np.int64)
    if coder.objective == PIT:
        from speechunits.probe.diarize import active_slots

        return coder.decode(active_slots(logits, coder.decision))
    if coder.objective == MASK:
        from speechunits.probe.masking import decode_mask

        return coder.decode(decode_mask(logits, coder.vocabulary.tokens))
    return coder.decode(int(np.asarray(logits).argmax()))


def reference(task: str, label: Any) -> Any:
    """A label in the form predictions are compared with (normalised text for ``asr``)."""
    if task == "asr":
        from speechunits.probe.vocab import normalize_text

        return normalize_text(label)
    if task == "phones":
        return list(label)
    return label  # slots: already normalised slot text


def score(task: str, refs: Sequence[Any], hyps: Sequence[Any]) -> dict[str, float]:
    """The metrics of ``task`` over paired references and predictions (see the module docstring)."""
    from speechunits.probe import metrics

    if task == "phones":
        return {"per": metrics.error_rate(refs, hyps)}
    if task == "asr":
        kept = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
        if len(kept) < len(refs):
            log.warning("%d utterances with empty transcripts are left out of WER/CER", len(refs) - len(kept))
        r, h = [k[0] for k in kept], [k[1] for k in kept]
        return {"wer": metrics.wer(r, h), "cer": metrics.cer(r, h)}
    if task == "frames":
        return {"frame_accuracy": metrics.frame_accuracy(list(refs), list(hyps))}
    if task == "diarize":  # refs: SpeakerActivity; hyps: [T, S] activity at the same frames
        from speechunits.probe.diarize import diarization_scores

        return diarization_scores(list(refs), list(hyps))
    if task in MASK_TASKS:  # refs: MaskLabel; hyps: [T r, S, F] masks
        from speechunits.probe.masking import enhancement_scores, separation_scores

        return (enhancement_scores if task == "enhance" else separation_scores)(list(refs), list(hyps))
    if task == "slots":
        from speechunits.probe.slots import slot_metrics

        return slot_metrics(list(refs), list(hyps))
    if task == "speaker":
        leakage = metrics.speaker_leakage(list(refs), list(hyps))
        return {"accuracy": float(leakage["accuracy"]), "chance": float(leakage["chance"]),
                "majority": float(leakage["majority"])}
    objective_of(task)
    return {"accuracy": metrics.accuracy(refs, hyps)}


def selection_score(task: str, metrics: Mapping[str, float]) -> float:
    """The primary metric with "higher is better" (errors negated): what dev selection maximises."""
    name, lower = PRIMARY[task]
    return -float(metrics[name]) if lower else float(metrics[name])


def _fit_frames(ref: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """Frame targets cut or padded (ignored) to the prediction's length."""
    from speechunits.probe.labels import IGNORE_INDEX

    out = np.full(hyp.shape[0], IGNORE_INDEX, dtype=np.int64)
    n = min(hyp.shape[0], ref.shape[0])
    out[:n] = ref[:n]
    return out


def score_predictions(task: str, labels: Mapping[str, Any], predictions: Mapping[str, Any]) -> dict[str, float]:
    """:func:`score` over the ids present in both ``labels`` and ``predictions``."""
    ids = [i for i in predictions if i in labels]
    if not ids:
        raise SpeechUnitsError("nothing to score: no utterance has both a prediction and a label")
    refs = [reference(task, labels[i]) for i in ids]
    hyps = [predictions[i] for i in ids]
    if task == "frames":
        refs = [_fit_frames(np.asarray(r), np.asarray(h)) for r, h in zip(refs, hyps)]
    return score(task, refs, hyps)


# -- labels of a corpus ----------------------------------------------------------------------------

def corpus_labels(task: str, corpus: str | Path, ids: Sequence[str], *, labels: str | Path | None = None,
                  alignments: str | Path | None = None, speakers: str | Path | None = None,
                  inputs: ProbeInput | None = None, samples: Mapping[str, Sample] | None = None,
                  vocabulary: Any = None, speaker_slots: int | None = None) -> Any:
    """The :class:`~speechunits.probe.labels.LabelSet` of ``task`` for ``ids`` of ``corpus``.

    Files given win over those the corpus carries. ``phones``: ``alignments`` or ``labels``
    (phone transcripts ``utt<TAB>p1 p2 ...``); ``asr``: ``labels`` or the corpus's transcripts;
    ``speaker``: ``labels``/``speakers``; ``classify``: ``labels`` or a table's ``label`` column; ``frames``:
    alignments, with frame counts and timing from ``inputs``/``samples``, ids in ``vocabulary``
    when given (a probe's; labels it lacks count as wrong, never as ignored); ``diarize``: ``labels``
    or the corpus's ``rttm``, timed like ``frames``, refusing recordings with more speakers than
    ``speaker_slots`` when given (a probe's).
    """
    from speechunits.probe.labels import IGNORE_INDEX, find_label_files, load_task_labels

    found = find_label_files(corpus)
    kwargs: dict[str, Any] = {}
    if task == "phones":
        if labels is not None:
            kwargs["labels"] = labels
        elif alignments is not None or "alignments" in found:
            kwargs["alignments"] = alignments or found["alignments"]
    elif task == "asr":
        if labels is not None or "transcripts" in found:
            kwargs["transcripts"] = labels or found["transcripts"]
    elif task in ("speaker", "verify"):
        source = labels or speakers or found.get("speakers")
        if source is not None:
            kwargs["speakers"] = source
    elif task == "classify":
        if labels is not None or "labels" in found:  # found: a Hugging Face table's 'label' column
            kwargs["labels"] = labels or found["labels"]
    elif task == "slots":
        if labels is not None or "slot_labels" in found:  # found: a SNIPS tree's all.iob.snips.txt
            kwargs["labels"] = labels or found["slot_labels"]
    elif task in FRAME_LABEL_TASKS:
        if task == "frames" and (alignments is not None or labels is not None or "alignments" in found):
            kwargs["alignments"] = alignments or labels or found["alignments"]
        if task == "diarize" and (labels is not None or "rttm" in found):
            kwargs.update(labels=labels or found["rttm"], speaker_slots=speaker_slots)
        if task in MASK_TASKS:
            if labels is not None or "references" in found:
                kwargs["labels"] = labels or found["references"]
            kwargs["audio"] = {u.id: (u.path, u.raw_format) for u in as_corpus(corpus) if u.id in set(ids)}
        if inputs is None or samples is None:
            raise SpeechUnitsError("frame labels need the input's frame counts")
        if getattr(inputs, "dedup", False):
            raise SpeechUnitsError(f"task {task!r} needs frame-level input; deduplicated units have no frame timing")
        kwargs.update(frame_rate=inputs.frame_rate, frame_offset_s=inputs.frame_offset_s,
                      num_frames={i: s.num_frames for i, s in samples.items()})
    label_set = load_task_labels(task, list(ids), **kwargs)
    if task == "frames" and vocabulary is not None and label_set.vocabulary is not None:
        own = label_set.vocabulary.tokens
        remap = np.array([vocabulary.index(t) if t in vocabulary else -1 for t in own] + [IGNORE_INDEX],
                         dtype=np.int64)
        label_set.labels = {u: remap[np.where(y == IGNORE_INDEX, len(own), y)] for u, y in label_set.labels.items()}
        label_set.vocabulary = vocabulary
    return label_set


# -- inputs of a saved probe -----------------------------------------------------------------------

def probe_input(identity: Mapping[str, Any], corpus: Any = None, *, features: str | Path | None = None,
                units: str | Path | Sequence[str | Path] | None = None, bpe: str | Path | None = None,
                encoder: str | None = None, device: str = "auto", quiet: bool = False) -> ProbeInput:
    """An input that gives what a probe of ``identity`` reads, checked against it.

    Features: from ``features`` (a features directory) or computed from ``corpus`` with the
    recorded encoder (``encoder`` overrides its name, e.g. a moved model directory). Units:
    ``units`` store(s) (default: those recorded at training) and ``bpe`` (default: recorded).
    """
    if identity.get("kind") == FEATURES:
        layers = identity["layers"]
        if features is not None:
            made: ProbeInput = FeaturesDirInput(features, layers)
        else:
            made = EncoderInput(encoder or identity["encoder"], layers, corpus=corpus, device=device, quiet=quiet)
    elif identity.get("kind") == UNITS:
        stores = units if units is not None else identity.get("stores")
        if not stores:
            raise SpeechUnitsError("this probe reads units: give the unit store(s) (--units)")
        bpe_dir = bpe if bpe is not None else identity.get("bpe_dir")
        made = UnitInput(stores, dedup=bool(identity.get("dedup")), bpe_dir=bpe_dir)
    else:
        raise SpeechUnitsError(f"unknown probe input {describe_identity(dict(identity))}")
    made.check(dict(identity))
    return made


def evaluate_probe(probe_dir: str | Path, corpus: str | Path, *, features: str | Path | None = None,
                   units: str | Path | Sequence[str | Path] | None = None, bpe: str | Path | None = None,
                   labels: str | Path | None = None, alignments: str | Path | None = None,
                   subset: str | None = None, encoder: str | None = None, device: str = "auto",
                   lm: str | Path | None = None, beam: Any = None, trials: str | Path | None = None,
                   rttm_out: str | Path | None = None, score_norm: str | None = None,
                   threshold: float | None = None, median_frames: int | None = None,
                   audio_out: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """Score the probe in ``probe_dir`` on the labelled utterances of ``corpus``.

    Args:
        corpus: the audio corpus (a directory, ``.tsv`` or ``.jsonl``); its label files are found
            by convention unless ``labels``/``alignments`` are given.
        features, units, bpe, encoder: where the input comes from (see :func:`probe_input`).
        subset: ``"train"``, ``"dev"`` or ``"test"``: only the utterances of that part of the
            probe's split (None: every labelled utterance of the corpus).
        lm, beam: ``asr`` probes over characters: a word n-gram (ARPA) and the
            :class:`~speechunits.probe.lm_decode.BeamOptions` of the prefix beam search that
            replaces greedy decoding.
        trials: ``verify`` probes: a trial file (:func:`~speechunits.probe.verification.read_trials`)
            scored instead of every pair of the corpus's utterances; the utterances it names need
            no speaker label, and trials naming utterances the corpus lacks are left out (counted
            in ``unmatched_trial_utterances``).
        rttm_out: ``diarize`` probes: write the predicted turns there (RTTM ``SPEAKER`` lines, one
            recording per scored utterance id, speakers ``slot0``, ``slot1``, ...).
        audio_out: ``enhance`` and ``separate`` probes: write each scored utterance's estimates there
            (:func:`~speechunits.probe.masking.write_estimates`).
        score_norm: ``verify`` probes: ``none``, ``s-norm``, ``as-norm`` or ``as-norm:N`` instead of
            the normalisation the probe chose on dev (:class:`~speechunits.probe.verification.ScoreNorm`).
        threshold, median_frames: ``diarize`` probes: the sigmoid above which a slot talks and the
            median filter's width in frames (odd, 1 = none), each instead of the one the probe chose on
            dev (:class:`~speechunits.probe.diarize.SlotDecision`); the result's ``decision`` says which
            was used.

    Returns:
        ``{"probe", "task", "input", "utterances", <metrics>, "missing_labels", "input_errors"}``.
    """
    from speechunits.device import resolve_device
    from speechunits.probe.model_dir import bundled_bpe, load_probe, read_split

    probe = load_probe(probe_dir, base=encoder)
    if trials is not None and probe.task != "verify":
        raise SpeechUnitsError(f"--trials scores a verification probe; {probe_dir} is a {probe.task!r} probe")
    if rttm_out is not None and probe.task != "diarize":
        raise SpeechUnitsError(f"--rttm-out writes a diarization probe's turns; {probe_dir} is a {probe.task!r} probe")
    if audio_out is not None and probe.task not in MASK_TASKS:
        raise SpeechUnitsError(f"--audio-out writes an enhancement or separation probe's audio; {probe_dir} is a "
                               f"{probe.task!r} probe")
    if score_norm is not None and probe.task != "verify":
        raise SpeechUnitsError(f"--score-norm normalises a verification probe's scores; {probe_dir} is a "
                               f"{probe.task!r} probe")
    if (threshold is not None or median_frames is not None) and probe.task != "diarize":
        raise SpeechUnitsError(f"--threshold and --median-frames decide a diarization probe's speaker activity; "
                               f"{probe_dir} is a {probe.task!r} probe")
    if probe.task == "diarize":
        from speechunits.probe.diarize import SlotDecision

        chosen = probe.coder.decision or SlotDecision()
        probe.coder.decision = SlotDecision(chosen.threshold if threshold is None else float(threshold),
                                            chosen.median_frames if median_frames is None else median_frames)
    dev = resolve_device(device)
    bpe = bpe if bpe is not None else bundled_bpe(probe_dir)  # the probe's copy, as transcribe reads it
    made = probe_input(probe.identity, corpus, features=features, units=units, bpe=bpe, encoder=encoder,
                       device=device, quiet=quiet)
    ids = [utt.id for utt in as_corpus(corpus)]
    if subset is not None:
        wanted = set(read_split(probe_dir).part(subset))
        ids = [i for i in ids if i in wanted]
        if not ids:
            raise SpeechUnitsError(f"{corpus}: none of its utterances is in the probe's {subset} part")
    if probe.task == "verify":
        return _evaluate_verification(probe, probe_dir, corpus, made, ids, labels, trials, dev, score_norm)
    if probe.task in FRAME_LABEL_TASKS:
        loaded = made.load(ids)
        label_set = corpus_labels(probe.task, corpus, list(loaded.samples), labels=labels, alignments=alignments,
                                  inputs=made, samples=loaded.samples, vocabulary=probe.coder.vocabulary,
                                  speaker_slots=probe.coder.num_classes if probe.task == "diarize" else None)
    else:
        label_set = corpus_labels(probe.task, corpus, ids, labels=labels, alignments=alignments)
        if probe.meta.get("classes"):  # the classes the probe learnt, from the corpus's labels
            from speechunits.probe.classes import ClassMap

            ClassMap.parse(probe.meta["classes"]).apply_to(label_set)
        loaded = made.load(list(label_set.labels))
    loaded.warn_errors()
    scored = [i for i in label_set.labels if i in loaded.samples]
    predictions = probe.predict(loaded.samples, scored, device=dev, decoder=_decoder(probe, lm, beam))
    metrics = score_predictions(probe.task, label_set.labels, predictions)
    if audio_out is not None:
        from speechunits.probe.masking import write_estimates

        write_estimates(audio_out, label_set.labels, predictions)
    if rttm_out is not None:
        from speechunits.probe.diarize import activity_turns
        from speechunits.rttm import speaker_turns, write_rttm

        write_rttm(rttm_out, [record for utt, active in predictions.items()
                              for record in speaker_turns(utt, activity_turns(active, made.frame_rate,
                                                                              made.frame_offset_s))])
    result = {"probe": str(probe_dir), "task": probe.task, "input": describe_identity(probe.identity),
              "utterances": len(scored), **metrics, "missing_labels": len(label_set.missing),
              "input_errors": len(loaded.errors)}
    if probe.task in ("speaker", "classify"):  # references the probe cannot predict: always wrong
        strangers = sorted({str(label_set.labels[i]) for i in scored} - set(probe.coder.vocabulary.tokens))
        result["unknown_classes"] = {str(c): sum(1 for i in scored if str(label_set.labels[i]) == c) for c in strangers}
        if strangers:
            log.warning("%s: %d scored utterances have classes the probe does not know (%s); they count as wrong",
                        corpus, sum(result["unknown_classes"].values()), ", ".join(strangers[:5]))
    if probe.task == "diarize":
        result["decision"] = probe.coder.decision.record()
    if lm is not None:
        result["lm"] = {"arpa": str(lm), **asdict(beam or _default_beam())}
    return result


def _evaluate_verification(probe: Any, probe_dir: str | Path, corpus: Any, made: ProbeInput, ids: Sequence[str],
                           labels: str | Path | None, trials: str | Path | None, device: Any,
                           score_norm: str | None) -> dict[str, Any]:
    """:func:`evaluate_probe` of a ``verify`` probe: cosine scoring over every pair of the corpus's
    utterances that have a speaker, or over ``trials``, normalised as the probe chose on dev or as
    ``score_norm`` says."""
    from speechunits.probe.verification import ScoreNorm, match_trials, read_trials, verification_metrics

    norm, cohort = probe.scoring()
    if score_norm is not None:
        norm = ScoreNorm.parse(score_norm)
    if norm.kind != "none" and cohort is None:
        raise SpeechUnitsError(f"{probe_dir}: {norm.name} needs the probe's cohort of training speakers, and this "
                               "probe was saved without one (train it again, or use --score-norm none)")

    speakers: dict[str, str] = {}
    missing: list[str] = []
    unmatched: list[str] = []
    if trials is None:
        label_set = corpus_labels("verify", corpus, ids, labels=labels)
        speakers, missing = {u: str(s) for u, s in label_set.labels.items()}, list(label_set.missing)
        wanted = list(speakers)
        given = None
    else:
        given, unmatched = match_trials(read_trials(trials), ids)
        if not len(given):
            raise SpeechUnitsError(f"{trials}: none of its utterances is one of {corpus}'s (such as "
                                   f"{', '.join(repr(i) for i in list(ids)[:3])})")
        if unmatched:
            log.warning("%s: %d utterances it names are not in %s; their trials are left out (first: %s)", trials,
                        len(unmatched), corpus, unmatched[0])
        wanted = sorted(set(given.first) | set(given.second))
    loaded = made.load(wanted)
    loaded.warn_errors()
    embeddings = probe.embeddings(loaded.samples, device=device)
    if given is not None:
        given = given.within(embeddings)
    metrics = verification_metrics(speakers, embeddings, given, norm=norm, cohort=cohort)
    result = {"probe": str(probe_dir), "task": probe.task, "input": describe_identity(probe.identity),
              "utterances": len(embeddings), **metrics, "score_norm": norm.name, "missing_labels": len(missing),
              "input_errors": len(loaded.errors)}
    if trials is not None:
        result.update(trials_file=str(trials), unmatched_trial_utterances=len(unmatched))
    return result


def _default_beam() -> Any:
    from speechunits.probe.lm_decode import BeamOptions

    return BeamOptions()


def _decoder(probe: Any, lm: str | Path | None, beam: Any) -> Any:
    if lm is None:
        return None
    from speechunits.probe.lm_decode import word_lm_decoder

    return word_lm_decoder(probe, str(lm), beam or _default_beam())


# -- audio -> text ---------------------------------------------------------------------------------

def transcribe(probe_dir: str | Path, paths: Sequence[str | Path], *, codebooks: Sequence[str | Path] | None = None,
               bpe: str | Path | None = None, encoder: str | None = None, device: str = "auto",
               lm: str | Path | None = None, beam: Any = None, quiet: bool = False,
               errors: dict[str, str] | None = None) -> list[str | None]:
    """Audio files to text (``asr`` probes), text with slot tags (``slots``) or space-separated phones
    (``phones`` probes), in order.

    A probe on encoder features runs its encoder on the audio. A probe on units needs the
    codebook(s) its unit store was encoded with (``codebooks``; checked by sha256; default: the
    copies the probe keeps when it was trained with them) and, for BPE units, the BPE directory
    (default: the probe's copy, else the one recorded at training). ``lm``/``beam``: as for
    :func:`evaluate_probe`. ``errors``: when given, a file that cannot be read or is too short is
    recorded there (path -> reason) and its entry is ``None``; otherwise it raises.

    Raises:
        SpeechUnitsError: another task, a unit probe without its codebooks, unreadable audio
        (without ``errors``).
    """
    from speechunits.probe.model_dir import load_probe

    probe = load_probe(probe_dir, base=encoder)
    if probe.task not in ("asr", "phones", "slots"):
        raise SpeechUnitsError(f"{probe_dir}: a {probe.task!r} probe does not transcribe (asr, phones and slots "
                               "probes do)")
    predictions = _predict_files(probe, probe_dir, paths, codebooks=codebooks, bpe=bpe, encoder=encoder,
                                 device=device, quiet=quiet, errors=errors, decoder=_decoder(probe, lm, beam))
    return [None if p is None else (p if isinstance(p, str) else " ".join(p)) for p in predictions]


def enhance_files(probe_dir: str | Path, paths: Sequence[str | Path], names: Sequence[str], out_dir: str | Path, *,
                  codebooks: Sequence[str | Path] | None = None, bpe: str | Path | None = None,
                  encoder: str | None = None, device: str = "auto", quiet: bool = False,
                  errors: dict[str, str] | None = None) -> int:
    """Enhance (``enhance`` probes) or separate (``separate`` probes) audio files: ``OUT/<name>.wav``, or
    ``OUT/s1/<name>.wav``, ``OUT/s2/<name>.wav`` ... (:func:`~speechunits.probe.masking.write_estimates`);
    no reference is needed. Inputs and ``errors`` as :func:`transcribe`. Returns how many files were written.

    Raises:
        SpeechUnitsError: another task, a unit probe without its codebooks, unreadable audio (without ``errors``).
    """
    from speechunits.probe.masking import MaskLabel, write_estimates
    from speechunits.probe.model_dir import load_probe

    probe = load_probe(probe_dir, base=encoder)
    if probe.task not in MASK_TASKS:
        raise SpeechUnitsError(f"{probe_dir}: a {probe.task!r} probe gives no audio (enhance and separate probes do)")
    if len(set(names)) != len(names):
        raise SpeechUnitsError("enhance: two inputs have the same name; their outputs would overwrite each other")
    predictions = _predict_files(probe, probe_dir, paths, codebooks=codebooks, bpe=bpe, encoder=encoder,
                                 device=device, quiet=quiet, errors=errors)
    masks = {name: mask for name, mask in zip(names, predictions) if mask is not None}
    labels = {name: MaskLabel(str(path), ()) for name, path in zip(names, paths)}
    return write_estimates(out_dir, labels, masks)


def _predict_files(probe: Any, probe_dir: str | Path, paths: Sequence[str | Path], *,
                   codebooks: Sequence[str | Path] | None, bpe: str | Path | None, encoder: str | None, device: str,
                   quiet: bool, errors: dict[str, str] | None, decoder: Any = None) -> list[Any]:
    """The prediction of ``probe`` for each audio file of ``paths`` (None for a file recorded in ``errors``):
    its encoder (features), or its encoder and codebooks (units: ``codebooks``, default the probe's copies;
    ``bpe``, default the probe's copy)."""
    from speechunits.corpus import Utterance
    from speechunits.device import resolve_device
    from speechunits.probe.model_dir import bundled_bpe, bundled_codebooks

    codebooks = codebooks or bundled_codebooks(probe_dir)  # a copy kept at training (--codebook), if any
    bpe = bpe if bpe is not None else bundled_bpe(probe_dir)
    dev = resolve_device(device)
    identity = probe.identity
    corpus = as_corpus([Utterance(str(i), str(p)) for i, p in enumerate(paths)])
    ids = [str(i) for i in range(len(paths))]
    failed: dict[str, str] = {}
    if identity.get("kind") == FEATURES:
        made = probe_input(identity, corpus, encoder=encoder, device=device, quiet=quiet)
        loaded = made.load(ids)
        failed = dict(loaded.errors)
        samples = loaded.samples
    else:
        samples = _unit_samples(identity, paths, codebooks, bpe, encoder, device, failed)
    if failed:
        if errors is None:
            first = next(iter(failed))
            raise SpeechUnitsError(failed[first])
        errors.update({str(paths[int(i)]): reason for i, reason in failed.items()})
    good = [i for i in ids if i not in failed]
    predictions = probe.predict(samples, good, device=dev, decoder=decoder) if good else {}
    return [None if i in failed else predictions.get(i) for i in ids]


def _unit_samples(identity: Mapping[str, Any], paths: Sequence[str | Path], codebooks: Sequence[str | Path] | None,
                  bpe: str | Path | None, encoder: str | None, device: str,
                  failed: dict[str, str]) -> dict[str, Sample]:
    """Units of audio files through the probe's codebooks (checked by sha256), as samples keyed by
    position; files that cannot be read or are too short go to ``failed`` (position -> reason)."""
    from speechunits.audio import Audio
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.units.tokenizer import UnitTokenizer

    expected = list(identity.get("codebook_sha256") or [])
    if not codebooks:
        shas = ", ".join(str(s)[:12] for s in expected)
        raise SpeechUnitsError(f"this probe reads units of codebook(s) {shas}: give the codebook directory of each "
                               "stream (--codebook DIR) to turn audio into those units (a probe trained with "
                               "--codebook keeps a copy and needs none)")
    loaded = [Codebook.load(path) for path in codebooks]
    got = [c.sha256 for c in loaded]
    if got != expected:
        raise SpeechUnitsError(f"the codebooks given ({', '.join(s[:12] for s in got)}) are not the ones this probe's "
                               f"units came from ({', '.join(str(s)[:12] for s in expected)})")
    name = encoder or loaded[0].encoder_name
    if not name:
        raise SpeechUnitsError(f"{codebooks[0]}: the codebook does not name its encoder; pass --encoder")
    tokenizer = UnitTokenizer(load_encoder(name, device=device), loaded)
    bpe_model = None
    bpe_dir = bpe if bpe is not None else identity.get("bpe_dir")
    if identity.get("bpe_sha256"):
        from speechunits.units.bpe import UnitBPE

        if bpe_dir is None:
            raise SpeechUnitsError("this probe reads BPE tokens of units: give the BPE directory (--bpe)")
        bpe_model = UnitBPE.load(bpe_dir)
        if bpe_model.sha256 != identity["bpe_sha256"]:
            raise SpeechUnitsError(f"{bpe_dir}: BPE {bpe_model.sha256[:12]} is not the probe's "
                                   f"{str(identity['bpe_sha256'])[:12]}")
    samples = {}
    for i, path in enumerate(paths):
        try:
            streams = tokenizer.encode_streams(Audio.load(path))
        except SpeechUnitsError as exc:
            failed[str(i)] = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            continue
        samples[str(i)] = unit_sample(streams, dedup=bool(identity.get("dedup")), bpe=bpe_model)
    return samples

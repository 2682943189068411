"""Judges built from the project's own probes (``speechunits probe train``), trained on original audio.

- :func:`probe_transcript_errors`: an ``asr`` or ``phones`` probe transcribes reference and synthesised
  audio (:func:`speechunits.probe.evaluate.transcribe`); the hypothesis is scored against the text (asr)
  or the phone transcripts/alignments (phones) when given, else against the probe's transcript of the
  reference. ``phones``: PER = total phone edits / total reference phones; ``asr``: WER/CER on
  normalised text (as :mod:`speechunits.measure.audio.asr`).
- :func:`speaker_probe_accuracy`: a ``speaker`` probe labels the synthesised audio
  (:func:`speechunits.probe.evaluate.evaluate_probe`); accuracy against the expected speakers (the
  source speakers for resynthesis, the target speakers for voice conversion).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.pairing import UtterancePair


def _is_alignment_source(path: Path) -> bool:
    """A TextGrid (directory) or a ``utt<TAB>start<TAB>end<TAB>label`` file, not phone transcripts."""
    from speechunits.files import iter_text_lines

    if path.is_dir() or path.suffix.lower() == ".textgrid":
        return True
    for _, line in iter_text_lines(path, "phone labels"):
        return len(line.split("\t")) == 4
    return False


def reference_phones(phones: str | Path, corpus: str | Path, ids: Sequence[str]) -> dict[str, list[str]]:
    """``{id: [phone, ...]}`` from phone transcripts (``utt<TAB>p1 p2 ...``) or alignments (``phones.tsv``
    with times, TextGrids), silences dropped as the probes drop them.

    Raises:
        SpeechUnitsError: unreadable file, or ids without phones (named).
    """
    from speechunits.probe.evaluate import corpus_labels

    source = Path(phones)
    kind = "alignments" if _is_alignment_source(source) else "labels"
    label_set = corpus_labels("phones", corpus, list(ids), **{kind: source})
    missing = [i for i in ids if i not in label_set.labels]
    if missing:
        raise SpeechUnitsError(f"{phones}: no phones for {len(missing)} utterances, e.g. {missing[:5]}")
    return {i: list(label_set.labels[i]) for i in ids}


def probe_transcript_errors(probe: str | Path, pairs: Sequence[UtterancePair], *,
                            text: Mapping[str, str] | None = None, phones: str | Path | None = None,
                            ref_corpus: str | Path | None = None, codebooks: Sequence[str | Path] | None = None,
                            device: str = "auto", quiet: bool = False) -> dict[str, Any]:
    """PER (phones probes) or WER/CER (asr probes) of the synthesised audio, and of the reference audio
    when an external reference (``text``/``phones``) exists.

    Returns:
        ``{"task", "reference", "metrics": {probe_per | probe_wer, probe_cer, [..._ref]},
        "transcripts": {id: (ref transcript, hyp transcript)}}``.
    """
    from speechunits.measure.audio.asr import error_rates
    from speechunits.probe import metrics as probe_metrics
    from speechunits.probe.evaluate import transcribe
    from speechunits.probe.model_dir import read_probe_meta

    task = read_probe_meta(probe)["task"]
    if task not in ("asr", "phones"):
        raise SpeechUnitsError(f"{probe}: --probe needs an asr or phones probe, this one is a {task!r} probe "
                               "(a speaker probe goes to --speaker-probe)")
    ids = [p.id for p in pairs]
    common = dict(codebooks=codebooks, device=device, quiet=quiet)
    ref_out = transcribe(probe, [p.ref.path for p in pairs], **common)
    hyp_out = transcribe(probe, [p.hyp.path for p in pairs], **common)
    out: dict[str, Any] = {"task": task, "transcripts": dict(zip(ids, zip(ref_out, hyp_out)))}
    if task == "phones":
        if phones is not None:
            wanted = reference_phones(phones, ref_corpus if ref_corpus is not None else Path(phones).parent, ids)
            truth = [wanted[i] for i in ids]
            out["reference"] = "phones"
            result = {"probe_per": probe_metrics.error_rate(truth, [h.split() for h in hyp_out]),
                      "probe_per_ref": probe_metrics.error_rate(truth, [r.split() for r in ref_out])}
        else:
            out["reference"] = "ref_transcripts"
            truth = [r.split() for r in ref_out]
            if not any(truth):
                raise SpeechUnitsError(f"{probe}: the probe heard no phone in any reference utterance")
            result = {"probe_per": probe_metrics.error_rate(truth, [h.split() for h in hyp_out])}
    else:
        if text is not None:
            out["reference"] = "text"
            truth_text = [text[i] for i in ids]
            hyp_rates, ref_rates = error_rates(truth_text, hyp_out), error_rates(truth_text, ref_out)
            result = {"probe_wer": hyp_rates["wer"], "probe_cer": hyp_rates["cer"],
                      "probe_wer_ref": ref_rates["wer"], "probe_cer_ref": ref_rates["cer"]}
        else:
            out["reference"] = "ref_transcripts"
            rates = error_rates(ref_out, hyp_out)
            result = {"probe_wer": rates["wer"], "probe_cer": rates["cer"]}
    out["metrics"] = result
    return out


def speaker_probe_accuracy(probe: str | Path, hyp: str | Path, labels: str | Path, *, device: str = "auto",
                           quiet: bool = False) -> dict[str, Any]:
    """Accuracy of a speaker probe on the synthesised corpus ``hyp`` against ``labels`` (``utt<TAB>speaker``).

    Returns:
        ``{"speaker_probe_accuracy", "speaker_probe_chance", "speaker_probe_utterances"}``.
    """
    from speechunits.probe.evaluate import evaluate_probe
    from speechunits.probe.model_dir import read_probe_meta

    task = read_probe_meta(probe)["task"]
    if task != "speaker":
        raise SpeechUnitsError(f"{probe}: --speaker-probe needs a speaker probe, this one is a {task!r} probe")
    result = evaluate_probe(probe, hyp, labels=labels, device=device, quiet=quiet)
    return {"speaker_probe_accuracy": float(result["accuracy"]), "speaker_probe_chance": float(result["chance"]),
            "speaker_probe_utterances": int(result["utterances"])}

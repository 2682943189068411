"""``evaluate_audio``: every audio judge over matched reference and synthesised utterances.

Judges (each optional; see docs/evaluate-audio.md):

==============  ==============================================  ======================================
judge           metrics                                         needs
==============  ==============================================  ======================================
asr             wer_asr, cer_asr (+ _ref, wer_asr_ref_hyp)      pocketsphinx
probe           probe_per | probe_wer, probe_cer (+ _ref)       ``probe`` (an asr/phones probe)
pitch           gpe, vde, ffe                                   pyworld (praat: praat-parselmouth)
speaker         speaker_similarity                              resemblyzer
speaker_probe   speaker_probe_accuracy, speaker_probe_chance    ``speaker_probe`` and speaker labels
mcd             mcd                                             pyworld
dnsmos          dnsmos_ovrl/sig/bak/p808 (hyp), dnsmos_ref_*    speechmos, onnxruntime
==============  ==============================================  ======================================

``wer_asr``/``cer_asr`` are pocketsphinx's error rates on the synthesised audio against ``text``; without
text, against pocketsphinx's transcripts of the reference audio (``asr_reference`` in the result says
which). Error rates are corpus level; every other metric is the mean over the utterances where it is
defined (GPE needs frames voiced in both; NaN-valued rows are ``None`` and left out).
"""
from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.deps import EXTRA_HINT, require
from speechunits.measure.audio.pairing import match_utterances

log = logging.getLogger(__name__)

DNSMOS_KEYS = ("ovrl", "sig", "bak", "p808")
#: judge -> the metric names it reports.
JUDGES: dict[str, tuple[str, ...]] = {
    "asr": ("wer_asr", "cer_asr", "wer_asr_ref", "cer_asr_ref", "wer_asr_ref_hyp"),
    "probe": ("probe_per", "probe_per_ref", "probe_wer", "probe_cer", "probe_wer_ref", "probe_cer_ref"),
    "pitch": ("gpe", "vde", "ffe"),
    "speaker": ("speaker_similarity",),
    "speaker_probe": ("speaker_probe_accuracy", "speaker_probe_chance"),
    "mcd": ("mcd",),
    "dnsmos": tuple(f"dnsmos_{k}" for k in DNSMOS_KEYS) + tuple(f"dnsmos_ref_{k}" for k in DNSMOS_KEYS),
}
#: Judges that score each pair on its own (run by :func:`_build_runners`, in worker processes with ``jobs``).
PER_PAIR_JUDGES = ("asr", "pitch", "speaker", "mcd", "dnsmos")
#: Judges that run only when their model is given.
_NEED_INPUT = {"probe": "probe", "speaker_probe": "speaker_probe"}


def _packages(judge: str, f0_method: str) -> list[str]:
    if judge == "asr":
        return ["pocketsphinx"]
    if judge == "pitch":
        return ["parselmouth"] if f0_method == "praat" else ["pyworld"]
    if judge == "mcd":
        return ["pyworld"]
    if judge == "speaker":
        return ["resemblyzer"]
    if judge == "dnsmos":
        return ["onnxruntime", "speechmos.dnsmos"]
    return []


def judge_of(name: str) -> str:
    """The judge a ``metrics`` entry (a judge or a metric name) refers to."""
    if name in JUDGES:
        return name
    for judge, names in JUDGES.items():
        if name in names:
            return judge
    known = sorted(set(JUDGES) | {n for names in JUDGES.values() for n in names})
    raise SpeechUnitsError(f"unknown metric {name!r} (judges: {', '.join(JUDGES)}; metrics: {', '.join(known)})")


def select_judges(metrics: Sequence[str] | None, *, probe: Any = None, speaker_probe: Any = None,
                  f0_method: str = "dio") -> tuple[list[str], dict[str, str]]:
    """(judges to run, {judge: why skipped}).

    ``metrics=None``: every judge whose inputs are given; one whose package is missing is skipped with
    a warning. Judges named in ``metrics`` must be able to run (otherwise a SpeechUnitsError naming the
    missing package or option).
    """
    given = {"probe": probe, "speaker_probe": speaker_probe}
    explicit = metrics is not None
    wanted = list(dict.fromkeys(judge_of(m) for m in metrics)) if explicit else list(JUDGES)
    run, skipped = [], {}
    for judge in wanted:
        if judge in _NEED_INPUT and given[judge] is None:
            option = "--" + _NEED_INPUT[judge].replace("_", "-")
            if explicit:
                raise SpeechUnitsError(f"metric {judge!r} needs a probe directory ({option} DIR)")
            skipped[judge] = f"no {option} given"
            continue
        try:
            for module in _packages(judge, f0_method):
                require(module, f"the {judge} judge")
        except SpeechUnitsError as exc:
            if explicit:
                raise
            skipped[judge] = str(exc)
            continue
        run.append(judge)
    missing = [j for j, why in skipped.items() if EXTRA_HINT in why]
    if missing:
        log.warning("judges skipped, their packages are missing: %s (%s)", ", ".join(missing), EXTRA_HINT)
    return run, skipped


def _finite(value: Any) -> Any:
    """NaN/inf floats as None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _try(row: dict[str, Any], judge: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one judge on one utterance; a SpeechUnitsError (silent audio, lengths far apart) is recorded."""
    try:
        row.update({k: _finite(v) for k, v in fn().items()})
    except SpeechUnitsError as exc:
        row.setdefault("errors", {})[judge] = str(exc)


def evaluate_audio(ref: str | Path, hyp: str | Path, *, text: str | Path | None = None,
                   probe: str | Path | None = None, speaker_probe: str | Path | None = None,
                   metrics: Sequence[str] | None = None, f0_method: str = "dio", device: str = "auto",
                   quiet: bool = False, phones: str | Path | None = None, speakers: str | Path | None = None,
                   target_speakers: str | Path | None = None, codebooks: Sequence[str | Path] | None = None,
                   jobs: int = 1) -> dict[str, Any]:
    """Judge the synthesised utterances of ``hyp`` against their references in ``ref``.

    Args:
        ref, hyp: audio directories, manifests (``.tsv``/``.jsonl``) or files; matched by corpus id,
            else by file path ending (:func:`~speechunits.measure.audio.pairing.match_utterances`).
        text: ``id<TAB>text`` transcripts of the reference ids (for ``wer_asr`` and asr probes).
        probe: an ``asr`` or ``phones`` probe directory (trained on original audio).
        speaker_probe: a ``speaker`` probe directory, scored on ``hyp`` against ``target_speakers``
            (voice conversion), else ``speakers``, else the ``speakers.tsv`` the reference corpus carries.
        metrics: judges or metric names (see :data:`JUDGES`); None: every judge that can run.
        f0_method: ``dio``, ``harvest`` or ``praat`` (:func:`speechunits.pitch.extract_f0`).
        phones: the references' phone transcripts or alignments (phones probes; default: the probe's
            transcript of the reference audio).
        codebooks: the codebook directories of a probe on units.
        jobs: worker processes for the per-utterance judges (asr, pitch, speaker, mcd, dnsmos), each
            with its own models; the rows are the same as with one, in the same order.

    Returns:
        JSON-able ``{"ref", "hyp", "utterances", "metrics": {name: value}, "per_utterance": [row, ...],
        "skipped": {judge: reason}, "judges", "asr_reference", "unmatched_references", "failures"}``.
        Each row has ``id``, ``ref``/``hyp`` paths, durations, the per-utterance metrics, transcripts
        (``asr_ref``, ``asr_hyp``) and ``errors`` ({judge: message}) where a judge could not score it.

    Raises:
        SpeechUnitsError: empty or mismatched corpora, missing files, an unknown metric, a judge asked
            for whose package is missing, ids without text.
    """
    from speechunits.corpus import total_audio_seconds
    from speechunits.files import read_pairs
    from speechunits.id_match import rekey
    from speechunits.progress import AudioProgress

    pairs, unmatched = match_utterances(ref, hyp)
    judges, skipped = select_judges(metrics, probe=probe, speaker_probe=speaker_probe, f0_method=f0_method)
    transcripts = None
    if text is not None:
        transcripts = rekey(read_pairs(text, what="transcripts", value_name="text", key_name="id"),
                            [p.id for p in pairs], str(text))
        lacking = [p.id for p in pairs if p.id not in transcripts]
        if lacking:
            raise SpeechUnitsError(f"{text}: no transcript for {len(lacking)} utterances, e.g. {lacking[:5]}")

    if jobs < 1:
        raise SpeechUnitsError(f"--jobs must be at least 1, got {jobs}")
    per_pair = [judge for judge in judges if judge in PER_PAIR_JUDGES]
    work = [(p.id, p.ref.path, p.hyp.path, None if transcripts is None else transcripts[p.id]) for p in pairs]
    if jobs == 1:
        runners = _build_runners(per_pair, f0_method=f0_method, device=device)
        judged: Iterator[dict[str, Any]] = (_judge_pair(item, runners) for item in work)
    else:  # one process per job, each with its own judges (pocketsphinx, pitch trackers and MCD hold the GIL)
        from speechunits.scale.prefetch import ordered_map

        judged = ordered_map(functools.partial(_judge_pair_in_worker, judges=tuple(per_pair), f0_method=f0_method,
                                               device=device, threads=max(1, (os.cpu_count() or 1) // jobs)),
                             work, workers=jobs, mode="process", prefetch=2 * jobs)
    rows: list[dict[str, Any]] = []
    total = None if quiet else total_audio_seconds(p.hyp for p in pairs)
    with AudioProgress(total, desc="evaluate-audio", quiet=quiet) as progress:
        for row in judged:
            rows.append(row)
            progress.update(row["hyp_duration_s"])

    result_metrics: dict[str, Any] = {}
    asr_reference = None
    if "asr" in per_pair:
        asr_reference = "text" if transcripts is not None else "ref_transcripts"
        result_metrics.update(_asr_metrics(rows, transcripts))
    for judge in ("pitch", "speaker", "mcd", "dnsmos"):
        if judge in per_pair:
            for name in JUDGES[judge]:
                result_metrics[name] = _mean(rows, name)
    if "pitch" in per_pair:
        result_metrics["pitch_truncated_utterances"] = sum(1 for r in rows if r.get("truncated_frames"))
    if "probe" in judges:
        from speechunits.measure.audio.probes import probe_transcript_errors

        judged = probe_transcript_errors(probe, pairs, text=transcripts, phones=phones, ref_corpus=ref,
                                         codebooks=codebooks, device=device, quiet=quiet)
        result_metrics.update({k: _finite(v) for k, v in judged["metrics"].items()})
        result_metrics["probe_reference"] = judged["reference"]
        for row in rows:
            row["probe_ref"], row["probe_hyp"] = judged["transcripts"][row["id"]]
    if "speaker_probe" in judges:
        result_metrics.update(_speaker_probe(speaker_probe, ref, hyp, speakers, target_speakers, device, quiet))
    failures = {}
    for row in rows:
        for judge in row.get("errors", {}):
            failures[judge] = failures.get(judge, 0) + 1
    for judge, count in failures.items():
        log.warning("%s: %d utterances not scored (first: %s)", judge, count,
                    next(r["errors"][judge] for r in rows if judge in r.get("errors", {})))
    return {"ref": str(ref), "hyp": str(hyp), "utterances": len(rows),
            "metrics": {k: _finite(v) for k, v in result_metrics.items()}, "per_utterance": rows,
            "skipped": skipped, "judges": judges, "asr_reference": asr_reference,
            "unmatched_references": unmatched, "failures": failures}


def _judge_pair(item: tuple[str, str, str, str | None], runners: dict[str, Callable[[Any, Any], dict[str, Any]]]
                ) -> dict[str, Any]:
    """The row of one ``(id, ref path, hyp path, text)`` pair: durations and every runner's fields."""
    from speechunits.audio import Audio

    pair_id, ref_path, hyp_path, text = item
    ref_audio, hyp_audio = Audio.load(ref_path), Audio.load(hyp_path)
    row: dict[str, Any] = {"id": pair_id, "ref": ref_path, "hyp": hyp_path,
                           "ref_duration_s": round(ref_audio.duration_s, 4),
                           "hyp_duration_s": round(hyp_audio.duration_s, 4)}
    if text is not None:
        row["text"] = text
    for judge, runner in runners.items():
        _try(row, judge, lambda: runner(ref_audio, hyp_audio))
    return row


#: A worker process's judges, built on its first pair (models loaded once per process).
_WORKER_RUNNERS: dict[tuple[Any, ...], dict[str, Callable[[Any, Any], dict[str, Any]]]] = {}


def _judge_pair_in_worker(item: tuple[str, str, str, str | None], *, judges: tuple[str, ...], f0_method: str,
                          device: str, threads: int) -> dict[str, Any]:
    """:func:`_judge_pair` in a worker process (``evaluate_audio(jobs > 1)``)."""
    key = (judges, f0_method, device)
    if key not in _WORKER_RUNNERS:
        import torch

        torch.set_num_threads(threads)  # the workers share the machine's cores
        _WORKER_RUNNERS[key] = _build_runners(judges, f0_method=f0_method, device=device)
    return _judge_pair(item, _WORKER_RUNNERS[key])


def _build_runners(judges: Sequence[str], *, f0_method: str, device: str
                   ) -> dict[str, Callable[[Any, Any], dict[str, Any]]]:
    """Per-utterance judges (models loaded once): judge -> f(ref_audio, hyp_audio) -> row fields."""
    runners: dict[str, Callable[[Any, Any], dict[str, Any]]] = {}
    if "asr" in judges:
        from speechunits.measure.audio.asr import PocketsphinxASR

        asr = PocketsphinxASR()
        runners["asr"] = lambda r, h: {"asr_ref": asr.transcribe(r), "asr_hyp": asr.transcribe(h)}
    if "pitch" in judges:
        from speechunits.measure.audio.pitch_errors import pitch_errors
        from speechunits.pitch import extract_f0

        def pitch(r: Any, h: Any) -> dict[str, Any]:
            found = pitch_errors(extract_f0(r, method=f0_method), extract_f0(h, method=f0_method))
            found["pitch_frames"] = found.pop("frames")
            return found

        runners["pitch"] = pitch
    if "speaker" in judges:
        from speechunits.measure.audio.speaker import SpeakerEmbedder, cosine_similarity

        embedder = SpeakerEmbedder(device)
        runners["speaker"] = lambda r, h: {"speaker_similarity": cosine_similarity(embedder.embed(r),
                                                                                   embedder.embed(h))}
    if "mcd" in judges:
        from speechunits.measure.audio.mcd import mcd_dtw

        runners["mcd"] = lambda r, h: {"mcd": mcd_dtw(r, h)}
    if "dnsmos" in judges:
        from speechunits.measure.audio.dnsmos import dnsmos

        def both(r: Any, h: Any) -> dict[str, Any]:
            hyp_scores, ref_scores = dnsmos(h), dnsmos(r)
            return {**{f"dnsmos_{k}": v for k, v in hyp_scores.items()},
                    **{f"dnsmos_ref_{k}": v for k, v in ref_scores.items()}}

        runners["dnsmos"] = both
    return runners


def _asr_metrics(rows: list[dict[str, Any]], transcripts: dict[str, str] | None) -> dict[str, Any]:
    """Corpus error rates of pocketsphinx's transcripts (rows without transcripts left out)."""
    from speechunits.measure.audio.asr import error_rates, utterance_wer

    done = [r for r in rows if "asr_hyp" in r]
    if not done:
        return {name: None for name in ("wer_asr", "cer_asr")}
    between = error_rates([r["asr_ref"] for r in done], [r["asr_hyp"] for r in done])
    for row in done:  # per-utterance figures, for finding the worst utterances
        row["wer_asr"] = utterance_wer(row["text"] if transcripts is not None else row["asr_ref"], row["asr_hyp"])
    if transcripts is None:
        return {"wer_asr": between["wer"], "cer_asr": between["cer"], "asr_words": between["reference_words"]}
    truth = [r["text"] for r in done]
    hyp_rates = error_rates(truth, [r["asr_hyp"] for r in done])
    ref_rates = error_rates(truth, [r["asr_ref"] for r in done])
    return {"wer_asr": hyp_rates["wer"], "cer_asr": hyp_rates["cer"], "wer_asr_ref": ref_rates["wer"],
            "cer_asr_ref": ref_rates["cer"], "wer_asr_ref_hyp": between["wer"],
            "asr_words": hyp_rates["reference_words"]}


def _speaker_probe(probe: str | Path, ref: str | Path, hyp: str | Path, speakers: str | Path | None,
                   target_speakers: str | Path | None, device: str, quiet: bool) -> dict[str, Any]:
    from speechunits.measure.audio.probes import speaker_probe_accuracy
    from speechunits.probe.labels import find_label_files

    labels = target_speakers or speakers or find_label_files(ref).get("speakers")
    if labels is None:
        raise SpeechUnitsError(f"the speaker probe needs the expected speaker of each utterance: --speakers or "
                               f"--target-speakers (id<TAB>speaker), or a speakers.tsv beside {ref}")
    return speaker_probe_accuracy(probe, hyp, labels, device=device, quiet=quiet)

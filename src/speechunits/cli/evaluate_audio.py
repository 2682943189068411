"""``speechunits evaluate-audio REF HYP [--text text.tsv] [--json]``: judges of synthesised speech."""
from __future__ import annotations

import argparse
import json
import logging

from speechunits.cli.common import add_device, add_quiet

log = logging.getLogger(__name__)

#: (metric, label, format) rows of the text table, in order; absent metrics are left out.
TABLE_ROWS = (
    ("wer_asr", "WER pocketsphinx (hyp)", "{:.3f}"),
    ("cer_asr", "CER pocketsphinx (hyp)", "{:.3f}"),
    ("wer_asr_ref", "WER pocketsphinx (ref)", "{:.3f}"),
    ("cer_asr_ref", "CER pocketsphinx (ref)", "{:.3f}"),
    ("wer_asr_ref_hyp", "WER hyp vs ref transcripts", "{:.3f}"),
    ("probe_per", "PER probe (hyp)", "{:.3f}"),
    ("probe_per_ref", "PER probe (ref)", "{:.3f}"),
    ("probe_wer", "WER probe (hyp)", "{:.3f}"),
    ("probe_wer_ref", "WER probe (ref)", "{:.3f}"),
    ("gpe", "GPE", "{:.3f}"),
    ("vde", "VDE", "{:.3f}"),
    ("ffe", "FFE", "{:.3f}"),
    ("mcd", "MCD (dB)", "{:.2f}"),
    ("speaker_similarity", "speaker similarity", "{:.3f}"),
    ("speaker_probe_accuracy", "speaker probe accuracy", "{:.3f}"),
    ("speaker_probe_chance", "  chance", "{:.3f}"),
    ("dnsmos_ovrl", "DNSMOS OVRL (hyp)", "{:.2f}"),
    ("dnsmos_sig", "DNSMOS SIG (hyp)", "{:.2f}"),
    ("dnsmos_bak", "DNSMOS BAK (hyp)", "{:.2f}"),
    ("dnsmos_ref_ovrl", "DNSMOS OVRL (ref)", "{:.2f}"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-audio",
        help="judge synthesised speech against its source: ASR WER, probe PER, GPE/VDE/FFE, MCD, "
        "speaker similarity, DNSMOS",
        description="Utterances of HYP are matched with those of REF by id (else by their file path endings). Judges whose "
        "packages are missing are skipped with a warning (pip install 'speechunits[eval]'); see "
        "docs/evaluate-audio.md for every definition.")
    parser.add_argument("ref", help="reference audio: a directory, .tsv/.jsonl manifest or file")
    parser.add_argument("hyp", help="synthesised audio (same ids or file names)")
    parser.add_argument("--text", metavar="TSV", help="id<TAB>text transcripts of the references "
                        "(default: pocketsphinx's transcripts of REF are the reference)")
    parser.add_argument("--probe", metavar="DIR", help="an asr or phones probe trained on original audio")
    parser.add_argument("--phones", metavar="FILE", help="phone transcripts (id<TAB>p1 p2 ...) or alignments "
                        "(phones.tsv, TextGrids) of the references, for a phones probe (default: the probe's "
                        "transcript of REF)")
    parser.add_argument("--codebook", metavar="DIR", action="append", dest="codebooks",
                        help="codebook of a probe on units (repeat per stream)")
    parser.add_argument("--speaker-probe", metavar="DIR", help="a speaker probe trained on original audio")
    parser.add_argument("--speakers", metavar="TSV", help="id<TAB>speaker expected for HYP (default: REF's "
                        "speakers.tsv)")
    parser.add_argument("--target-speakers", metavar="TSV", help="id<TAB>target speaker (voice conversion)")
    parser.add_argument("--metrics", metavar="LIST", default=None,
                        help="comma-separated judges or metrics: asr, probe, pitch, speaker, speaker_probe, mcd, "
                        "dnsmos (default: all that can run)")
    parser.add_argument("--f0-method", default="dio", choices=["dio", "harvest", "praat"],
                        help="F0 tracker of GPE/VDE/FFE (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="worker processes for the per-utterance judges (asr, pitch, speaker, mcd, dnsmos); "
                        "each loads its own models (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the whole result (with per-utterance rows) as JSON")
    add_device(parser, dtype=False)
    add_quiet(parser)
    parser.set_defaults(func=run)


def format_table(result: dict) -> str:
    """The aggregate metrics as a two-column text table."""
    metrics = result["metrics"]
    lines = [f"utterances  {result['utterances']}"]
    for key, label, fmt in TABLE_ROWS:
        if key in metrics:
            value = metrics[key]
            lines.append(f"{label:<28}{'n/a' if value is None else fmt.format(value)}")
    for judge, why in result["skipped"].items():
        lines.append(f"skipped {judge}: {why}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from speechunits.measure.audio import evaluate_audio

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    result = evaluate_audio(args.ref, args.hyp, text=args.text, probe=args.probe, speaker_probe=args.speaker_probe,
                            metrics=metrics, f0_method=args.f0_method, device=args.device, quiet=args.quiet,
                            phones=args.phones, speakers=args.speakers, target_speakers=args.target_speakers,
                            codebooks=args.codebooks, jobs=args.jobs)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_table(result))
    return 0

"""``speechunits evaluate UNITS_DIR --alignments A [--json]``: PNMI, purity, bitrate, usage."""
from __future__ import annotations

import argparse
import json
import logging

from speechunits.cli.common import add_quiet
from speechunits.measure.alignments import load_alignments
from speechunits.measure.evaluate import EvaluationReport, evaluate_store

log = logging.getLogger(__name__)

#: (report field, label) rows of the text table, in order.
TABLE_ROWS = (
    ("pnmi", "PNMI"),
    ("phone_purity", "phone purity"),
    ("cluster_purity", "cluster purity"),
    ("h_phone", "H(phone) bits"),
    ("h_phone_given_unit", "H(phone|unit) bits"),
    ("mean_segment_frames", "mean segment (frames)"),
    ("mean_segment_s", "mean segment (s)"),
    ("tokens_per_s", "tokens/s (dedup)"),
    ("bitrate", "bitrate uniform (bit/s)"),
    ("bitrate_entropy", "bitrate entropy (bit/s)"),
    ("frame_bitrate", "frame bitrate (bit/s)"),
    ("unit_perplexity", "unit perplexity"),
    ("used_units", "used units"),
    ("dead_units", "dead units"),
    ("vocab_size", "K"),
    ("num_phones", "phones"),
    ("utterances", "utterances evaluated"),
    ("utterances_missing_alignments", "utterances without alignments (skipped)"),
    ("alignments_without_units", "aligned utterances without units"),
    ("frames", "frames"),
    ("labelled_frames", "labelled frames"),
    ("unlabelled_frames", "unlabelled frames (excluded from PNMI/purity)"),
    ("frames_past_alignment_end", "  of which past the last segment"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="PNMI, purities, entropies, bitrate and unit usage of a unit store against phone alignments",
        description="Each frame takes the phone at its centre time (store frame rate and offset); "
        "deduplicated stores are expanded with their durations.",
    )
    parser.add_argument("units_dir", help="unit store directory (speechunits encode)")
    parser.add_argument("--alignments", required=True,
                        help="phone alignments: TSV utt<TAB>start<TAB>end<TAB>label, a TextGrid dir/file, a synth "
                        "corpus dir, or a fairseq frame-level phone file (with --frame-rate)")
    parser.add_argument("--tier", default="phones", help="TextGrid tier name (default: phones)")
    parser.add_argument("--frame-rate", type=float, default=None,
                        help="frame rate of a fairseq frame-level phone file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_quiet(parser)
    parser.set_defaults(func=run)


def format_table(report: EvaluationReport) -> str:
    """A two-column text table of the report."""
    values = report.to_dict()
    width = max(len(label) for _, label in TABLE_ROWS)
    lines = []
    for key, label in TABLE_ROWS:
        value = values[key]
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{label:<{width}}  {text}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    alignments = load_alignments(args.alignments, tier=args.tier, frame_rate=args.frame_rate)
    report = evaluate_store(args.units_dir, alignments)
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        print(format_table(report))
    return 0

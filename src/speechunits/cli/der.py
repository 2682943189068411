"""``speechunits der REF.rttm HYP.rttm``: diarization error rate (missed speech, false alarm, confusion)."""
from __future__ import annotations

import argparse
import json
import logging

from speechunits.cli.common import add_quiet
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "der",
        help="diarization error rate of hypothesis RTTM turns against reference ones",
        description="NIST md-eval's DER (as pyannote.metrics and dscore compute it): missed speech, false alarm "
        "and speaker confusion over the reference speech, with the one-to-one speaker mapping that maximises "
        "their overlap, per recording; totals sum the times of every reference recording.",
    )
    parser.add_argument("reference", help="reference RTTM (SPEAKER lines)")
    parser.add_argument("hypothesis", help="hypothesis RTTM (SPEAKER lines)")
    parser.add_argument("--collar", type=float, default=0.0,
                        help="seconds left unscored on each side of every reference boundary (default 0; "
                             "NIST/dscore convention: pyannote's collar is twice this)")
    parser.add_argument("--skip-overlap", action="store_true", help="leave out the time two reference speakers overlap")
    parser.add_argument("--uem", default=None, help="NIST UEM file (FILE CHANNEL START END per line): the scored regions")
    parser.add_argument("--json", action="store_true", help="print one JSON object (total and per recording)")
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.measure.diarization import DiarizationErrors, score_recordings, turns_by_recording
    from speechunits.rttm import read_rttm, read_uem

    reference = turns_by_recording(read_rttm(args.reference, {"SPEAKER"}))
    hypothesis = turns_by_recording(read_rttm(args.hypothesis, {"SPEAKER"}))
    if not reference:
        raise SpeechUnitsError(f"{args.reference}: no SPEAKER line")
    extra = sorted(set(hypothesis) - set(reference))
    if extra:
        log.warning("%d hypothesis recordings are not in the reference and are not scored (e.g. %s)",
                    len(extra), ", ".join(extra[:3]))
    missing = sorted(set(reference) - set(hypothesis))
    if missing:
        log.warning("%d reference recordings have no hypothesis turn: all their speech counts as missed (e.g. %s)",
                    len(missing), ", ".join(missing[:3]))
    uems = read_uem(args.uem) if args.uem else None
    per = score_recordings(reference, hypothesis, collar=args.collar, skip_overlap=args.skip_overlap, uems=uems)
    total = sum(per.values(), DiarizationErrors(0.0, 0.0, 0.0, 0.0))
    if args.json:
        print(json.dumps({"total": total.to_dict(), "recordings": {k: v.to_dict() for k, v in per.items()},
                          "collar": args.collar, "skip_overlap": args.skip_overlap}, sort_keys=True))
        return 0
    ref_s = total.reference or float("nan")
    print(f"DER {100 * total.der:.2f} %  (missed {100 * total.missed / ref_s:.2f} %, false alarm "
          f"{100 * total.false_alarm / ref_s:.2f} %, confusion {100 * total.confusion / ref_s:.2f} %; "
          f"{total.reference:.1f} s of reference speech in {len(per)} recordings)")
    return 0

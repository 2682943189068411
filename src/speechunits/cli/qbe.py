"""``speechunits qbe FEATURES_DIR_OR_UNITS --truth DIR | --quesst ROOT --split dev``: query-by-example
spoken term detection (SUPERB's QbE) by subsequence DTW, scored by MTWV and MAP."""
from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from speechunits.cli.common import add_quiet
from speechunits.errors import SpeechUnitsError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from speechunits.search.quesst import GroundTruth
    from speechunits.search.run import SearchResult

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "qbe",
        help="query-by-example spoken term detection (SUPERB QbE): subsequence DTW, MTWV and MAP",
        description="Search every query in every document of a features directory or unit store "
        "(both encoded together, e.g. `speechunits features quesst14Database -o F`) with SUPERB's "
        "subsequence DTW, and score the detections against a NIST STD ground truth (QUESST 2014/2015, "
        "SWS 2013, `speechunits synth qbe`).",
    )
    parser.add_argument("input", help="features directory (speechunits features) or unit store (speechunits encode) "
                                      "holding the queries and the documents")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--quesst", metavar="ROOT", help="a QUESST database directory (with scoring/groundtruth_*_SPLIT)")
    which.add_argument("--truth", metavar="DIR_OR_RTTM",
                       help="a ground-truth directory (.ecf.xml + .tlist.xml + .rttm) or an RTTM file")
    which.add_argument("--queries", metavar="FILE",
                       help="search only: the query ids, one per line (every other id is a document); no metrics")
    parser.add_argument("--split", default="dev", help="with --quesst: dev or eval (default dev)")
    parser.add_argument("--languages", default=None,
                        help="with --quesst: keep files of these languages, comma-separated (SUPERB: nnenglish)")
    parser.add_argument("--layer", default=None,
                        help="layer of a multi-layer features directory, or 'all' to score each layer (SUPERB's sweep)")
    parser.add_argument("--distance", default=None, choices=["cosine-exp", "cosine", "euclidean", "hamming"],
                        help="frame distance (default: cosine-exp for features, hamming for unit ids)")
    parser.add_argument("--minmax", default=None, action=argparse.BooleanOptionalAction,
                        help="rescale each query frame's distances within each document (default: on for features)")
    parser.add_argument("--no-standardise", action="store_true", help="do not standardise features over all frames")
    parser.add_argument("--codebook", default=None, metavar="CB",
                        help="with a unit store: compare units by the distance of their codebook centroids (the "
                             "store's own codebook, checked by sha256) instead of 0/1")
    parser.add_argument("--min-query-frames", type=int, default=5, help="shorter queries score 0 (default 5, SUPERB's)")
    parser.add_argument("--p-target", type=float, default=None, help="TWV and Cnxe target prior (default 0.0008)")
    parser.add_argument("--cost-miss", type=float, default=None, help="TWV miss cost (default 100, QUESST's)")
    parser.add_argument("--cost-fa", type=float, default=None, help="TWV false-alarm cost (default 1)")
    parser.add_argument("--frame-rate", type=float, default=None, help="override the input's frame rate")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="compute device")
    parser.add_argument("-o", "--out", default=None,
                        help="write scores.tsv, stdlist.xml and metrics.json here (one folder per layer with --layer all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_quiet(parser)
    parser.set_defaults(func=run)


def _truth(args: argparse.Namespace) -> GroundTruth | None:
    from speechunits.search import quesst

    if args.quesst:
        languages = [x.strip() for x in args.languages.split(",") if x.strip()] if args.languages else None
        return quesst.quesst_ground_truth(args.quesst, args.split, languages)
    if args.languages:
        raise SpeechUnitsError("--languages needs --quesst (the language keys are QUESST's)")
    return quesst.read_ground_truth(args.truth) if args.truth else None


def _query_ids(path: str) -> list[str]:
    from speechunits.files import iter_text_lines

    return list(dict.fromkeys(line.strip() for _, line in iter_text_lines(path, "query list")))


def _layers(path: Path, layer: str | None) -> list[int | None]:
    if layer is None:
        return [None]
    if layer != "all":
        try:
            return [int(layer)]
        except ValueError:
            raise SpeechUnitsError(f"--layer: expected a layer number or 'all', got {layer!r}") from None
    from speechunits.files import read_json_object

    meta = path / "features.json"
    if not meta.is_file():
        raise SpeechUnitsError(f"--layer all: {path} is not a features directory with features.json")
    layers = read_json_object(meta).get("layers") or []
    if not layers:
        raise SpeechUnitsError(f"{meta}: lists no layers")
    return [int(x) for x in layers]


def _as_centroids(args: argparse.Namespace, frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A unit store's ids as the centroids of ``--codebook``, which must be the store's codebook."""
    from speechunits.quantize.codebook import Codebook
    from speechunits.search.run import centroid_frames
    from speechunits.units.store import UnitStore

    if any(Path(args.input).glob("layer*.npy")):
        raise SpeechUnitsError("--codebook goes with a unit store, not a features directory")
    codebook = Codebook.load(args.codebook)
    UnitStore.open(args.input, codebook_sha256=codebook.sha256)  # refuses units of another codebook
    return centroid_frames(frames, codebook.centroids)


def _search_one(args: argparse.Namespace, truth: GroundTruth | None, layer: int | None,
                device: torch.device) -> tuple[SearchResult, dict | None]:
    """Search one layer (or the one input) and score it against ``truth`` when there is one."""
    from speechunits.id_match import match_ids
    from speechunits.measure.frame_source import open_frame_source
    from speechunits.search.run import evaluate, search
    from speechunits.search.twv import COST_FA, COST_MISS, P_TARGET, beta_from

    source = open_frame_source(args.input, layer, args.frame_rate)
    wanted = [*truth.terms, *truth.documents] if truth is not None else _query_ids(args.queries)
    theirs_of = match_ids(source.ids, wanted, "the ground truth" if truth is not None else "the query list")
    every = dict(source.frames)  # a features directory's are memory-mapped: nothing is read yet
    if args.codebook:
        every = _as_centroids(args, every)
    frames = {theirs_of.get(utt, utt): f for utt, f in every.items()}
    if truth is not None:
        queries = [t for t in truth.terms if t in frames]
        documents = [d for d in truth.documents if d in frames]
        lost_q, lost_d = len(truth.terms) - len(queries), len(truth.documents) - len(documents)
        if lost_q or lost_d:
            log.warning("%s lacks %d of %d queries and %d of %d documents of the ground truth: they are left out",
                        args.input, lost_q, len(truth.terms), lost_d, len(truth.documents))
    else:
        named = set(theirs_of.values())
        queries = [q for q in wanted if q in named]
        if len(queries) < len(wanted):
            raise SpeechUnitsError(f"{args.queries}: {len(wanted) - len(queries)} of {len(wanted)} query ids are not in "
                                   f"{args.input}")
        documents = [utt for utt in source.ids if utt not in theirs_of]
    result = search(frames, queries, documents, frame_rate=source.frame_rate,
                    distance=args.distance,
                    minmax=args.minmax, standardise=not args.no_standardise,
                    min_query_frames=args.min_query_frames, locate=args.out is not None, device=device)
    metrics = None
    if truth is not None:
        beta = beta_from(P_TARGET if args.p_target is None else args.p_target,
                         COST_MISS if args.cost_miss is None else args.cost_miss,
                         COST_FA if args.cost_fa is None else args.cost_fa)
        metrics = evaluate(result, truth, beta=beta)
    return result, metrics


def _write(out: Path, result: SearchResult, metrics: dict | None) -> None:
    from speechunits.files import write_json_atomic
    from speechunits.search.quesst import write_stdlist
    from speechunits.search.run import YES_THRESHOLD

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "scores.tsv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["query", "document", "score", "cost", "start_s", "end_s"])
        for i, query in enumerate(result.queries):
            for j, doc in enumerate(result.documents):
                writer.writerow([query, doc, f"{result.score[i, j]:.4f}", f"{result.cost[i, j]:.5f}",
                                 f"{result.start_s[i, j]:.3f}", f"{result.end_s[i, j]:.3f}"])
    write_stdlist(out / "stdlist.xml", {q: result.ranked(i) for i, q in enumerate(result.queries)}, YES_THRESHOLD)
    if metrics is not None:
        write_json_atomic(out / "metrics.json", metrics)


def _line(metrics: dict) -> str:
    return (f"MTWV {metrics['mtwv']:.4f} (threshold {metrics['mtwv_threshold']:.2f})  ATWV {metrics['atwv']:.4f}  "
            f"MAP {metrics['map']:.4f}  minCnxe {metrics['min_cnxe']:.4f}  Cnxe {metrics['cnxe']:.4f}  "
            f"({metrics['queries_scored']} queries with occurrences, "
            f"{metrics['documents']} documents)")


def run(args: argparse.Namespace) -> int:
    from speechunits.device import resolve_device

    if args.quesst is None and (args.split != "dev"):
        raise SpeechUnitsError("--split needs --quesst (a ground-truth directory is one split already)")
    device = resolve_device(args.device)
    truth = _truth(args)
    layers = _layers(Path(args.input), args.layer)
    by_layer: dict[str, dict | None] = {}
    for layer in layers:
        result, metrics = _search_one(args, truth, layer, device)
        key = "input" if layer is None else str(layer)
        by_layer[key] = metrics
        if args.out:
            _write(Path(args.out) / (f"layer{layer}" if args.layer == "all" else ""), result, metrics)
        if metrics is not None and not args.json:
            print(f"{'' if layer is None else f'layer {layer:>2}  '}{_line(metrics)}")
    if args.json:
        if truth is None:
            print(json.dumps({"queries": len(result.queries), "documents": len(result.documents), "out": args.out}))
        elif args.layer == "all":
            best = max(by_layer, key=lambda k: by_layer[k]["mtwv"])  # type: ignore[index]
            print(json.dumps({"layers": by_layer, "best_layer": int(best)}, sort_keys=True))
        else:
            print(json.dumps(next(iter(by_layer.values())), sort_keys=True))
    elif truth is None:
        print(f"searched {len(result.queries)} queries in {len(result.documents)} documents"
              + (f"; scores in {args.out}/scores.tsv" if args.out else " (give -o OUT to keep the scores)"))
    return 0

"""Must-show of issue 16: unit LMs on >= 5 h of synthetic speech, lexical/syntactic benchmarks, correction.

Headline command (what the closing note's table comes from)::

    python bench/lm.py --out bench/out/lm --minutes 300 --speakers 40 --lm-minutes 45 --mlm-minutes 20

Quick check that everything runs (minutes on a loaded machine)::

    python bench/lm.py --out /tmp/lm-quick --quick

What it does, every setting fixed here (nothing is chosen on benchmark data):

1. ``speechunits.synth.synthesize_corpus`` (``--minutes``, ``--speakers``, ``--text``: since
   2026-12-01 ``mixed``, the sentence list and the syntactic benchmark's grammar in turn; the first
   run used ``list``, whose sentences never show the grammar's agreement), speakers split: the last
   10 % (at least 1) are held out (perplexity, correction); the LMs train on the rest.
2. Units, K=100: ``speechunits fit`` on the training speakers' audio (``--encoder``: MFCC by default
   or a model directory with ``--layer``; the first two runs fitted on every speaker's audio),
   ``speechunits encode`` of every utterance.
3. Benchmarks: ``speechunits.synth.benchmarks.write_lexical`` / ``write_syntactic`` (ZeroSpeech
   2021 layout, voices unseen in any synthetic corpus), encoded once with the same codebook.
4. Causal LMs (``--config``, ``--lm-minutes`` each) on raw units, deduplicated units, BPE over
   deduplicated units (vocabulary ``--bpe-vocab``), and deduplicated units interleaved with text
   words (``words.tsv``, p = 0.3: issue point 6); unit n-gram baselines on deduplicated units
   (interpolated modified Kneser-Ney, kenlm's ``lmplz`` recipe, orders 3 and 5; since 2026-12-02, the
   runs before used interpolated Witten-Bell, kept as a 5-gram row); toplines on the phone transcripts
   (``phones.tsv``): 5-grams (Kneser-Ney and Witten-Bell) and a causal LM of the same config. Benchmark items are scored by
   their phones: lexical gold ``phones``; syntactic ``transcription`` through a word -> phones
   lexicon read off the training alignments (pairs with an unknown word are left out and counted).
   Since 2026-12-02 the causal LMs train with ``--crop-prob`` 0.5 (random spans of utterances,
   so that a word spoken alone is in distribution; the runs before used whole utterances, 0).
5. Per LM: lexical and syntactic accuracy (summed and length-normalised scores), perplexity per
   token and bits per second of held-out speech (comparable across tokenisations), training
   tokens/s and steps in the budget, scoring throughput (utterances/s).
6. Correction: a masked LM (deduplicated units, ``--mlm-minutes``) corrects the held-out speakers'
   units; UED (``speechunits.measure.invariance.unit_edit_distance``) of each held-out utterance to
   every reference-speaker utterance (first 3 training speakers) of the same sentence, before and
   after (thresholds 0.01, 0.05 = the default and headline, 0.2); the drop must be >= 20 %.
   ``--mlm-speakers reference`` trains that masked LM on the reference speakers alone.
7. Sampling: 5 s continuations of 3 s prompts (held-out utterances) with the dedup LM: tokens/s.
8. A markdown table (``OUT/table.md``), ``OUT/results.json`` and the issue's targets as PASS/FAIL.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from speechunits.errors import SpeechUnitsError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from su import fit_codebook, su  # noqa: E402  (bench/su.py)

log = logging.getLogger("bench.lm")

FULL = dict(minutes=300.0, speakers=40, lm_minutes=45.0, mlm_minutes=20.0, config="small", bpe_vocab=1000,
            max_frames=300_000, prompts=10, text="mixed", crop_prob=0.5)
QUICK = dict(minutes=3.0, speakers=5, lm_minutes=0.3, mlm_minutes=0.3, config="tiny", bpe_vocab=150,
             max_frames=20_000, prompts=2, text="mixed", crop_prob=0.5)
K = 100
REFERENCE_SPEAKERS = 3


def sub_store(store: Any, ids: set[str], path: Path) -> Path:
    """The rows of ``store`` whose id is in ``ids``, as a new store."""
    from speechunits.units.store import write_units

    if not (path / ".speechunits.json").is_file():
        rows = [(u, units) for u, units in store if u in ids]
        write_units(path, rows, store.meta["codebook"], dedup=store.dedup)
    return path


def speakers_split(corpus: Path) -> tuple[dict[str, str], list[str], list[str]]:
    from speechunits.corpus import read_speakers

    speaker_of = read_speakers(corpus / "speakers.tsv")
    speakers = sorted(set(speaker_of.values()))
    held = max(1, len(speakers) // 10)
    return speaker_of, speakers[:-held], speakers[-held:]


# -- benchmarks -------------------------------------------------------------------------------------
def write_benchmarks(out: Path) -> Path | None:
    """The synthetic ZeroSpeech 2021 sets (from the synthpairs helper's speechunits.synth.benchmarks)."""
    zr = out / "zr2021"
    if (zr / "lexical").is_dir() or (zr / "syntactic").is_dir():
        return zr
    try:
        from speechunits.synth.benchmarks import write_lexical, write_syntactic
    except ImportError:
        log.warning("speechunits.synth.benchmarks is not available: no lexical/syntactic rows")
        return None
    write_lexical(zr, language="en", seed=0)
    write_syntactic(zr, seed=0)
    return zr


def encode_sets(zr: Path, codebook: Path, out: Path) -> dict[Path, Path]:
    """Unit store of every benchmark set directory (encoded once, scored by every LM)."""
    from speechunits.lm.benchmark import TASKS

    stores = {}
    for task in TASKS:
        for set_name in ("dev", "test"):
            set_dir = zr / task / set_name
            if (set_dir / "gold.csv").is_file():
                store = out / "zr-units" / f"{task}-{set_name}"
                if not (store / ".speechunits.json").is_file():
                    su("encode", str(set_dir), "--codebook", str(codebook), "-o", str(store), "--quiet")
                stores[set_dir] = store
    return stores


def benchmark_with(score_fn: Callable[[Path], dict[str, tuple[float, int]]], zr: Path | None) -> dict[str, Any]:
    from speechunits.lm.benchmark import run_benchmark

    if zr is None:
        return {}
    out = {}
    for set_name in ("dev", "test"):
        try:
            out[set_name] = run_benchmark(None, zr, set_name=set_name, score_fn=score_fn)
        except SpeechUnitsError as exc:  # a set that does not exist
            log.info("benchmark %s: %s", set_name, exc)
    return out


# -- phone toplines ---------------------------------------------------------------------------------
def phone_data(corpus: Path, train_ids: set[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Phone sequences per training utterance and a word -> phones lexicon from the alignments."""
    from speechunits.measure.alignments import load_alignments

    phones = load_alignments(corpus / "phones.tsv", tier="phones", silence=None)
    words = load_alignments(corpus / "words.tsv", tier="words", silence=None)
    sequences = {u: [s.label for s in segs] for u, segs in phones.items() if u in train_ids}
    variants: dict[str, Counter] = defaultdict(Counter)
    for utt, segs in words.items():
        if utt not in train_ids or utt not in phones:
            continue
        for w in segs:
            inside = tuple(p.label for p in phones[utt] if p.start >= w.start - 1e-6 and p.end <= w.end + 1e-6)
            if inside:
                variants[normalise(w.label)][inside] += 1
    lexicon = {w: list(c.most_common(1)[0][0]) for w, c in variants.items()}
    return sequences, lexicon


def normalise(word: str) -> str:
    return re.sub(r"[^\w']+", "", word.lower())


def phone_items(zr: Path | None, lexicon: dict[str, list[str]]) -> dict[Path, dict[str, list[str] | None]]:
    """Phones of every benchmark file (None where the transcription has a word outside the lexicon)."""
    from speechunits.lm.benchmark import TASKS, read_gold

    items: dict[Path, dict[str, list[str] | None]] = {}
    if zr is None:
        return items
    for task in TASKS:
        for set_name in ("dev", "test"):
            gold = zr / task / set_name / "gold.csv"
            if not gold.is_file():
                continue
            table: dict[str, list[str] | None] = {}
            for row in read_gold(gold):
                if task == "lexical":
                    table[row.filename] = row.fields.get("phones", "").split()
                else:
                    seq: list[str] | None = []
                    for word in row.fields.get("transcription", "").split():
                        if normalise(word) not in lexicon:
                            seq = None
                            break
                        seq.extend(lexicon[normalise(word)])
                    table[row.filename] = seq
            items[gold.parent] = table
    return items


# -- main -------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that everything runs")
    for name, value in FULL.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=None,
                            help=f"default {value} (quick: {QUICK[name]})")
    parser.add_argument("--encoder", default="mfcc",
                        help="what the units come from: mfcc (default) or a model directory (e.g. bench/pretrain.py's "
                             "OUT/iter2)")
    parser.add_argument("--layer", type=int, default=None, help="the encoder's layer (required for a model)")
    parser.add_argument("--mlm-speakers", choices=("train", "reference"), default="train",
                        help="the correcting masked LM trains on every training speaker (default) or on the "
                        f"{REFERENCE_SPEAKERS} reference speakers alone (the accent-adaptation setup: pull towards them)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.encoder != "mfcc" and args.layer is None:
        parser.error("--layer is required with a model --encoder")
    cfg = dict(QUICK if args.quick else FULL)
    cfg.update({k: getattr(args, k) for k in FULL if getattr(args, k) is not None})
    cfg.update(encoder=args.encoder, layer=args.layer)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"settings": cfg, "rows": {}}

    from speechunits.corpus import write_tsv_subset
    from speechunits.lm.config import preset
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.ngram import NGramLM
    from speechunits.lm.score import score_store, score_tokens
    from speechunits.lm.train import train_lm
    from speechunits.units.store import UnitStore, write_units

    # 1-2. corpus and units
    corpus = out / "corpus"
    if not (corpus / "corpus.json").is_file():
        from speechunits.synth import synthesize_corpus

        synthesize_corpus(corpus, minutes=cfg["minutes"], speakers=cfg["speakers"], seed=0, quiet=True,
                          text=cfg["text"])
    speaker_of, train_speakers, held_speakers = speakers_split(corpus)
    train_ids = {u for u, s in speaker_of.items() if s in train_speakers}
    held_ids = {u for u, s in speaker_of.items() if s in held_speakers}
    codebook = out / "codebook"
    if not (codebook / "codebook.json").is_file():
        train_manifest = out / "train-manifest.tsv"  # the codebook never sees held-out voices
        write_tsv_subset(corpus / "manifest.tsv", train_ids, train_manifest)
        fit_codebook(train_manifest, codebook, args.encoder, K, args.layer, "--max-frames", cfg["max_frames"])
    units_dir = out / "units"
    if not (units_dir / ".speechunits.json").is_file():
        su("encode", str(corpus / "manifest.tsv"), "--codebook", str(codebook), "-o", str(units_dir), "--quiet")
    store = UnitStore.open(units_dir)
    train_store = sub_store(store, train_ids, out / "units-train")
    held_store = sub_store(store, held_ids, out / "units-held")
    hours = sum(secs for _, _, secs in store.iter_rows()) / 3600
    results["corpus"] = {"hours": hours, "speakers": len(train_speakers) + len(held_speakers),
                         "held_out_speakers": held_speakers, "utterances": len(store)}
    log.info("corpus: %.2f h, %d utterances", hours, len(store))

    # 3. benchmarks
    zr = write_benchmarks(out)
    set_stores = encode_sets(zr, codebook, out) if zr is not None else {}

    # 4-5. LMs
    bpe_dir = out / "bpe"
    if not (bpe_dir / "bpe.json").is_file():
        su("bpe", "train", str(train_store), "--vocab", str(cfg["bpe_vocab"]), "-o", str(bpe_dir))
    held_seconds = sum(secs for _, _, secs in UnitStore.open(held_store).iter_rows())

    def transformer_row(name: str, **kwargs: Any) -> None:
        lm_dir = out / "lms" / name
        lm_cfg = preset(cfg["config"], objective="causal", max_minutes=cfg["lm_minutes"], steps=10 ** 7,
                        crop_prob=cfg["crop_prob"])
        started = time.perf_counter()
        if not (lm_dir / "config.json").is_file():
            result = train_lm(kwargs.pop("store", train_store), lm_dir, lm_cfg, codebook_dir=codebook, quiet=True,
                              device=args.device, **kwargs)
            hist = result.training.history
            training = {"steps": result.training.steps_done, "minutes": (time.perf_counter() - started) / 60,
                        "tokens_per_s": float(np.mean([h.amount_per_second for h in hist])) if hist else None,
                        "final_loss": hist[-1].loss if hist else None}
            (lm_dir / "bench-training.json").write_text(json.dumps(training) + "\n")
        else:
            saved = lm_dir / "bench-training.json"
            training = json.loads(saved.read_text()) if saved.is_file() else {}
        lm = load_lm(lm_dir, args.device)
        if training.get("tokens_per_s"):  # comparable across tokenisations: seconds of speech learnt per second
            training["audio_s_per_s"] = training["tokens_per_s"] * lm.meta["frames_per_token"] / lm.frame_rate
        t0 = time.perf_counter()
        held = score_store(lm, held_store)
        nll = -sum(s.logprob for s in held)
        positions = sum(s.tokens for s in held)
        timing = {"held_out_utts_per_s": len(held) / (time.perf_counter() - t0)}
        row = {"training": training, "ppl_per_token": math.exp(nll / positions),
               "bits_per_second": nll / math.log(2) / held_seconds, "timing": timing}
        scored_utts = [0, 0.0]

        def score_fn(set_dir: Path) -> dict[str, tuple[float, int]]:
            t = time.perf_counter()
            scores = score_store(lm, set_stores[set_dir])
            scored_utts[0] += len(scores)
            scored_utts[1] += time.perf_counter() - t
            return {s.id: (s.logprob, s.tokens) for s in scores}

        row["benchmark"] = benchmark_with(score_fn, zr)
        if scored_utts[0]:
            timing["benchmark_utts_per_s"] = scored_utts[0] / scored_utts[1]
        results["rows"][name] = row
        log.info("%s: %s", name, json.dumps({k: v for k, v in row.items() if k != "benchmark"}))

    transformer_row("units")
    transformer_row("dedup", tokens="dedup")
    transformer_row("bpe", tokens="bpe", bpe_dir=bpe_dir)
    transformer_row("dedup+text", tokens="dedup", interleave=corpus / "words.tsv", interleave_prob=0.3)

    # n-gram baselines on deduplicated units
    from speechunits.lm.vocab import LMVocab

    dedup_vocab = LMVocab("dedup", K)
    train_seqs = [dedup_vocab.unit_sequence(u.ids, u.durations) for _, u in UnitStore.open(train_store)]
    for order, smoothing in ((3, "kneser-ney"), (5, "kneser-ney"), (5, "witten-bell")):
        t0 = time.perf_counter()
        ngram = NGramLM(order, K, smoothing=smoothing).fit(train_seqs)
        fit_s = time.perf_counter() - t0
        held = [ngram.score(dedup_vocab.unit_sequence(u.ids, u.durations)) for _, u in UnitStore.open(held_store)]
        nll = -sum(h[0] for h in held)

        def ngram_fn(set_dir: Path, ngram: NGramLM = ngram) -> dict[str, tuple[float, int]]:
            return {u: ngram.score(dedup_vocab.unit_sequence(x.ids, x.durations))
                    for u, x in UnitStore.open(set_stores[set_dir])}

        results["rows"][f"unit {order}-gram (dedup{', Witten-Bell' if smoothing == 'witten-bell' else ''})"] = {
            "training": {"seconds": fit_s}, "ppl_per_token": math.exp(nll / sum(h[1] for h in held)),
            "bits_per_second": nll / math.log(2) / held_seconds, "benchmark": benchmark_with(ngram_fn, zr)}

    # phone toplines
    sequences, lexicon = phone_data(corpus, train_ids)
    inventory = sorted({p for seq in sequences.values() for p in seq})
    phone_id = {p: i for i, p in enumerate(inventory)}
    unknown = len(inventory)  # one id for phones the training transcripts lack
    n_phones = len(inventory) + 1

    def phone_ids(seq: list[str]) -> np.ndarray:
        return np.array([phone_id.get(p, unknown) for p in seq], dtype=np.int64)

    items = phone_items(zr, lexicon)
    skipped = {str(d): sum(1 for v in t.values() if v is None) for d, t in items.items()}

    def complete(table: dict[str, list[str] | None], score: Callable[[list[np.ndarray]], list[tuple[float, int]]],
                 ) -> dict[str, tuple[float, int]]:
        names = [k for k, v in table.items() if v is not None]
        scored = dict(zip(names, score([phone_ids(table[k]) for k in names])))  # type: ignore[arg-type]
        # items without phones tie (0.5) rather than vanish, so the gold pairs stay complete
        return {k: scored.get(k, (0.0, 1)) for k in table}

    for smoothing, name in (("kneser-ney", "phone 5-gram (topline)"), ("witten-bell", "phone 5-gram WB (topline)")):
        phone_ngram = NGramLM(5, n_phones, smoothing=smoothing).fit(phone_ids(s) for s in sequences.values())
        results["rows"][name] = {"benchmark": benchmark_with(
            lambda d, lm=phone_ngram: complete(items[d], lambda xs: [lm.score(x) for x in xs]), zr),
            "unscorable_items": skipped}

    from speechunits.units import Units

    phone_meta = {"k": n_phones, "frame_rate": 1.0, "encoder": "phone transcripts", "layer": None,
                  "sha256": hashlib.sha256("\n".join(inventory).encode()).hexdigest()}
    phone_store = out / "phones-train"
    if not (phone_store / ".speechunits.json").is_file():
        write_units(phone_store, [(u, Units(phone_ids(s), 1.0, n_phones)) for u, s in sorted(sequences.items())],
                    phone_meta)
    phone_lm_dir = out / "lms" / "phones"
    if not (phone_lm_dir / "config.json").is_file():
        train_lm(phone_store, phone_lm_dir, preset(cfg["config"], max_minutes=cfg["lm_minutes"], steps=10 ** 7,
                                                   crop_prob=cfg["crop_prob"]),
                 quiet=True, device=args.device)
    phone_lm = load_lm(phone_lm_dir, args.device)
    results["rows"]["phone LM (topline)"] = {"benchmark": benchmark_with(
        lambda d: complete(items[d], lambda xs: score_tokens(phone_lm, [phone_lm.vocab.encode_units(x) for x in xs])),
        zr), "unscorable_items": skipped}

    # 6. correction
    results["correction"] = correction(out, cfg, corpus, store, train_store, held_store, speaker_of,
                                       train_speakers, args.device, args.mlm_speakers)

    # 7. sampling speed
    from speechunits.lm.sample import SampleOptions, prompts_from, sample_units

    lm = load_lm(out / "lms" / "dedup", args.device)
    prompts = prompts_from(lm, str(held_store), prompt_seconds=3.0)[:cfg["prompts"]]
    t0 = time.perf_counter()
    samples = sample_units(lm, prompts, SampleOptions(seconds=5.0, seed=0, top_k=50))
    wall = time.perf_counter() - t0
    results["sampling"] = {"samples": len(samples), "tokens": sum(s.new_tokens for s in samples),
                           "tokens_per_s": sum(s.new_tokens for s in samples) / wall,
                           "audio_seconds_per_s": sum(s.seconds for s in samples) / wall}

    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    table = render(results)
    (out / "table.md").write_text(table + "\n")
    print(table)
    return 0


def correction(out: Path, cfg: dict[str, Any], corpus: Path, store: Any, train_store: Path, held_store: Path,
               speaker_of: dict[str, str], train_speakers: list[str], device: str,
               mlm_speakers: str = "train") -> dict[str, Any]:
    """UED of held-out utterances to reference speakers' utterances of the same sentence, before/after
    (the masked LM trained on every training speaker, or with ``mlm_speakers="reference"`` on the
    reference speakers alone)."""
    from speechunits.files import read_pairs
    from speechunits.lm.config import preset
    from speechunits.lm.correct import CorrectOptions, correct_store
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.train import train_lm
    from speechunits.measure.invariance import unit_edit_distance
    from speechunits.units.store import UnitStore

    references = set(train_speakers[:REFERENCE_SPEAKERS])
    suffix = "" if mlm_speakers == "train" else "-reference"
    mlm_store = train_store if mlm_speakers == "train" else sub_store(
        store, {u for u, s in speaker_of.items() if s in references}, out / "units-reference")
    mlm_dir = out / "lms" / f"masked-dedup{suffix}"
    if not (mlm_dir / "config.json").is_file():
        train_lm(mlm_store, mlm_dir, preset(cfg["config"], objective="masked", max_minutes=cfg["mlm_minutes"],
                                            steps=10 ** 7), tokens="dedup", quiet=True, device=device)
    text = read_pairs(corpus / "text.tsv", what="transcripts", value_name="text")
    all_units = store.to_dict()
    by_text: dict[str, list[np.ndarray]] = defaultdict(list)
    for utt, units in all_units.items():
        if speaker_of.get(utt) in references:
            by_text[text[utt]].append(units.expand().ids)
    held = UnitStore.open(held_store).to_dict()
    with_refs = {u for u in held if by_text.get(text.get(u, ""))}
    if not with_refs:
        return {"ued_before": None, "ued_after": None, "drop": None, "utterances_with_references": 0, "sweep": {}}
    subset = sub_store(UnitStore.open(held_store), with_refs, out / "units-held-with-references")

    def ued(units: dict[str, Any]) -> float:
        edits = length = 0
        for utt, u in units.items():
            for ref in by_text[text[utt]]:
                e, n = unit_edit_distance(ref, u.expand().ids)
                edits, length = edits + e, length + n
        return edits / max(length, 1)

    before = ued({u: held[u] for u in with_refs})
    mlm = load_lm(mlm_dir, device)
    sweep: dict[str, Any] = {}
    default = CorrectOptions().threshold
    for threshold in sorted({0.01, default, 0.2}):
        corrected = out / f"units-held-corrected{suffix}-{threshold:g}"
        t0 = time.perf_counter()
        if not (corrected / ".speechunits.json").is_file():
            report = correct_store(mlm, subset, corrected, CorrectOptions(threshold=threshold)).to_dict()
        else:
            report = {}
        after = ued(UnitStore.open(corrected).to_dict())
        sweep[f"{threshold:g}"] = {"ued_after": after, "drop": (before - after) / before if before else None,
                                   "report": report, "seconds": time.perf_counter() - t0}
    headline = sweep[f"{default:g}"]
    return {"ued_before": before, "ued_after": headline["ued_after"], "drop": headline["drop"],
            "threshold": default, "utterances_with_references": len(with_refs), "sweep": sweep,
            "mlm_speakers": mlm_speakers}


def render(results: dict[str, Any]) -> str:
    lines = [f"corpus: {results['corpus']['hours']:.2f} h, {results['corpus']['utterances']} utterances, "
             f"held-out speakers {', '.join(results['corpus']['held_out_speakers'])}; units: K={K} of "
             f"{results['settings'].get('encoder', 'mfcc')}"
             + ("" if results['settings'].get('layer') is None else f" layer {results['settings']['layer']}"), "",
             "| LM | lexical sum | lexical norm | syntactic sum | syntactic norm | ppl/token | bits/s | train tok/s "
             "| train audio s/s | steps | score utt/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def acc(row: dict[str, Any], task: str, scoring: str) -> str:
        bench = row.get("benchmark", {})
        for set_name in ("test", "dev"):
            if task in bench.get(set_name, {}):
                return f"{bench[set_name][task][scoring]['accuracy']:.3f} ({set_name})"
        return "-"

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for name, row in results["rows"].items():
        training = row.get("training") or {}
        lines.append(f"| {name} | {acc(row, 'lexical', 'sum')} | {acc(row, 'lexical', 'normalised')} | "
                     f"{acc(row, 'syntactic', 'sum')} | {acc(row, 'syntactic', 'normalised')} | "
                     f"{num(row.get('ppl_per_token'), '.2f')} | {num(row.get('bits_per_second'), '.1f')} | "
                     f"{num(training.get('tokens_per_s'), '.0f')} | {num(training.get('audio_s_per_s'), '.1f')} | "
                     f"{num(training.get('steps'), 'd')} | "
                     f"{num((row.get('timing') or {}).get('benchmark_utts_per_s'), '.1f')} |")
    c = results["correction"]
    s = results["sampling"]
    lines += ["", f"correction (masked dedup LM, threshold {c.get('threshold')}): UED to reference speakers "
              f"{num(c['ued_before'], '.4f')} -> {num(c['ued_after'], '.4f')} (drop {num(c['drop'], '.1%')}, "
              f"{c['utterances_with_references']} utterances); other thresholds: "
              + ", ".join(f"{t}: {num(v['drop'], '.1%')}" for t, v in c.get("sweep", {}).items()),
              f"sampling (dedup LM): {s['tokens_per_s']:.1f} tokens/s, "
              f"{s['audio_seconds_per_s']:.2f} s of speech/s", ""]
    lms = {name: row for name, row in results["rows"].items() if name in ("units", "dedup", "bpe", "dedup+text")}

    def headline(task: str) -> float | None:
        """Test accuracy (summed scores) of the LM with the best dev accuracy (dev alone if no test set)."""
        def accuracy(row: dict[str, Any], set_name: str) -> float | None:
            entry = row.get("benchmark", {}).get(set_name, {}).get(task)
            return None if entry is None else entry["sum"]["accuracy"]

        candidates = [(accuracy(row, "dev"), row) for row in lms.values() if accuracy(row, "dev") is not None]
        if not candidates:
            return None
        row = max(candidates, key=lambda c: c[0])[1]
        test = accuracy(row, "test")
        return test if test is not None else accuracy(row, "dev")

    for label, value, target in (("lexical >= 0.80", headline("lexical"), 0.80),
                                 ("syntactic >= 0.65", headline("syntactic"), 0.65),
                                 ("correction UED drop >= 20 %", c["drop"], 0.20),
                                 ("corpus >= 5 h", results["corpus"]["hours"], 5.0)):
        verdict = "n/a" if value is None else ("PASS" if value >= target else "FAIL")
        lines.append(f"{verdict}: {label} (got {num(value, '.3f')})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

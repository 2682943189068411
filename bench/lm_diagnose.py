"""Why do unit LMs sit at chance on the lexical set (issue 16)? A diagnosis on bench/lm.py's data, dev sets only.

Run after ``bench/lm.py`` (it reads that run's corpus, codebook, unit stores and benchmark sets)::

    python bench/lm_diagnose.py --lm-out bench/out/lm            # ~3 min; writes bench/out/lm/diagnosis/

bench/lm.py's first run blamed the speaker dependence of the units. This script tests that, with count
models (which no training budget limits) on the lexical **dev** set (the test set is not read):

1. **Seen voices.** The same lexical pairs (same seed, same words and non-words) spoken by two *training*
   voices (``write_lexical(voices_from=corpus/speaker_info.tsv)``), scored by dedup unit 3/5-grams trained
   on all training speakers, and by 2/3/5/8-grams trained on that one voice's utterances only. If
   speaker dependence were the cause, these would be well above chance.
2. **Word in isolation vs in a sentence.** For each seen-voice word that the same voice says in the
   corpus: UED between the isolated word's units and its units cut out of the sentence (word
   alignment), between two in-sentence occurrences, and between the word and its non-word.
3. **Front ends.** MFCC K=100 as they are, after per-utterance or per-speaker mean/variance normalisation, and with
   +-2 / +-4 frames of context stacked (per-utterance normalised cepstra, PCA to 39): PNMI on the
   held-out speakers, cross-speaker UED (held-out speakers against the first 3 training speakers,
   same sentence) and the dedup 5-gram's lexical accuracy on unseen and seen voices. Each front end
   fits its own k-means (1500 training utterances, standardised, 30 Lloyd iterations); the first
   row instead uses bench/lm.py's own codebook and stores (``speechunits fit``, no standardisation). An
   upper bound closes the table: the phone labels of the alignments as units (what the phone 5-gram
   topline of bench/lm.py sees, but at the frame rate and deduplicated like the units).

The units of parts 1-2 are bench/lm.py's, whatever encoder and layer its codebook quantises (MFCC in the
first two runs, a pretrained model's layer with ``bench/lm.py --encoder``). ``--k-extra 500`` adds front-end
rows with other K on that same layer; ``--no-mfcc-front-ends`` skips the MFCC rows of part 3::

    python bench/lm_diagnose.py --lm-out bench/out/lm-iter2 --k-extra 500 --no-mfcc-front-ends   # ~15 min

``--pool 1,2`` repeats those rows on features averaged over every 2 frames before k-means (half the frame
rate: 50 Hz for the 100 Hz tiny models, HuBERT's rate); PNMI then labels each pooled frame at its window's
centre::

    python bench/lm_diagnose.py --lm-out bench/out/lm-iter2 --out bench/out/lm-iter2/diagnosis-pool \
        --k-extra 100,500 --pool 1,2 --no-mfcc-front-ends   # ~20 min

``--carrier PHRASE`` speaks both lexical sets (unseen and seen voices, the same pairs) inside a carrier phrase
(``write_lexical(carrier=...)``) instead of alone, in their own folders (default output ``LM_OUT/diagnosis-carrier``);
part 2 then cuts the word out of its carrier phrase (phone alignment) before comparing, and adds a check of the
benchmark's path through espeak-ng: 40 whole carrier phrases spoken from text against from mnemonics (as the
benchmark speaks them) and against the same text with another seed of espeak's noise generator::

    python bench/lm_diagnose.py --lm-out bench/out/lm-iter2 --no-mfcc-front-ends --carrier "she said {} twice"

``--smooth 3,5`` repeats the first row with every unit replaced by the most frequent unit of the W frames
around it (a majority filter; ties keep the frame's own unit) before deduplication: one-frame blips between
two runs disappear, so jitter that is not phone content should go::

    python bench/lm_diagnose.py --lm-out bench/out/lm-iter2 --out bench/out/lm-iter2/diagnosis-smooth \
        --smooth 3,5,9 --no-mfcc-front-ends

Prints a markdown report and writes ``OUT/results.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger("bench.lm_diagnose")

K = 100
SEEN_VOICES = 2
REFERENCE_SPEAKERS = 3
FIT_UTTERANCES = 1500
#: Words of part 2b (--carrier): each spoken three times.
PATH_WORDS = 40
FRONT_ENDS = ("standardised", "utterance CMVN", "speaker CMVN", "stack +-2", "stack +-4")


def lexical_accuracy(score: Callable[[np.ndarray], tuple[float, int]], units: dict[str, np.ndarray],
                     gold: list[Any]) -> dict[str, float]:
    """Lexical accuracy (summed and length-normalised) of ``score`` over the files of ``gold``."""
    from speechunits.lm.benchmark import evaluate_scores

    raw = {utt: score(ids) for utt, ids in units.items()}
    tables = {"sum": {u: s for u, (s, _) in raw.items()}, "normalised": {u: s / n for u, (s, n) in raw.items()}}
    result = evaluate_scores("lexical", gold, tables, "diagnosis")
    return {"sum": result["sum"]["accuracy"], "normalised": result["normalised"]["accuracy"]}


def normalised_features(features: dict[str, np.ndarray], mode: str, speaker_of: Callable[[str], str]
                        ) -> dict[str, np.ndarray]:
    """MFCC ``[T, 39]`` per utterance after one of :data:`FRONT_ENDS` (``standardised``: as they are; the
    quantizer standardises every front end with training statistics)."""
    if mode == "standardised":
        return features
    if mode == "utterance CMVN":
        return {u: (x - x.mean(0)) / (x.std(0) + 1e-5) for u, x in features.items()}
    if mode == "speaker CMVN":
        groups: dict[str, list[np.ndarray]] = defaultdict(list)
        for utt, x in features.items():
            groups[speaker_of(utt)].append(x)
        stats = {s: (np.concatenate(v).mean(0), np.concatenate(v).std(0) + 1e-5) for s, v in groups.items()}
        return {u: (x - stats[speaker_of(u)][0]) / stats[speaker_of(u)][1] for u, x in features.items()}
    context = int(mode.split("+-")[1])
    cepstra = normalised_features({u: x[:, :13] for u, x in features.items()}, "utterance CMVN", speaker_of)
    out = {}
    for utt, x in cepstra.items():
        padded = np.pad(x, ((context, context), (0, 0)), mode="edge")
        out[utt] = np.concatenate([padded[i:i + len(x)] for i in range(2 * context + 1)], axis=1)
    return out


class Quantizer:
    """Standardise (and for stacked MFCC, ``project``, onto 39 principal axes), then nearest of ``k`` k-means centroids."""

    def __init__(self, sample: np.ndarray, k: int = K, project: bool = False):
        import torch

        from speechunits.quantize.kmeans import fit_kmeans

        self.mean, self.std = sample.mean(0), sample.std(0) + 1e-5
        z = (sample - self.mean) / self.std
        self.projection = None
        if project:
            self.projection = np.linalg.svd(z[::5], full_matrices=False)[2][:39].T
            z = z @ self.projection
        self.centroids = fit_kmeans(torch.from_numpy(z.astype(np.float32)), k, iters=30, seed=0,
                                    device="cpu").centroids

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        z = (x - self.mean) / self.std
        if self.projection is not None:
            z = z @ self.projection
        return torch.cdist(torch.from_numpy(z.astype(np.float32)), self.centroids).argmin(1).numpy()


def pooled_frames(x: np.ndarray, pool: int) -> np.ndarray:
    """``[T, D]`` -> ``[ceil(T / pool), D]``: the mean of every ``pool`` frames (the last window may be shorter)."""
    if pool == 1:
        return x
    starts = np.arange(0, len(x), pool)
    return np.add.reduceat(x, starts, axis=0) / np.diff(np.r_[starts, len(x)])[:, None]


def majority_filter(ids: np.ndarray, width: int, k: int) -> np.ndarray:
    """``[T]`` unit ids -> the most frequent id of the ``width`` (odd) frames centred on each frame (the
    window shrinks at the edges); ties keep the frame's own id."""
    if width <= 1 or ids.size == 0:
        return ids
    half = width // 2
    onehot = np.zeros((ids.size + 1, k), dtype=np.float32)
    onehot[np.arange(1, ids.size + 1), ids] = 1.0
    counts = np.cumsum(onehot, axis=0)
    t = np.arange(ids.size)
    window = counts[np.minimum(t + half + 1, ids.size)] - counts[np.maximum(t - half, 0)]
    window[t, ids] += 0.5  # a tie goes to the frame's own unit
    return window.argmax(1)


def spoken_path_ued(carrier: str, rows: list[Any], speaker_info: Path, units_of: Callable[[np.ndarray], np.ndarray],
                    words: int = PATH_WORDS) -> dict[str, list[float]]:
    """Dedup-unit UED between whole carrier phrases of the first seen voice's first ``words`` real words,
    spoken three ways: from text (espeak noise seed 1) against from mnemonics (seed 1, as the benchmark
    speaks them) and against from text again (seed 2; only espeak's noise generator differs)."""
    from speechunits.measure.invariance import dedup_ids, unit_edit_distance
    from speechunits.synth.benchmarks import CARRIER_SLOT, carrier_words
    from speechunits.synth.corpus import _warm_up, speak
    from speechunits.synth.espeak import initialise, phoneme_phrase
    from speechunits.synth.lexicon import pronounce
    from speechunits.synth.speakers import LANGUAGE_VOICES, read_speaker_info

    initialise()
    speaker = read_speaker_info(speaker_info)[0]
    _warm_up([speaker])
    chosen = [r.fields["word"] for r in rows if r.correct == 1 and r.voice == speaker.name][:words]
    before, after = carrier_words(carrier)
    lexicon = pronounce(sorted(set(chosen + before + after)), LANGUAGE_VOICES["en"])

    def units(text: str, seed: int, phonemes: bool = False) -> np.ndarray:
        spoken = speak(text, speaker, seed, phonemes=phonemes).samples.astype(np.float32) / 32768.0
        return dedup_ids(units_of(spoken))

    out: dict[str, list[float]] = defaultdict(list)
    for word in chosen:
        text = carrier.replace(CARRIER_SLOT, word)
        mnemonics = phoneme_phrase([lexicon[w].mnemonics for w in [*before, word, *after]])
        reference = units(text, 1)
        for name, other in (("carrier phrase from text vs from mnemonics", units(mnemonics, 1, True)),
                            ("carrier phrase from text, espeak noise seed 1 vs 2", units(text, 2))):
            e, n = unit_edit_distance(reference, other)
            out[name].append(e / n)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lm-out", type=Path, default=Path("bench/out/lm"), help="the --out of a bench/lm.py run")
    parser.add_argument("--out", type=Path, help="default LM_OUT/diagnosis")
    parser.add_argument("--k-extra", default="", help="also fit these K (e.g. 500) on the features of bench/lm.py's "
                        "codebook (its encoder and layer; standardised, 1500 training utterances) as front-end rows")
    parser.add_argument("--pool", default="1", help="--k-extra rows at these frame poolings (e.g. 1,2: 2 = the mean "
                        "of every 2 frames before k-means, half the frame rate)")
    parser.add_argument("--no-mfcc-front-ends", action="store_true",
                        help="skip the normalised / stacked MFCC rows (they do not depend on bench/lm.py's units)")
    parser.add_argument("--smooth", default="", help="also measure bench/lm.py's units after a majority filter of "
                        "these odd widths in frames (e.g. 3,5)")
    parser.add_argument("--smoothing", default="kneser-ney", choices=("kneser-ney", "witten-bell"),
                        help="the count models' smoothing (the runs in docs/lm.md before 2026-12-02 used witten-bell)")
    parser.add_argument("--carrier", default=None, metavar="PHRASE",
                        help="speak the lexical sets inside this phrase ('she said {} twice'), both written here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("speechunits").setLevel(logging.WARNING)
    import soundfile as sf
    import torch

    from speechunits.corpus import read_speakers
    from speechunits.encoders import load_encoder
    from speechunits.lm.benchmark import read_gold
    from speechunits.lm.ngram import NGramLM
    from speechunits.measure.alignments import SILENCE, frame_label_ids, load_alignments
    from speechunits.measure.invariance import dedup_ids, unit_edit_distance
    from speechunits.measure.metrics import contingency, phone_unit_scores
    from speechunits.probe.labels import read_transcripts
    from speechunits.quantize.codebook import Codebook
    from speechunits.synth.benchmarks import write_lexical
    from speechunits.units.store import UnitStore

    torch.set_num_threads(1)
    lm_out: Path = args.lm_out
    out: Path = args.out or lm_out / ("diagnosis" if args.carrier is None else "diagnosis-carrier")
    out.mkdir(parents=True, exist_ok=True)
    corpus = lm_out / "corpus"
    speaker_of = read_speakers(corpus / "speakers.tsv")
    text_of = read_transcripts(corpus / "text.tsv")
    speakers = sorted(set(speaker_of.values()))
    held_count = max(1, len(speakers) // 10)  # bench/lm.py's rule: the last 10 % (at least 1) are held out
    train_speakers, held = speakers[:-held_count], speakers[-held_count:]
    results: dict[str, Any] = {"held_out_speakers": held, "carrier": args.carrier}

    # -- the seen-voice lexical set (same seed as bench/lm.py's: the same pairs) -------------------------
    seen_root = out / "zr-seen"
    if not (seen_root / "lexical").is_dir():
        write_lexical(seen_root, language="en", voices=SEEN_VOICES, seed=0, voices_from=corpus / "speaker_info.tsv",
                      carrier=args.carrier)
    unseen_root = lm_out / "zr2021"
    if args.carrier is not None:  # bench/lm.py's set speaks the words alone: the same pairs in the carrier
        unseen_root = out / "zr-unseen"
        if not (unseen_root / "lexical").is_dir():
            write_lexical(unseen_root, language="en", seed=0, carrier=args.carrier)
    sets = {"unseen voices": unseen_root / "lexical" / "dev", "seen voices": seen_root / "lexical" / "dev"}
    gold = {name: read_gold(d / "gold.csv") for name, d in sets.items()}
    voice_of = {name: {row.filename: row.voice for row in rows} for name, rows in gold.items()}
    seen_voices = sorted({row.voice for row in gold["seen voices"]})
    if not set(seen_voices) <= set(train_speakers):
        raise SystemExit(f"the first {SEEN_VOICES} speakers of speaker_info.tsv ({seen_voices}) must be training speakers")

    # -- features of the corpus and of both sets: MFCC, and the layer bench/lm.py's codebook quantises --
    codebook = Codebook.load(lm_out / "codebook")
    mfcc = load_encoder("mfcc", "cpu")
    unit_encoder = mfcc if codebook.encoder_name == "mfcc" else load_encoder(codebook.encoder_name, "cpu")
    codebook.check_compatible(unit_encoder.info, codebook.layer)
    frame_offset = unit_encoder.info.frame_offset_s

    def features_of(paths: list[Path], encoder: Any, layer: int) -> dict[str, np.ndarray]:
        return {p.stem: encoder.extract_batch([sf.read(p, dtype="float32")[0]], [layer])[0][layer] for p in paths}

    started = time.perf_counter()
    wavs = {"corpus": sorted((corpus / "wavs").glob("*.wav")), **{n: sorted(d.glob("*.wav")) for n, d in sets.items()}}
    feats = {}
    if not args.no_mfcc_front_ends:
        feats["mfcc"] = {part: features_of(paths, mfcc, 0) for part, paths in wavs.items()}
    feats["units"] = feats["mfcc"] if unit_encoder is mfcc and "mfcc" in feats else {
        part: features_of(paths, unit_encoder, codebook.layer) for part, paths in wavs.items()}
    log.info("features of %d files in %.0f s", sum(map(len, wavs.values())), time.perf_counter() - started)
    corpus_feats = feats["units"]["corpus"]
    set_feats = {name: feats["units"][name] for name in sets}
    alignments = load_alignments(str(corpus / "phones.tsv"))
    phones = sorted({s.label for segs in alignments.values() for s in segs})
    phone_id = {p: i for i, p in enumerate(phones)}
    train_utts = sorted(u for u in corpus_feats if speaker_of[u] in train_speakers)

    def measures(units: dict[str, np.ndarray], set_units: dict[str, dict[str, np.ndarray]], vocab: int = K,
                 pool: int = 1) -> dict[str, Any]:
        labels, ids = [], []
        rate = unit_encoder.info.frame_rate / pool
        offset = frame_offset + (pool - 1) / (2 * unit_encoder.info.frame_rate)  # a window's centre
        for utt, u in units.items():
            if speaker_of[utt] in held and utt in alignments:
                lab = frame_label_ids(alignments[utt], len(u), rate, offset, phone_id)
                keep = lab >= 0
                labels.append(lab[keep])
                ids.append(u[keep])
        pnmi = phone_unit_scores(contingency(np.concatenate(labels), np.concatenate(ids), len(phone_id), vocab)).pnmi
        by_text: dict[str, dict[str, str]] = defaultdict(dict)
        for utt in units:
            by_text[text_of[utt]][speaker_of[utt]] = utt
        edits = length = 0
        for spoken in by_text.values():
            for h in held:
                for ref in speakers[:REFERENCE_SPEAKERS]:
                    if h in spoken and ref in spoken:
                        e, n = unit_edit_distance(units[spoken[ref]], units[spoken[h]])
                        edits, length = edits + e, length + n
        ngram = NGramLM(5, vocab, smoothing=args.smoothing).fit(dedup_ids(units[u]) for u in train_utts)
        lexical = {name: lexical_accuracy(lambda x: ngram.score(dedup_ids(x)), set_units[name], gold[name])
                   for name in sets}
        return {"pnmi": pnmi, "cross_speaker_ued": edits / length if length else None, "lexical_5gram": lexical}

    # -- 1. bench/lm.py's own units ---------------------------------------------------------------------
    def encode(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {u: codebook.assign(x, device="cpu") for u, x in feats.items()}

    units = {u: x.ids for u, x in UnitStore.open(lm_out / "units")}
    set_units = {name: encode(f) for name, f in set_feats.items()}
    own = f"bench/lm.py's units ({Path(codebook.encoder_name).name} layer {codebook.layer}, K={codebook.k})"
    front_ends: dict[str, Any] = {own: measures(units, set_units, codebook.k)}
    for width in [int(w) for w in args.smooth.split(",") if w]:
        if width < 3 or width % 2 == 0:
            raise SystemExit(f"--smooth widths must be odd and >= 3, got {width}")
        smooth = {u: majority_filter(x, width, codebook.k) for u, x in units.items()}
        smooth_sets = {n: {u: majority_filter(x, width, codebook.k) for u, x in f.items()} for n, f in set_units.items()}
        front_ends[f"{own}, majority of {width} frames"] = measures(smooth, smooth_sets, codebook.k)
        log.info("majority of %d: %s", width, front_ends[f"{own}, majority of {width} frames"])
    deduped = {u: dedup_ids(ids) for u, ids in units.items()}
    ngram = NGramLM(3, codebook.k, smoothing=args.smoothing).fit(deduped[u] for u in train_utts)
    ngram_rows: dict[str, Any] = {
        "all training speakers, 3-gram": {
            name: lexical_accuracy(lambda x: ngram.score(dedup_ids(x)), set_units[name], gold[name]) for name in sets},
        "all training speakers, 5-gram": front_ends[own]["lexical_5gram"]}
    for voice in seen_voices:
        voice_utts = [u for u in train_utts if speaker_of[u] == voice]
        files = {f: x for f, x in set_units["seen voices"].items() if voice_of["seen voices"][f] == voice}
        rows = [r for r in gold["seen voices"] if r.voice == voice]
        for order in (2, 3, 5, 8):
            ngram = NGramLM(order, codebook.k, smoothing=args.smoothing).fit(deduped[u] for u in voice_utts)
            ngram_rows[f"{voice}'s {len(voice_utts)} utterances only, {order}-gram, {voice}'s files"] = {
                "seen voices": lexical_accuracy(lambda x, n=ngram: n.score(dedup_ids(x)), files, rows)}
    results["ngrams"] = ngram_rows

    # -- 2. isolated word vs the word in a sentence (seen voices, same voice) --------------------------
    occurrences: dict[tuple[str, str], list[tuple[str, float, float]]] = defaultdict(list)
    for utt, words in load_alignments(str(corpus / "words.tsv")).items():
        for w in words:
            occurrences[(speaker_of[utt], w.label.lower())].append((utt, w.start, w.end))
    pairs: dict[tuple[str, str], dict[int, Any]] = defaultdict(dict)
    for row in gold["seen voices"]:
        pairs[(row.id, row.voice)][row.correct] = row
    rate = unit_encoder.info.frame_rate

    def cut(utt: str, start: float, end: float, source: dict[str, np.ndarray] = units) -> np.ndarray:
        return source[utt][int(start * rate):int(end * rate)]

    iso = set_units["seen voices"]
    form = "isolated"
    if args.carrier is not None:  # the item's own span: between the carrier's phones before and after it
        form = "in-carrier"
        meta = json.loads((seen_root / "lexical" / "lexical.json").read_text())
        head, tail = len(meta["carrier_phones_before"]), len(meta["carrier_phones_after"])
        spoken = {f: [s for s in segs if s.label != SILENCE]  # the alignment may merge a phone: count the carrier's
                  for f, segs in load_alignments(str(sets["seen voices"] / "phones.tsv")).items()}
        iso = {f: cut(f, spoken[f][head - 1].end if head else 0.0,
                      spoken[f][-tail].start if tail else len(x) / rate, iso) for f, x in iso.items()}
    distances: dict[str, list[float]] = defaultdict(list)
    for (_, voice), pair in pairs.items():
        said = occurrences.get((voice, pair[1].fields["word"]))
        if not said:
            continue
        word = iso[pair[1].filename]
        e, n = unit_edit_distance(word, cut(*said[0]))
        distances[f"{form} word vs the same word in a sentence"].append(e / n)
        e, n = unit_edit_distance(word, iso[pair[0].filename])
        distances[f"{form} word vs its {form} non-word"].append(e / n)
        if len(said) > 1:
            e, n = unit_edit_distance(cut(*said[0]), cut(*said[1]))
            distances["two in-sentence occurrences of the word"].append(e / n)
    if args.carrier is not None:  # 2b. does the phoneme-input path change the units? whole carrier phrases
        distances.update(spoken_path_ued(args.carrier, gold["seen voices"], corpus / "speaker_info.tsv",
                                         lambda samples: codebook.assign(unit_encoder.extract_batch(
                                             [samples], [codebook.layer])[0][codebook.layer], device="cpu")))
    results["isolation_ued"] = {k: {"mean": float(np.mean(v)), "count": len(v)} for k, v in distances.items()}

    # -- 3. front ends ----------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    fit_utts = rng.choice(train_utts, min(FIT_UTTERANCES, len(train_utts)), replace=False)
    for pool, k in [(int(p), int(k)) for p in args.pool.split(",") for k in args.k_extra.split(",") if k]:
        pooled = {u: pooled_frames(x, pool) for u, x in corpus_feats.items()}
        quantize = Quantizer(np.concatenate([pooled[u] for u in fit_utts]), k)
        name = f"{Path(codebook.encoder_name).name} layer {codebook.layer}, standardised, K={k}"
        if pool > 1:
            name += f", mean of every {pool} frames"
        front_ends[name] = measures({u: quantize(x) for u, x in pooled.items()},
                                    {n: {u: quantize(pooled_frames(x, pool)) for u, x in f.items()}
                                     for n, f in set_feats.items()}, k, pool)
        log.info("%s: %s", name, front_ends[name])
    for mode in () if args.no_mfcc_front_ends else FRONT_ENDS:
        mode_feats = normalised_features(feats["mfcc"]["corpus"], mode, speaker_of.__getitem__)
        quantize = Quantizer(np.concatenate([mode_feats[u] for u in fit_utts]), project=mode.startswith("stack"))
        mode_units = {u: quantize(x) for u, x in mode_feats.items()}
        mode_sets = {name: {u: quantize(x) for u, x in
                            normalised_features(feats["mfcc"][name], mode, voice_of[name].__getitem__).items()}
                     for name in sets}
        front_ends[f"MFCC, {mode}"] = measures(mode_units, mode_sets)
        log.info("%s: %s", mode, front_ends[f"MFCC, {mode}"])
    no_label = len(phone_id)  # frames outside every phone segment (silence)

    def phone_units(segments: Any, num_frames: int) -> np.ndarray:
        ids = frame_label_ids(segments, num_frames, unit_encoder.info.frame_rate, frame_offset, phone_id)
        return np.where(ids >= 0, ids, no_label)

    oracle = {u: phone_units(alignments[u], len(x)) for u, x in corpus_feats.items()}
    oracle_sets = {}
    for name, d in sets.items():
        set_alignments = load_alignments(str(d / "phones.tsv"))
        oracle_sets[name] = {u: phone_units(set_alignments[u], len(x)) for u, x in set_feats[name].items()}
    if len(phone_id) >= no_label + 1:
        raise SystemExit("the benchmark sets hold phones the corpus lacks")  # phone_id grew: ids would collide
    front_ends["upper bound: phone labels as units"] = measures(oracle, oracle_sets, vocab=no_label + 1)
    results["front_ends"] = front_ends

    # -- report -----------------------------------------------------------------------------------------
    def acc(value: dict[str, float]) -> str:
        return f"{value['sum']:.3f} / {value['normalised']:.3f}"

    lines = ["## Lexical dev set, dedup unit n-grams (accuracy sum / normalised; chance 0.5)", "",
             "| n-gram trained on | unseen voices | seen voices |", "|---|---|---|"]
    for name, row in ngram_rows.items():
        lines.append(f"| {name} | {acc(row['unseen voices']) if 'unseen voices' in row else '-'} | "
                     f"{acc(row['seen voices'])} |")
    lines += ["", "## Unit edit distance, seen voices (same voice)", "", "| pair | mean UED | count |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']:.3f} | {v['count']} |" for k, v in results["isolation_ued"].items()]
    lines += ["", "## Front ends", "",
              "| front end | PNMI (held-out speakers) | cross-speaker UED | 5-gram lexical, unseen voices | seen voices |",
              "|---|---|---|---|---|"]
    for name, row in front_ends.items():
        ued = "-" if row["cross_speaker_ued"] is None else f"{row['cross_speaker_ued']:.3f}"  # no shared sentence
        lines.append(f"| {name} | {row['pnmi']:.3f} | {ued} | "
                     f"{acc(row['lexical_5gram']['unseen voices'])} | {acc(row['lexical_5gram']['seen voices'])} |")
    report = "\n".join(lines)
    print(report)
    (out / "report.md").write_text(report + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

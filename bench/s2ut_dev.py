"""Dev-pair diagnosis of issue 17's direct S2UT: how much ASR-BLEU the vocoder's duration predictor costs.

    python bench/s2ut_dev.py --out bench/out/seq2seq

Direct S2UT predicts deduplicated unit ids without durations, so the deduplicating vocoder
voices them with its own duration predictor, while the cascade's TTS hands the vocoder its
durations. On the **dev** pairs of bench/seq2seq.py's parallel corpus (never its test pairs) this
speaks the reference English units with their true run lengths, with the vocoder's predicted
ones, and with those times a few scales (``--scales``: a global bias of the predictor would show),
and gives the English asr judge's ASR-BLEU of each. The gap bounds what better
durations could give direct S2UT. Needs bench/seq2seq.py's OUT (parallel corpus, codebook,
vocoder, ``judge_asr_en``). Writes ``OUT/s2ut_dev.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seq2seq import speak, speakers_of, store_units_for  # noqa: E402  (bench/seq2seq.py)

log = logging.getLogger("bench.s2ut_dev")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/seq2seq"), help="bench/seq2seq.py's OUT")
    parser.add_argument("--scales", type=float, nargs="*", default=[1.17, 1.3],
                        help="also voice them with the vocoder's predicted run lengths times each scale")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from speechunits.measure.sequences import asr_bleu
    from speechunits.probe.evaluate import transcribe
    from speechunits.seq2seq.data import find_pair_corpora, read_parallel_pairs
    from speechunits.units.units import Units
    from speechunits.vocoder import load_vocoder

    pairs_path = args.out / "parallel" / "pairs.tsv"
    pairs = read_parallel_pairs(pairs_path)
    _, tgt_dir = find_pair_corpora(pairs_path, pairs)
    dev = [p for p in pairs if p.split == "dev"]
    refs = store_units_for(tgt_dir, args.out / "codebook_mfcc_k100", [p.target for p in dev], args)
    vocoder = load_vocoder(args.out / "vocoder", device=args.device)
    speakers = speakers_of(tgt_dir)
    voices = [v if v in vocoder.speakers else vocoder.speakers[0] for v in (speakers.get(p.target) for p in dev)]
    gold = [p.target_text for p in dev]
    timed = [refs[p.target] for p in dev]
    untimed = [Units(u.ids, u.frame_rate, u.vocab_size) for u in timed]  # ids only: the vocoder predicts durations
    rows = {"true durations": timed, "vocoder's predicted durations": untimed}  # the second: synthesize predicts
    predicted = [vocoder.predicted_durations(u, vocoder.target(v)[0]) for u, v in zip(untimed, voices)]
    for scale in args.scales:
        rows[f"vocoder's predicted durations x {scale:g}"] = [
            vocoder.predicted_durations(u, vocoder.target(v)[0], scale) for u, v in zip(untimed, voices)]
    results: dict = {"dev_pairs": len(dev), "asr_bleu": {},
                     "predicted_over_true_frames": (sum(int(u.durations.sum()) for u in predicted)
                                                    / max(sum(int(u.durations.sum()) for u in timed), 1))}
    for i, (name, units) in enumerate(rows.items()):
        wavs, _ = speak(vocoder, units, voices, args.out / "s2ut_dev_wavs" / str(i))
        results["asr_bleu"][name] = asr_bleu(gold, transcribe(args.out / "judge_asr_en", wavs, device=args.device,
                                                              quiet=True))
    (args.out / "s2ut_dev.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(f"dev pairs: {len(dev)}; ASR-BLEU of the reference English units spoken with\n")
    for name, value in results["asr_bleu"].items():
        sys.stdout.write(f"  {name}: {value:.1f}\n")
    sys.stdout.write(f"predicted / true frames: {results['predicted_over_true_frames']:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

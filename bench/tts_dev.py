"""Dev-split choice of issue 17's TTS decoding, made before bench/seq2seq.py's TTS test is read again.

    python bench/tts_dev.py --out bench/out/seq2seq --stage train --threads 1   # 45 min, one core
    python bench/tts_dev.py --out bench/out/seq2seq --config argmax=0 --config t1=1.0 ...

bench/seq2seq.py's held-out (test) sentences never reach this script: it works on ``OUT/voc_train``
(the TTS corpus without them, which the codebook and vocoder were fitted on). A second TTS
(``OUT/tts_dev``) is trained there with bench/seq2seq.py's exact recipe and budget, holding out
10 % of *those* sentences (seed 0): the **dev** sentences. Each ``--config NAME=TEMPERATURE``
decodes the dev sentences (each in its own speaker's voice) with that sampling temperature (0:
argmax per frame, the model's default), and the table gives unit BLEU / UER / diversity / length
ratio against the reference units, and the phones judge's PER of the vocoded speech, against
resynthesis of the reference units. The judge and the vocoder are bench/seq2seq.py's (trained on
``voc_train`` audio, dev sentences included, so dev PER is optimistic for every row alike).
Writes ``OUT/<model dir>.json`` (e.g. ``OUT/tts_dev.json``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seq2seq import speak, speakers_of, texts_of, train_tts_recipe, tts_dir  # noqa: E402  (bench/seq2seq.py)

log = logging.getLogger("bench.tts_dev")


def train_dev_tts(out: Path, minutes: float, ar_hidden: int, device: str, quiet: bool) -> Path:
    """``OUT/tts_dev[_ar<N>]``: bench/seq2seq.py's TTS recipe on ``OUT/voc_train`` (10 % of its sentences held out)."""
    return train_tts_recipe(out / "voc_train", out / "codebook_mfcc_k100", tts_dir(out, ar_hidden, "tts_dev"),
                            ar_hidden=ar_hidden, minutes=minutes, device=device, quiet=quiet)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/seq2seq"),
                        help="bench/seq2seq.py's OUT (voc_train, codebook, vocoder, judge_phones_en)")
    parser.add_argument("--stage", choices=("train", "measure"), default="measure")
    parser.add_argument("--config", action="append", default=[], metavar="NAME=TEMPERATURE")
    parser.add_argument("--minutes", type=float, default=45.0, help="the dev TTS's budget (bench/seq2seq.py's)")
    parser.add_argument("--ar-hidden", type=int, default=0,  # 0 keeps the first dev model's name, OUT/tts_dev
                        help="the TTS's autoregressive unit head (bench/seq2seq.py's --tts-ar-hidden; 0: none)")
    parser.add_argument("--diagnose", action="store_true",
                        help="also: the TTS with the reference phone durations (argmax), and the reference units "
                             "with their runs shorter than 2 or 3 frames merged into the run before (what the vocoder "
                             "makes of right but over-smoothed units)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    path = train_dev_tts(args.out, args.minutes, args.ar_hidden, args.device, args.quiet)
    if args.stage == "train":
        return 0
    configs = [parse_config(c) for c in args.config] or [("argmax", 0.0)]
    results = measure(args, path, configs, diagnose=args.diagnose)
    (args.out / f"{path.name}.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(table(results))
    return 0


def parse_config(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if not name or not value:
        raise SystemExit(f"--config {text!r}: expected NAME=TEMPERATURE")
    return name, float(value)


def merge_short_runs(units: Any, shortest: int) -> Any:
    """Deduplicated ``units`` with every run shorter than ``shortest`` frames added to the run before it."""
    from speechunits.units.units import Units

    ids, durations = [], []
    for unit, frames in zip(units.ids.tolist(), units.durations.tolist()):
        if frames < shortest and ids:
            durations[-1] += frames
        else:
            ids.append(unit)
            durations.append(frames)
    return Units(np.repeat(ids, durations), units.frame_rate, units.vocab_size).dedup()


def reference_duration_units(bundle: Any, frame_units: dict[str, Any], corpus: Path, codebook: Path,
                             ids: list[str], voice: str) -> list[Any]:
    """The TTS's argmax units of ``ids`` with each phone lasting its reference (alignment) frames
    (``frame_units``: the reference frame-level units of ``ids``)."""
    from speechunits.seq2seq.data import codebook_record, load_codebook
    from speechunits.seq2seq.tts_train import _corpus_labels, corpus_examples

    examples, _ = corpus_examples(frame_units, _corpus_labels(corpus, "phones", None, "table"), input_kind="phones",
                                  frame_offset_s=codebook_record(load_codebook(codebook))["frame_offset_s"],
                                  voice=voice, rate=None)
    by_id = {ex.utt_id: ex for ex in examples}
    return [bundle.units_of_tokens([bundle.symbols.encode(by_id[u].tokens)], by_id[u].speaker,
                                   durations=[by_id[u].durations])[0] for u in ids]


def measure(args: argparse.Namespace, path: Path, configs: list[tuple[str, float]], *, diagnose: bool = False) -> dict:
    """Dev rows: resynthesis of the reference units, then each configuration's TTS units through the vocoder."""
    from speechunits.measure.sequences import sequence_scores
    from speechunits.probe.evaluate import corpus_labels, reference, transcribe
    from speechunits.probe.metrics import error_rate
    from speechunits.corpus import open_corpus_via_manifest
    from speechunits.seq2seq.data import corpus_units, load_codebook
    from speechunits.seq2seq.model_dir import load_tts
    from speechunits.vocoder import load_vocoder

    corpus, codebook = args.out / "voc_train", args.out / "codebook_mfcc_k100"
    bundle = load_tts(path, device=args.device)
    dev = bundle.meta["data"]["heldout_ids"]
    # voc_train carries no corpus.json, so the dev TTS did not record the espeak-ng voice: bench/seq2seq.py's
    # TTS (same corpus) did.
    voice = bundle.meta["input"].get("voice") or json.loads((args.out / "tts" / "tts.json").read_text())["input"]["voice"]
    texts, speakers = texts_of(corpus), speakers_of(corpus)
    chosen = set(dev)
    frame_units, _ = corpus_units(open_corpus_via_manifest(corpus).filter(lambda u: u.id in chosen), load_codebook(codebook),
                                  device=args.device, quiet=True)
    ref_units = [frame_units[u].dedup() for u in dev]
    vocoder = load_vocoder(args.out / "vocoder", device=args.device)
    judge = args.out / "judge_phones_en"
    labels = corpus_labels("phones", corpus / "manifest.tsv", dev).labels
    refs = [reference("phones", labels[u]) for u in dev]
    voices = [speakers[u] for u in dev]

    def judged(units: list, name: str) -> float:
        wavs, _ = speak(vocoder, units, voices, args.out / "tts_dev_wavs" / path.name / name)
        return error_rate(refs, [p.split() for p in transcribe(judge, wavs, device=args.device, quiet=True)])

    candidates = {name: (temperature, [bundle.units_of([texts[u]], speakers[u], voice=voice, temperature=temperature,
                                                       seed=0)[0] for u in dev])
                  for name, temperature in configs}
    if diagnose:
        candidates["argmax, reference durations"] = (
            0.0, reference_duration_units(bundle, frame_units, corpus, codebook, dev, voice))
        for n in (2, 3):
            candidates[f"reference units, runs < {n} frames merged"] = (0.0, [merge_short_runs(r, n) for r in ref_units])
    rows = {"resynthesis": {"per": judged(ref_units, "resynthesis")}}
    for name, (temperature, units) in candidates.items():
        rows[name] = {"temperature": temperature, **sequence_scores([r.ids for r in ref_units], [h.ids for h in units]),
                      "per": judged(units, name.replace(" ", "_").replace(",", "").replace("<", "lt"))}
        rows[name]["ratio_to_resynthesis"] = rows[name]["per"] / max(rows["resynthesis"]["per"], 1e-9)
        log.info("%s: %s", name, json.dumps(rows[name]))
    return {"dev_utterances": len(dev), "dev_sentences": len({texts[u] for u in dev}),
            "tts_training": bundle.meta["result"], "rows": rows}


def table(results: dict) -> str:
    lines = [f"dev: {results['dev_utterances']} utterances, {results['dev_sentences']} sentences\n",
             "| decoding | temperature | unit BLEU | UER | diversity | length ratio | judge PER | x resynthesis |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in results["rows"].items():
        if name == "resynthesis":
            lines.append(f"| reference units (resynthesis) | | 100 | 0 | | 1 | {100 * row['per']:.1f} % | 1 |")
            continue
        lines.append(f"| {name} | {row['temperature']:g} | {row['unit_bleu']:.1f} | {row['uer']:.3f} | "
                     f"{row['diversity']:.3f} | {row['length_ratio']:.2f} | {100 * row['per']:.1f} % | "
                     f"{row['ratio_to_resynthesis']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

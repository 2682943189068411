"""``speechunits synth``: a phone-aligned, multi-speaker synthetic corpus (espeak-ng, GPL-3 extra).

``speechunits synth OUT`` writes a corpus; ``speechunits synth lexical|syntactic|parallel|qbe OUT``
writes a benchmark set or a bilingual corpus (see docs/synth-benchmarks.md); ``speechunits synth mix
OUT --corpus CORPUS`` mixes two speakers of a corpus into diarization data and ``speechunits synth noisy
OUT --corpus CORPUS`` adds noise to it for speech enhancement (neither needs espeak-ng).
"""
from __future__ import annotations

import argparse

from speechunits.cli.common import add_quiet
from speechunits.errors import SpeechUnitsError

#: Sub-commands, and the options each one takes besides --seed, --workers (not mix) and --quiet.
KINDS = {
    "corpus": ("minutes", "speakers", "languages", "text"),
    "lexical": ("language", "pairs", "voices", "voices_from", "carrier"),
    "syntactic": ("language", "pairs", "voices", "voices_from"),
    "parallel": ("source", "target", "minutes", "speakers"),
    "qbe": ("language", "documents", "queries", "doc_voices", "query_voices", "unmatched_share", "min_phones", "name"),
    "mix": ("corpus", "mixtures", "max_overlap", "min_pause", "gain_db", "sources", "activity"),
    "noisy": ("corpus", "snrs", "test_snrs", "noise_kinds", "noise"),
}
#: Kinds that read a corpus and write no speech themselves (no espeak-ng, no --workers).
CORPUS_READERS = ("mix", "noisy")
_OPTIONS = ("minutes", "speakers", "languages", "text", "language", "pairs", "voices", "voices_from", "carrier",
            "source", "target", "documents", "queries", "doc_voices", "query_voices", "unmatched_share", "min_phones",
            "name", "corpus", "mixtures", "max_overlap", "min_pause", "gain_db", "snrs", "test_snrs", "noise_kinds",
            "noise", "sources", "activity")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "synth",
        help="synthesise a phone-aligned multi-speaker corpus, minimal-pair or QbE benchmarks, or a parallel corpus; "
        "mix two speakers of a corpus for diarization, add noise to it for enhancement",
        description="`synth OUT`: OUT/wavs/*.wav (16 kHz), manifest.tsv, phones.tsv, words.tsv, textgrids/, "
        "speakers.tsv, speaker_info.tsv, text.tsv. `synth lexical OUT` / `synth syntactic OUT`: sWUGGY/sBLIMP-like "
        "pairs in ZeroSpeech 2021 layout (OUT/lexical, OUT/syntactic) spoken by voices no corpus has. "
        "`synth parallel OUT --source es --target en`: two aligned corpora and OUT/pairs.tsv. "
        "`synth qbe OUT`: a query-by-example spoken term detection set in QUESST 2014's layout (OUT/qbe: Audio/, "
        "dev_queries/, eval_queries/, scoring/ with NIST ground truth), queries spoken by voices no document has. "
        "`synth mix OUT --corpus CORPUS`: two-speaker mixtures of a corpus with speakers.tsv and words.tsv "
        "(OUT/mix/{train,dev,test}: wavs/, wav.scp, reco2dur, rttm, mixtures.tsv, with --sources s1/, s2/, "
        "spk1.scp, spk2.scp; "
        "disjoint speakers), SUPERB's LibriMix-style diarization data. "
        "`synth noisy OUT --corpus CORPUS`: each utterance of a corpus with speakers.tsv plus noise at an SNR "
        "(OUT/noisy/{train,dev,test}: wavs/ (noisy), clean/, wav.scp, spk1.scp, utt2spk, text, noisy.tsv; disjoint "
        "speakers), VoiceBank-DEMAND-style enhancement data. "
        "Same arguments, same bytes. Needs the [synth] extra (except mix and noisy).",
    )
    parser.add_argument("first", metavar="OUT | {lexical,syntactic,parallel,qbe,mix,noisy}",
                        help="the output directory of a corpus (must be new or empty), or the kind of set to write")
    parser.add_argument("out", nargs="?", metavar="OUT",
                        help="the output directory of a lexical/syntactic/parallel/qbe/mix/noisy set")
    parser.add_argument("--minutes", type=float, default=None, help="corpus/parallel: audio to synthesise (default 5)")
    parser.add_argument("--speakers", type=int, default=None,
                        help="corpus: speakers in total; parallel: speakers per language (default 4)")
    parser.add_argument("--languages", default=None, help="corpus: comma-separated languages (default en)")
    parser.add_argument("--text", default=None, choices=("list", "grammar", "mixed"),
                        help="corpus: the built-in sentence list (default; each sentence in many voices), "
                        "sentences sampled from the English agreement grammar of `synth syntactic` (never its "
                        "benchmark sentences), or the two in turn (what a unit LM needs for both benchmarks)")
    parser.add_argument("--language", default=None, help="lexical/syntactic/qbe: language (default en)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="lexical/syntactic: pairs per split, dev and test (default 300 / 350)")
    parser.add_argument("--voices", type=int, default=None, help="lexical/syntactic: unseen voices (default 2)")
    parser.add_argument("--voices-from", default=None, metavar="SPEAKER_INFO_TSV",
                        help="lexical/syntactic: speak the set in the first --voices speakers of a corpus's "
                        "speaker_info.tsv instead (e.g. its training voices: a diagnosis, not the benchmark)")
    parser.add_argument("--carrier", default=None, metavar="PHRASE",
                        help="lexical: speak every word and non-word inside this phrase, its {} where the item goes "
                        "(e.g. 'she said {} twice'; default: alone, as ZeroSpeech's sWUGGY)")
    parser.add_argument("--source", default=None, metavar="LANG", help="parallel: source language (default es)")
    parser.add_argument("--target", dest="target_language", default=None, metavar="LANG",
                        help="parallel: target language (default en)")
    parser.add_argument("--documents", type=int, default=None, help="qbe: documents, one sentence each (default 300)")
    parser.add_argument("--queries", type=int, default=None, help="qbe: queries per split, dev and eval (default 60)")
    parser.add_argument("--doc-voices", type=int, default=None, help="qbe: voices of the documents (default 6)")
    parser.add_argument("--query-voices", type=int, default=None,
                        help="qbe: unseen voices of the queries, none of them a document voice (default 4, at most 6)")
    parser.add_argument("--unmatched-share", type=float, default=None,
                        help="qbe: share of the queries that occur in no document (default 0.2)")
    parser.add_argument("--min-phones", type=int, default=None, help="qbe: shortest query word in phones (default 4)")
    parser.add_argument("--name", default=None, help="qbe: the set's name in file names (default qbe_<language>)")
    parser.add_argument("--corpus", default=None, metavar="CORPUS",
                        help="mix, noisy: the corpus to mix (a directory with speakers.tsv: a `synth` corpus, "
                        "LibriSpeech ...; mix takes speech turns from its words.tsv/phones.tsv where it has one)")
    parser.add_argument("--mixtures", type=int, default=None,
                        help="mix: mixtures in all, shared 60/20/20 over train/dev/test (default 300)")
    parser.add_argument("--max-overlap", type=float, default=None,
                        help="mix: largest share of the first utterance the second overlaps, drawn uniformly "
                        "from [0, R] (default 0.5)")
    parser.add_argument("--min-pause", type=float, default=None,
                        help="mix: pauses between words shorter than this (seconds) stay inside a speaker turn "
                        "(default 0.3)")
    parser.add_argument("--gain-db", type=float, default=None,
                        help="mix: each source's gain is drawn from [-G/2, G/2] dB (default 5)")
    parser.add_argument("--sources", action="store_const", const=True, default=None,
                        help="mix: also write each mixture's two sources (s1/, s2/, spk1.scp, spk2.scp: separation "
                        "data; use --max-overlap 1 for fully overlapping speech)")
    parser.add_argument("--activity", default=None, choices=["auto", "alignments", "vad"],
                        help="mix: where each source's speech turns come from: its words.tsv/phones.tsv, or "
                        "silero-vad ([vad] extra) for corpora without alignments such as LibriSpeech (default auto: "
                        "the alignment where there is one)")
    parser.add_argument("--snrs", type=_floats, default=None, metavar="DB,DB,...",
                        help="noisy: SNRs of train and dev, drawn uniformly (default 0,5,10,15, VoiceBank-DEMAND's)")
    parser.add_argument("--test-snrs", type=_floats, default=None, metavar="DB,DB,...",
                        help="noisy: SNRs of test (default 2.5,7.5,12.5,17.5, VoiceBank-DEMAND's unseen ones)")
    parser.add_argument("--noise-kinds", type=_names, default=None, metavar="KIND,KIND,...",
                        help="noisy: white, pink, brown, hum, babble, file (default: all of them, file only with "
                        "--noise)")
    parser.add_argument("--noise", default=None, metavar="DIR",
                        help="noisy: recordings of noise to draw stretches from (DEMAND, MUSAN, ...; kind 'file')")
    parser.add_argument("--seed", type=int, default=0, help="seed for speakers, sentences, pairs and mixtures")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    add_quiet(parser)
    parser.set_defaults(func=run)


def _kind_and_out(positional: list[str]) -> tuple[str, str]:
    if len(positional) == 1:
        return "corpus", positional[0]
    if len(positional) == 2 and positional[0] in KINDS and positional[0] != "corpus":
        return positional[0], positional[1]
    raise SpeechUnitsError(f"synth: expected OUT or one of {', '.join(k for k in KINDS if k != 'corpus')} "
                           f"then OUT, got {' '.join(positional)}")


def run(args: argparse.Namespace) -> int:
    kind, out = _kind_and_out([args.first] + ([args.out] if args.out is not None else []))
    values = {name: getattr(args, "target_language" if name == "target" else name) for name in _OPTIONS}
    stray = [name for name, value in values.items() if value is not None and name not in KINDS[kind]]
    if stray:
        raise SpeechUnitsError(f"synth {kind}: --{', --'.join(n.replace('_', '-') for n in stray)} does not apply")
    if kind in CORPUS_READERS and args.workers is not None:
        raise SpeechUnitsError(f"synth {kind}: --workers does not apply")
    if args.workers is not None and args.workers < 1:
        raise SpeechUnitsError(f"--workers must be >= 1, got {args.workers}")
    if args.seed < 0:
        raise SpeechUnitsError(f"--seed must be >= 0, got {args.seed}")
    common = dict(seed=args.seed, workers=args.workers, quiet=args.quiet)
    speakers = values["speakers"] if values["speakers"] is not None else 4
    if speakers < 1:
        raise SpeechUnitsError(f"--speakers must be >= 1, got {speakers}")
    minutes = values["minutes"] if values["minutes"] is not None else 5.0
    if kind == "corpus":
        from speechunits.synth import synthesize_corpus

        languages = [x.strip() for x in (values["languages"] or "en").split(",") if x.strip()]
        synthesize_corpus(out, minutes, speakers, languages, text=values["text"] or "list", **common)
    elif kind in ("lexical", "syntactic"):
        from speechunits.synth.benchmarks import write_lexical, write_syntactic

        write = write_lexical if kind == "lexical" else write_syntactic
        options = {k: values[k] for k in ("pairs", "voices", "voices_from", "carrier") if values[k] is not None}
        write(out, language=values["language"] or "en", **options, **common)
    elif kind == "mix":
        from speechunits.synth.mixtures import write_mixtures

        if values["corpus"] is None:
            raise SpeechUnitsError("synth mix: --corpus CORPUS is required (the corpus whose speakers to mix)")
        options = {k: values[k] for k in KINDS["mix"] if k not in ("corpus", "sources") and values[k] is not None}
        write_mixtures(values["corpus"], out, seed=args.seed, with_sources=bool(values["sources"]), quiet=args.quiet,
                       **options)
    elif kind == "noisy":
        from speechunits.synth.noisy import write_noisy

        if values["corpus"] is None:
            raise SpeechUnitsError("synth noisy: --corpus CORPUS is required (the corpus to add noise to)")
        options = {k: values[k] for k in ("snrs", "test_snrs") if values[k] is not None}
        if values["noise_kinds"] is not None:
            options["kinds"] = values["noise_kinds"]
        write_noisy(values["corpus"], out, noise_dir=values["noise"], seed=args.seed, quiet=args.quiet, **options)
    elif kind == "qbe":
        from speechunits.synth.qbe import write_qbe

        options = {k: values[k] for k in KINDS["qbe"] if k != "language" and values[k] is not None}
        write_qbe(out, language=values["language"] or "en", **options, **common)
    else:
        from speechunits.synth.parallel import synthesize_parallel

        synthesize_parallel(out, source=values["source"] or "es", target=values["target"] or "en",
                            minutes=minutes, speakers=speakers, **common)
    return 0

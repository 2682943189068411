"""``speechunits bpe train|encode|decode``: reversible BPE over deduplicated units."""
from __future__ import annotations

import argparse
import logging

from speechunits.cli.common import add_quiet

log = logging.getLogger(__name__)

DEFAULT_MIN_FREQUENCY = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bpe", help="train/apply/invert BPE over deduplicated units",
                                   description="BPE over deduplicated units with Hugging Face tokenizers. "
                                   "Token stores keep unit durations, so `decode` rebuilds the exact unit store.")
    commands = parser.add_subparsers(dest="bpe_command", metavar="ACTION", required=True)

    train = commands.add_parser("train", help="learn a BPE from a unit store")
    train.add_argument("store", metavar="UNITS_DIR")
    train.add_argument("--vocab", type=int, required=True, help="vocabulary size (>= the codebook's K)")
    train.add_argument("--min-frequency", type=int, default=DEFAULT_MIN_FREQUENCY,
                       help="merge only pairs seen at least this often (default %(default)s)")
    train.add_argument("-o", "--out", required=True, help="BPE directory (tokenizer.json + bpe.json)")
    add_quiet(train)
    train.set_defaults(func=run_train)

    encode = commands.add_parser("encode", help="unit store to a BPE token store")
    encode.add_argument("store", metavar="UNITS_DIR")
    encode.add_argument("--bpe", required=True, help="BPE directory")
    encode.add_argument("-o", "--out", required=True, help="token store directory (resumable)")
    add_quiet(encode)
    encode.set_defaults(func=run_encode)

    decode = commands.add_parser("decode", help="BPE token store back to the exact unit store")
    decode.add_argument("tokens", metavar="TOKENS_DIR")
    decode.add_argument("--bpe", required=True, help="BPE directory the tokens were made with")
    decode.add_argument("-o", "--out", required=True, help="new unit store directory")
    add_quiet(decode)
    decode.set_defaults(func=run_decode)


def run_train(args: argparse.Namespace) -> int:
    from speechunits.units.bpe import train_bpe
    from speechunits.units.store import UnitStore

    bpe = train_bpe(UnitStore.open(args.store), args.vocab, min_frequency=args.min_frequency)
    bpe.save(args.out)
    log.info("%s: BPE with %d tokens (%d units, %d merges) from %d utterances", args.out, bpe.vocab_size,
             bpe.unit_vocab_size, bpe.vocab_size - bpe.unit_vocab_size, bpe.meta["training_utterances"])
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from speechunits.units.bpe import UnitBPE, encode_store
    from speechunits.units.store import UnitStore

    written = encode_store(UnitStore.open(args.store), UnitBPE.load(args.bpe), args.out)
    log.info("%s: %d utterances tokenised", args.out, written)
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from speechunits.units.bpe import UnitBPE, decode_tokens

    store = decode_tokens(args.tokens, UnitBPE.load(args.bpe), args.out)
    log.info("%s: %d utterances decoded", args.out, len(store))
    return 0

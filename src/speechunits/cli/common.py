"""Options shared by several commands."""
from __future__ import annotations

import argparse

from speechunits.errors import SpeechUnitsError


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_device(parser: argparse.ArgumentParser, dtype: bool = True) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="compute device (auto: cuda if available)")
    if dtype:
        parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="encoder compute precision")


def add_on_error(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-error",
        default="skip",
        choices=["skip", "fail"],
        help="skip: record bad files in errors.jsonl and go on; fail: stop at the first bad file",
    )


def add_shard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", default=None, metavar="i/n", help="process only shard i of n (0-based)")


def add_corpus_job_options(parser: argparse.ArgumentParser, channel: bool = True) -> None:
    """The options of every command that runs an encoder over a corpus: [--channel], --device/--dtype,
    --shard, --on-error, --quiet and the backend group (--backend local|ray, ..., docs/scaling.md)."""
    from speechunits.cli.scale_options import add_scale_options

    if channel:
        parser.add_argument("--channel", type=int, default=None, help="use channel N (0-based) instead of the downmix")
    add_device(parser)
    add_shard(parser)
    add_on_error(parser)
    add_quiet(parser)
    add_scale_options(parser)


def parse_layers(text: str) -> list[int]:
    """``"6"``, ``"6,9"`` or ``"0-12"`` (inclusive ranges) into a sorted list of ints."""
    layers: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-"))
                if hi < lo:
                    raise ValueError
                layers.update(range(lo, hi + 1))
            elif part:
                layers.add(int(part))
    except ValueError:
        raise SpeechUnitsError(f"--layer(s): expected e.g. '6', '6,9' or '0-12', got {text!r}") from None
    if not layers:
        raise SpeechUnitsError(f"--layer(s): no layer in {text!r}")
    return sorted(layers)


def parse_int_list(text: str, option: str) -> list[int]:
    """``"50,100,500"`` into ints, with an error naming ``option``."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpeechUnitsError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise SpeechUnitsError(f"{option}: empty list")
    return values

"""Options shared by several commands."""
from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Iterator

from speechunits.errors import SpeechUnitsError

if TYPE_CHECKING:
    from speechunits.audio import RawFormat


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar; log only warnings and errors")


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's intra-op threads for the command (set by ``cli.main``, restored after)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; on a CPU shared with other jobs, 1 per job is "
                             "often several times faster)")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the block, then restored (None: unchanged).

    Raises:
        SpeechUnitsError: ``threads`` < 1.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise SpeechUnitsError(f"--threads must be >= 1, got {threads}")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def add_device(parser: argparse.ArgumentParser, dtype: bool = True) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="compute device (auto: cuda if available)")
    if dtype:
        parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="encoder compute precision")
    parser.add_argument("--no-cpu-kernels", action="store_true",
                        help="on CPU, run transformers' own modules instead of speechunits' faster ones "
                             "(same as SPEECHUNITS_NO_CPU_KERNELS=1)")


def add_on_error(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-error",
        default="skip",
        choices=["skip", "fail"],
        help="skip: record bad files in errors.jsonl and go on; fail: stop at the first bad file",
    )


def add_shard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", default=None, metavar="i/n", help="process only shard i of n (0-based)")


def parse_raw_format(text: str) -> "RawFormat":
    """``--raw-format`` value into a :class:`~speechunits.audio.RawFormat` (argparse type)."""
    from speechunits.audio import RawFormat

    try:
        return RawFormat.parse(text)
    except SpeechUnitsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_corpus_job_options(parser: argparse.ArgumentParser, channel: bool = True) -> None:
    """The options of every command that runs an encoder over a corpus: [--channel], --raw-format,
    --device/--dtype, --shard, --on-error, --quiet and the backend group (--backend local|ray, ...,
    docs/scaling.md)."""
    from speechunits.cli.scale_options import add_scale_options

    if channel:
        parser.add_argument("--channel", type=int, default=None, help="use channel N (0-based) instead of the downmix")
    parser.add_argument("--raw-format", type=parse_raw_format, default=None, metavar="ENC:RATE[:CH]",
                        help="how to read headerless .raw/.pcm files, e.g. s16le:16000 (encodings: s8 u8 "
                        "s16le/be s24le/be s32le/be f32le/be f64le/be mulaw alaw)")
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

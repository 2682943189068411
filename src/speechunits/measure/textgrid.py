"""Praat TextGrid files: read (long and short text formats, UTF-8 or UTF-16) and write (long).

Both text formats carry the same token sequence once keys (``xmin =``), bracketed indices
(``intervals [3]:``) and comments are ignored, so one tokenizer reads both: quoted strings
(``""`` escapes a quote), numbers and the ``<exists>`` / ``<absent>`` flags.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from speechunits.errors import SpeechUnitsError

_TOKEN = re.compile(
    r'"(?P<str>(?:[^"]|"")*)"'
    r"|(?P<skip>\[\s*\d*\s*\]:?|!.*?$)"
    r"|(?P<flag><exists>|<absent>)"
    r"|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<word>[A-Za-z_?][\w?]*)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Interval:
    """One interval of an interval tier (times in seconds)."""

    xmin: float
    xmax: float
    text: str


@dataclass(frozen=True)
class Tier:
    """An interval tier (point tiers are read but kept with ``xmin == xmax``)."""

    name: str
    xmin: float
    xmax: float
    intervals: list[Interval]
    is_interval: bool = True


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _tokens(text: str) -> Iterator[str | float]:
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "str":
            yield match.group("str").replace('""', '"')
        elif kind == "num":
            yield float(match.group("num"))
        elif kind == "flag":
            yield match.group("flag")


def read_textgrid(path: str | os.PathLike[str]) -> list[Tier]:
    """Read every tier of a TextGrid file.

    Raises:
        SpeechUnitsError: not a TextGrid, or truncated/malformed content (message names the file).
    """
    path = Path(path)
    try:
        content = _decode(path)
    except OSError as exc:
        raise SpeechUnitsError(f"{path}: cannot read TextGrid ({exc})") from None
    tokens = list(_tokens(content))
    if tokens[:2] != ["ooTextFile", "TextGrid"]:
        raise SpeechUnitsError(f"{path}: not a Praat TextGrid text file (header must be ooTextFile / TextGrid)")
    pos = 2

    def take(kind: type, what: str) -> str | float:
        nonlocal pos
        if pos >= len(tokens):
            raise SpeechUnitsError(f"{path}: truncated TextGrid (expected {what})")
        token = tokens[pos]
        pos += 1
        if kind is float and not isinstance(token, float):
            raise SpeechUnitsError(f"{path}: malformed TextGrid (expected a number for {what}, got {token!r})")
        if kind is str and not isinstance(token, str):
            raise SpeechUnitsError(f"{path}: malformed TextGrid (expected a string for {what}, got {token!r})")
        return token

    take(float, "xmin")
    take(float, "xmax")
    if pos < len(tokens) and tokens[pos] == "<absent>":
        return []
    if pos < len(tokens) and tokens[pos] == "<exists>":
        pos += 1
    count = int(take(float, "number of tiers"))
    tiers: list[Tier] = []
    for _ in range(count):
        tier_class = take(str, "tier class")
        name = str(take(str, "tier name"))
        xmin = float(take(float, "tier xmin"))
        xmax = float(take(float, "tier xmax"))
        size = int(take(float, "number of intervals"))
        intervals: list[Interval] = []
        if tier_class == "IntervalTier":
            for _ in range(size):
                a = float(take(float, "interval xmin"))
                b = float(take(float, "interval xmax"))
                intervals.append(Interval(a, b, str(take(str, "interval text"))))
        elif tier_class == "TextTier":
            for _ in range(size):
                t = float(take(float, "point time"))
                intervals.append(Interval(t, t, str(take(str, "point mark"))))
        else:
            raise SpeechUnitsError(f"{path}: unknown tier class {tier_class!r}")
        tiers.append(Tier(name, xmin, xmax, intervals, tier_class == "IntervalTier"))
    return tiers


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _num(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def fill_tier(segments: Sequence[tuple[float, float, str]], xmin: float, xmax: float) -> list[Interval]:
    """Intervals covering ``[xmin, xmax]``: the segments plus empty intervals in the gaps."""
    intervals: list[Interval] = []
    cursor = xmin
    for start, end, label in segments:
        if start > cursor:
            intervals.append(Interval(cursor, start, ""))
        intervals.append(Interval(max(start, cursor), end, label))
        cursor = end
    if cursor < xmax or not intervals:
        intervals.append(Interval(cursor, xmax, ""))
    return intervals


def write_textgrid(path: str | os.PathLike[str], tiers: Sequence[Tier]) -> None:
    """Write interval tiers as a long-format (UTF-8) TextGrid."""
    xmin = min((t.xmin for t in tiers), default=0.0)
    xmax = max((t.xmax for t in tiers), default=0.0)
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        f"xmin = {_num(xmin)} ",
        f"xmax = {_num(xmax)} ",
        "tiers? <exists> ",
        f"size = {len(tiers)} ",
        "item []: ",
    ]
    for n, tier in enumerate(tiers, start=1):
        lines += [
            f"    item [{n}]:",
            '        class = "IntervalTier" ',
            f"        name = {_quote(tier.name)} ",
            f"        xmin = {_num(tier.xmin)} ",
            f"        xmax = {_num(tier.xmax)} ",
            f"        intervals: size = {len(tier.intervals)} ",
        ]
        for i, interval in enumerate(tier.intervals, start=1):
            lines += [
                f"        intervals [{i}]:",
                f"            xmin = {_num(interval.xmin)} ",
                f"            xmax = {_num(interval.xmax)} ",
                f"            text = {_quote(interval.text)} ",
            ]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

"""The built-in sentence lists: ``synth/data/{language}.txt``, one sentence per line.

The lists were written for this project (varied vocabulary and phone contexts, no numbers
or abbreviations, which espeak would expand unpredictably).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from speechunits.errors import SpeechUnitsError


def available_languages() -> list[str]:
    """Languages that have a built-in sentence list."""
    data = resources.files("speechunits.synth") / "data"
    return sorted(p.name[: -len(".txt")] for p in data.iterdir() if p.name.endswith(".txt"))


@lru_cache(maxsize=None)
def sentences(language: str) -> tuple[str, ...]:
    """The distinct built-in sentences of ``language`` in file order."""
    path = resources.files("speechunits.synth") / "data" / f"{language}.txt"
    if not path.is_file():
        raise SpeechUnitsError(
            f"--languages: no built-in sentences for {language!r} (available: {', '.join(available_languages())})"
        )
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            seen.setdefault(line, None)
    return tuple(seen)

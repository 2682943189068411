"""The built-in sentences: ``synth/data/{language}.txt`` (one per line) or a grammar.

The lists and grammars were written for this project (varied vocabulary and phone contexts,
no numbers or abbreviations, which espeak would expand unpredictably). English has a
hand-written list; Spanish, German and French use :mod:`speechunits.synth.grammar`.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from speechunits.errors import SpeechUnitsError


def available_languages() -> list[str]:
    """Languages that have a built-in sentence list."""
    from speechunits.synth.grammar import GRAMMARS

    data = resources.files("speechunits.synth") / "data"
    return sorted({p.name[: -len(".txt")] for p in data.iterdir() if p.name.endswith(".txt")} | set(GRAMMARS))


@lru_cache(maxsize=None)
def sentences(language: str) -> tuple[str, ...]:
    """The distinct built-in sentences of ``language`` in file order."""
    from speechunits.synth.grammar import GRAMMARS, generate

    path = resources.files("speechunits.synth") / "data" / f"{language}.txt"
    if not path.is_file() and language in GRAMMARS:
        return generate(language)
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

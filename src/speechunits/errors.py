"""The one exception type users see for bad input."""


class SpeechUnitsError(ValueError):
    """A user-facing error: bad input file, bad option, incompatible artefacts.

    Messages name the offending file or option and the problem, e.g.
    ``"corpus/a.wav: contains NaN/Inf samples"``.
    """


#: How many names :func:`some_of` lists before counting the rest.
SHOWN_NAMES = 12


def some_of(names: "list[str] | tuple[str, ...]", limit: int = SHOWN_NAMES) -> str:
    """``names`` for a message: all of them up to ``limit``, else the first ``limit`` and how many in all
    (a 261-speaker table must not fill the terminal); ``"none"`` when empty."""
    if not names:
        return "none"
    shown = ", ".join(str(name) for name in names[:limit])
    return shown if len(names) <= limit else f"{shown} ... ({len(names)} in all)"

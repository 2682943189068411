"""The one exception type users see for bad input."""


class SpeechUnitsError(ValueError):
    """A user-facing error: bad input file, bad option, incompatible artefacts.

    Messages name the offending file or option and the problem, e.g.
    ``"corpus/a.wav: contains NaN/Inf samples"``.
    """

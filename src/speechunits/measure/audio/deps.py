"""The optional packages of each audio judge, and the message when one is missing."""
from __future__ import annotations

import importlib
from typing import Any

from speechunits.errors import SpeechUnitsError

EXTRA_HINT = "pip install 'speechunits[eval]'"


def require(module: str, judge: str) -> Any:
    """Import ``module`` for ``judge`` or raise a SpeechUnitsError naming the package and the extra.

    Any import-time failure of the package counts as missing (Resemblyzer, for one, fails to import
    when setuptools >= 81 removed the ``pkg_resources`` it needs).
    """
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install failing at import
        raise SpeechUnitsError(f"{judge} needs the package {module.split('.')[0]!r} ({type(exc).__name__}: "
                               f"{str(exc)[:200]}): {EXTRA_HINT}") from exc

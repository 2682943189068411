"""Optional packages (the pyproject extras): one way to import them and to say what is missing.

A package counts as missing when importing it fails for any reason, not only ImportError: pyworld
0.3.5 and Resemblyzer raise at import time when setuptools >= 81 has removed the ``pkg_resources``
they use, and the message then names that error instead of sending the user to reinstall an extra
that is already installed.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from speechunits.errors import SpeechUnitsError


def install_hint(extra: str) -> str:
    """``pip install 'speechunits[EXTRA]'``."""
    return f"pip install 'speechunits[{extra}]'"


def require_extra(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module`` (e.g. ``"pyworld"``) or raise a :class:`SpeechUnitsError` that says what
    needs it, the import error, and the extra that installs it.

    Example message: ``F0 extraction needs 'pyworld' (ModuleNotFoundError: No module named
    'pkg_resources'): pip install 'speechunits[f0]'``.
    """
    try:
        with warnings.catch_warnings():  # pyworld's own import warns that pkg_resources is deprecated
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install failing at import
        raise SpeechUnitsError(f"{needed_for} needs {module.split('.')[0]!r} ({type(exc).__name__}: "
                               f"{str(exc)[:200]}): {install_hint(extra)}") from exc

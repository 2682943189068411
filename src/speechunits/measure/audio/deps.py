"""The optional packages of each audio judge, and the message when one is missing."""
from __future__ import annotations

from typing import Any

from speechunits.extras import install_hint, require_extra

EXTRA_HINT = install_hint("eval")


def require(module: str, judge: str) -> Any:
    """Import ``module`` for ``judge`` or raise a SpeechUnitsError naming the package and the extra.

    Any import-time failure of the package counts as missing (Resemblyzer, for one, fails to import
    when setuptools >= 81 removed the ``pkg_resources`` it needs).
    """
    return require_extra(module, "eval", judge)

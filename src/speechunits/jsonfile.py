"""The one reader of the small JSON files that describe artefacts (codebooks, probes, LMs, checkpoints ...).

Every artefact directory holds a JSON object of metadata. Reading it goes through
:func:`read_json_object`, so a missing, unreadable, malformed or non-object file is always a
:class:`~speechunits.errors.SpeechUnitsError` that names the file, never a bare ``KeyError`` or
``JSONDecodeError`` traceback.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from speechunits.errors import SpeechUnitsError


def read_json_object(path: str | os.PathLike[str], *, missing: str | None = None) -> dict[str, Any]:
    """The JSON object stored in ``path``.

    Raises :class:`SpeechUnitsError`: ``missing`` (default ``"<path>: not found"``) when ``path`` is
    not a file; ``"<path>: unreadable ..."`` when it cannot be read or is not valid JSON;
    ``"<path>: expected a JSON object ..."`` when the JSON is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechUnitsError(missing if missing is not None else f"{path}: not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeechUnitsError(f"{path}: unreadable ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpeechUnitsError(f"{path}: unreadable, not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SpeechUnitsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data

"""The record of a generated set (``synth lexical/syntactic/qbe/mix/noisy``: ``<kind>.json``), the reuse
rule of ``synth qbe``, ``mix`` and ``noisy`` (the same set is kept, another refused) and the checks of the
sets made from a corpus."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from speechunits.errors import SpeechUnitsError


def holds_same_set(target: Path, meta_name: str, request: Mapping[str, Any], keys: Sequence[str],
                   format_version: int, what: str) -> bool:
    """Whether ``target`` already holds the set ``request`` asks for.

    ``False`` when ``target`` is absent or an empty directory (build it); ``True`` when its
    ``meta_name`` records the same ``keys`` and ``format_version`` (keep it).

    Raises:
        SpeechUnitsError: ``target`` holds something else (not a ``what``, or another one: the
            differing arguments are named).
    """
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return False
    try:
        meta = json.loads((target / meta_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SpeechUnitsError(f"{target}: already exists and is not a {what} (remove it to rebuild)") from None
    stored = {key: meta.get(key) for key in keys}
    if meta.get("format_version") != format_version or stored != dict(request):
        differ = [f"{k} {stored[k]!r} (asked {request[k]!r})" for k in keys if stored[k] != request[k]]
        raise SpeechUnitsError(f"{target}: already holds another {what} ({', '.join(differ) or 'older format'}); "
                               "remove it to rebuild")
    return True


def check_corpus_set(corpus: str | Path, out: Path, request: Mapping[str, Any], parts: Sequence[str],
                     what: str) -> None:
    """The checks every set made from a corpus shares (``synth mix``, ``synth noisy``): ``request["split"]``
    one positive share per part, ``request["seed"]`` an integer >= 0, ``out`` a directory (or absent) and
    not inside ``corpus`` (``what``: the set's name in the message).

    Raises:
        SpeechUnitsError: naming the argument.
    """
    import math

    shares = request["split"]
    if len(shares) != len(parts) or not all(math.isfinite(s) and s > 0 for s in shares):
        raise SpeechUnitsError(f"split must be {len(parts)} positive shares ({', '.join(parts)}), got {shares}")
    if isinstance(request["seed"], bool) or not isinstance(request["seed"], int) or request["seed"] < 0:
        raise SpeechUnitsError(f"--seed must be an integer >= 0, got {request['seed']!r}")
    if out.exists() and not out.is_dir():
        raise SpeechUnitsError(f"{out}: exists and is not a directory")
    if Path(corpus).is_dir() and out.resolve().is_relative_to(Path(corpus).resolve()):
        raise SpeechUnitsError(f"{out}: inside the corpus {corpus}; write the {what} elsewhere")


def write_set_meta(path: Path, meta: Mapping[str, Any]) -> None:
    """Write a set's ``<kind>.json``: indented, keys sorted, UTF-8 kept (same arguments, same bytes)."""
    path.write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")

"""Run one synthesis job in a fresh, lean interpreter (``python -m speechunits.synth``).

espeak-ng must be initialised in a process that then forks once per utterance (see
:mod:`speechunits.synth.corpus`); forking a process that has loaded torch is slow, so every
synthesis job (corpus, benchmarks, parallel corpus) runs in a new interpreter that imports
only what synthesis needs. The job is named by ``kind``; its keyword arguments travel as JSON
and its JSON summary comes back on stdout.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from speechunits.errors import SpeechUnitsError

#: kind -> "module:function" run inside the fresh interpreter (returns a JSON-able dict).
JOBS: dict[str, str] = {
    "corpus": "speechunits.synth.corpus:synthesize_here",
    "lexical": "speechunits.synth.benchmarks:lexical_here",
    "syntactic": "speechunits.synth.benchmarks:syntactic_here",
    "parallel": "speechunits.synth.parallel:parallel_here",
    "qbe": "speechunits.synth.qbe:qbe_here",
}


def job_function(kind: str) -> Callable[..., dict[str, Any]]:
    """The function that runs a ``kind`` job in this process."""
    if kind not in JOBS:
        raise SpeechUnitsError(f"unknown synthesis job {kind!r} (known: {', '.join(JOBS)})")
    module, _, name = JOBS[kind].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def run_in_fresh_process(kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run the ``kind`` job with ``request`` as keyword arguments in ``python -m speechunits.synth``.

    Raises:
        SpeechUnitsError: the job's own error message, or the exit status if it died.
    """
    import speechunits

    env = dict(os.environ)  # the child must import this very copy of speechunits
    package_root = str(Path(speechunits.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-m", "speechunits.synth", json.dumps({"kind": kind, **request})],
                          stdout=subprocess.PIPE, text=True, check=False, env=env)
    try:
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        reply = {"error": f"synthesis process exited with status {proc.returncode} (see messages above)"}
    if proc.returncode != 0 or "error" in reply:
        raise SpeechUnitsError(str(reply.get("error", f"synthesis process exited with status {proc.returncode}")))
    return reply  # type: ignore[no-any-return]

"""The one way bench scripts run ``speechunits`` commands and fit their codebooks.

Every bench script drives the toolkit through its command line, as a user would. ``su`` runs one
command, in this process (the default) or in a child process (``child=True``: for commands started
from worker threads, whose stdout must not be redirected process-wide, or for a separate thread
budget). ``fit_codebook`` is ``speechunits fit`` unless the codebook is already there.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.su")


class CommandFailed(RuntimeError):
    """A ``speechunits`` command ended with a non-zero status."""


def su(*argv: Any, child: bool = False, stdout: Path | None = None) -> dict[str, Any]:
    """Run ``speechunits ARGV``; a non-zero status raises :class:`CommandFailed` naming the command.

    In process, the command's stdout is passed on and its last JSON line (``{...}``) is returned
    ({} if none). ``child=True`` runs ``python -m speechunits.cli.main`` (this copy of the package),
    its stdout to ``stdout`` when given, and returns {}.
    """
    args = [str(a) for a in argv]
    log.info("$ speechunits %s%s", " ".join(args), f" > {stdout}" if stdout else "")
    if child:
        cmd = [sys.executable, "-m", "speechunits.cli.main", *args]
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(open(stdout, "w", encoding="utf-8")) if stdout else None
            status = subprocess.run(cmd, stdout=handle).returncode
        if status:
            raise CommandFailed(f"speechunits {' '.join(args)} failed with status {status}")
        return {}
    from speechunits.cli.main import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(args)
    sys.stdout.write(buffer.getvalue())
    if status:
        raise CommandFailed(f"speechunits {' '.join(args)} failed with status {status}")
    lines = [line for line in buffer.getvalue().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def fit_codebook(manifest: Path, codebook: Path, encoder: str, k: int, layer: int | None = None,
                 *options: Any, child: bool = False) -> Path:
    """``speechunits fit MANIFEST --encoder ENCODER [--layer L] --k K -o CODEBOOK OPTIONS --quiet``, unless
    ``CODEBOOK/codebook.json`` exists; returns ``codebook``."""
    if not (Path(codebook) / "codebook.json").is_file():
        su("fit", manifest, "--encoder", encoder, *(["--layer", layer] if layer is not None else []), "--k", k,
           "-o", codebook, *options, "--quiet", child=child)
    return Path(codebook)

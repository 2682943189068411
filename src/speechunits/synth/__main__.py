"""``python -m speechunits.synth '{json request}'``: the lean synthesis process.

Used by :func:`speechunits.synth.process.run_in_fresh_process`: the request names the job
(``"kind"``, default ``"corpus"``) and its keyword arguments; prints one JSON line on stdout,
the summary or ``{"error": message}``.
"""
from __future__ import annotations

import json
import logging
import sys

from speechunits.errors import SpeechUnitsError


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from speechunits.synth.process import job_function

    try:
        request = json.loads(argv[0])
        summary = job_function(request.pop("kind", "corpus"))(**request)
    except SpeechUnitsError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 2
    except (IndexError, TypeError, json.JSONDecodeError) as exc:
        print(json.dumps({"error": f"bad synth request: {exc}"}), flush=True)
        return 2
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

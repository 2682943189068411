"""Phone-aligned synthetic speech with espeak-ng (optional ``[synth]`` extra; espeak-ng is GPL-3).

espeak-ng is loaded only when :func:`synthesize_corpus` runs, never on import.
"""
from __future__ import annotations

from speechunits.synth.corpus import synthesize_corpus

__all__ = ["synthesize_corpus"]

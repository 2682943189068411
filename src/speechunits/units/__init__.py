"""Discrete units: the Units record, tokenizer, store, text formats and BPE."""
from speechunits.units.units import Units

__all__ = ["Units"]

"""Measuring units: alignments, PNMI/purity/bitrate, ABX, invariance, layer x K sweeps.

Submodules are imported explicitly (``from speechunits.measure.alignments import load_alignments``)
so that importing one does not pull in the others' dependencies.
"""

"""CPU kernels for wav2vec 2.0-style encoders, entered through one call: :func:`optimize_for_cpu`.

:class:`~speechunits.encoders.hf.HFEncoder` calls it once, on CPU, unless told not to
(``cpu_kernels=False``, ``--no-cpu-kernels`` or :data:`DISABLE_ENV`); it swaps faster
equivalents of some modules into the model and returns a :class:`CpuKernels` that runs the CNN
front end. Each module has one job:

* ``first_conv.py``: the first CNN layer as one matmul over waveform windows, GroupNorm folded in;
* ``cnn_chunks.py``: the CNN over time in pieces of a few MB;
* ``time_major_conv.py``: temporal convolutions as oneDNN channels-last ones on time-major activations;
* ``onednn.py``: packed bf16 linears, GELUs fused into the op before them;
* ``attention.py``: attention as matmul-softmax-matmul for bf16/fp16 (registered with transformers'
  attention interface: the only process-wide state);
* ``kernels.py``: :func:`optimize_for_cpu`, :class:`CpuKernels`, the opt-out.
* ``grouped_conv.py`` (not a kernel: a guard that ``hf.prepare_model`` applies to every bf16 CPU model):
  grouped convolutions with few channels per group kept in fp32, where torch's bf16 kernel is wrong.

What each one buys, as measured: docs/performance.md.
"""
from __future__ import annotations

from speechunits.encoders.cpu.kernels import DISABLE_ENV, CpuKernels, cpu_kernels_wanted, optimize_for_cpu
from speechunits.encoders.cpu.time_major_conv import is_temporal_padded

__all__ = ["DISABLE_ENV", "CpuKernels", "cpu_kernels_wanted", "is_temporal_padded", "optimize_for_cpu"]

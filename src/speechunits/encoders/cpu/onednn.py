"""oneDNN's pre-packed and GELU-fused CPU kernels, for bf16 inference.

* **Packed weights.** ``nn.Linear`` in bf16 reaches oneDNN's matmul, which re-orders the weight
  into its blocked layout at every call; :class:`PackedLinear` packs it once
  (``torch.ops.mkldnn._reorder_linear_weight``).
* **Fused GELU.** An exact (erf) GELU right after a linear or convolution is one more pass over
  the model's largest activations; oneDNN applies it as a post-op on the output tile instead.

``torch.ops.mkldnn._linear_pointwise`` and ``_convolution_pointwise`` are the calls that
torch.compile's CPU backend emits for the same patterns. Results equal the unfused ops up to the
output dtype's rounding (oneDNN's erf differs from torch's in the last bf16 bit), so these swaps
are made for bf16 only. Under autograd, or without oneDNN, every module falls back to the plain
ops, and where the CPU lacks bf16 support (:func:`supports`), to plain bf16 ops. Measured effects:
docs/performance.md.
"""
from __future__ import annotations

import functools
import logging

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

#: Rows (frames) the packed linear weight layout is chosen for: a typical padded batch.
PACK_ROWS = 512


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether this torch build has oneDNN's packed/fused linear and convolution ops."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and hasattr(mkldnn, "_linear_pointwise")
            and hasattr(mkldnn, "_reorder_linear_weight")
            and hasattr(mkldnn, "_convolution_pointwise")
        )
    except RuntimeError:  # pragma: no cover - torch.ops raises for unknown namespaces on some builds
        return False


@functools.lru_cache(maxsize=None)
def supports(dtype: torch.dtype) -> bool:
    """Whether this CPU runs oneDNN's packed, GELU-fused linear in ``dtype``.

    The ops exist in every oneDNN build (:func:`available`), but bf16 ones need AVX512-BF16, AMX
    or AVX-NE-CONVERT: on a plain AVX2 CPU they raise. Probed once per dtype with a tiny call.
    """
    if not available():
        return False
    try:
        with torch.no_grad():
            weight = torch.zeros(4, 8, dtype=dtype)
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)
            linear(torch.zeros(2, 8, dtype=dtype), packed, None, gelu=True)
    except (RuntimeError, NotImplementedError) as exc:
        log.debug("oneDNN packed/fused linear unavailable in %s on this CPU (%s)", dtype, exc)
        return False
    return True


def is_exact_gelu(module: nn.Module) -> bool:
    """True for ``nn.GELU()`` (erf form) and transformers' ``GELUActivation`` using ``F.gelu``."""
    if isinstance(module, nn.GELU):
        return module.approximate == "none"
    return type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is F.gelu


def linear(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, gelu: bool) -> torch.Tensor:
    """oneDNN's ``rows @ weight^T + bias`` (then exact GELU, fused, if ``gelu``): ``[M, K], [N, K] -> [M, N]``.

    ``weight`` is plain or packed (``torch.ops.mkldnn._reorder_linear_weight``); inference only.
    """
    bias = None if bias is None else bias.detach()
    post, algorithm = ("gelu", "none") if gelu else ("none", "")
    return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, post, [], algorithm)


def convolution(windows: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, stride: int, dilation: int,
                groups: int, *, gelu: bool) -> torch.Tensor:
    """oneDNN's unpadded channels-last convolution over time (then exact GELU, fused, if ``gelu``).

    ``windows [N, C_in, 1, L]``, ``packed`` from ``mkldnn_reorder_conv2d_weight`` -> ``[N, C_out, 1, L']``.
    """
    post, algorithm = ("gelu", "none") if gelu else ("none", "")
    return torch.ops.mkldnn._convolution_pointwise(windows, packed, bias, [0, 0], [1, stride], [1, dilation], groups,
                                                  post, [], algorithm)


class PackedLinear(nn.Module):
    """``linear`` (then an exact GELU if ``gelu``) with its weight packed once for oneDNN: ``[..., in] -> [..., out]``.

    Keeps ``linear``'s ``weight`` and ``bias`` parameters (shared, so state-dict keys and
    autograd are unchanged); the packed copy is used for CPU inference in the weight's dtype.
    """

    def __init__(self, linear: nn.Linear, *, gelu: bool = False):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.gelu = gelu
        self._packed: torch.Tensor | None = None
        self._pack()

    def _pack(self) -> None:
        self._packed = None
        if self.weight.device.type != "cpu" or not available():
            return
        try:
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), PACK_ROWS)
                probe = torch.zeros(2, self.in_features, dtype=self.weight.dtype)
                self._fused(probe, packed)
        except (RuntimeError, NotImplementedError) as exc:
            log.debug("oneDNN linear packing unavailable (%s); using F.linear", exc)
            return
        self._packed = packed

    def _apply(self, fn, recurse: bool = True):  # .to() and friends: pack the moved weight again
        result = super()._apply(fn, recurse)
        self._pack()
        return result

    def _fused(self, rows: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        return linear(rows, packed, self.bias, gelu=self.gelu)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        usable = (self._packed is not None and not torch.is_grad_enabled() and hidden.device.type == "cpu"
                  and hidden.dtype == self.weight.dtype)
        if not usable:
            out = F.linear(hidden, self.weight, self.bias)
            return F.gelu(out) if self.gelu else out
        rows = hidden.reshape(-1, self.in_features)
        return self._fused(rows, self._packed).reshape(*hidden.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, gelu={self.gelu}"


def use_packed_linears(root: nn.Module) -> int:
    """Swap every ``nn.Linear`` under ``root`` for a :class:`PackedLinear`, fusing feed-forward GELUs.

    A feed-forward block (``intermediate_dense`` then ``intermediate_act_fn``, as in every
    wav2vec 2.0-style model of transformers) whose activation is an exact GELU gets the GELU
    fused into its first linear and its activation replaced by ``nn.Identity``. Returns the
    number of linears swapped.
    """
    if not available():
        return 0
    swapped = 0
    for parent in list(root.modules()):
        fuse = isinstance(getattr(parent, "intermediate_dense", None), nn.Linear) and is_exact_gelu(
            getattr(parent, "intermediate_act_fn", None) or nn.Identity()
        )
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                gelu = fuse and name == "intermediate_dense"
                setattr(parent, name, PackedLinear(child, gelu=gelu))
                swapped += 1
        if fuse:
            parent.intermediate_act_fn = nn.Identity()
    return swapped

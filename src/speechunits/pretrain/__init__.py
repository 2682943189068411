"""HuBERT-style pretraining: masked prediction of unit targets from raw audio.

Built on the shared training loop (:mod:`speechunits.training`): :mod:`.config` (presets and
:class:`PretrainConfig`), :mod:`.model` (HubertModel + prediction head), :mod:`.head`,
:mod:`.masking`, :mod:`.targets`, :mod:`.data` (crops), :mod:`.task` (the loop's task),
:mod:`.export` (the Hugging Face directory), :mod:`.run` (:func:`pretrain`) and :mod:`.iterate`
(chained HuBERT iterations). The CLI is ``speechunits pretrain``; see docs/train.md.
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

_LAZY = {
    "PretrainConfig": "speechunits.pretrain.config",
    "PretrainResult": "speechunits.pretrain.run",
    "pretrain": "speechunits.pretrain.run",
    "pretrain_iterations": "speechunits.pretrain.iterate",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)

"""HuBERT-style pretraining: masked prediction of unit targets from raw audio.

Entry point: :func:`speechunits.train.pretrain.pretrain`; the CLI is ``speechunits pretrain``.
See docs/train.md.
"""

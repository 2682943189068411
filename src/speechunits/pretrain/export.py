"""The usable form of a pretrained model: a Hugging Face model directory.

``MODEL/config.json``, ``model.safetensors`` and ``preprocessor_config.json`` load with
``transformers.AutoModel`` / ``AutoFeatureExtractor`` and :func:`speechunits.encoders.load_encoder`
(a ``HubertModel`` for the CNN front end, a ``Wav2Vec2BertModel`` with its filterbank extractor for
``fbank``); the training state (head, optimizer ...) lives in ``MODEL/training/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from speechunits.pretrain.config import PretrainConfig

SAMPLE_RATE = 16000


def exporter(train: PretrainConfig) -> Callable[[torch.nn.Module, Path], None]:
    """The export function of ``train``'s model: its encoder (fp32 safetensors) and its feature extractor."""
    from speechunits.pretrain.front_end import feature_extractor

    def export(model: torch.nn.Module, out_dir: Path) -> None:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bar per checkpoint
        out_dir.mkdir(parents=True, exist_ok=True)
        model.encoder.save_pretrained(str(out_dir), safe_serialization=True)
        feature_extractor(train).save_pretrained(str(out_dir))

    return export

"""The usable form of a pretrained model: a Hugging Face ``HubertModel`` directory.

``MODEL/config.json``, ``model.safetensors`` and ``preprocessor_config.json`` load with
``transformers.HubertModel.from_pretrained`` and :func:`speechunits.encoders.load_encoder`;
the training state (head, optimizer ...) lives in ``MODEL/training/``.
"""
from __future__ import annotations

from pathlib import Path

import torch

SAMPLE_RATE = 16000


def export_hubert(model: torch.nn.Module, out_dir: Path) -> None:
    """Write ``model.encoder`` (a ``HubertModel``, fp32 safetensors) and its preprocessor config to ``out_dir``."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bar per checkpoint
    out_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(str(out_dir), safe_serialization=True)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=False,
        return_attention_mask=False,
    ).save_pretrained(str(out_dir))

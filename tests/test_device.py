"""The one device/precision resolver, and the one frame-offset formula."""
from __future__ import annotations

import pytest
import torch

from speechunits.device import resolve_device, resolve_dtype
from speechunits.encoders import load_encoder
from speechunits.errors import SpeechUnitsError


def test_auto_and_none_follow_cuda_availability(monkeypatch) -> None:
    for available, expected in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert resolve_device("auto").type == expected
        assert resolve_device(None).type == expected


def test_named_devices_and_errors(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(SpeechUnitsError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    for cuda in ("cuda", "cuda:1", torch.device("cuda", 0)):
        with pytest.raises(SpeechUnitsError, match="no CUDA device"):
            resolve_device(cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_dtypes() -> None:
    assert [resolve_dtype(name) for name in ("fp32", "bf16", "fp16")] == [torch.float32, torch.bfloat16, torch.float16]
    with pytest.raises(SpeechUnitsError, match="expected one of fp32, bf16, fp16"):
        resolve_dtype("float32")


@pytest.mark.parametrize("name, offset", [("mfcc", 400 / 32000), ("logmel", 400 / 32000)])
def test_frame_offset_is_half_the_receptive_field(name: str, offset: float) -> None:
    """Frame 0 covers samples [0, 400) at 16 kHz: its centre is 12.5 ms."""
    info = load_encoder(name).info
    assert info.frame_offset_s == pytest.approx(offset, abs=1e-15)
    assert info.frame_offset_s + 3 / info.frame_rate == pytest.approx((3 * 160 + 200) / 16000, abs=1e-15)

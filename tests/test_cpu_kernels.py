"""encoders/cpu: the optimised CPU path gives the plain transformers path's features, and can be turned off.

End to end on tiny random HuBERTs (group-norm and layer-norm front ends), for a padded batch of
very different lengths (one frame, short, several CNN pieces): fp32 within the batched-vs-single
tolerance of test_encoders_hf.py (max |diff| <= 1e-4 of the feature scale); bf16 judged against
the fp32 features, where the optimised path may be no worse than 1.5x the plain bf16 path's own
rounding error plus 1e-3. bf16 error is a property of the precision (docs/encoders.md: ~1.3 %
relative L2 on a HuBERT-base-sized model); the kernels reorder sums and fuse ops, so they may
move it a little either way, but not make it grow.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BF16_MAX_REL_L2, BF16_MIN_REL_L2, make_tiny_hf_model
from speechunits.encoders import load_encoder
from speechunits.encoders.cpu import DISABLE_ENV, cpu_kernels_wanted
from speechunits.encoders.cpu.attention import NAME as CPU_ATTENTION
from speechunits.encoders.cpu.onednn import PackedLinear
from speechunits.encoders.cpu.time_major_conv import TimeMajorConv1d

# 1 frame, short, > 128 frames (several CNN pieces, a rounded last piece), medium.
LENGTHS = (400, 5000, 16000 * 3 + 123, 9001)
LAYERS = [0, 2, 4]


@pytest.fixture(scope="module")
def hubert_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {norm: make_tiny_hf_model(tmp_path_factory.mktemp(f"hubert_{norm}"), "hubert", norm)
            for norm in ("group", "layer")}


def _waves() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n) + 0.02).astype(np.float32) for n in LENGTHS]


def _relative_l2(got: list[dict[int, np.ndarray]], want: list[dict[int, np.ndarray]], layer: int) -> float:
    a = np.concatenate([item[layer] for item in got])
    b = np.concatenate([item[layer] for item in want])
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("norm", ["group", "layer"])
@pytest.mark.parametrize("plain_batch_cnn", [False, True])
def test_fp32_optimised_equals_plain(hubert_dirs, norm: str, plain_batch_cnn: bool) -> None:
    """Also against the plain path's padded-batch CNN (masked GroupNorm), the one GPUs run."""
    torch.set_num_threads(1)
    waves = _waves()
    optimised = load_encoder(str(hubert_dirs[norm]), device="cpu", cpu_kernels=True)
    plain = load_encoder(str(hubert_dirs[norm]), device="cpu", cpu_kernels=False)
    assert optimised.cpu_kernels is not None and optimised.cpu_kernels.cnn_in_pieces
    assert plain.cpu_kernels is None
    plain.batch_cnn = plain_batch_cnn
    got, want = optimised.extract_batch(waves, LAYERS), plain.extract_batch(waves, LAYERS)
    for wave, ours, reference in zip(waves, got, want):
        for layer in LAYERS:
            assert ours[layer].shape == reference[layer].shape == (plain.num_frames(len(wave)), plain.info.dim)
            scale = np.abs(reference[layer]).max()
            assert np.abs(ours[layer] - reference[layer]).max() <= 1e-4 * scale


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_bf16_optimised_no_less_accurate_than_plain(hubert_dirs, norm: str) -> None:
    torch.set_num_threads(1)
    waves = _waves()
    name = str(hubert_dirs[norm])
    exact = load_encoder(name, device="cpu", dtype="fp32", cpu_kernels=False).extract_batch(waves, LAYERS)
    optimised = load_encoder(name, device="cpu", dtype="bf16", cpu_kernels=True)
    assert optimised.model.config._attn_implementation == CPU_ATTENTION
    plain = load_encoder(name, device="cpu", dtype="bf16", cpu_kernels=False)
    got, rounded = optimised.extract_batch(waves, LAYERS), plain.extract_batch(waves, LAYERS)
    for layer in LAYERS:
        err_ours, err_plain = _relative_l2(got, exact, layer), _relative_l2(rounded, exact, layer)
        assert BF16_MIN_REL_L2 < err_plain < BF16_MAX_REL_L2, (layer, err_plain)  # bf16 really ran, and only rounded
        assert err_ours <= 1.5 * err_plain + 1e-3, (layer, err_ours, err_plain)


def _swapped_modules(model: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, (TimeMajorConv1d, PackedLinear))]


@pytest.mark.parametrize("value,wanted", [(None, True), ("", True), ("0", True), ("1", False), ("yes", False)])
def test_environment_variable(monkeypatch, value: str | None, wanted: bool) -> None:
    if value is None:
        monkeypatch.delenv(DISABLE_ENV, raising=False)
    else:
        monkeypatch.setenv(DISABLE_ENV, value)
    assert cpu_kernels_wanted() is wanted
    assert cpu_kernels_wanted(True) is True and cpu_kernels_wanted(False) is False  # an explicit choice wins


def test_opt_out_gives_transformers_modules(hubert_dirs, monkeypatch) -> None:
    name = str(hubert_dirs["group"])
    monkeypatch.setenv(DISABLE_ENV, "1")
    for encoder in (load_encoder(name, device="cpu", dtype="bf16"),
                    load_encoder(name, device="cpu", dtype="bf16", cpu_kernels=False)):
        assert encoder.cpu_kernels is None
        assert encoder.model.config._attn_implementation == "sdpa"
        assert _swapped_modules(encoder.model) == []
        assert isinstance(encoder.model.encoder.pos_conv_embed.conv, torch.nn.Conv1d)
    forced = load_encoder(name, device="cpu", dtype="bf16", cpu_kernels=True)  # the argument beats the variable
    assert forced.cpu_kernels is not None and _swapped_modules(forced.model)
    monkeypatch.delenv(DISABLE_ENV)
    default = load_encoder(name, device="cpu", dtype="bf16")
    assert default.cpu_kernels is not None and default.model.config._attn_implementation == CPU_ATTENTION


def test_optimize_for_cpu_refuses_a_model_elsewhere() -> None:
    from speechunits.encoders.cpu import optimize_for_cpu

    model = torch.nn.Linear(2, 2, device="meta")
    with pytest.raises(ValueError, match="not on the CPU"):
        optimize_for_cpu(model, torch.float32)


def test_cli_flag_turns_them_off_for_the_run(tiny_hubert_dir, tone_dir, tmp_path, monkeypatch) -> None:
    import speechunits.encoders.hf as hf
    from speechunits.cli.main import NO_CPU_KERNELS_ENV, main

    assert NO_CPU_KERNELS_ENV == DISABLE_ENV
    monkeypatch.delenv(DISABLE_ENV, raising=False)

    def refuse(model, dtype):
        raise AssertionError("CPU kernels were installed despite --no-cpu-kernels")

    monkeypatch.setattr(hf, "optimize_for_cpu", refuse)
    code = main(["features", str(tone_dir), "--encoder", str(tiny_hubert_dir), "--layer", "1", "-o",
                 str(tmp_path / "feats"), "--device", "cpu", "--dtype", "bf16", "--quiet", "--no-cpu-kernels"])
    assert code == 0 and (tmp_path / "feats" / "features.json").is_file()
    assert DISABLE_ENV not in os.environ  # the run's setting does not outlive it

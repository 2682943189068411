"""The vocoder module: conditioning, one generator tier, the predictors and (GAN) discriminators.

Training goes through ``model(batch, phase)`` (so that DistributedDataParallel sees every
forward): phase ``"generator"`` returns the generator's objective (reconstruction, predictors,
and adversarial + feature matching once discriminators train), phase ``"discriminator"`` the
LSGAN discriminator loss on a generator output made without gradients. Inference uses
:meth:`VocoderModel.generate` and the predictors directly.

A training batch (:class:`speechunits.vocoder.task.VocoderTask`) is a dict of tensors:
``units`` ``[B, S, T]``, ``f0_z`` ``[B, T]`` (normalised log-F0), ``voiced`` ``[B, T]`` (0/1),
``f0_hz`` ``[B, T]`` (what the ``cpu`` tier's pulses follow: see
:func:`speechunits.vocoder.f0.conditioning_f0`), ``audio`` ``[B, T * hop]``, ``amount`` (audio seconds, 0-d), and as the
configuration needs: ``speaker`` ``[B]``, ``reference`` ``[B, L]``, ``dedup_units`` ``[B, 1, N]``
with ``log_durations`` and ``dedup_mask`` ``[B, N]``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from speechunits.vocoder.conditioning import Conditioner, DurationPredictor, F0Predictor
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.dsp import LogMel, mel_l1, multi_resolution_stft_loss, scaled_resolutions

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
#: Prefix of the discriminators' weights (left out of the exported vocoder).
DISCRIMINATOR_PREFIX = "discriminators."


class VocoderModel(nn.Module):
    """Everything one vocoder trains (see the module docstring)."""

    def __init__(self, cfg: VocoderConfig, *, discriminators: bool | None = None):
        super().__init__()
        self.cfg = cfg
        self.conditioner = Conditioner(cfg)
        if cfg.arch == "cpu":
            from speechunits.vocoder.source_filter import SourceFilterGenerator

            self.generator: nn.Module = SourceFilterGenerator(cfg, self.conditioner.out_dim)
        else:
            from speechunits.vocoder.hifigan import HiFiGANGenerator

            self.generator = HiFiGANGenerator(cfg, self.conditioner.out_dim)
        self.f0_predictor = F0Predictor(cfg)
        self.duration_predictor = DurationPredictor(cfg) if cfg.dedup else None
        use_disc = cfg.gan if discriminators is None else discriminators
        if use_disc:
            from speechunits.vocoder.hifigan import Discriminators

            self.discriminators: nn.Module | None = Discriminators(cfg.disc_width)
        else:
            self.discriminators = None
        scale = max(1, round(cfg.sample_rate / 16000))
        # HiFi-GAN's mel loss: 80 bands, n_fft 1024, hop 256 at 16 kHz (scaled with the rate)
        self.mel = LogMel(cfg.sample_rate, n_fft=1024 * scale, hop=256 * scale, n_mels=80)
        self.resolutions = scaled_resolutions(cfg.sample_rate)

    def generator_modules(self) -> nn.ModuleDict:
        """Every trained part but the discriminators (the generator phase's parameters)."""
        parts = {"conditioner": self.conditioner, "generator": self.generator, "f0_predictor": self.f0_predictor}
        if self.duration_predictor is not None:
            parts["duration_predictor"] = self.duration_predictor
        return nn.ModuleDict(parts)

    # -- inference ---------------------------------------------------------------------------------

    def generate(self, units: torch.Tensor, f0_z: torch.Tensor, voiced: torch.Tensor, f0_hz: torch.Tensor,
                 speaker_vec: torch.Tensor | None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Waveform ``[B, T * hop]`` from units ``[B, S, T]`` and frame F0 (see the module docstring)."""
        cond = self.conditioner(units, f0_z, voiced, speaker_vec)
        if self.cfg.arch == "cpu":
            return self.generator(cond, f0_hz, voiced, noise)
        return self.generator(cond)

    # -- training ----------------------------------------------------------------------------------

    def forward(self, batch: dict[str, Any], phase: str = GENERATOR) -> tuple[torch.Tensor, dict[str, tuple[float, float]]]:
        """``(loss, metrics)`` of ``phase`` on ``batch`` (metrics as ``(value, 1)`` pairs)."""
        speaker_vec = self.conditioner.speaker_vector(batch.get("speaker"), batch.get("reference"))
        units, audio = batch["units"], batch["audio"]
        args = (units, batch["f0_z"], batch["voiced"], batch["f0_hz"], speaker_vec)
        if phase == DISCRIMINATOR:
            with torch.no_grad():
                fake = self.generate(*args).detach()
            loss = self._discriminator_loss(audio, fake)
            return loss, {"d_loss": (float(loss.detach()), 1.0)}
        y_hat = self.generate(*args)
        mel = mel_l1(self.mel, y_hat, audio)
        metrics: dict[str, tuple[float, float]] = {"mel_l1": (float(mel.detach()), 1.0)}
        if self.cfg.arch == "cpu":
            stft = multi_resolution_stft_loss(y_hat, audio, self.resolutions)
            metrics["stft"] = (float(stft.detach()), 1.0)
            loss = self.cfg.stft_weight * stft + mel
        else:
            loss = self.cfg.mel_weight * mel
        if self.discriminators is not None and batch.get("gan_on", torch.ones(())).item() > 0:
            from speechunits.vocoder.hifigan import feature_matching_loss, generator_adversarial_loss

            real, fake = self.discriminators(audio), self.discriminators(y_hat)
            adv, fm = generator_adversarial_loss(fake), feature_matching_loss(real, fake)
            weight = 1.0 if self.cfg.arch == "hifigan" else self.cfg.mel_weight / 45.0 * 0.1
            loss = loss + weight * (adv + self.cfg.feature_weight * fm)
            metrics["g_adv"] = (float(adv.detach()), 1.0)
            metrics["fm"] = (float(fm.detach()), 1.0)
        f0_loss, vuv_loss = self._f0_losses(units, batch["f0_z"], batch["voiced"], speaker_vec)
        metrics["f0_l1"] = (float(f0_loss.detach()), 1.0)
        metrics["vuv_bce"] = (float(vuv_loss.detach()), 1.0)
        loss = loss + f0_loss + vuv_loss
        if self.duration_predictor is not None:
            dur = self._duration_loss(batch["dedup_units"], batch["log_durations"], batch["dedup_mask"], speaker_vec)
            metrics["dur_mse"] = (float(dur.detach()), 1.0)
            loss = loss + dur
        return loss, metrics

    def _discriminator_loss(self, audio: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        from speechunits.vocoder.hifigan import discriminator_loss

        return discriminator_loss(self.discriminators(audio), self.discriminators(fake))

    def _f0_losses(self, units: torch.Tensor, f0_z: torch.Tensor, voiced: torch.Tensor,
                   speaker_vec: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        z_hat, logits = self.f0_predictor(units, speaker_vec)
        v = voiced.float()
        l1 = (torch.abs(z_hat.float() - f0_z.float()) * v).sum() / v.sum().clamp_min(1.0)
        bce = F.binary_cross_entropy_with_logits(logits.float(), v)
        return l1, bce

    def _duration_loss(self, dedup_units: torch.Tensor, log_durations: torch.Tensor, mask: torch.Tensor,
                       speaker_vec: torch.Tensor | None) -> torch.Tensor:
        pred = self.duration_predictor(dedup_units, speaker_vec).float()
        m = mask.float()
        return (((pred - log_durations.float()) ** 2) * m).sum() / m.sum().clamp_min(1.0)

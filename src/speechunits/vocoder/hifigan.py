"""The ``hifigan`` tier: HiFi-GAN V1 (Kong et al. 2020) as speech-resynthesis configures it.

Generator: a kernel-7 input convolution to ``hifigan_channels`` (512), then per upsampling
rate a transposed convolution (channels halve) followed by the multi-receptive-field fusion
of residual blocks (kernels 3, 7, 11; dilations 1, 3, 5), a kernel-7 output convolution and
tanh. At 16 kHz / hop 320 the rates are 5, 4, 4, 2, 2 with kernels 11, 8, 8, 4, 4; other hops
get rates from :func:`speechunits.vocoder.config.upsample_plan`.

Discriminators: multi-period (periods 2, 3, 5, 7, 11; weight norm) and multi-scale (3 scales,
average-pooled; spectral norm on the first). Losses: least-squares GAN and feature matching
(:func:`discriminator_loss`, :func:`generator_adversarial_loss`, :func:`feature_matching_loss`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from speechunits.vocoder.config import VocoderConfig, upsample_plan

LRELU_SLOPE = 0.1


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        nn.init.normal_(module.weight, 0.0, 0.01)


class ResBlock(nn.Module):
    """HiFi-GAN's ResBlock1: pairs of (dilated conv, conv) with leaky ReLUs and residuals."""

    def __init__(self, channels: int, kernel: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(weight_norm(nn.Conv1d(channels, channels, kernel, dilation=d,
                                                          padding=_padding(kernel, d))) for d in dilations)
        self.convs2 = nn.ModuleList(weight_norm(nn.Conv1d(channels, channels, kernel, padding=_padding(kernel)))
                                    for _ in dilations)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    """Conditioning ``[B, C, T]`` -> waveform ``[B, T * hop]``."""

    def __init__(self, cfg: VocoderConfig, in_dim: int):
        super().__init__()
        rates, kernels = upsample_plan(cfg.hop)
        ch = cfg.hifigan_channels
        self.conv_pre = weight_norm(nn.Conv1d(in_dim, ch, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        self.num_kernels = len(cfg.resblock_kernels)
        for i, (rate, kernel) in enumerate(zip(rates, kernels)):
            c_in, c_out = ch // (2 ** i), max(ch // (2 ** (i + 1)), 1)
            pad = (kernel - rate + 1) // 2  # output length exactly rate * input length
            self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=pad,
                                                           output_padding=2 * pad - (kernel - rate))))
            for k, dil in zip(cfg.resblock_kernels, cfg.resblock_dilations):
                self.resblocks.append(ResBlock(c_out, k, dil))
        self.conv_post = weight_norm(nn.Conv1d(c_out, 1, 7, padding=3))
        self.ups.apply(_init)
        self.conv_post.apply(_init)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(cond)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = torch.tanh(self.conv_post(F.leaky_relu(x)))
        return x[:, 0].float()


def _conv_stack(convs: nn.ModuleList, post: nn.Module, h: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A discriminator's body: leaky-ReLU convs then ``post``; ``(scores [B, N], every layer's output)``."""
    features = []
    for conv in convs:
        h = F.leaky_relu(conv(h), LRELU_SLOPE)
        features.append(h)
    h = post(h)
    features.append(h)
    return h.flatten(1), features


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, width: int = 32):
        super().__init__()
        self.period = period
        chans = [1, width, 4 * width, 16 * width, 32 * width, 32 * width]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i in range(5))
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        return _conv_stack(self.convs, self.post, x.view(b, 1, -1, self.period))


class ScaleDiscriminator(nn.Module):
    def __init__(self, spectral: bool = False, width: int = 128):
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        w = width
        specs = [(1, w, 15, 1, 1), (w, w, 41, 2, 4), (w, 2 * w, 41, 2, 16), (2 * w, 4 * w, 41, 4, 16),
                 (4 * w, 8 * w, 41, 4, 16), (8 * w, 8 * w, 41, 1, 16), (8 * w, 8 * w, 5, 1, 1)]
        self.convs = nn.ModuleList(norm(nn.Conv1d(i, o, k, s, groups=g, padding=k // 2)) for i, o, k, s, g in specs)
        self.post = norm(nn.Conv1d(8 * w, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _conv_stack(self.convs, self.post, x[:, None, :])


class Discriminators(nn.Module):
    """Multi-period (2, 3, 5, 7, 11) and multi-scale (x1, x1/2, x1/4) discriminators.

    ``width_scale`` < 1 narrows every discriminator (tests and CPU runs).
    """

    PERIODS = (2, 3, 5, 7, 11)

    def __init__(self, width_scale: float = 1.0):
        super().__init__()
        pw, sw = max(int(32 * width_scale), 1), max(int(128 * width_scale), 16)
        self.periods = nn.ModuleList(PeriodDiscriminator(p, pw) for p in self.PERIODS)
        self.scales = nn.ModuleList([ScaleDiscriminator(True, sw), ScaleDiscriminator(False, sw),
                                     ScaleDiscriminator(False, sw)])
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """``x`` ``[B, T]`` -> per discriminator ``(scores [B, n], feature maps)``."""
        outs = [d(x) for d in self.periods]
        h = x
        for i, d in enumerate(self.scales):
            if i:
                h = self.pool(h[:, None, :])[:, 0]
            outs.append(d(h))
        return outs


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """LSGAN: ``sum_d mean((D(y) - 1)^2) + mean(D(y_hat)^2)``."""
    return sum(torch.mean((r.float() - 1) ** 2) + torch.mean(f.float() ** 2) for (r, _), (f, _) in zip(real, fake))


def generator_adversarial_loss(fake: list) -> torch.Tensor:
    """LSGAN: ``sum_d mean((D(y_hat) - 1)^2)``."""
    return sum(torch.mean((f.float() - 1) ** 2) for f, _ in fake)


def feature_matching_loss(real: list, fake: list) -> torch.Tensor:
    """``sum`` over discriminators and layers of ``mean |F(y) - F(y_hat)|`` (real features detached)."""
    return sum(torch.mean(torch.abs(rf.detach().float() - ff.float()))
               for (_, r_feats), (_, f_feats) in zip(real, fake) for rf, ff in zip(r_feats, f_feats))

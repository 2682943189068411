"""Any transformers speech SSL model (HuBERT, wav2vec 2.0, WavLM, data2vec-audio, UniSpeech-SAT, XLS-R ...).

(Models that read filterbank frames instead of waveforms, w2v-BERT 2.0, are
:class:`speechunits.encoders.hf_fbank.HFFbankEncoder`; :meth:`HFEncoder.from_pretrained` picks it.)

The model is run piece by piece rather than through ``model(...)`` so that

* only the transformer blocks up to the deepest requested layer run (a forward hook stops
  the encoder once that layer's output is captured); layer n is exactly what transformers
  returns as ``hidden_states[n]`` (layer 0 = input of block 1; for stable-layer-norm models the
  encoder's final LayerNorm is *not* applied to any layer, as in transformers 5 and fairseq's
  ``output_layer``);
* batching is exact: ``do_normalize`` is applied per utterance over its own samples; the
  first CNN layer's GroupNorm (``feat_extract_norm="group"``), whose statistics run over
  time, uses each utterance's valid frames only (later conv layers are unpadded and local, so
  valid outputs depend only on valid inputs); an attention mask is always passed for padded
  batches (even when the preprocessor says ``return_attention_mask=False``), and padded
  frames are zeroed at the input of every zero-padded temporal convolution (the positional
  convolution, each layer of data2vec-audio's, conformer depthwise convolutions).

On CPU, faster equivalents of some modules are swapped in through one call
(:func:`speechunits.encoders.cpu.optimize_for_cpu`) unless ``cpu_kernels=False`` or the
``SPEECHUNITS_NO_CPU_KERNELS`` environment variable says otherwise; everywhere else the model
runs transformers' own modules.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from speechunits.device import resolve_device, resolve_dtype
from speechunits.encoders.base import Encoder, EncoderInfo, conv_geometry
from speechunits.encoders.cpu import CpuKernels, cpu_kernels_wanted, is_temporal_padded, optimize_for_cpu
from speechunits.encoders.front_end import cnn_features
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

#: Variance floor of transformers' ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``.
NORMALIZE_EPS = 1e-7


class _EnoughLayers(Exception):
    """Raised by a forward hook once the deepest requested layer has been captured."""


def model_identity(model: nn.Module, config_json: str) -> str:
    """First 16 hex digits of sha256 over the config JSON and every state-dict tensor's bytes."""
    digest = hashlib.sha256(config_json.encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def takes_filterbanks(model: nn.Module) -> bool:
    """Whether ``model`` reads log-mel filterbank frames (w2v-BERT 2.0's ``input_features``), not waveforms."""
    return not hasattr(model, "feature_extractor") and hasattr(model.config, "feature_projection_input_dim")


#: The feature-extractor file of a transformers speech model.
PREPROCESSOR_FILE = "preprocessor_config.json"
#: What a model without :data:`PREPROCESSOR_FILE` gets (transformers' defaults for wav2vec 2.0-style models).
DEFAULT_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Preprocessor:
    """The settings of a model's :data:`PREPROCESSOR_FILE` that change its features."""

    do_normalize: bool = False
    sample_rate: int = DEFAULT_SAMPLE_RATE


def read_preprocessor(name: str) -> Preprocessor:
    """The preprocessor settings of ``name`` (local directory or hub id).

    A model without :data:`PREPROCESSOR_FILE` gets the defaults (``do_normalize=False``,
    16 kHz), with a warning naming it.

    Raises:
        SpeechUnitsError: the file exists but cannot be read or fetched, is not a JSON object,
            or holds a ``do_normalize`` that is not a boolean or a ``sampling_rate`` that is
            not a positive integer.
    """
    if Path(name).is_dir():
        path: Path | None = Path(name) / PREPROCESSOR_FILE
        if not path.exists():
            path = None
    else:
        from transformers.utils import cached_file

        try:
            found = cached_file(name, PREPROCESSOR_FILE, _raise_exceptions_for_missing_entries=False)
        except Exception as exc:  # noqa: BLE001 - any failure to fetch an existing file is the user's to see
            raise SpeechUnitsError(f"{name}/{PREPROCESSOR_FILE}: cannot fetch it ({exc})") from exc
        path = None if found is None else Path(found)
    if path is None:
        log.warning("%s: no %s; assuming do_normalize=False and %d Hz", name, PREPROCESSOR_FILE, DEFAULT_SAMPLE_RATE)
        return Preprocessor()
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpeechUnitsError(f"{path}: cannot read the preprocessor settings ({exc})") from exc
    if not isinstance(settings, dict):
        raise SpeechUnitsError(f"{path}: expected a JSON object, got {type(settings).__name__}")
    do_normalize = settings.get("do_normalize", False)
    if not isinstance(do_normalize, bool):
        raise SpeechUnitsError(f"{path}: do_normalize must be true or false, got {do_normalize!r}")
    sample_rate = settings.get("sampling_rate", DEFAULT_SAMPLE_RATE)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise SpeechUnitsError(f"{path}: sampling_rate must be a positive integer, got {sample_rate!r}")
    return Preprocessor(do_normalize=do_normalize, sample_rate=sample_rate)


class HFEncoder(Encoder):
    """A transformers speech SSL model as an :class:`Encoder`.

    ``model`` is converted in place for inference: eval mode, device and dtype, and on CPU, with
    ``cpu_kernels`` (None: on unless ``SPEECHUNITS_NO_CPU_KERNELS`` is set), faster equivalents
    of some modules swapped in (:mod:`speechunits.encoders.cpu`; they fall back to the plain ops
    under autograd). :attr:`cpu_kernels` is then the :class:`~speechunits.encoders.cpu.CpuKernels`
    object, else None.
    """

    def __init__(self, model: nn.Module, name: str, *, do_normalize: bool, sample_rate: int,
                 device: str = "auto", dtype: str = "fp32", identity: str | None = None,
                 cpu_kernels: bool | None = None):
        identity = self._adopt(model, name, ("feature_extractor", "feature_projection", "encoder"), device, dtype,
                               identity)
        config = self.model.config
        if self.torch_device.type == "cpu" and cpu_kernels_wanted(cpu_kernels):
            self.cpu_kernels = optimize_for_cpu(self.model, self.torch_dtype)
        self.do_normalize = bool(do_normalize)
        hop, field = conv_geometry(config.conv_kernel, config.conv_stride)
        self.info = EncoderInfo(
            name=name,
            sample_rate=int(sample_rate),
            hop_length=hop,
            receptive_field=field,
            num_layers=int(config.num_hidden_layers),
            dim=int(config.hidden_size),
            identity=identity,
        )
        #: Run the CNN front end on the padded batch (GPU) or one utterance at a time (CPU: no
        #: padding and smaller tensors, measured faster there).
        self.batch_cnn = self.torch_device.type != "cpu"
        self._install_pos_conv_masking()  # after the swaps: on the modules that run

    def _adopt(self, model: nn.Module, name: str, parts: Sequence[str], device: str, dtype: str,
               identity: str | None) -> str:
        """Check that ``model`` has ``parts`` and transformer layers, then set the device, dtype and
        :attr:`model` (:func:`prepare_model`; no CPU kernels yet). Returns the identity: the given one,
        or :func:`model_identity` of the weights before conversion."""
        for part in parts:
            if not hasattr(model, part):
                raise SpeechUnitsError(
                    f"{name}: {type(model).__name__} is not a wav2vec 2.0-style speech SSL model (no {part})"
                )
        if not hasattr(model.encoder, "layers"):
            raise SpeechUnitsError(f"{name}: {type(model).__name__} encoder has no transformer layers")
        self.torch_device = resolve_device(device)
        self.torch_dtype = resolve_dtype(dtype)
        self.device, self.dtype = self.torch_device.type, dtype
        identity = identity or model_identity(model, model.config.to_json_string())
        self.model = prepare_model(model, self.torch_device, self.torch_dtype)
        self.cpu_kernels: CpuKernels | None = None
        return identity

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name: str, device: str = "auto", dtype: str = "fp32",
                        cpu_kernels: bool | None = None) -> "HFEncoder":
        """Load a hub id or local directory with ``transformers.AutoModel`` (see :class:`HFEncoder`)."""
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(name)
        except (OSError, ValueError, KeyError) as exc:
            raise SpeechUnitsError(f"{name}: cannot load a transformers model ({exc})") from exc
        if takes_filterbanks(model):
            from speechunits.encoders.hf_fbank import HFFbankEncoder

            return HFFbankEncoder.from_model(model, name, device=device, dtype=dtype)
        prep = read_preprocessor(name)
        return cls(model, name, do_normalize=prep.do_normalize, sample_rate=prep.sample_rate,
                   device=device, dtype=dtype, cpu_kernels=cpu_kernels)

    def _install_pos_conv_masking(self) -> None:
        """Zero padded frames at the input of every zero-padded temporal convolution of the encoder
        (:func:`zero_padded_frames_in_convs`, with the mask of the batch being run)."""
        self._pos_mask = None
        zero_padded_frames_in_convs(self.model.encoder, lambda: self._pos_mask)

    # -- extraction -----------------------------------------------------------------------------
    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """``do_normalize``: zero mean, unit variance over this utterance (as transformers' feature extractor)."""
        wave = np.asarray(wave, dtype=np.float32)
        if not self.do_normalize:
            return wave
        return ((wave - wave.mean()) / np.sqrt(wave.var() + NORMALIZE_EPS)).astype(np.float32, copy=False)

    def extract_batch(self, waves: Sequence[np.ndarray], layers: Sequence[int], *,
                      prepared: bool = False) -> list[dict[int, np.ndarray]]:
        """Features ``{layer: float32 [num_frames(T_i), dim]}`` of each wave ``[T_i]`` in one padded batch."""
        layers = self.check_layers(layers)
        waves = self.as_waves(waves)
        if not waves:
            return []
        lengths = [int(np.asarray(w).shape[0]) for w in waves]
        short = [n for n in lengths if n < self.info.receptive_field]
        if short:
            raise SpeechUnitsError(
                f"{self.info.name}: input of {short[0]} samples is shorter than the receptive field "
                f"({self.info.receptive_field} samples)"
            )
        frames = [self.info.num_frames(n) for n in lengths]
        with torch.inference_mode():
            hidden = self._batch_states(waves if prepared else [self.prepare(w) for w in waves], lengths, layers)
        out: list[dict[int, np.ndarray]] = [{} for _ in waves]
        for layer in layers:
            values = hidden[layer].float().cpu().numpy()
            for i, count in enumerate(frames):
                out[i][layer] = np.ascontiguousarray(values[i, :count])
        return out

    def _batch_states(self, waves: Sequence[np.ndarray], lengths: list[int], layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """``{layer: [B, F_max, dim]}`` of prepared waves (the front end's part of :meth:`extract_batch`)."""
        return self.hidden_states(self._pad(waves, lengths), lengths, layers)

    def _pad(self, waves: Sequence[np.ndarray], lengths: list[int]) -> torch.Tensor:
        """Right-pad with zeros: ``[B, T_max]``."""
        batch = np.zeros((len(waves), max(lengths)), dtype=np.float32)
        for i, wave in enumerate(waves):
            batch[i, : lengths[i]] = wave
        return torch.from_numpy(batch).to(self.torch_device, self.torch_dtype)

    def conv_features(self, batch: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        """CNN front end ``[B, T] -> [B, C, F_max]`` with per-utterance GroupNorm statistics."""
        if self.cpu_kernels is not None:
            return self.cpu_kernels.conv_features(batch, lengths)
        return cnn_features(self.model.feature_extractor.conv_layers, batch, lengths)

    def hidden_states(self, batch: torch.Tensor, lengths: Sequence[int], layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """``{layer: [B, F_max, dim]}`` for a padded batch; blocks past ``max(layers)`` never run."""
        if self.batch_cnn or len(lengths) == 1:
            features = self.conv_features(batch, lengths).transpose(1, 2)
        else:
            per_utt = [self.conv_features(batch[i: i + 1, :n], [n])[0].transpose(0, 1) for i, n in enumerate(lengths)]
            features = nn.utils.rnn.pad_sequence(per_utt, batch_first=True)
        projected = self.model.feature_projection(features)
        hidden = projected[0] if isinstance(projected, tuple) else projected
        frames = torch.tensor([self.info.num_frames(n) for n in lengths], device=hidden.device)
        mask = None
        if len(set(lengths)) > 1:
            mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < frames[:, None]
        return self._run_encoder(hidden, mask, layers)

    def _run_encoder(self, hidden: torch.Tensor, mask: torch.Tensor | None, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        blocks = self.model.encoder.layers
        wanted, deepest = set(layers), max(layers)
        captured: dict[int, torch.Tensor] = {}

        def take_input(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            state = args[0] if args else kwargs["hidden_states"]
            if 0 in wanted:
                captured[0] = state.clone()
            if deepest == 0:
                raise _EnoughLayers

        def make_output_hook(index: int):
            def take_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
                state = output[0] if isinstance(output, tuple) else output
                if index in wanted:
                    captured[index] = state
                if index == deepest:
                    raise _EnoughLayers

            return take_output

        handles = [blocks[0].register_forward_pre_hook(take_input, with_kwargs=True)]
        handles += [blocks[i - 1].register_forward_hook(make_output_hook(i)) for i in range(1, deepest + 1)]
        self._pos_mask = mask
        try:
            self.model.encoder(hidden, attention_mask=mask)
        except _EnoughLayers:
            pass
        finally:
            self._pos_mask = None
            for handle in handles:
                handle.remove()
        missing = wanted - set(captured)
        if missing:  # pragma: no cover - would mean an unexpected encoder structure
            raise RuntimeError(f"{self.info.name}: layers {sorted(missing)} were not produced")
        return captured


def zero_padded_frames_in_convs(root: nn.Module, current_mask: Callable[[], torch.Tensor | None]) -> None:
    """Before every zero-padded temporal convolution under ``root``, multiply its input ``[B, C, F]`` by
    ``current_mask()`` (bool ``[B, F]``, True on valid frames; None or another length: left as is).

    Such convolutions (the positional convolution, each layer of data2vec-audio's multi-layer one,
    conformer blocks' depthwise convolutions) see zeros beyond the end of a lone utterance; in a
    padded batch they must see zeros there too.
    """

    def zero_padding(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        mask = current_mask()
        if mask is None or args[0].shape[-1] != mask.shape[-1]:
            return None
        return (args[0] * mask[:, None, :].to(args[0].dtype),) + tuple(args[1:])

    for module in root.modules():
        if is_temporal_padded(module):
            module.register_forward_pre_hook(zero_padding)


def prepare_model(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Inference copy of the weights: eval mode, on ``device``, in ``dtype``, weight norm folded in.

    Low precision stores the weights in ``dtype`` (faster on CPU than autocast, which re-casts
    every weight at every call); LayerNorm/GroupNorm statistics are still accumulated in fp32
    by torch's kernels and by :func:`~speechunits.encoders.front_end.masked_group_norm`. bf16 on
    CPU keeps grouped convolutions with few channels per group in fp32, where torch's bf16 kernel
    is wrong (:mod:`speechunits.encoders.cpu.grouped_conv`).
    """
    from torch.nn.utils import parametrize

    from speechunits.encoders.cpu.grouped_conv import keep_fragile_grouped_convs_fp32

    model = model.eval()
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    model = model.to(device=device, dtype=dtype)
    if device.type == "cpu" and dtype == torch.bfloat16:
        keep_fragile_grouped_convs_fp32(model)
    return model

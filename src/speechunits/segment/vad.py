"""silero-vad: speech probability per 32 ms window, whole or streamed.

The model is the TorchScript file that the ``silero-vad`` wheel ships
(``silero_vad/data/silero_vad.jit``), loaded with :func:`torch.jit.load`; nothing else of the
package is used (its audio helpers need torchaudio, which this project does not install).
Install it with the ``[vad]`` extra.

The model reads 16 kHz audio in windows of 512 samples, each preceded by the 64 samples
before it (zeros before the first), and carries an LSTM state from window to window; the last
partial window is padded with zeros, as silero-vad's own ``audio_forward`` does. Everything
but the LSTM depends on one window only, so a block of windows goes through the convolutional
front end in one batch and through the LSTM (the model's own cell weights in
:class:`torch.nn.LSTM`) in one call: the same numbers (within float rounding) as the
window-by-window loop, many times faster. ``batched=False`` runs the model's own per-window
``forward`` instead.
"""
from __future__ import annotations

import hashlib
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speechunits.errors import SpeechUnitsError

if TYPE_CHECKING:
    import torch

    from speechunits.audio import Audio

SAMPLE_RATE = 16000
#: Samples per window at 16 kHz (32 ms).
WINDOW = 512
#: Samples of the previous window the model sees before each window.
CONTEXT = 64
WINDOW_S = WINDOW / SAMPLE_RATE
MODEL_FILE = "silero_vad.jit"


def model_path() -> Path:
    """The TorchScript model inside the installed ``silero-vad`` package.

    Found without importing the package: its ``__init__`` calls ``torch.set_num_threads(1)``,
    which would slow every later torch op of this process.
    """
    spec = find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise SpeechUnitsError("segmenting needs silero-vad: pip install -c constraints.txt 'speechunits[vad]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODEL_FILE
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: the installed silero-vad has no {MODEL_FILE}")
    return path


class SileroVAD:
    """The silero-vad model (CPU, fp32, inference only).

    ``SileroVAD.load()`` reads the packaged model; :meth:`speech_probabilities` runs it over
    one :class:`Audio`; :meth:`stream` gives a :class:`VADStream` for audio that arrives in
    blocks (hour-long files).
    """

    def __init__(self, module: "torch.jit.ScriptModule", identity: str, batched: bool = True, threads: int = 1):
        import torch

        if threads < 1:
            raise SpeechUnitsError(f"VAD threads must be >= 1, got {threads}")
        self.identity = identity
        self.batched = batched
        self.threads = threads
        try:  # the 16 kHz network: forward(x [B, 576], state [2, B, 128]) -> (p [B, 1], state)
            self._net = module._model
            cell = self._net.decoder.rnn
            _ = (self._net.encoder, self._net.run_extractors, self._net.decoder.decoder, cell.weight_ih)
        except AttributeError as exc:
            raise SpeechUnitsError(
                f"{identity}: not the model layout this code was written for (silero-vad 6.2; {exc})") from None
        self._lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1])
        with torch.no_grad():
            self._lstm.weight_ih_l0.copy_(cell.weight_ih)
            self._lstm.weight_hh_l0.copy_(cell.weight_hh)
            self._lstm.bias_ih_l0.copy_(cell.bias_ih)
            self._lstm.bias_hh_l0.copy_(cell.bias_hh)
        self._lstm.eval()
        self.state_dim = cell.weight_hh.shape[1]

    @classmethod
    def load(cls, batched: bool = True, threads: int = 1) -> "SileroVAD":
        """Load the model shipped in the ``silero-vad`` wheel (``[vad]`` extra).

        ``threads``: torch threads while the model runs (the process's setting is restored
        after each block). The network is small: more threads rarely help, and on a busy
        machine they wait on each other (one file per process scales instead).
        """
        import torch

        path = model_path()
        data = path.read_bytes()
        with warnings.catch_warnings():
            # The wheel ships TorchScript (and ONNX), nothing torch.export could read instead.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()
        from importlib.metadata import version

        identity = f"silero-vad {version('silero-vad')} {MODEL_FILE} sha256:{hashlib.sha256(data).hexdigest()[:16]}"
        return cls(module, identity, batched, threads)

    def stream(self) -> "VADStream":
        """A fresh stream (zero state, zero context)."""
        return VADStream(self)

    def speech_probabilities(self, audio: "Audio") -> np.ndarray:
        """Speech probability of each 32 ms window of ``audio`` (resampled to 16 kHz).

        Returns:
            float32 ``[ceil(T16 / 512)]`` where ``T16`` is the length at 16 kHz; window ``i``
            covers ``[i * 0.032, (i + 1) * 0.032)`` seconds.
        """
        stream = self.stream()
        head = stream.feed(audio.resample(SAMPLE_RATE).samples)
        return np.concatenate([head, stream.finish()])

    def _windows(self, frames: "torch.Tensor", state: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Probabilities of ``frames`` ``[N, CONTEXT + WINDOW]`` in order, from ``state`` ``[2, 1, H]``."""
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._run_windows(frames, state)
        finally:
            torch.set_num_threads(previous)

    def _run_windows(self, frames: "torch.Tensor", state: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        with torch.inference_mode():
            if not self.batched:
                probs = []
                for frame in frames:
                    p, state = self._net(frame[None], state)
                    probs.append(p[:, 0])
                return torch.cat(probs), state
            net = self._net
            feats = net.encoder(net.run_extractors(frames))[..., 0]  # [N, H]
            hidden, (h, c) = self._lstm(feats, (state[0], state[1]))
            probs = net.decoder.decoder(hidden[..., None]).mean(dim=(1, 2))  # relu, 1x1 conv, sigmoid
            return probs, torch.stack([h, c])


class VADStream:
    """Feed 16 kHz samples in any block sizes; get each complete window's probability.

    ``feed`` returns the probabilities of the windows it completed; ``finish`` those of the
    last partial window (zero-padded, none if the audio was a whole number of windows).
    Probabilities do not depend on how the audio was split into blocks.
    """

    def __init__(self, vad: SileroVAD):
        import torch

        self._vad = vad
        self._state = torch.zeros(2, 1, vad.state_dim)
        self._pending = np.zeros(CONTEXT, dtype=np.float32)  # context + samples not yet in a window
        self.samples_fed = 0

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Add mono float32 16 kHz samples ``[T]``; returns float32 ``[windows completed]``."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise SpeechUnitsError(f"VAD input must be mono samples [T], got shape {samples.shape}")
        self.samples_fed += samples.size
        buffer = np.concatenate([self._pending, samples])
        count = (buffer.size - CONTEXT) // WINDOW
        if count == 0:
            self._pending = buffer
            return np.zeros(0, dtype=np.float32)
        probs = self._run(buffer[: CONTEXT + count * WINDOW], count)
        self._pending = buffer[count * WINDOW:]
        return probs

    def finish(self) -> np.ndarray:
        """Probability of the zero-padded last partial window (``[0]`` or ``[1]``); ends the stream."""
        rest = self._pending.size - CONTEXT
        if rest == 0:
            return np.zeros(0, dtype=np.float32)
        buffer = np.concatenate([self._pending, np.zeros(WINDOW - rest, dtype=np.float32)])
        self._pending = np.zeros(CONTEXT, dtype=np.float32)
        return self._run(buffer, 1)

    def _run(self, buffer: np.ndarray, count: int) -> np.ndarray:
        import torch

        frames = torch.from_numpy(buffer).unfold(0, CONTEXT + WINDOW, WINDOW)[:count]  # [count, 576]
        probs, self._state = self._vad._windows(frames, self._state)
        return probs.numpy().astype(np.float32, copy=False)

"""Shared test fixtures: tiny random-initialised HF encoders and small audio files.

No test touches the network: models are built from configs and saved to temp dirs.

Tests leave no process-wide state behind:

* ``HOME`` and every cache directory libraries derive from it (XDG, Hugging Face, torch,
  matplotlib, the synthetic-corpus cache of :mod:`speechunits.synth.testing`) point into a
  temporary directory for the session, set before collection (libraries read them at import)
  and removed at the end. An explicitly set ``SPEECHUNITS_CACHE`` is kept (a persistent synth
  cache across sessions is opt-in).
* torch's intra-op thread count is restored after every test and every module (fixtures and
  tests that call ``torch.set_num_threads`` would otherwise change it for all later tests).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

#: Environment variables pointed into the session's temporary home (see the module docstring).
_HOME_VARS = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "HF_HOME", "TORCH_HOME", "MPLCONFIGDIR",
              "SPEECHUNITS_CACHE")
_saved_env: dict[str, str | None] = {}
_temp_home: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _temp_home
    _temp_home = Path(tempfile.mkdtemp(prefix="speechunits-tests-home-"))
    targets = {
        "HOME": _temp_home,
        "XDG_CACHE_HOME": _temp_home / ".cache",
        "XDG_CONFIG_HOME": _temp_home / ".config",
        "XDG_DATA_HOME": _temp_home / ".local" / "share",
        "HF_HOME": _temp_home / ".cache" / "huggingface",
        "TORCH_HOME": _temp_home / ".cache" / "torch",
        "MPLCONFIGDIR": _temp_home / ".config" / "matplotlib",
        "SPEECHUNITS_CACHE": _temp_home / ".cache" / "speechunits",
    }
    for name in _HOME_VARS:
        _saved_env[name] = os.environ.get(name)
        if name == "SPEECHUNITS_CACHE" and _saved_env[name]:
            continue
        os.environ[name] = str(targets[name])


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if _temp_home is not None:
        shutil.rmtree(_temp_home, ignore_errors=True)


def _restore_threads():
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads_per_module():
    """Undo ``torch.set_num_threads`` in module-scoped fixtures once the module is done."""
    yield from _restore_threads()


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Undo ``torch.set_num_threads`` in a test (or its function-scoped fixtures)."""
    yield from _restore_threads()


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago (for torchrun's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: bf16 against fp32 features of the tests' tiny random HuBERTs: relative L2 over all frames of one
#: layer. Measured (torch 2.13, AVX512-BF16 CPU; every layer; optimised CPU kernels and transformers'
#: own modules; group- and layer-norm front ends; the waves of test_encoders_hf, test_cpu_kernels and
#: test_time_major_conv): 0.9 % to 1.7 %. The bound is 1.5x the largest: beyond it is more than bf16
#: rounding (a wrong cast, an fp8 path, a norm not accumulated in fp32). docs/encoders.md's ~1.3 % is a
#: HuBERT-base-sized model's (layer 6); these tiny random models are not that model. (Other tiny
#: families round differently: 2.4 % for the layer-norm wav2vec 2.0 and the WavLM.)
BF16_MAX_REL_L2 = 0.025
#: Below this bf16 did not run at all (fp32 summation-order differences are ~1e-6).
BF16_MIN_REL_L2 = 1e-3


def make_tiny_hf_model(out_dir: Path, family: str = "hubert", norm: str = "group", seed: int = 0,
                       num_layers: int = 4, hidden: int = 32) -> Path:
    """Save a tiny random-initialised SSL model + preprocessor_config.json to ``out_dir``.

    Args:
        family: "hubert", "wav2vec2", "wavlm" or "data2vec-audio".
        norm: "group" (HuBERT/wav2vec2-base style: no attention mask, do_normalize False)
            or "layer" (large-model style: stable layer norm, attention mask, do_normalize True).
    """
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        do_stable_layer_norm=(norm == "layer"),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
    )
    config_cls, model_cls = {
        "hubert": (tf.HubertConfig, tf.HubertModel),
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
        "wavlm": (tf.WavLMConfig, tf.WavLMModel),
        "data2vec-audio": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel),
    }[family]
    if family == "data2vec-audio":
        common.pop("do_stable_layer_norm")
        common["num_conv_pos_embeddings"] = 5
        common["conv_pos_kernel_size"] = 5
    model = model_cls(config_cls(**common)).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tf.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=(norm == "layer"),
        return_attention_mask=(norm == "layer"),
    ).save_pretrained(out_dir)
    return out_dir


def make_tiny_conformer(out_dir: Path, family: str = "w2v-bert", position: str = "relative_key", seed: int = 0,
                        num_layers: int = 3, hidden: int = 32, stride: int = 2) -> Path:
    """Save a tiny random-initialised conformer SSL model + its feature extractor to ``out_dir``.

    Args:
        family: ``"w2v-bert"`` (``Wav2Vec2BertModel``: filterbank input, ``stride`` frames stacked;
            positions ``relative_key``, ``rotary`` or ``relative``) or ``"wav2vec2-conformer"``
            (waveform CNN; positions ``relative`` or ``rotary``).
    """
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=2 * hidden,
                  conv_depthwise_kernel_size=5, position_embeddings_type=position, hidden_dropout=0.0,
                  activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
    if family == "w2v-bert":
        config = tf.Wav2Vec2BertConfig(**common, feature_projection_input_dim=80 * stride,
                                       left_max_position_embeddings=8, right_max_position_embeddings=4)
        model, extractor = tf.Wav2Vec2BertModel(config), tf.SeamlessM4TFeatureExtractor(stride=stride)
    else:
        config = tf.Wav2Vec2ConformerConfig(**common, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                            num_conv_pos_embedding_groups=2)
        model, extractor = tf.Wav2Vec2ConformerModel(config), tf.Wav2Vec2FeatureExtractor()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out_dir)
    extractor.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Group-norm HuBERT (HuBERT-base style), 4 layers, dim 32."""
    return make_tiny_hf_model(tmp_path_factory.mktemp("tiny_hubert"), "hubert", "group")


@pytest.fixture(scope="session")
def tiny_wav2vec2_layernorm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Layer-norm wav2vec 2.0 (large style: attention mask, do_normalize), 4 layers, dim 32."""
    return make_tiny_hf_model(tmp_path_factory.mktemp("tiny_w2v2_ln"), "wav2vec2", "layer")


def write_tone(path: Path, seconds: float, sample_rate: int = 16000, freq: float = 220.0,
               channels: int = 1, seed: int = 0) -> Path:
    """Write a noisy tone (deterministic) to ``path``; format from the extension."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    data = np.stack([mono * (1 + 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else mono
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data.astype(np.float32), sample_rate)
    return path


@pytest.fixture()
def tone_dir(tmp_path: Path) -> Path:
    """Five 16 kHz mono wavs of 0.5–3 s under ``tmp_path/audio`` (one in a subdirectory)."""
    root = tmp_path / "audio"
    for i, secs in enumerate([0.5, 1.2, 3.0, 0.8, 2.1]):
        name = f"sub/utt{i}.wav" if i == 3 else f"utt{i}.wav"
        write_tone(root / name, secs, freq=150 + 40 * i, seed=i)
    return root


def cli_error(argv: list[str], caplog: pytest.LogCaptureFixture) -> str:
    """Run ``speechunits ARGV`` expecting a user error: exit status 2; returns the error it logged last.

    Tests check the message, so that a command refused for another reason than the one under
    test (an earlier check, a missing file the test meant to create) does not pass.
    """
    from speechunits.cli.main import main

    caplog.clear()
    with caplog.at_level(logging.ERROR):
        status = main(argv)
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert status == 2 and errors, (status, errors)
    return errors[-1]


#: Environment of the CLI subprocesses the kill tests start (one thread each: predictable on 2 cores).
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def probes_train_on(source: Path | str, out: Path, tasks: dict[str, list[str]]) -> None:
    """Train a two-step MFCC probe of each task on ``source`` with the labels it carries (plus the task's
    extra arguments) and check that every utterance had its label: an input layout's labels test."""
    import json

    from speechunits.cli.main import main

    for task, extra in tasks.items():
        assert main(["probe", "train", task, str(source), "--encoder", "mfcc", "-o", str(out / task),
                     "--max-steps", "2", "--device", "cpu", "--quiet", *extra]) == 0
        assert json.loads((out / task / "probe.json").read_text())["missing_labels"] == 0


def run_alone(command: list[str]) -> int:
    """Run ``command`` to the end in a subprocess; its return code."""
    return subprocess.run(command, env=dict(os.environ, **SUBPROCESS_ENV), stdout=subprocess.DEVNULL,
                          timeout=600).returncode


def kill_when(command: list[str], ready, timeout: float = 240.0, log: Path | None = None) -> int:
    """Start ``command``, SIGKILL it as soon as ``ready()``; its return code (-SIGKILL when killed).

    With ``log``, its stdout and stderr go to that file. Fails if ``ready()`` does not hold within
    ``timeout`` seconds while it still runs (the message ends with the log's tail)."""
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(command, env=dict(os.environ, **SUBPROCESS_ENV), stdout=out,
                                stderr=subprocess.STDOUT if log else subprocess.PIPE)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if ready():
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                assert time.monotonic() < deadline, (f"{command}: not ready after {timeout:g} s\n"
                                                     + (log.read_text()[-3000:] if log else ""))
                time.sleep(0.002)
            return proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def leaf_parsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """``(command words, parser)`` of every leaf command under ``parser`` (``("units", "export")`` ...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from leaf_parsers(child, prefix + (name,))

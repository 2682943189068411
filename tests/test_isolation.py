"""Tests leave no process-wide state behind (see tests/conftest.py): caches, HOME, torch threads."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from conftest import free_port

#: torch's thread count at collection time, before any test or fixture ran.
THREADS_AT_START = torch.get_num_threads()


def test_home_and_caches_point_into_a_session_temp_dir():
    from speechunits.synth.testing import cache_root

    home = Path(os.environ["HOME"])
    assert home.name.startswith("speechunits-tests-home-") and Path.home() == home
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HF_HOME", "TORCH_HOME", "MPLCONFIGDIR"):
        assert Path(os.environ[name]).is_relative_to(home), name
    if not os.environ.get("SPEECHUNITS_CACHE", "").startswith(str(home)):
        pytest.skip("SPEECHUNITS_CACHE was set explicitly (a persistent synth cache, opt-in)")
    assert cache_root().is_relative_to(home)


def test_hf_and_matplotlib_resolve_their_caches_there():
    home = Path(os.environ["HOME"])
    import huggingface_hub.constants

    assert Path(huggingface_hub.constants.HF_HOME).is_relative_to(home)
    matplotlib = pytest.importorskip("matplotlib")
    assert Path(matplotlib.get_configdir()).is_relative_to(home)


def test_a_test_that_changes_torch_threads():
    torch.set_num_threads(2 if THREADS_AT_START == 1 else 1)
    assert torch.get_num_threads() != THREADS_AT_START


def test_the_next_test_sees_them_restored():
    assert torch.get_num_threads() == THREADS_AT_START


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536

"""Each benchmark script's ``--quick`` mode runs to the end (slow: ``make test-all``).

The scripts under bench/ are not imported by the library or its other tests, so a change to a
helper they share (bench/probe.py's ``Bench``, say) can break one unseen until someone needs its
figures. ``--quick`` shrinks corpus, models and budgets to prove every step still runs; the
figures it prints mean nothing and are not checked here.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")  # every script synthesises its corpus

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["lm", "probe", "probe_augment_dev", "probe_lm", "probe_units_dev", "seq2seq", "vocoder"]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # bench/vocoder.py --quick takes ~10 min beside other work on 2 cores
@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_quick_mode_runs(script: str, tmp_path: Path) -> None:
    out = tmp_path / script
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"bench/{script}.py --quick failed:\n{done.stderr[-3000:]}"
    assert out.is_dir() and any(out.iterdir()), f"bench/{script}.py --quick wrote nothing under --out"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_gpu_pretrain_script_runs_on_the_cpu_and_its_model_comes_back(tmp_path: Path) -> None:
    """bench/gpu_pretrain.py is spent in one device call: its CPU rehearsal must run, and the float16 model it
    returns must restore to a model directory that loads and encodes."""
    import numpy as np

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out, work = tmp_path / "device_out", tmp_path / "work"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_pretrain.py"), "--out", str(out), "--work",
                           str(work), "--device", "cpu", "--corpus-minutes", "2", "--speakers", "3", "--minutes", "0.1",
                           "--loader-workers", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1100,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "model" / "model.safetensors").stat().st_size < 16 * 2**20  # the device tool's file limit
    restored = tmp_path / "model"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_pretrain.py"), "--restore", str(out), "-o",
                           str(restored)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    from speechunits import load_encoder

    features = load_encoder(str(restored), device="cpu").extract(np.zeros(16000, np.float32), layers=[2])[2]
    assert features.shape[0] > 0 and np.isfinite(features).all()
    # run again on the same machine with no time for iteration 2: iteration 1 alone comes back and restores
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_pretrain.py"), "--out", str(tmp_path / "again"),
                           "--work", str(work), "--device", "cpu", "--minutes", "0.1", "--deadline", "0.01",
                           "--loader-workers", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "again" / "iter1" / "config.json").is_file() and not (tmp_path / "again" / "model").exists()
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_pretrain.py"), "--restore",
                           str(tmp_path / "again"), "-o", str(tmp_path / "model1")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "model1" / "model.safetensors").is_file(), done.stderr[-3000:]

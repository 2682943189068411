"""DDP via torchrun (2 CPU processes, gloo) equals one process accumulating 2 micro-batches (with and without
batches built by loader workers)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = """
import json, sys
from speechunits.pretrain import PretrainConfig, pretrain
cfg = PretrainConfig.from_dict(json.loads(sys.argv[3]))
pretrain(sys.argv[1], sys.argv[2], cfg, device="cpu", quiet=True, loader_workers=int(sys.argv[4]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("loader_workers", [0, 1])
def test_ddp_equals_accumulation(tmp_path: Path, tone_dir: Path, loader_workers: int):
    """With loader workers, each rank's prefetcher must build its own indices (rank, rank + world, ...)."""
    from safetensors.torch import load_file

    from conftest import free_port
    from speechunits.pretrain import pretrain
    from speechunits.training.checkpoint import read_state
    from test_pretrain import small_config

    # no dropout: the ranks' dropout RNG streams differ from one process's stream
    ddp_cfg = small_config(steps=2, dropout=0.0, bf16=False)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(script), str(tone_dir), str(tmp_path / "ddp"), json.dumps(ddp_cfg.to_dict()), str(loader_workers)]
    done = subprocess.run(cmd, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "built inline" not in done.stderr  # every batch came from the rank's own prefetched sequence
    assert read_state(tmp_path / "ddp")["world_size"] == 2

    single_cfg = small_config(steps=2, dropout=0.0, bf16=False, accumulate=2)
    single = pretrain(tone_dir, tmp_path / "single", single_cfg, device="cpu", quiet=True)
    ddp_log = [json.loads(line) for line in (tmp_path / "ddp" / "training" / "log.jsonl").read_text().splitlines()]
    assert [round(e["loss"], 4) for e in ddp_log] == [round(h.loss, 4) for h in single.history]
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "single" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)

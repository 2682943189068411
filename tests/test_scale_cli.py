"""The --backend option family: validation, ScaleOptions, and the local backend never importing Ray."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from speechunits.cli.scale_options import add_scale_options, scale_options
from speechunits.errors import SpeechUnitsError
from speechunits.scale.options import ScaleOptions


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_scale_options(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_local_and_overlapped() -> None:
    options = scale_options(parse())
    assert options == ScaleOptions() and options.backend == "local" and options.loader_workers is None
    assert options.local_loader_workers() >= 1


@pytest.mark.parametrize("argv, match", [
    (("--ray-address", "auto"), "--ray-address: only with --backend ray"),
    (("--num-workers", "2"), "--num-workers: only with --backend ray"),
    (("--gpus-per-worker", "1"), "--gpus-per-worker"),
    (("--loader-workers", "-1"), "--loader-workers must be >= 0"),
])
def test_bad_local_options_are_refused(argv: tuple[str, ...], match: str) -> None:
    with pytest.raises(SpeechUnitsError, match=match):
        scale_options(parse(*argv))


def test_scale_options_check_themselves() -> None:
    """The library type refuses what the CLI refuses, with the same option names."""
    with pytest.raises(SpeechUnitsError, match="--backend: expected one of local, ray"):
        ScaleOptions(backend="slurm")
    with pytest.raises(SpeechUnitsError, match="--num-workers, --rows-per-call: only with --backend ray"):
        ScaleOptions(num_workers=2, rows_per_call=4)
    assert ScaleOptions(loader_workers=0).local_loader_workers() == 0


@pytest.mark.parametrize("argv, match", [
    (("--backend", "ray", "--num-workers", "0"), "--num-workers must be >= 1"),
    (("--backend", "ray", "--gpus-per-worker", "-0.5"), "--gpus-per-worker must be >= 0"),
    (("--backend", "ray", "--cpus-per-worker", "0"), "--cpus-per-worker must be > 0"),
])
def test_bad_ray_options_are_refused(argv: tuple[str, ...], match: str) -> None:
    with pytest.raises(SpeechUnitsError, match=match):
        scale_options(parse(*argv)).ray_options()


def test_ray_options_are_carried() -> None:
    opts = scale_options(parse("--backend", "ray", "--ray-address", "head:6379", "--num-workers", "3",
                               "--gpus-per-worker", "0.5", "--cpus-per-worker", "2", "--loader-workers", "4"))
    ray = opts.ray_options(device="cuda")
    assert (ray.address, ray.num_workers, ray.gpus_per_worker, ray.cpus_per_worker, ray.loader_workers,
            ray.device) == ("head:6379", 3, 0.5, 2.0, 4, "cuda")


def test_scale_package_has_no_argparse() -> None:
    """Library code never parses argv: nothing under speechunits/scale imports argparse."""
    import speechunits.scale

    root = Path(speechunits.scale.__file__).parent
    offenders = [p.name for p in root.glob("*.py") if "argparse" in p.read_text(encoding="utf-8")]
    assert offenders == []


LOCAL_SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
from speechunits.cli.main import main
from speechunits.units.store import UnitStore

common = ["--quiet"]
codes = [
    main(["features", {corpus!r}, "--encoder", {model!r}, "--layer", "2", "-o", {out!r} + "/f", *common]),
    main(["fit", {corpus!r}, "--encoder", {model!r}, "--layer", "2", "--k", "4", "--max-frames", "300",
          "--iters", "5", "-o", {out!r} + "/cb", *common]),
    main(["encode", {corpus!r}, "--codebook", {out!r} + "/cb", "-o", {out!r} + "/u", *common]),
]
print(json.dumps({{"codes": codes, "ray": "ray" in sys.modules, "stored": len(UnitStore.open({out!r} + "/u"))}}))
"""


def test_local_backend_never_imports_ray(tiny_hubert_dir: Path, tone_dir: Path, tmp_path: Path) -> None:
    """features, fit and encode with the default (local, overlapped) backend, in a fresh process."""
    script = LOCAL_SCRIPT.format(model=str(tiny_hubert_dir), corpus=str(tone_dir), out=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 0], "ray": False, "stored": 5}


def test_cli_overlapped_loader_writes_the_same_files(tiny_hubert_dir: Path, tone_dir: Path, tmp_path: Path) -> None:
    from speechunits.cli.main import main

    for workers in ("0", "3"):
        assert main(["features", str(tone_dir), "--encoder", str(tiny_hubert_dir), "--layer", "1,3",
                     "-o", str(tmp_path / workers), "--loader-workers", workers, "--quiet"]) == 0
    serial = {p.name: p.read_bytes() for p in (tmp_path / "0").iterdir()}
    overlapped = {p.name: p.read_bytes() for p in (tmp_path / "3").iterdir()}
    assert serial.keys() == overlapped.keys() and "layer3.npy" in serial
    for name in serial:  # arrays, lengths, manifest, errors and metadata: byte for byte
        assert overlapped[name] == serial[name], name


def test_cli_refuses_ray_options_without_ray_backend(tone_dir: Path, tmp_path: Path) -> None:
    from speechunits.cli.main import main

    assert main(["features", str(tone_dir), "--encoder", "mfcc", "-o", str(tmp_path / "f"),
                 "--num-workers", "2", "--quiet"]) == 2
    assert not (tmp_path / "f" / "features.json").exists()


@pytest.mark.parametrize("resources, kwargs, expected", [
    ({"CPU": 8.0}, {}, (8, 0.0, 8, 0.0, "cpu")),
    ({"CPU": 8.0}, {"cpus_per_worker": 2.0}, (4, 0.0, 4, 0.0, "cpu")),
    ({"CPU": 16.0, "GPU": 4.0}, {}, (4, 1.0, 12, 1.0, "cuda")),
    ({"CPU": 16.0, "GPU": 4.0}, {"gpus_per_worker": 0.5}, (8, 0.5, 8, 1.0, "cuda")),
    ({"CPU": 16.0, "GPU": 4.0}, {"device": "cpu"}, (16, 0.0, 16, 0.0, "cpu")),
    ({"CPU": 16.0, "GPU": 4.0}, {"num_workers": 2, "loader_workers": 3}, (2, 1.0, 3, 1.0, "cuda")),
])
def test_worker_counts_follow_the_cluster(monkeypatch: pytest.MonkeyPatch, resources: dict, kwargs: dict,
                                          expected: tuple) -> None:
    from speechunits.scale import ray_pipeline

    monkeypatch.setattr(ray_pipeline, "cluster_resources", lambda: resources)
    got = ray_pipeline.resolve_resources(ray_pipeline.RayOptions(**kwargs))
    assert (got.workers, got.gpus, got.loaders, got.decode_cpus, got.device) == expected


@pytest.mark.parametrize("resources, kwargs, match", [
    ({"CPU": 8.0, "GPU": 1.0}, {"gpus_per_worker": 2.0}, "has 1 GPU"),
    ({"CPU": 8.0}, {"device": "cuda"}, "no GPU"),
])
def test_impossible_resources_are_refused(monkeypatch: pytest.MonkeyPatch, resources: dict, kwargs: dict,
                                          match: str) -> None:
    from speechunits.scale import ray_pipeline

    monkeypatch.setattr(ray_pipeline, "cluster_resources", lambda: resources)
    with pytest.raises(SpeechUnitsError, match=match):
        ray_pipeline.resolve_resources(ray_pipeline.RayOptions(**kwargs))

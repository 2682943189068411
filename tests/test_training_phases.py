"""Multi-phase tasks in the one training loop (GANs): one optimizer per phase, exact resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.training.checkpoint import read_state, training_dir
from speechunits.training.config import OptimConfig
from speechunits.training.loop import Trainer
from speechunits.training.optim import make_optimizers
from speechunits.training.task import LossOutput

CPU = torch.device("cpu")


class ToyGAN(torch.nn.Module):
    """G maps noise to 2-d points, D scores them (with dropout, so the RNG matters)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.g = torch.nn.Linear(3, 2)
        self.d = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))

    def forward(self, batch: dict, phase: str) -> torch.Tensor:
        fake = self.g(batch["noise"] + 0.1 * torch.randn_like(batch["noise"]))
        if phase == "discriminator":
            return ((self.d(batch["real"]) - 1) ** 2).mean() + (self.d(fake.detach()) ** 2).mean()
        return ((self.d(fake) - 1) ** 2).mean()


class ToyTask:
    """Step 0: discriminator only; step 1: generator only; then both, discriminator first."""

    def batch(self, index: int) -> dict:
        rng = np.random.default_rng(index)
        return {"real": torch.tensor(rng.normal(3.0, 0.5, (8, 2)), dtype=torch.float32),
                "noise": torch.tensor(rng.normal(size=(8, 3)), dtype=torch.float32)}

    def phases(self, step: int) -> tuple[str, ...]:
        return {0: ("discriminator",), 1: ("generator",)}.get(step, ("discriminator", "generator"))

    def loss(self, model, batch, phase: str) -> LossOutput:
        loss = model(batch, phase)
        return LossOutput(loss=loss, count=1.0, metrics={f"{phase}_seen": (1.0, 1.0)}, amount=8.0)


def cfg(**kw) -> OptimConfig:
    base = dict(steps=6, lr=1e-2, warmup_steps=0, schedule="linear", bf16=False, log_every=1, checkpoint_every=100)
    base.update(kw)
    return OptimConfig(**base)


def trainer(model: ToyGAN, out: Path, **kw) -> Trainer:
    c = cfg(**kw)
    return Trainer(model, ToyTask(), c, out, device=CPU, quiet=True,
                   optimizer=make_optimizers({"generator": model.g, "discriminator": model.d}, c))


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_each_phase_updates_only_its_own_parameters(tmp_path: Path) -> None:
    model = ToyGAN()
    before = weights(model)
    t = trainer(model, None)
    t.step(0)  # discriminator only
    after_d = weights(model)
    assert all(torch.equal(before[k], after_d[k]) for k in before if k.startswith("g."))
    assert not all(torch.equal(before[k], after_d[k]) for k in before if k.startswith("d."))
    t.step(1)  # generator only
    after_g = weights(model)
    assert all(torch.equal(after_d[k], after_g[k]) for k in before if k.startswith("d."))
    assert not all(torch.equal(after_d[k], after_g[k]) for k in before if k.startswith("g."))
    entry = t.step(2)
    assert {"loss_discriminator", "loss_generator", "grad_norm_discriminator", "discriminator_seen"} <= set(entry.metrics)
    assert entry.loss == pytest.approx(entry.metrics["loss_generator"])
    assert entry.amount == 8.0  # the last phase's amount: the step's data counted once


def test_multi_phase_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full_model = ToyGAN()
    full = trainer(full_model, tmp_path / "full").run()

    class Crash(RuntimeError):
        pass

    def crash_at_4(entry):
        if entry.step == 4:
            raise Crash

    with pytest.raises(Crash):
        trainer(ToyGAN(), tmp_path / "part", checkpoint_every=3).run(on_step=crash_at_4)
    assert read_state(tmp_path / "part")["step"] == 3
    resumed_model = ToyGAN(seed=5)
    t = trainer(resumed_model, tmp_path / "part", checkpoint_every=3)
    start = int(t.restore()["step"])
    resumed = t.run(start)
    assert [h.loss for h in resumed.history] == [h.loss for h in full.history[3:]]
    a, b = weights(full_model), weights(resumed_model)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    saved = torch.load(training_dir(tmp_path / "part") / "optimizer.pt", weights_only=True)
    assert set(saved) == {"phases"} and set(saved["phases"]) == {"generator", "discriminator"}
    logged = [json.loads(line) for line in (training_dir(tmp_path / "full") / "log.jsonl").read_text().splitlines()]
    assert [("loss_discriminator" in e, "loss_generator" in e) for e in logged[:3]] == \
        [(True, False), (False, True), (True, True)]


def test_phase_task_and_optimizers_must_match() -> None:
    model = ToyGAN()
    with pytest.raises(SpeechUnitsError, match="multi-phase"):
        Trainer(model, ToyTask(), cfg(), None, device=CPU, quiet=True)  # one optimizer for a phased task

    class Plain:
        def batch(self, index):
            return {}

        def loss(self, model, batch):
            raise AssertionError

    with pytest.raises(SpeechUnitsError, match="multi-phase"):
        Trainer(model, Plain(), cfg(), None, device=CPU, quiet=True,
                optimizer=make_optimizers({"generator": model.g}, cfg()))
    t = Trainer(model, ToyTask(), cfg(), None, device=CPU, quiet=True,
                optimizer=make_optimizers({"generator": model.g}, cfg()))
    with pytest.raises(SpeechUnitsError, match="discriminator"):
        t.step(0)

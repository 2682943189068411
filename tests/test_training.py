"""The shared training loop, its checkpoint format, schedules and length-bucketed batches."""
from __future__ import annotations

import copy
import json
import logging
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.training.batching import LengthBucketSampler, mix_seed
from speechunits.training.checkpoint import load_optimizer, load_weights, read_state, training_dir
from speechunits.training.config import OptimConfig
from speechunits.training.loop import Trainer, cpu_denormals_flushed, step_records
from speechunits.training.optim import learning_rate
from speechunits.training.task import LossOutput, Task, move_to

CPU = torch.device("cpu")


class Regression:
    """``y = x . w + noise``; batch ``index`` is a pure function of ``(seed, index)``; summed squared error."""

    def __init__(self, seed: int = 0, batch_size: int = 4, dim: int = 3):
        self.seed, self.batch_size, self.dim = seed, batch_size, dim
        self.w = torch.tensor([1.0, -2.0, 0.5])[:dim]

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, index))
        x = torch.randn(self.batch_size, self.dim, generator=gen)
        return {"x": x, "y": x @ self.w + 0.01 * torch.randn(self.batch_size, generator=gen)}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> LossOutput:
        err = (model(batch["x"]).squeeze(-1).float() - batch["y"]) ** 2
        close = float((err.detach() < 0.1).sum())
        return LossOutput(err.sum(), err.numel(), {"close": (close, err.numel())}, amount=float(err.numel()))


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(16, 1))


def cfg(**overrides) -> OptimConfig:
    base = dict(steps=6, lr=0.02, warmup_steps=1, bf16=False, log_every=2, checkpoint_every=100, seed=3)
    base.update(overrides)
    return OptimConfig(**base)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_regression_is_a_task():
    assert isinstance(Regression(), Task)


# -- the loop ------------------------------------------------------------------------------------

def test_loss_falls():
    model = make_model()
    result = Trainer(model, Regression(), cfg(steps=80, lr=0.03, warmup_steps=0), None, device=CPU,
                     quiet=True).run()
    losses = [h.loss for h in result.history]
    assert len(losses) == 80 and np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])
    assert result.history[-1].metrics["close"] > result.history[0].metrics["close"]


def _clocked_trainer(monkeypatch, budget_s: float, **overrides) -> Trainer:
    """A trainer on a fake clock: before step s, s seconds of a ``budget_s`` budget are spent."""
    monkeypatch.setattr(Trainer, "_shared_fraction", lambda self, started: len(self._seen) / budget_s)
    trainer = Trainer(make_model(), Regression(), cfg(**overrides), None, device=CPU, quiet=True)
    trainer._seen = []
    original = trainer.step

    def step(index, fraction=0.0):
        trainer._seen.append(index)
        return original(index, fraction)

    trainer.step = step
    return trainer


def test_warmup_ends_once_its_share_of_the_time_budget_is_spent(monkeypatch):
    """A fake clock: before step s, s seconds of a 60 s budget are spent; 10 % ends a 1000-step warmup at 6."""
    trainer = _clocked_trainer(monkeypatch, 60.0, steps=10, lr=1.0, warmup_steps=1000, max_minutes=1.0,
                               warmup_fraction=0.1)
    lrs = [h.lr for h in trainer.run().history]
    assert lrs[:6] == pytest.approx([(s + 1) / 1000 for s in range(6)])  # warming up for 6 steps (6 s)
    assert trainer.cfg.warmup_steps == 6
    # then the linear decay over the rest: progress max((s - 6) / 4, s / 60)
    assert lrs[6:] == pytest.approx([1 - max((s - 6) / 4, s / 60) for s in range(6, 10)])
    without = _clocked_trainer(monkeypatch, 60.0, steps=10, lr=1.0, warmup_steps=1000, max_minutes=1.0)
    assert [h.lr for h in without.run().history][-1] == pytest.approx(10 / 1000)  # no fraction: all warmup


def test_step_schedule_ignores_the_clock_but_the_budget_still_stops(monkeypatch):
    """The fake clock above, 12 s of budget: with decay_by_time False the warmup runs its 2 steps and
    the decay follows (s - 2) / 18, as without a budget; at 12 s it stops."""
    trainer = _clocked_trainer(monkeypatch, 12.0, steps=20, lr=1.0, warmup_steps=2, max_minutes=0.2,
                               warmup_fraction=0.05, decay_by_time=False)
    result = trainer.run()
    by_steps = [learning_rate(s, OptimConfig(steps=20, warmup_steps=2, lr=1.0)) for s in range(12)]
    assert [h.lr for h in result.history] == pytest.approx(by_steps)
    assert by_steps[:3] == pytest.approx([0.5, 1.0, 1.0]) and by_steps[11] == pytest.approx(1 - 9 / 18)
    assert result.stop_reason == "time_budget" and result.steps_done == 12
    assert trainer.cfg.warmup_steps == 2  # the warmup was not cut by the clock


def test_accumulated_step_equals_hand_computed_gradient_and_log():
    """Two micro-batches: the gradient is the mean of their per-item means; the log sums, then divides."""
    task = Regression(batch_size=5)
    model = make_model()
    reference = copy.deepcopy(model).train()
    optim = cfg(steps=1, accumulate=2, grad_clip=1e9, lr=1e-3)
    result = Trainer(model, task, optim, None, device=CPU, quiet=True).run()
    # replay: the same RNG stream (seed + rank 0) for dropout, micro-batches 0 and 1 in order
    torch.manual_seed(optim.seed)
    errs = []
    for index in (0, 1):
        batch = task.batch(index)
        err = (reference(batch["x"]).squeeze(-1) - batch["y"]) ** 2
        (err.mean() / 2).backward()
        errs.append(err.detach())
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7, msg=name)
    entry = result.history[0]
    both = torch.cat(errs)
    assert entry.loss == pytest.approx(float(both.sum()) / 10, rel=1e-6)
    assert entry.metrics["close"] == pytest.approx(float((both < 0.1).sum()) / 10)
    assert entry.amount == 10 and entry.step == 1
    assert entry.lr == pytest.approx(1e-3)  # warmup 1: step 0 gets the full rate


def test_stop_and_resume_equals_uninterrupted(tmp_path: Path):
    """A run that dies after step 3 (last checkpoint at 2) and resumes repeats the uninterrupted run."""
    full_model = make_model()
    full = Trainer(full_model, Regression(), cfg(), tmp_path / "full", device=CPU, quiet=True).run()

    class Crash(RuntimeError):
        pass

    crashing = Trainer(make_model(), Regression(), cfg(checkpoint_every=2), tmp_path / "part", device=CPU, quiet=True)

    def crash_at_3(entry):
        crashing.record(entry.step, dev={"score": float(entry.step)})  # a trainer's own line beside the step's
        if entry.step == 3:
            raise Crash

    with pytest.raises(Crash):
        crashing.run(on_step=crash_at_3)
    assert read_state(tmp_path / "part")["step"] == 2
    with open(training_dir(tmp_path / "part") / "log.jsonl", "ab") as torn:  # a line cut by the crash, bytes lost
        torn.write(b'{"step": 4, "lo\n\xff\x00{"st')
    resumed_model = make_model(seed=99)  # other initial weights: the checkpoint must replace them
    trainer = Trainer(resumed_model, Regression(), cfg(checkpoint_every=2), tmp_path / "part", device=CPU,
                      quiet=True)
    start = int(trainer.restore()["step"])
    resumed = trainer.run(start)
    assert start == 2 and (resumed.steps_done, resumed.stop_reason) == (6, "max_steps")
    np.testing.assert_array_equal([h.loss for h in resumed.history], [h.loss for h in full.history[2:]])
    a, b = weights(full_model), weights(resumed_model)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    # the log holds every step once: the steps redone after the resume replace the lost ones
    logged = [json.loads(line) for line in (training_dir(tmp_path / "part") / "log.jsonl").read_text().splitlines()]
    # the dev lines of steps 1-2 stay, that of step 3 (redone) goes with its step line
    assert [e["step"] for e in logged] == [1, 1, 2, 2, 3, 4, 5, 6]
    assert [e["dev"]["score"] for e in logged if "dev" in e] == [1.0, 2.0]
    assert [e["step"] for e in step_records(training_dir(tmp_path / "part") / "log.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert step_records(tmp_path / "nowhere" / "log.jsonl") == []
    assert logged[-1]["loss"] == resumed.history[-1].loss and "close" in logged[-1]


def test_batches_built_by_loader_workers_give_the_same_run(tmp_path: Path):
    """Prefetching processes change where batches are built, not the run: the same losses and weights,
    with accumulation (so the prefetcher's index sequence has gaps of one step's micro-batches) and after
    a resume from a checkpoint (its first index is not 0)."""
    inline_model = make_model()
    inline = Trainer(inline_model, Regression(), cfg(accumulate=2), None, device=CPU, quiet=True).run()
    workers_model = make_model()
    workers = Trainer(workers_model, Regression(), cfg(accumulate=2), None, device=CPU, quiet=True,
                      loader_workers=2).run()
    assert [h.loss for h in workers.history] == [h.loss for h in inline.history]
    a, b = weights(inline_model), weights(workers_model)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    part = Trainer(make_model(), Regression(), cfg(accumulate=2), tmp_path / "part", device=CPU, quiet=True)
    part.run(on_step=lambda entry: entry.step == 3)  # stops and checkpoints after step 3
    resumed = Trainer(make_model(seed=5), Regression(), cfg(accumulate=2), tmp_path / "part", device=CPU,
                      quiet=True, loader_workers=1)
    rest = resumed.run(int(resumed.restore()["step"]))
    assert [h.loss for h in rest.history] == [h.loss for h in inline.history[3:]]
    with pytest.raises(SpeechUnitsError, match="--loader-workers"):
        Trainer(make_model(), Regression(), cfg(), None, device=CPU, loader_workers=-1)


def test_prefetcher_hands_over_batches_in_order_and_builds_any_other_inline(caplog):
    from speechunits.training.prefetch import BatchPrefetcher

    task = Regression()
    with BatchPrefetcher(task, first=1, stride=2, workers=2) as prefetcher:
        for index in (1, 3, 5):
            torch.testing.assert_close(prefetcher.get(index), task.batch(index), rtol=0, atol=0)
        with caplog.at_level(logging.WARNING):
            torch.testing.assert_close(prefetcher.get(4), task.batch(4), rtol=0, atol=0)  # not in its sequence
        assert "built inline" in caplog.text
        torch.testing.assert_close(prefetcher.get(7), task.batch(7), rtol=0, atol=0)  # the sequence goes on
    for bad in (dict(workers=0), dict(stride=0), dict(first=-1)):
        args = dict(first=0, stride=1, workers=1) | bad
        with pytest.raises(SpeechUnitsError):
            BatchPrefetcher(task, **args)


def test_time_budget_reports_steps_done(tmp_path: Path):
    result = Trainer(make_model(), Regression(), cfg(steps=50, max_minutes=1e-9), tmp_path / "m", device=CPU,
                     quiet=True).run()
    assert (result.steps_done, result.steps_max, result.stop_reason) == (1, 50, "time_budget")
    assert len(result.history) == 1 and read_state(tmp_path / "m")["step"] == 1


def test_on_step_can_stop_the_run(tmp_path: Path):
    """Early stopping: a callback (a dev evaluation, say) ends the run after step 3 with a checkpoint."""
    result = Trainer(make_model(), Regression(), cfg(steps=10), tmp_path / "m", device=CPU, quiet=True).run(
        on_step=lambda entry: entry.step == 3)
    assert (result.steps_done, result.steps_max, result.stop_reason) == (3, 10, "requested")
    assert read_state(tmp_path / "m")["step"] == 3


def _subnormal_survives() -> bool:
    """Whether float32 arithmetic on this thread keeps a subnormal (1e-39 < the smallest normal 1.18e-38)."""
    return bool((torch.tensor([1e-39]) * 1.0).item() != 0.0)


def test_cpu_training_flushes_subnormals_only_while_it_runs():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    assert _subnormal_survives()  # torch's default
    seen = []
    Trainer(make_model(), Regression(), cfg(steps=3), None, device=CPU, quiet=True).run(
        on_step=lambda entry: seen.append(_subnormal_survives()))
    assert seen == [False, False, False]  # flushed to zero during the steps (and dev evaluations)
    assert _subnormal_survives()  # and back to the default afterwards
    with cpu_denormals_flushed(torch.device("meta")):  # another device: untouched
        assert _subnormal_survives()
    torch.set_flush_denormal(True)  # already on (the CLI's training commands): still on after the run
    try:
        Trainer(make_model(), Regression(), cfg(steps=1), None, device=CPU, quiet=True).run()
        assert not _subnormal_survives()
    finally:
        torch.set_flush_denormal(False)


def test_non_finite_gradient_skips_the_update(caplog):
    class Exploding(Regression):
        def loss(self, model, batch):
            out = super().loss(model, batch)
            return LossOutput(out.loss * float("inf"), out.count)

    model = make_model()
    before = weights(model)
    with caplog.at_level(logging.WARNING, logger="speechunits.training.loop"):
        Trainer(model, Exploding(), cfg(steps=1), None, device=CPU, quiet=True).run()
    assert "non-finite gradient norm" in caplog.text
    for key, value in weights(model).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_bf16_autocast_runs():
    result = Trainer(make_model(), Regression(), cfg(steps=2, bf16=True), None, device=CPU, quiet=True).run()
    assert all(np.isfinite(h.loss) for h in result.history)


# -- checkpoint format -------------------------------------------------------------------------------

def test_checkpoint_files_state_and_export(tmp_path: Path):
    exported = []
    model = make_model()
    optim = cfg(steps=4, checkpoint_every=2)
    Trainer(model, Regression(), optim, tmp_path / "m", device=CPU, quiet=True,
            state={"consumes": {"kind": "vectors", "dim": 3}},
            export=lambda m, d: exported.append((m, d))).run()
    train_dir = training_dir(tmp_path / "m")
    for name in ("state.json", "model.safetensors", "optimizer.pt", "rng-rank0.safetensors", "log.jsonl"):
        assert (train_dir / name).is_file(), name
    assert not list(train_dir.glob("*.tmp"))
    state = read_state(tmp_path / "m")
    assert state["format_version"] == 2 and state["step"] == 4 and state["world_size"] == 1
    assert state["optim"] == optim.to_dict() and state["consumes"] == {"kind": "vectors", "dim": 3}
    assert [(m is model, d) for m, d in exported] == [(True, tmp_path / "m")] * 2  # steps 2 and 4
    # the optimizer state is plain tensors and numbers
    saved = torch.load(train_dir / "optimizer.pt", weights_only=True)
    assert len(saved["state"]) == len(list(model.parameters()))
    # weights round trip exactly into a fresh model
    fresh = make_model(seed=5)
    load_weights(tmp_path / "m", fresh)
    for key, value in weights(model).items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)


def test_a_crash_while_checkpointing_leaves_the_previous_checkpoint(tmp_path: Path):
    calls = []

    def export(model, out_dir):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing the step-4 checkpoint

    model = make_model()
    trainer = Trainer(model, Regression(), cfg(steps=4, checkpoint_every=2), tmp_path / "m", device=CPU, quiet=True,
                      export=export)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert read_state(tmp_path / "m")["step"] == 2
    resumed = Trainer(make_model(seed=1), Regression(), cfg(steps=4, checkpoint_every=2), tmp_path / "m",
                      device=CPU, quiet=True)
    assert resumed.restore()["step"] == 2  # weights, optimizer and RNG of step 2 load
    two_steps = make_model()
    Trainer(two_steps, Regression(), cfg(steps=4), None, device=CPU, quiet=True).run(
        on_step=lambda entry: entry.step == 2)
    for key, value in weights(two_steps).items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_checkpoint_errors(tmp_path: Path):
    with pytest.raises(SpeechUnitsError, match="no checkpoint"):
        read_state(tmp_path / "none")
    Trainer(make_model(), Regression(), cfg(steps=1), tmp_path / "m", device=CPU, quiet=True).run()
    with pytest.raises(SpeechUnitsError, match="does not match the model"):
        load_weights(tmp_path / "m", torch.nn.Linear(3, 1))
    state_path = training_dir(tmp_path / "m") / "state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "format_version": 1}))
    with pytest.raises(SpeechUnitsError, match="format 1"):
        read_state(tmp_path / "m")
    state_path.write_text("{not json")
    with pytest.raises(SpeechUnitsError, match="state.json: not valid JSON"):
        read_state(tmp_path / "m")
    # damaged weights and optimizer state: errors that name the file, not safetensors' or pickle's tracebacks
    weights_path = training_dir(tmp_path / "m") / "model.safetensors"
    weights_path.write_bytes(weights_path.read_bytes()[:40])
    with pytest.raises(SpeechUnitsError, match="model.safetensors: unreadable safetensors file"):
        load_weights(tmp_path / "m", make_model())
    optimizer_path = training_dir(tmp_path / "m") / "optimizer.pt"
    optimizer_path.write_bytes(optimizer_path.read_bytes()[:100])
    with pytest.raises(SpeechUnitsError, match="optimizer.pt: unreadable optimizer state"):
        load_optimizer(tmp_path / "m", torch.optim.AdamW(make_model().parameters()))
    with pytest.raises(SpeechUnitsError, match="no checkpoint directory"):
        Trainer(make_model(), Regression(), cfg(), None, device=CPU).restore()


# -- schedule and config -------------------------------------------------------------------------------

def test_schedules_by_hand():
    linear = OptimConfig(steps=10, warmup_steps=2, lr=1.0)
    assert [round(learning_rate(s, linear), 4) for s in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5,
                                                                     0.375, 0.25, 0.125]
    cosine = OptimConfig(steps=10, warmup_steps=2, lr=1.0, schedule="cosine")
    # progress (s - 2) / 8: 0 -> 1, 0.5 -> 0.5, 0.75 -> (1 + cos(3 pi / 4)) / 2
    assert learning_rate(2, cosine) == pytest.approx(1.0)
    assert learning_rate(6, cosine) == pytest.approx(0.5)
    assert learning_rate(8, cosine) == pytest.approx((1 - 2 ** -0.5) / 2)
    constant = OptimConfig(steps=10, warmup_steps=2, lr=1.0, schedule="constant")
    assert [learning_rate(s, constant) for s in (0, 1, 5, 9)] == [0.5, 1.0, 1.0, 1.0]
    # a spent time budget decays further than the step count says
    assert learning_rate(3, linear, time_fraction=0.5) == pytest.approx(0.5)
    assert learning_rate(3, linear, time_fraction=1.0) == 0.0
    by_steps = OptimConfig(steps=10, warmup_steps=2, lr=1.0, decay_by_time=False)
    assert learning_rate(3, by_steps, time_fraction=0.9) == pytest.approx(0.875)


@pytest.mark.parametrize("bad", [dict(steps=0), dict(lr=0), dict(schedule="step"), dict(accumulate=0),
                                 dict(betas=(0.9, 1.0)), dict(max_minutes=0), dict(grad_clip=-1),
                                 dict(checkpoint_every=0), dict(warmup_fraction=0.0), dict(warmup_fraction=1.5)])
def test_optim_config_rejects_bad_values(bad):
    with pytest.raises(SpeechUnitsError, match="invalid value"):
        OptimConfig(**bad)


def test_optim_config_round_trip():
    c = OptimConfig(schedule="cosine", betas=(0.8, 0.9), max_minutes=3.0)
    assert OptimConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(SpeechUnitsError, match="unknown keys"):
        OptimConfig.from_dict({"learning_rate": 1.0})


# -- move_to ---------------------------------------------------------------------------------------

def test_move_to_reaches_every_tensor():
    @dataclass
    class Pair:
        a: torch.Tensor
        b: list

    Named = namedtuple("Named", "x y")
    moved = move_to({"p": Pair(torch.ones(2), [torch.zeros(1), 3]), "t": (torch.ones(1), "s"),
                     "n": Named(torch.ones(1), 2)}, torch.device("meta"))
    assert moved["p"].a.is_meta and moved["p"].b[0].is_meta and moved["p"].b[1] == 3
    assert moved["t"][0].is_meta and moved["t"][1] == "s"
    assert isinstance(moved["n"], Named) and moved["n"].x.is_meta and moved["n"].y == 2


# -- length-bucketed batches -------------------------------------------------------------------------

def test_bucket_batches_by_hand():
    lengths = [5, 1, 3, 3, 8, 2]
    # sorted: 1(1) 5(2) 2(3) 3(3) 0(5) 4(8); padded cost = size * longest <= 9
    pad = LengthBucketSampler(lengths, 9, fit="pad", shuffle=False)
    assert pad.batches == [[1, 5, 2], [3], [0], [4]]
    # cropped cost = size * shortest <= 10: [4, 4] (8), then [5, 10] (2 * 5)
    crop = LengthBucketSampler([4, 4, 5, 10], 10, fit="crop", shuffle=False)
    assert crop.batches == [[0, 1], [2, 3]]
    assert LengthBucketSampler(lengths, 9, fit="crop").batches == [[1, 5, 2, 3, 0, 4]]
    capped = LengthBucketSampler(lengths, 100, max_batch_size=4, shuffle=False)
    assert capped.batches == [[1, 5, 2, 3], [0, 4]]
    # an item over the budget forms its own batch
    assert LengthBucketSampler([50, 2, 2], 10, shuffle=False).batches == [[1, 2], [0]]


def test_bucket_batches_cover_every_item_within_budget_and_shuffle_by_seed_and_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 400, size=300).tolist()
    sampler = LengthBucketSampler(lengths, 1000, seed=7)
    n = len(sampler)
    for epoch in range(3):
        seen = sorted(i for pos in range(n) for i in sampler.batch(epoch * n + pos))
        assert seen == list(range(300))
    for batch in sampler.batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 1000 or len(batch) == 1
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)
    # buckets hold similar lengths: they are contiguous in sorted order
    order = sorted(range(300), key=lambda i: (lengths[i], i))
    assert [i for b in sampler.batches for i in b] == order
    epoch0 = [sampler.batch(p) for p in range(n)]
    assert epoch0 == [LengthBucketSampler(lengths, 1000, seed=7).batch(p) for p in range(n)]  # deterministic
    assert epoch0 != [sampler.batch(n + p) for p in range(n)]  # another epoch, another order
    assert epoch0 != [LengthBucketSampler(lengths, 1000, seed=8).batch(p) for p in range(n)]
    assert sampler.locate(2 * n + 3) == (2, 3)


@pytest.mark.parametrize("args, match", [(([], 10), "no items"), (([1, 2], 0), "budget"),
                                         (([1, 2], 10, "bucket"), "fit"), (([1, -2], 10), "negative")])
def test_bucket_batches_bad_input(args, match):
    with pytest.raises(SpeechUnitsError, match=match):
        LengthBucketSampler(*args[:2], **({"fit": args[2]} if len(args) > 2 else {}))
    with pytest.raises(SpeechUnitsError, match="max_batch_size"):
        LengthBucketSampler([1], 1, max_batch_size=0)

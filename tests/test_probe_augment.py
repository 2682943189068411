"""Augmenting probe inputs while training: time masks (`--time-mask N:R`) and unit substitution (`--unit-noise`)."""
from __future__ import annotations

import json

import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.probe.model import ProbeModel
from speechunits.probe.augment import (TimeMask, UnitNoise, apply_time_mask, nearest_units, parse_time_mask,
                                       parse_unit_noise, substitute_units, time_mask)


def test_masks_stay_inside_each_utterance_and_respect_the_widest_width():
    lengths = torch.tensor([40, 17, 3, 0])
    rule = TimeMask(masks=3, max_ratio=0.25)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        mask = time_mask(lengths, 40, rule, generator)
        assert mask.shape == (4, 40)
        for row, n in enumerate(lengths.tolist()):
            assert not mask[row, n:].any()  # padding is never masked
            # three masks of at most floor(0.25 n) frames each: 10, 4, 0, 0 frames
            assert int(mask[row].sum()) <= 3 * int(0.25 * n)
        assert not mask[2].any() and not mask[3].any()  # floor(0.25 * 3) = 0: too short to lose a frame


def test_mask_width_is_uniform_up_to_the_ratio_of_the_length():
    # one mask of width U{0..floor(0.5 * 200) = 100}: mean width 50 frames, each width about as often
    rule = TimeMask(masks=1, max_ratio=0.5)
    generator = torch.Generator().manual_seed(1)
    widths = torch.stack([time_mask(torch.tensor([200]), 200, rule, generator)[0].sum() for _ in range(4000)])
    assert abs(float(widths.float().mean()) - 50.0) < 2.0
    assert int(widths.min()) == 0 and int(widths.max()) == 100
    # a mask is one contiguous run
    mask = time_mask(torch.tensor([200]), 200, rule, torch.Generator().manual_seed(3))[0].int()
    assert int((mask[1:] != mask[:-1]).sum()) <= 2


def test_the_same_generator_seed_gives_the_same_masks_and_zeroes_exactly_those_frames():
    rule = TimeMask(masks=4, max_ratio=0.1)
    lengths = torch.tensor([50, 30])
    first = time_mask(lengths, 50, rule, torch.Generator().manual_seed(7))
    second = time_mask(lengths, 50, rule, torch.Generator().manual_seed(7))
    assert torch.equal(first, second) and first.any()
    x = torch.randn(2, 50, 3)
    masked = apply_time_mask(x, lengths, rule, torch.Generator().manual_seed(7))
    assert torch.equal(masked[first], torch.zeros(int(first.sum()), 3))
    assert torch.equal(masked[~first], x[~first])


@pytest.mark.parametrize("text", ["5", "x:0.1", "5:abc", "5:0", "5:0.6", "0:0.1", "-1:0.1", "2:0.1:3"])
def test_bad_time_mask_options_are_refused_with_the_option_named(text):
    with pytest.raises(SpeechUnitsError, match="--time-mask"):
        parse_time_mask(text)


def test_no_masks_parse_to_none_and_a_good_one_to_its_values():
    assert parse_time_mask(None) is None and parse_time_mask("0") is None
    assert parse_time_mask("5:0.05") == TimeMask(5, 0.05)


def test_a_probe_masks_only_while_training():
    spec = {"input": {"kind": "units", "vocab_sizes": [12], "durations": False}, "interface": "embedding",
            "combine": "sum", "embed_dim": 6, "head": "linear", "hidden": 4, "level": "frame", "num_classes": 3}
    torch.manual_seed(0)
    plain = ProbeModel(spec)
    masked = ProbeModel({**spec, "time_mask": TimeMask(6, 0.2).spec()})
    masked.load_state_dict(plain.state_dict())  # masks hold no weights
    ids, lengths = torch.randint(0, 12, (2, 30, 1)), torch.tensor([30, 25])
    plain.eval(), masked.eval()
    assert torch.equal(plain(ids, lengths), masked(ids, lengths))  # inference sees every frame
    masked.train()
    torch.manual_seed(1)
    out = masked(ids, lengths)
    # a masked frame's embedding is zero, so its linear output is the bias alone
    at_bias = torch.isclose(out, masked.head.proj.bias.expand_as(out)).all(-1)
    assert at_bias[0].any() and not at_bias[1, 25:].any()
    assert json.loads(json.dumps(masked.spec))["time_mask"] == {"masks": 6, "max_ratio": 0.2}


# -- unit substitution -----------------------------------------------------------------------------

def test_nearest_units_on_a_line_are_the_hand_computed_ones():
    # five centroids on a line at 0, 1, 3, 7, 8
    table = torch.tensor([[0.0], [1.0], [3.0], [7.0], [8.0]])
    near = nearest_units(table, 2)
    assert near.tolist() == [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]]
    assert nearest_units(table, 10).shape == (5, 4)  # at most the K - 1 others
    with pytest.raises(SpeechUnitsError, match="two units"):
        nearest_units(torch.zeros(1, 3), 2)


def test_substitution_rate_and_targets_match_the_neighbour_table():
    neighbours = torch.tensor([[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]])
    ids = torch.randint(0, 5, (64, 500), generator=torch.Generator().manual_seed(0))
    out = substitute_units(ids, neighbours, 0.2, torch.Generator().manual_seed(1))
    changed = out != ids
    assert abs(float(changed.float().mean()) - 0.2) < 0.01
    # every change is to one of the unit's own neighbours, and both neighbours are drawn
    for unit in range(5):
        swapped = out[(ids == unit) & changed]
        assert set(swapped.tolist()) == set(neighbours[unit].tolist())
    again = substitute_units(ids, neighbours, 0.2, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


@pytest.mark.parametrize("text", ["0.1:x", "abc", "0", "1.0", "1.5", "-0.1", "0.1:0", "nan"])
def test_bad_unit_noise_options_are_refused_or_mean_none(text):
    if text == "0":
        assert parse_unit_noise(text) is None
        return
    with pytest.raises(SpeechUnitsError, match="--unit-noise"):
        parse_unit_noise(text)


def test_unit_noise_parses_with_a_default_neighbour_count():
    assert parse_unit_noise("0.1") == UnitNoise(0.1, 5) and parse_unit_noise("0.2:3") == UnitNoise(0.2, 3)


def _unit_spec(**extra) -> dict:
    return {"input": {"kind": "units", "vocab_sizes": [6], "durations": False}, "interface": "embedding",
            "combine": "sum", "embed_dim": 4, "head": "linear", "hidden": 4, "level": "frame", "num_classes": 3,
            **extra}


def test_a_probe_substitutes_units_only_while_training_and_only_with_centroid_tables():
    centroids = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [6.0, 5.0], [20.0, 0.0], [21.0, 1.0]])
    spec = _unit_spec(embed_init="centroids", table_dims=[2], unit_noise=UnitNoise(0.5, 1).spec())
    torch.manual_seed(0)
    model = ProbeModel(spec)
    model.featurizer.load_centroids([centroids])
    # each unit's one nearest: 0<->1, 2<->3, 4<->5
    assert model.featurizer.neighbours[0].tolist() == [[1], [0], [3], [2], [5], [4]]
    ids = torch.tensor([[[0], [2], [4]] * 40])
    table = model.featurizer.projections[0](model.featurizer.tables[0].weight).detach()
    model.train()
    embedded = model.features(ids)[0].detach()
    # a training pass reads each unit's own row or its neighbour's, about half and half
    own = torch.isclose(embedded, table[ids[0, :, 0]]).all(-1)
    partner = torch.isclose(embedded, table[ids[0, :, 0] ^ 1]).all(-1)
    assert bool((own | partner).all()) and 30 < int(partner.sum()) < 90
    model.eval()
    assert torch.equal(model.features(ids)[0], table[ids[0, :, 0]])  # inference reads the units as they are
    with pytest.raises(SpeechUnitsError, match="--embed-init centroids"):
        ProbeModel(_unit_spec(unit_noise=UnitNoise(0.1, 2).spec()))  # random tables: no neighbours to draw
    loaded = ProbeModel(spec).train()  # built without load_centroids (as when read from disk), then trained
    with pytest.raises(SpeechUnitsError, match="not computed"):
        loaded.features(ids)

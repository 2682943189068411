"""SpecAugment time masks of probes (`probe train --time-mask N:R`): where they fall, how wide, when."""
from __future__ import annotations

import json

import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.probe.heads import ProbeModel
from speechunits.probe.specaug import TimeMask, apply_time_mask, parse_time_mask, time_mask


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

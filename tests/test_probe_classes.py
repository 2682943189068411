"""Class specs of ``classify`` probes (keep, rename, merge, drop), against hand-made expectations."""
from __future__ import annotations

import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.probe.classes import ClassMap


def test_keep_rename_merge_and_drop() -> None:
    labels = {"a": "neu", "b": "exc", "c": "hap", "d": "fru", "e": "sad", "f": "ang"}
    assert ClassMap.parse("superb-er").apply(labels) == {"a": "neu", "b": "hap", "c": "hap", "e": "sad", "f": "ang"}
    assert ClassMap.parse("neu, sad=low, *=other").apply(labels) == \
        {"a": "neu", "b": "other", "c": "other", "d": "other", "e": "low", "f": "other"}


@pytest.mark.parametrize("spec, message", [("", r"bad item ''"), ("a,,b", r"bad item ''"), ("a=", r"bad item 'a='"),
                                           ("a,a", r"'a' named twice"), ("*=x,*=y", r"'\*=' given twice")])
def test_bad_specs_are_named(spec: str, message: str) -> None:
    with pytest.raises(SpeechUnitsError, match=message):
        ClassMap.parse(spec)

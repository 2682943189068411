"""Optional packages: a missing or broken one is a SpeechUnitsError naming the cause and the extra."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.extras import require_extra


def test_a_package_that_fails_at_import_names_the_error_and_the_extra(tmp_path, monkeypatch) -> None:
    """pyworld 0.3.5 under setuptools >= 81 fails this way: installed, but its import raises."""
    (tmp_path / "broken_pkg.py").write_text("import pkg_resources_gone_for_this_test\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SpeechUnitsError) as err:
        require_extra("broken_pkg", "f0", "F0 extraction")
    assert str(err.value) == ("F0 extraction needs 'broken_pkg' (ModuleNotFoundError: No module named "
                              "'pkg_resources_gone_for_this_test'): pip install 'speechunits[f0]'")
    assert require_extra("json", "f0", "x") is sys.modules["json"]


def test_f0_and_mcd_without_pyworld_say_which_extra(monkeypatch) -> None:
    from speechunits.audio import Audio
    from speechunits.measure.audio.mcd import mcd_dtw
    from speechunits.pitch import extract_f0

    monkeypatch.setitem(sys.modules, "pyworld", None)  # importing it now raises ImportError
    audio = Audio(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    with pytest.raises(SpeechUnitsError, match=r"F0 extraction needs 'pyworld' \(ModuleNotFoundError: .*\[f0\]"):
        extract_f0(audio, method="dio")
    with pytest.raises(SpeechUnitsError, match=r"MCD .* needs 'pyworld' .*\[eval\]"):
        mcd_dtw(audio, audio)

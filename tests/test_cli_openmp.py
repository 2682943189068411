"""The CLI's short OpenMP spin (``GOMP_SPINCOUNT``), set only where the user chose nothing and torch has
not read its settings yet (fresh interpreters: what a ``speechunits`` process is)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from speechunits.cli.main import OPENMP_SPINCOUNT

SCRIPT = """
import os, sys
{before}
from speechunits.cli.main import main, short_openmp_spin
{call}
print(os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules)
"""


def _run(env_extra: dict[str, str], before: str = "", call: str = "short_openmp_spin()") -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(before=before, call=call)], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.split()[-3:]


def test_a_fresh_process_gets_the_short_spin_before_torch_is_imported():
    assert _run({}) == [OPENMP_SPINCOUNT, "None", "False"]


@pytest.mark.parametrize("env_extra, expected", [({"GOMP_SPINCOUNT": "5"}, ["5", "None"]),
                                                 ({"OMP_WAIT_POLICY": "PASSIVE"}, ["None", "PASSIVE"]),
                                                 ({"OMP_WAIT_POLICY": "ACTIVE"}, ["None", "ACTIVE"])])
def test_the_users_own_setting_wins(env_extra, expected):
    assert _run(env_extra)[:2] == expected


def test_nothing_is_set_once_torch_has_read_its_settings():
    assert _run({}, before="import torch") == ["None", "None", "True"]


def test_the_command_line_sets_it_before_parsing():
    call = "try:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    assert _run({}, call=call)[0] == OPENMP_SPINCOUNT

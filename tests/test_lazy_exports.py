"""Every name a package exports lazily (its ``_LAZY`` table) resolves in the module it names.

A module split that forgets a package's table only fails when a user first touches the name;
this walks every subpackage so the failure shows here instead.
"""
from __future__ import annotations

import importlib
import pkgutil

import pytest

import speechunits


def _lazy_tables() -> list[tuple[str, str, str]]:
    rows = []
    for info in pkgutil.walk_packages(speechunits.__path__, "speechunits."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        rows.extend((info.name, name, target) for name, target in getattr(package, "_LAZY", {}).items())
    return rows


LAZY = _lazy_tables()


def test_packages_export_names_lazily() -> None:
    assert any(package == "speechunits.probe" and name == "UnitInput" for package, name, _ in LAZY)


@pytest.mark.parametrize("package, name, target", LAZY, ids=[f"{p}.{n}" for p, n, _ in LAZY])
def test_lazy_name_resolves_in_its_module(package: str, name: str, target: str) -> None:
    module = importlib.import_module(target)
    assert hasattr(module, name), f"{package}._LAZY says {name} lives in {target}; it does not"
    assert getattr(importlib.import_module(package), name) is getattr(module, name)

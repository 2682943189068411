"""ray_session forwards the CPU-kernel opt-out to Ray workers (remote workers do not inherit it)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

import speechunits.scale.ray_session as ray_session_module
from speechunits.encoders.cpu import DISABLE_ENV


class FakeRay(SimpleNamespace):
    def __init__(self):
        super().__init__(calls=[])

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs):
        self.calls.append(kwargs)

    def shutdown(self) -> None:
        self.calls.append("shutdown")


@pytest.mark.parametrize("value, expected", [(None, None), ("1", {"env_vars": {DISABLE_ENV: "1"}})])
def test_opt_out_reaches_workers_through_runtime_env(monkeypatch, value, expected) -> None:
    assert DISABLE_ENV in ray_session_module.FORWARDED_ENV
    fake = FakeRay()
    monkeypatch.setattr(ray_session_module, "require_ray", lambda: fake)
    monkeypatch.setattr(ray_session_module, "configure_data_context", lambda verbose: None)
    if value is None:
        monkeypatch.delenv(DISABLE_ENV, raising=False)
    else:
        monkeypatch.setenv(DISABLE_ENV, value)
    for address in (None, "ray://head:10001"):
        fake.calls.clear()
        with ray_session_module.ray_session(address, num_cpus=1):
            pass
        assert fake.calls[-1] == "shutdown"
        assert fake.calls[0].get("runtime_env") == expected

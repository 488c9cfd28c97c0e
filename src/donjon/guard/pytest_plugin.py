"""A pytest plugin: guard every model load in a test session.

Opt in with ``pytest -p donjon.guard.pytest_plugin``, ``--donjon-guard``, or in
the ini file ``donjon_guard = true`` (and ``donjon_guard_fail_on = high``).
A test that loads an unsafe file fails with :class:`donjon.errors.ModelRefused`.
"""

from __future__ import annotations

import pytest

from donjon.guard import GuardPolicy, install, installed, uninstall

_MODULE = "donjon.guard.pytest_plugin"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("donjon-guard", "Donjon safe loading")
    group.addoption(
        "--donjon-guard", action="store_true", default=False,
        help="scan every file torch/joblib/pickle/numpy load and refuse unsafe ones",
    )  # fmt: skip
    parser.addini("donjon_guard", "guard model loads (donjon.guard)", type="bool", default=False)
    parser.addini("donjon_guard_fail_on", "refuse at or above this severity", default="medium")


def _wanted(config: pytest.Config) -> bool:
    named = _MODULE in (getattr(config.option, "plugins", None) or [])
    return bool(named or config.getoption("--donjon-guard") or config.getini("donjon_guard"))


def pytest_configure(config: pytest.Config) -> None:
    if _wanted(config) and installed() is None:
        install(GuardPolicy.from_label(str(config.getini("donjon_guard_fail_on"))))
        config.stash[_installed_here] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_installed_here, False):
        uninstall()


def pytest_report_header(config: pytest.Config) -> str | None:
    policy = installed()
    if policy is None or not config.stash.get(_installed_here, False):
        return None
    return f"donjon.guard: model loads scanned, refused at {policy.fail_on.label} or above"


_installed_here = pytest.StashKey[bool]()

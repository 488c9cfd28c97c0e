"""``donjon.core`` resolves its public names on first use, and importing it loads no bus."""

from __future__ import annotations

import subprocess
import sys

import pytest

import donjon.core


def test_every_public_name_resolves_to_its_module_object() -> None:
    for name in donjon.core.__all__:
        value = getattr(donjon.core, name)
        assert value.__name__ == name
        assert value.__module__.startswith("donjon.core.")
    assert set(donjon.core.__all__) <= set(dir(donjon.core))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        donjon.core.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_core_and_a_finding_loads_no_bus_events_uuid_or_hashlib() -> None:
    code = (
        "import sys\n"
        "from donjon.core import Finding, Severity\n"
        "from donjon.core import taxonomy\n"
        "heavy = {'donjon.core.bus', 'donjon.core.events', 'uuid', 'hashlib'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

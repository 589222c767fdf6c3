"""Tests of the optional dependency groups: skipped, naming the install command, where a group is missing.

A fresh clone's `make test` installs no optional group, so a test that needs one skips with
`make install-<group>` in its reason. `.ci/run` installs the groups and names them in
LANDCOVER_TEST_GROUPS; a test of a named group whose package cannot be imported then fails instead of
skipping, so CI never stops testing a feature silently.
"""

from __future__ import annotations

import importlib
import os

import pytest

# Each group of requirements-<group>.txt and the modules its tests import.
GROUPS = {
    "vector": ("pyogrio",),
    "runtime": ("openvino",),
    "region": ("distributed", "pystac"),
    "viewer": ("rio_tiler", "playwright"),
}
REQUIRED = "LANDCOVER_TEST_GROUPS"  # the groups that must be present, space-separated (.ci/run sets it)


def required_groups() -> set[str]:
    return set(os.environ.get(REQUIRED, "").split())


def missing_module(group: str) -> str | None:
    """The first module of `group` that cannot be imported, or None."""
    for module in GROUPS[group]:
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None


def need_group(group: str, module_level: bool = False) -> None:
    """Skip the calling test (or module) when `group` is not installed; fail instead where CI installed it."""
    module = missing_module(group)
    if module is None:
        return
    if group in required_groups():
        pytest.fail(f"the {group} group is installed for this run ({REQUIRED}), yet {module} cannot be imported")
    pytest.skip(f"needs the optional {group} group: make install-{group}", allow_module_level=module_level)

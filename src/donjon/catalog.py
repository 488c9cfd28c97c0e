"""The catalogue of every rule Donjon ships, gathered from the capabilities.

Each capability lists its rules in ``donjon.<capability>.rules.RULES``; add the
module here when a capability gains rules. Generated docs and SARIF metadata
read this registry, so a rule missing here is missing from the docs too (a
test checks every ``Rule`` constant in the package is registered).
"""

from __future__ import annotations

import importlib
from functools import cache

from donjon.core.rules import Rule, RuleRegistry

RULE_MODULES: tuple[str, ...] = (
    # one module per line, so each capability's line merges on its own
    "donjon.audit.rules",
    "donjon.data.rules",
    "donjon.gateway.rules",
    "donjon.provenance.rules",
    "donjon.scan.rules",
    "donjon.watch.rules",
)


@cache
def rule_registry() -> RuleRegistry:
    registry = RuleRegistry()
    for module_name in RULE_MODULES:
        rules: tuple[Rule, ...] = importlib.import_module(module_name).RULES
        for rule in rules:
            registry.register(rule)
    return registry

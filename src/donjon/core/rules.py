"""Detection rules and the registry that holds them.

Each capability declares its rules as module-level :class:`Rule` constants in
its own ``rules.py`` and lists them in a ``RULES`` tuple; ``donjon.catalog``
gathers those tuples into one :class:`RuleRegistry`, from which the docs page
(``docs/rules.md``), SARIF rule metadata and SOC mappings are generated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from donjon.core.severity import Severity
from donjon.core.taxonomy import ATLAS_MITIGATIONS, ATLAS_TECHNIQUES, OWASP_ENTRIES

RULE_ID = re.compile(r"^DJ-[A-Z0-9]{2,8}-\d{3}$")


@dataclass(frozen=True, slots=True)
class Rule:
    """A stable, documented detection: what it means and what to do about it."""

    id: str
    title: str
    description: str
    remediation: str
    severity: Severity
    atlas: tuple[str, ...] = ()
    owasp: tuple[str, ...] = ()
    mitigations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not RULE_ID.match(self.id):
            raise ValueError(f"rule id {self.id!r} must look like 'DJ-PKL-001'")
        for technique_id in self.atlas:
            if technique_id not in ATLAS_TECHNIQUES:
                raise ValueError(f"rule {self.id}: unknown ATLAS technique {technique_id!r}")
        for entry_id in self.owasp:
            if entry_id not in OWASP_ENTRIES:
                raise ValueError(f"rule {self.id}: unknown OWASP entry {entry_id!r}")
        for mitigation_id in self.mitigations:
            if mitigation_id not in ATLAS_MITIGATIONS:
                raise ValueError(f"rule {self.id}: unknown ATLAS mitigation {mitigation_id!r}")

    @property
    def family(self) -> str:
        """The middle part of the id: ``PKL`` for ``DJ-PKL-001``."""
        return self.id.split("-")[1]


class RuleRegistry:
    """An explicit, duplicate-free set of rules, iterated in id order."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules: dict[str, Rule] = {}
        for rule in rules:
            self.register(rule)

    def register(self, rule: Rule) -> Rule:
        existing = self._rules.get(rule.id)
        if existing is not None and existing != rule:
            raise ValueError(f"rule id {rule.id} is registered twice with different content")
        self._rules[rule.id] = rule
        return rule

    def get(self, rule_id: str) -> Rule:
        try:
            return self._rules[rule_id]
        except KeyError:
            raise KeyError(f"unknown rule {rule_id!r}") from None

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._rules

    def __iter__(self) -> Iterator[Rule]:
        return iter(sorted(self._rules.values(), key=lambda r: r.id))

    def __len__(self) -> int:
        return len(self._rules)

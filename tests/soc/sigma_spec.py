"""Rules written after the examples of the Sigma specification (rules 2.0.0 and the
modifiers appendix 2.1.0), over OCSF-like dotted fields, for the evaluator's tests."""

from __future__ import annotations

from sigma.collection import SigmaCollection
from sigma.rule import SigmaRule


def _rule(title: str, detection: str) -> str:
    return (
        f"title: {title}\nstatus: test\nlogsource: {{product: donjon}}\n"
        f"detection:\n{detection}\nlevel: low\n"
    )


# title -> the detection section, indented by four spaces
SPEC_RULES: dict[str, str] = {
    # "Lists can contain maps. All map items of a list are logically linked with OR."
    "list of maps": """
    selection:
        - api.operation|endswith: '.promote'
        - message|contains: 'Test executable'
    condition: selection""",
    # "Maps: all elements of a map are joined with AND"; a value list is OR
    "map with a value list": """
    selection:
        metadata.log_name: Security
        class_uid:
            - 517
            - 1102
    condition: selection""",
    "map of four keys": """
    selection:
        metadata.log_name: Security
        class_uid: 4769
        ticket.options: '0x40810000'
        ticket.encryption: '0x17'
    condition: selection""",
    # a list of maps whose maps have several keys, and value lists inside
    "list of multi-key maps": """
    selection:
        - class_uid: 6003
          actor.authorizations.decision: denied
        - class_uid: [2004, 3002]
          severity_id|gte: 4
    condition: selection""",
    "all modifier": """
    selection:
        message|contains|all:
            - 'OabVirtualDirectory'
            - ' -ExternalUrl '
    condition: selection""",
    "one of a pattern, and not one of another": """
    selection_deny:
        actor.authorizations.decision: denied
    selection_fail:
        status_id: 2
    filter_probe:
        actor.user.uid|startswith: 'probe-'
    filter_ci:
        src_endpoint.ip|cidr:
            - '10.0.0.0/8'
            - '192.168.0.0/24'
    condition: 1 of selection_* and not 1 of filter_*""",
    "all of a pattern": """
    sel_class:
        class_uid: 2004
    sel_high:
        severity_id|gt: 3
    condition: all of sel_*""",
    "all of them, underscore excluded": """
    one:
        class_uid: 2004
    two:
        finding_info.types: donjon.monitor
    _ignored:
        class_uid: 9999
    condition: all of them""",
    "one of them": """
    one:
        class_uid: 2004
    two:
        status_id: 2
    condition: 1 of them""",
    "brackets and precedence": """
    selection_1:
        class_uid: 6003
    keywords_1:
        api.operation|startswith: 'registry.'
    keywords_2:
        message|re: '^gate (passed|failed)$'
    filter:
        status_id: 1
    condition: selection_1 and (keywords_1 or keywords_2) and not filter""",
    "not binds tighter than and, and than or": """
    a:
        class_uid: 6003
    b:
        status_id: 2
    c:
        severity_id|lt: 2
    condition: not a and b or c""",
    "null and not null": """
    selection:
        class_uid: 2004
    filter:
        finding_info.analytic.uid: null
    condition: selection and not filter""",
    "exists": """
    selection:
        class_uid: 3002
        src_endpoint.ip|exists: true
    condition: selection""",
    "does not exist": """
    selection:
        class_uid: 3002
        unmapped.failures|exists: false
    condition: selection""",
    "wildcards and escapes": """
    selection:
        api.operation: 'registry.gate.*'
        actor.user.uid: 'k-?2'
        message: 'a\\*b*'
    condition: selection""",
    "case-sensitive and regex flags": """
    selection:
        actor.user.uid|cased: 'Alice'
        message|re|i: 'denied\\s+by'
    condition: selection""",
    "comparisons": """
    selection:
        severity_id|gte: 2
        severity_id|lte: 4
        unmapped.failures|gt: 9
        unmapped.failures|lt: 100
    condition: selection""",
    "field references": """
    selection:
        actor.user.uid|fieldref: user.uid
    condition: selection""",
    "negated values": """
    selection:
        class_uid: 6003
        status_id|neq: 1
    condition: selection""",
    "windash and base64": """
    selection:
        message|windash|contains: ' -force'
    encoded:
        unmapped.payload|base64: 'donjon'
    condition: selection or encoded""",
    "several conditions": """
    a:
        class_uid: 3002
    b:
        class_uid: 2004
    condition:
        - a
        - b""",
}


def spec_collection() -> SigmaCollection:
    """Every spec rule, each its own document."""
    text = "\n---\n".join(_rule(t, d.replace("\n    ", "\n  ")) for t, d in SPEC_RULES.items())
    return SigmaCollection.from_yaml(text)


def spec_rule(title: str) -> SigmaRule:
    (rule,) = [r for r in spec_collection().rules if r.title == title]
    assert isinstance(rule, SigmaRule)
    return rule


# Rules the evaluator refuses: each (title, detection, a word of the error)
UNSUPPORTED: list[tuple[str, str, str]] = [
    ("keywords", "  keywords:\n    - 'EVILSERVICE'\n  condition: keywords", "keyword search"),
    ("placeholder", "  sel:\n    user.uid|expand: '%Admins%'\n  condition: sel", "placeholder"),
    ("time part", "  sel:\n    time|hour: 3\n  condition: sel", "time part"),
    ("a bare field = value condition", "  sel:\n    a: 1\n  condition: a = 1", "condition"),
    ("an undefined detection", "  sel:\n    a: 1\n  condition: sel and other", "other"),
]


def unsupported_collection() -> SigmaCollection:
    text = "\n---\n".join(_rule(title, body) for title, body, _ in UNSUPPORTED)
    return SigmaCollection.from_yaml(text, collect_errors=True)

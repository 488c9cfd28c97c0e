"""The pickle interpreter: one regression test per public bypass class, bounds and loops."""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict

import pytest

from donjon.core import Severity
from donjon.scan import rules
from donjon.scan.pickle_vm import Issue, PickleVM, Reader
from donjon.scan.policy import DEFAULT_POLICY, ScanPolicy, Verdict
from donjon.scan.samples_pickle import _s, benign_pickles, call, glob0, malicious_pickles, p2


def analyse(data: bytes, policy: ScanPolicy = DEFAULT_POLICY) -> list[Issue]:
    return PickleVM(policy).run(Reader(io.BytesIO(data)))


def worst(issues: list[Issue]) -> Severity | None:
    return max((i.severity or i.rule.severity for i in issues), default=None)


@pytest.mark.parametrize(("name", "sample"), sorted(malicious_pickles().items()))
def test_bypass_class_is_caught(name: str, sample: tuple[str, bytes]) -> None:
    _, data = sample
    level = worst(analyse(data))
    assert level is not None, name
    assert level >= Severity.MEDIUM, name


@pytest.mark.parametrize(("name", "data"), sorted(benign_pickles().items()))
def test_plain_data_pickles_are_clean(name: str, data: bytes) -> None:
    assert analyse(data) == []


def test_dangerous_names_are_reported_with_their_location() -> None:
    data = p2(call(glob0("os", "system"), "id"))
    (issue,) = analyse(data)
    assert issue.rule is rules.PKL_DANGEROUS
    assert issue.evidence["callable"] == "os.system"
    assert issue.evidence["called"] is True
    assert issue.offset == 2


def test_names_built_through_the_memo_are_resolved() -> None:
    _, data = malicious_pickles()["memo_built_name.pkl"]
    assert any(i.evidence.get("callable") == "os.system" for i in analyse(data))


def test_getattr_result_called_later_is_flagged_as_computed_call() -> None:
    _, data = malicious_pickles()["getattr_chain.pkl"]
    assert rules.PKL_UNRESOLVED in {i.rule for i in analyse(data)}


def test_nested_pickle_payload_is_analysed_inside_loads() -> None:
    _, data = malicious_pickles()["nested_loads.pkl"]
    nested = [i for i in analyse(data) if i.evidence.get("nested")]
    assert nested
    assert nested[0].evidence["callable"] == "os.system"


def test_truncated_stream_reports_what_came_before_the_fault() -> None:
    issues = analyse(p2(call(glob0("os", "system"), "id"))[:-3])
    found = {i.rule for i in issues}
    assert {rules.PKL_MALFORMED, rules.PKL_DANGEROUS} <= found


def test_payload_after_a_broken_opcode_is_salvaged() -> None:
    _, data = malicious_pickles()["payload_after_junk.pkl"]
    assert "os.system" in {i.evidence.get("callable") for i in analyse(data)}


def test_self_referencing_structures_terminate() -> None:
    loop: list[object] = []
    loop.append(loop)
    d: dict[str, object] = {}
    d["self"] = d
    for protocol in range(6):
        assert analyse(pickle.dumps([loop, d], protocol=protocol)) == []


def test_opcode_bound_is_a_finding_not_a_hang() -> None:
    data = p2(b"]" + b"N" * 1000 + b"0" * 1000)
    issues = analyse(data, ScanPolicy(max_opcodes=100))
    assert [i.rule for i in issues] == [rules.PKL_BOUND]


def test_memo_bound_is_a_finding() -> None:
    data = b"\x80\x04" + b"N\x94" * 50 + b"."
    assert rules.PKL_BOUND in {i.rule for i in analyse(data, ScanPolicy(max_memo=10))}


def test_nesting_bound_is_a_finding() -> None:
    data = p2(call(glob0("os", "system"), "id"))
    for _ in range(12):
        data = p2(
            glob0("mylib", "restore") + b"(B" + len(data).to_bytes(4, "little") + data + b"tR"
        )
    issues = analyse(data)
    assert rules.PKL_BOUND in {i.rule for i in issues}


def test_unknown_class_instantiated_without_arguments_is_low() -> None:
    data = p2(glob0("mypkg.models", "Net") + b")\x81}b")
    (issue,) = analyse(data)
    assert issue.rule is rules.PKL_UNKNOWN
    assert issue.severity is Severity.LOW


def test_unknown_callable_called_with_arguments_is_medium() -> None:
    (issue,) = analyse(p2(call(glob0("mypkg.tools", "run"), "x")))
    assert issue.rule is rules.PKL_UNKNOWN
    assert issue.severity is None  # the rule's own: medium
    assert issue.rule.severity is Severity.MEDIUM


def test_user_allow_list_extends_the_built_in_one() -> None:
    data = p2(call(glob0("mypkg.tools", "run"), "x"))
    policy = DEFAULT_POLICY.with_extra(allow=["mypkg.tools.run"])
    assert analyse(data, policy) == []


def test_user_allow_never_overrides_a_denied_module() -> None:
    policy = DEFAULT_POLICY.with_extra(allow=["os.system"])
    assert policy.verdict("os.system") is Verdict.DENY


def test_user_deny_list_extends_the_built_in_one() -> None:
    policy = DEFAULT_POLICY.with_extra(deny=["collections"])
    data = pickle.dumps(OrderedDict(a=1), protocol=2)
    assert worst(analyse(data, policy)) is Severity.CRITICAL


@pytest.mark.parametrize(
    ("dotted", "verdict"),
    [
        ("torch._utils._rebuild_tensor_v2", Verdict.ALLOW),
        ("collections.OrderedDict", Verdict.ALLOW),
        ("sklearn.linear_model._logistic.LogisticRegression", Verdict.ALLOW),
        ("sklearn.datasets.fetch_openml", Verdict.DENY),
        ("numpy.__builtins__", Verdict.DENY),
        ("torch.serialization.os.system", Verdict.DENY),
        ("builtins.getattr", Verdict.DENY),
        ("__builtin__.eval".replace("__builtin__", "builtins"), Verdict.DENY),
        ("mypkg.Thing", Verdict.UNKNOWN),
    ],
)
def test_policy_tiers(dotted: str, verdict: Verdict) -> None:
    assert DEFAULT_POLICY.verdict(dotted) is verdict


def test_inst_and_obj_without_reduce_are_calls() -> None:
    for name in ("inst_no_reduce.pkl", "obj_no_reduce.pkl"):
        _, data = malicious_pickles()[name]
        issue = next(i for i in analyse(data) if i.rule is rules.PKL_DANGEROUS)
        assert issue.evidence["called"] is True


def test_big_byte_strings_are_skipped_not_kept() -> None:
    blob = b"\x00" * (9 << 20)
    data = b"\x80\x04\x8e" + len(blob).to_bytes(8, "little") + blob + b"."
    assert analyse(data) == []


def test_string_helpers_roundtrip() -> None:
    assert _s("a")[:2] == b"\x8c\x01"


def test_copyreg_reconstructor_with_an_unknown_base_is_a_call_of_that_base() -> None:
    data = b"ccopy_reg\n_reconstructor\n(cmypkg.models\nNet\ncmypkg.base\nLoader\nS'payload'\ntR."
    issues = {i.evidence.get("callable"): i for i in analyse(data)}
    assert issues["mypkg.base.Loader"].severity is None  # called: the rule's medium
    assert issues["mypkg.models.Net"].severity is Severity.LOW


def test_copyreg_reconstructor_with_object_base_only_instantiates() -> None:
    data = b"ccopy_reg\n_reconstructor\n(cmypkg.models\nNet\nc__builtin__\nobject\nNtR."
    (issue,) = analyse(data)
    assert issue.severity is Severity.LOW


class _Carrier:
    """Pickles as a call of ``builtins.divmod`` (not on the allow-list) with ``args``."""

    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (divmod, self.args)


_EVIL = p2(call(glob0("os", "system"), "id"))


@pytest.mark.parametrize(
    ("args", "found"),
    [
        ((_EVIL,), True),  # an argument
        (({"k": _EVIL},), True),  # a value of a dict argument
        (([1, (_EVIL,)],), False),  # three levels down: past the walk's depth
        ((1, "text", None), False),  # no bytes at all
    ],
    ids=["argument", "dict-value", "too-deep", "no-bytes"],
)
def test_pickle_bytes_inside_call_arguments_are_analysed_to_two_levels(
    args: tuple[object, ...], found: bool
) -> None:
    issues = analyse(pickle.dumps(_Carrier(*args), protocol=4))
    nested = [i for i in issues if i.evidence.get("nested") == "embedded pickle bytes"]
    assert bool(nested) is found
    if found:
        assert nested[0].evidence["callable"] == "os.system"

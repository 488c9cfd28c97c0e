"""OCSF, ECS, CEF and RFC 5424 from the one SecurityEvent."""

from __future__ import annotations

import json
import re

import pytest

from donjon.core import EventKind, SecurityEvent
from donjon.soc.cef import escape_extension, escape_header, to_cef
from donjon.soc.ecs import to_ecs
from donjon.soc.ocsf import to_ocsf
from donjon.soc.syslog import escape_param, format_syslog, octet_frame
from tests.soc.ocsf_schema import assert_valid_ocsf, ocsf_errors
from tests.soc.samples import every_kind

EXPECTED_CLASS = [2004, 2004, 6003, 6003, 3002, 3001, 3005, 6005, 2004, 6003, 2004, 6003]


def test_every_kind_maps_to_its_ocsf_class_and_validates_against_1_8_0() -> None:
    events = every_kind()
    assert {e.kind for e in events} == set(EventKind)
    classes = []
    for event in events:
        doc = to_ocsf(event)
        assert_valid_ocsf(doc)
        assert doc["type_uid"] == doc["class_uid"] * 100 + doc["activity_id"]
        assert doc["metadata"]["uid"] == event.uid
        assert doc["metadata"]["version"] == "1.8.0"
        classes.append(doc["class_uid"])
    assert classes == EXPECTED_CLASS


def test_detection_finding_carries_atlas_in_finding_info() -> None:
    doc = to_ocsf(every_kind()[1])
    attacks = doc["finding_info"]["attacks"]
    assert attacks[0] == {
        "version": "ATLAS v5.6.0",
        "tactic": {"uid": "AML.TA0010", "name": "Exfiltration"},
        "technique": {"uid": "AML.T0024", "name": "Exfiltration via AI Inference API"},
        "sub_technique": {"uid": "AML.T0024.002", "name": "Extract AI Model"},
    }
    assert attacks[1]["technique"]["uid"] == "AML.T0040"
    assert "sub_technique" not in attacks[1]
    assert doc["finding_info"]["analytic"]["uid"] == "DJ-GWX-001"
    assert doc["evidences"][0]["actor"]["user"]["uid"] == "k-42"
    assert doc["is_alert"] is True


def test_access_decisions_carry_the_decision_in_actor_authorizations() -> None:
    allowed, denied = (to_ocsf(e) for e in every_kind()[2:4])
    assert allowed["actor"]["authorizations"][0]["decision"] == "allowed"
    assert allowed["actor"]["authorizations"][0]["policy"]["uid"] == "p-ml-read"
    assert allowed["activity_id"] == 2  # Read
    assert denied["actor"]["authorizations"][0]["decision"] == "denied"
    assert denied["status_id"] == 2
    assert denied["src_endpoint"]["ip"] == "203.0.113.9"
    assert denied["api"]["operation"] == "model.promote"


def test_the_validator_catches_broken_events() -> None:
    doc = to_ocsf(every_kind()[0])
    del doc["finding_info"]
    assert any("finding_info" in e for e in ocsf_errors(doc))
    doc = to_ocsf(every_kind()[2])
    doc["actor"]["authorizations"] = "allowed"
    assert ocsf_errors(doc)
    doc = to_ocsf(every_kind()[5])
    doc["activity_id"] = 42
    assert ocsf_errors(doc)


def test_ecs_categorises_and_names_the_atlas_framework() -> None:
    finding, allowed, denied = (to_ecs(e) for e in every_kind()[1:4])
    assert finding["event"]["kind"] == "alert"
    assert finding["event"]["category"] == ["intrusion_detection"]
    assert finding["threat"]["framework"] == "MITRE ATLAS"
    assert finding["threat"]["technique"]["id"] == ["AML.T0024", "AML.T0040"]
    assert finding["threat"]["technique"]["subtechnique"]["id"] == ["AML.T0024.002"]
    assert finding["threat"]["tactic"]["id"] == ["AML.TA0010", "AML.TA0000"]
    assert finding["rule"]["id"] == "DJ-GWX-001"
    assert allowed["event"]["type"] == denied["event"]["type"] == ["info"]  # iam/info
    assert allowed["event"]["outcome"] == "success"
    assert denied["event"]["outcome"] == "failure"
    assert denied["@timestamp"].endswith("Z")
    assert all(to_ecs(e)["ecs"]["version"] for e in every_kind())


def _split_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict CEF reader: unescape the header and the extension."""
    header: list[str] = []
    buf, i = "", 0
    while len(header) < 7:
        ch = line[i]
        if ch == "\\":
            buf += line[i + 1]
            i += 2
            continue
        if ch == "|":
            header.append(buf)
            buf = ""
        else:
            buf += ch
        i += 1
    ext_text = line[i:]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9]+)=", ext_text))
    ext: dict[str, str] = {}
    for k, m in enumerate(keys):
        end = keys[k + 1].start() if k + 1 < len(keys) else len(ext_text)
        raw = ext_text[m.end() : end]
        ext[m.group(1)] = re.sub(r"\\(.)", lambda g: {"n": "\n", "r": "\r"}.get(g[1], g[1]), raw)
    return header, ext


def test_cef_escapes_header_and_extension_and_round_trips() -> None:
    event = every_kind()[1]
    line = to_cef(event)
    assert line.startswith("CEF:0|Donjon|Donjon|")
    assert "\n" not in line
    header, ext = _split_cef(line)
    assert header[4] == "DJ-GWX-001"
    assert header[6] == "8"
    assert ext["msg"] == event.message  # contains | = and \
    assert ext["cs1"] == "AML.T0024.002,AML.T0040"
    assert ext["suser"] == "k-42"
    assert escape_header("a|b\\c") == "a\\|b\\\\c"
    assert escape_extension("a=b\\c\nd") == "a\\=b\\\\c\\nd"


@pytest.mark.parametrize("event", every_kind(), ids=lambda e: e.kind.value + "-" + e.action)
def test_every_cef_line_parses_back(event: SecurityEvent) -> None:
    header, ext = _split_cef(to_cef(event))
    assert len(header) == 7
    assert ext["externalId"] == event.uid
    assert ext["msg"] == event.message


RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S{1,255}) (?P<app>\S{1,48}) (?P<proc>\S{1,128}) "
    r"(?P<msgid>\S{1,32}) (?P<sd>-|(?:\[[^\]]*\])+) (?P<msg>.*)$"
)


def test_rfc5424_header_structured_data_and_nilvalue() -> None:
    event = every_kind()[1]
    plain = format_syslog(event, payload="ocsf", hostname="gw-1")
    m = RFC5424.match(plain)
    assert m is not None
    assert m["pri"] == str(10 * 8 + 3)  # authpriv.err for HIGH
    assert m["sd"] == "-"
    assert json.loads(m["msg"])["class_uid"] == 2004
    with_sd = format_syslog(event, payload="cef", facility="local0", enterprise_number=32473)
    m = RFC5424.match(with_sd)
    assert m is not None
    assert m["pri"] == str(16 * 8 + 3)
    assert m["sd"].startswith('[donjon@32473 uid="')
    assert 'rule="DJ-GWX-001"' in m["sd"]
    assert m["msg"].startswith("CEF:0|")
    assert escape_param('a"b]c\\') == 'a\\"b\\]c\\\\'
    assert format_syslog(event, hostname="bad host name").split(" ")[2] == "bad_host_name"


def test_octet_counting_frames_bytes_not_characters() -> None:
    assert octet_frame("é") == b"2 \xc3\xa9"

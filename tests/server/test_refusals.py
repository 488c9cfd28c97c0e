"""What a refused or hostile caller sees, on the vault wired as ``donjon server`` wires it.

A refused caller gets the same answer whether or not the resource exists;
listings hide what a forbid covers; bad credentials are limited per source and
ledgered in aggregate; headers and path parameters never produce a 5xx.
"""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.server import ServerLimits
from tests.server.stack import Stack, real_stack
from tests.server.test_authz_matrix import authentications, decisions

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with real_stack(database_url, tmp_path / "home") as served:
        with httpx.Client(base_url=served.url, headers=served.auth("admin")) as admin:
            for name in ("fraud/tx", "fraud/pii/cards", "fraud/pii/iban", "other/x"):
                r = admin.post(f"/v1/datasets/{name}/versions", content=b"a,b\n")
                assert r.status_code == 201, r.text
            assert admin.post("/v1/models/fraud-clf/versions", content=b"w").status_code == 201
        yield served


REFUSED = [  # (method, path on a real resource, the same on a missing one, kwargs)
    ("POST", "/v1/models/fraud-clf/versions/1/promote", "/v1/models/ghost/versions/7/promote",
     {"json": {"stage": "staging"}}),
    ("POST", "/v1/models/fraud-clf/versions/1/quarantine",
     "/v1/models/ghost/versions/7/quarantine", {"json": {"reason": "x"}}),
    ("POST", "/v1/datasets/fraud/tx/versions/1/release",
     "/v1/datasets/fraud/tx/versions/99/release", {"json": {"reason": "x"}}),
    ("DELETE", "/v1/datasets/fraud/tx/versions/1", "/v1/datasets/ghost/versions/1",
     {"params": {"reason": "x"}}),
    ("GET", "/v1/models/fraud-clf/versions/1/attestations",
     "/v1/models/ghost/versions/3/attestations", {}),
    ("POST", "/v1/models/fraud-clf/versions/1/attestations",
     "/v1/models/ghost/versions/3/attestations", {"params": {"kind": "signature"},
                                                  "content": b"{}"}),
    ("GET", "/v1/models/fraud-clf/versions/1/gates", "/v1/models/ghost/versions/1/gates", {}),
    ("GET", "/v1/datasets/fraud/tx/versions/1", "/v1/datasets/fraud/tx/versions/42", {}),
    ("GET", "/v1/datasets/fraud/tx", "/v1/datasets/ghost", {}),
]  # fmt: skip


def test_a_refused_caller_cannot_tell_what_exists(stack: Stack) -> None:
    """#13.2: the same 403 for a real and a missing resource, and a decision for each."""
    with httpx.Client(base_url=stack.url, headers=stack.auth("promoter")) as http:
        for method, real, missing, kwargs in REFUSED:
            if "promote" in real:
                continue  # the promoter may promote: asked below as the reader
            answers = []
            for path in (real, missing):
                stack.mark()
                r = http.request(method, path, **kwargs)
                (decision,) = decisions(stack.entries_since())
                assert decision["effect"] == "deny", path
                answers.append((r.status_code, r.json()))
            assert answers[0][0] == answers[1][0] == 403, (real, answers)
            assert answers[0][1]["error"] == answers[1][1]["error"] == "forbidden"
    with httpx.Client(base_url=stack.url, headers=stack.auth("reader")) as http:
        method, real, missing, kwargs = REFUSED[0]
        codes = [http.request(method, p, **kwargs).status_code for p in (real, missing)]
        assert codes == [403, 403]


def test_listings_hide_what_a_forbid_covers(stack: Stack) -> None:
    """#13.3: allowed on fraud, forbidden on fraud/pii: fraud/pii/... is not listed."""
    with httpx.Client(base_url=stack.url, headers=stack.auth("analyst")) as http:
        stack.mark()
        r = http.get("/v1/datasets", params={"prefix": "fraud"})
        assert r.status_code == 200
        assert r.json()["names"] == ["fraud/tx"]
        entries = stack.entries_since()
        (listing,) = decisions(entries)
        assert (listing["action"], listing["effect"]) == ("dataset.list", "allow")
        (hidden,) = [e for e in entries if e["attributes"].get("hidden")]
        assert hidden["attributes"]["hidden"] == 2
        assert hidden["attributes"]["hidden_sample"] == ["fraud/pii/cards", "fraud/pii/iban"]
        assert http.get("/v1/datasets", params={"prefix": "fraud/pii"}).status_code == 403
        assert http.get("/v1/datasets").status_code == 403  # not allowed on the whole collection
    with httpx.Client(base_url=stack.url, headers=stack.auth("admin")) as http:
        names = http.get("/v1/datasets").json()["names"]
        assert names == ["fraud/pii/cards", "fraud/pii/iban", "fraud/tx", "other/x"]


def test_downloads_are_opaque_attachments(stack: Stack) -> None:
    """#13.10: never the uploader's Content-Type; nosniff; Content-Disposition attachment."""
    with httpx.Client(base_url=stack.url, headers=stack.auth("admin")) as http:
        r = http.post(
            "/v1/datasets/web/page/versions",
            content=b"<script>alert(1)</script>",
            headers={"Content-Type": "text/html"},
        )
        assert r.status_code == 201
        assert r.json()["media_type"] == "text/html"  # recorded, not served
        r = http.get("/v1/datasets/web/page/versions/1/blob")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-disposition"] == 'attachment; filename="web_page-1"'
        assert r.content == b"<script>alert(1)</script>"


def test_405_says_what_is_allowed(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, headers=stack.auth("admin")) as http:
        r = http.put("/v1/datasets/fraud/tx/versions/1")
        assert r.status_code == 405
        assert set(r.headers["allow"].split(", ")) >= {"GET", "DELETE"}
        r = http.patch("/v1/whoami")
        assert r.status_code == 405
        assert "GET" in r.headers["allow"].split(", ")


@pytest.mark.parametrize(
    "value",
    [
        "Bearer Bearer {t}",
        "Bearer {t} junk",
        "Bearer\t{t}",
        "bearer{t}",
        "Token {t}",
        "{t}",
        "Bearer {t},Bearer {t}",
    ],
)
def test_malformed_authorization_is_refused(stack: Stack, value: str) -> None:
    r = httpx.get(
        f"{stack.url}/v1/whoami",
        headers={"Authorization": value.format(t=stack.tokens["admin"])},
    )
    assert r.status_code == 401
    assert r.json()["detail"] == "invalid credentials"


def test_duplicate_authorization_headers_are_refused(stack: Stack) -> None:
    good = f"Bearer {stack.tokens['admin']}"
    r = httpx.get(
        f"{stack.url}/v1/whoami",
        headers=[("Authorization", good), ("Authorization", good)],
    )
    assert r.status_code == 401
    assert httpx.get(f"{stack.url}/v1/whoami", headers={"Authorization": good}).status_code == 200


def test_401_says_only_invalid_credentials_and_the_ledger_says_why(stack: Stack) -> None:
    reasons = {}
    for who in ("revoked", "expired", "disabled"):
        stack.mark()
        r = httpx.get(f"{stack.url}/v1/whoami", headers=stack.auth(who))
        assert r.status_code == 401
        assert r.json() == {"error": "unauthenticated", "detail": "invalid credentials"}
        (failure,) = authentications(stack.entries_since())
        reasons[who] = failure["attributes"]["reason"]
    assert "revoked" in reasons["revoked"]
    assert "expired" in reasons["expired"]
    assert "disabled" in reasons["disabled"]


# -- the failed-authentication limiter ---------------------------------------------------


WINDOW = 5.0


@pytest.fixture
def limited(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    # the flood's 41 requests must fall in one window, on a loaded machine too
    limits = ServerLimits(auth_failure_limit=5, auth_failure_window=WINDOW)
    with real_stack(database_url, tmp_path / "home", limits) as served:
        yield served


def _from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address))


def test_a_flood_of_bad_tokens_is_limited_and_ledgered_in_aggregate(limited: Stack) -> None:
    """#13.4: 429 past the limit, two ledger entries per source and window, ids kept."""
    stack = limited
    stack.mark()
    ids: list[str] = []
    codes: list[int] = []
    with _from("127.0.0.2") as flood:
        for i in range(40):
            r = flood.get(f"{stack.url}/v1/whoami", headers={"Authorization": f"Bearer djt_x{i}"})
            codes.append(r.status_code)
            ids.append(r.headers["x-request-id"])
            if i == 0:  # the first failure opened the window before this answer came
                window_over = time.monotonic() + WINDOW + 0.2
        good = flood.get(f"{stack.url}/v1/whoami", headers=stack.auth("admin"))
        assert good.status_code == 429  # the source waits out its window
        assert int(good.headers["retry-after"]) >= 1
    assert codes == [401] * 5 + [429] * 35
    with _from("127.0.0.3") as other:  # another address is not held back
        assert other.get(f"{stack.url}/v1/whoami", headers=stack.auth("admin")).status_code == 200
    time.sleep(max(0.0, window_over - time.monotonic()))
    with _from("127.0.0.2") as flood:  # the window is over: the source may try again
        r = flood.get(f"{stack.url}/v1/whoami", headers=stack.auth("admin"))
        assert r.status_code == 200
    stack.app.state.auth_failures.flush()
    failures = [e for e in authentications(stack.entries_since()) if e["outcome"] == "failure"]
    assert len(failures) == 2
    first, summary = failures
    assert first["attributes"]["request_id"] == ids[0]
    assert first["attributes"]["src_ip"] == "127.0.0.2"
    assert "API token" in first["attributes"]["reason"]
    counted = summary["attributes"]
    assert (counted["failures"], counted["refused"]) == (5, 36)
    assert counted["first_request_id"] == ids[0]
    assert counted["last_request_id"] == good.headers["x-request-id"]
    assert counted["src_ip"] == "127.0.0.2"
    assert stack.ledger.verify().ok


# -- fuzzing headers and path parameters --------------------------------------------------

DIGITS = st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=12)
NUMBERS = st.one_of(
    DIGITS,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "2147483647", "2147483648", "9223372036854775808", "1_0", "+1",
                     " 1", "1.0", "\u0661", "²", "0x1", "1e3"]),
    st.text(max_size=12),
)  # fmt: skip
HEADER_TEXT = st.text(  # printable ASCII; no outer space, which the HTTP client refuses to send
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80
).map(str.strip) | st.sampled_from(
    ["fraud/tx@²", "fraud/tx@9223372036854775808", "fraud/tx@2147483648"]
)


def _ok(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.url, r.status_code, r.text)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(number=NUMBERS)
def _fuzz_numbers(http: httpx.Client, number: str) -> None:
    path = f"/v1/models/fraud-clf/versions/{quote(number, safe='')}"
    for method, suffix, kwargs in (
        ("GET", "", {}),
        ("GET", "/blob", {}),
        ("POST", "/promote", {"json": {"stage": "dev"}}),
        ("DELETE", "", {"params": {"reason": "fuzz"}}),
    ):
        r = http.request(method, path + suffix, **kwargs)
        _ok(r)
        valid = number.isascii() and number.isdigit() and 1 <= int(number) <= 2**31 - 1
        if not valid:  # 404, 405: the text made another path, which no route takes
            assert r.status_code in (400, 404, 405), (path, r.text)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(lineage=HEADER_TEXT, digest=HEADER_TEXT, metadata=HEADER_TEXT)
def _fuzz_headers(http: httpx.Client, lineage: str, digest: str, metadata: str) -> None:
    for header, value in (("X-Donjon-Lineage", lineage), ("X-Donjon-Digest", digest),
                          ("X-Donjon-Metadata", metadata)):  # fmt: skip
        r = http.post(
            "/v1/models/fraud-clf/versions", content=b"w", headers={header: value.encode()}
        )
        _ok(r)


def test_no_header_or_path_parameter_makes_a_server_error(stack: Stack) -> None:
    """#13.5: versions are ASCII digits within the column's range (400 otherwise), on both DBs."""
    with httpx.Client(base_url=stack.url, headers=stack.auth("admin")) as http:
        for lineage in ("fraud/tx@9223372036854775808", "fraud/tx@²", "fraud/tx@2147483648",
                        "fraud/tx@\u0661", "fraud/tx@0", "fraud/tx@-1"):  # fmt: skip
            r = http.post(
                "/v1/models/fraud-clf/versions",
                content=b"w",
                headers={"X-Donjon-Lineage": lineage.encode()},
            )
            assert r.status_code == 400, (lineage, r.text)
        assert (
            http.get("/v1/models/fraud-clf/versions/2147483648").status_code == 400
        )  # PostgreSQL int4
        assert http.get("/v1/models/fraud-clf/versions/%C2%B2").status_code == 400
        _fuzz_numbers(http)
        _fuzz_headers(http)


def test_the_openapi_document_has_the_name_and_version_patterns(stack: Stack) -> None:
    doc: dict[str, Any] = httpx.get(
        f"{stack.url}/v1/openapi.json", headers=stack.auth("reader")
    ).json()
    params = doc["paths"]["/v1/models/{name}/versions/{number}"]["get"]["parameters"]
    by_name = {p["name"]: p["schema"] for p in params}
    assert by_name["name"]["pattern"].startswith("^")
    assert by_name["name"]["maxLength"] == 200
    number = re.compile(by_name["number"]["pattern"])  # exactly what check_version accepts
    for text, admitted in (("1", True), ("2147483647", True), ("2147483648", False),
                           ("0", False), ("01", False), ("\u00b2", False)):  # fmt: skip
        assert bool(number.match(text)) is admitted, text
    listing = doc["paths"]["/v1/models"]["get"]["parameters"]
    prefix = re.compile({p["name"]: p["schema"] for p in listing}["prefix"]["pattern"])
    assert prefix.match("fraud/")
    assert not prefix.match("Fraud")
    attestation = doc["paths"]["/v1/models/{name}/versions/{number}/attestations/{digest}"]
    digest = {p["name"]: p["schema"] for p in attestation["get"]["parameters"]}["digest"]
    assert re.match(digest["pattern"], "sha256:" + "ab" * 32)
    assert not re.match(digest["pattern"], "0.1.0")


def test_the_database_and_the_event_file_are_private(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    """#13.10: donjon.db and the event file are 0600, like the keys."""
    from donjon.core.events import EventKind, SecurityEvent
    from donjon.soc.jsonl import JsonLinesSink

    if database_url.startswith("sqlite"):  # PostgreSQL keeps no file here
        database = Path(database_url.split(":///", 1)[1])
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
    sink = JsonLinesSink(tmp_path / "events" / "events.jsonl")
    sink.emit(SecurityEvent(kind=EventKind.ACTIVITY, source="test", action="a", message="m"))
    sink.close()
    assert stat.S_IMODE((tmp_path / "events" / "events.jsonl").stat().st_mode) == 0o600

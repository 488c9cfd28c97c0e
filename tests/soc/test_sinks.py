"""Every sink against a real receiver: rsyslog, HTTP collectors on loopback, NATS."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest

from donjon.core import EventBus
from donjon.errors import ExportError, VerificationError
from donjon.soc.elastic import ElasticSink
from donjon.soc.hec import HecSink
from donjon.soc.nats import NatsSink
from donjon.soc.outbox import Dispatcher, Outbox, SinkUnavailable
from donjon.soc.syslog_sink import SyslogSink
from donjon.soc.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSink, verify_signature
from donjon.storage.outbox import SqlOutboxStore
from donjon.storage.sql import open_database
from tests.soc.collector import Collector, Request, parse_concatenated_json
from tests.soc.ocsf_schema import assert_valid_ocsf
from tests.soc.rsyslog import Rsyslog
from tests.soc.samples import every_kind


@pytest.mark.parametrize("protocol", ["udp", "tcp", "tls"])
def test_syslog_reaches_a_real_rsyslog(rsyslog: Rsyslog, protocol: str) -> None:
    port = {"udp": rsyslog.udp_port, "tcp": rsyslog.tcp_port, "tls": rsyslog.tls_port}[protocol]
    before = len(rsyslog.received())
    sink = SyslogSink(
        "127.0.0.1", port, protocol=protocol, ca_file=rsyslog.tls.ca,  # type: ignore[arg-type]
        enterprise_number=32473, hostname="donjon-test", name=f"syslog-{protocol}",
    )  # fmt: skip
    events = every_kind()
    sink.emit_batch(events[:6])
    for event in events[6:]:
        sink.emit(event)
    sink.close()
    got = rsyslog.wait_for(before + len(events))[before:]
    assert len(got) == len(events)
    assert {r["inputname"] for r in got} == {protocol}
    by_uid = {json.loads(r["msg"])["metadata"]["uid"]: r for r in got}
    for event in events:
        record = by_uid[event.uid]  # rsyslog parsed our RFC 5424 fields as we meant them
        assert record["hostname"] == "donjon-test"
        assert record["app-name"] == "donjon"
        assert record["msgid"] == event.kind.value
        assert record["structured-data"].startswith(f'[donjon@32473 uid="{event.uid}"')
        assert_valid_ocsf(json.loads(record["msg"]))


def test_tls_refuses_a_server_it_cannot_verify(rsyslog: Rsyslog, tmp_path: Path) -> None:
    from tests.soc.tlsutil import make_tls_files

    other_ca = make_tls_files(tmp_path / "other").ca
    sink = SyslogSink("127.0.0.1", rsyslog.tls_port, protocol="tls", ca_file=other_ca)
    with pytest.raises(SinkUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        sink.emit(every_kind()[0])


def test_syslog_to_a_closed_port_is_unavailable() -> None:
    from tests.soc.rsyslog import free_port

    with pytest.raises(SinkUnavailable):
        SyslogSink("127.0.0.1", free_port(), protocol="tcp").emit(every_kind()[0])


# -- Splunk HEC ---------------------------------------------------------------


def hec_answer(request: Request) -> tuple[int, dict[str, Any]]:
    if request.path != "/services/collector/event":
        return 404, {"text": "not found", "code": 404}
    if request.headers.get("Authorization") != "Splunk 5e0f-token":
        return 401, {"text": "Invalid token", "code": 4}
    for obj in parse_concatenated_json(request.body):
        if not {"time", "event", "sourcetype", "host"} <= obj.keys():
            return 400, {"text": "Event field is required", "code": 12}
    return 200, {"text": "Success", "code": 0}


def test_hec_batches_concatenated_json_with_the_token() -> None:
    collector = Collector(hec_answer).start()
    try:
        sink = HecSink(collector.url, "5e0f-token", index="mlsec")
        events = every_kind()
        sink.emit_batch(events)
        (request,) = collector.requests
        objects = parse_concatenated_json(request.body)
        assert [o["fields"]["donjon_uid"] for o in objects] == [e.uid for e in events]
        assert all(o["index"] == "mlsec" and o["sourcetype"] == "donjon:ocsf" for o in objects)
        assert objects[0]["time"] == events[0].time.timestamp()
        for o in objects:
            assert_valid_ocsf(o["event"])
        with pytest.raises(SinkUnavailable, match="401"):
            HecSink(collector.url, "wrong").emit(events[0])
    finally:
        collector.stop()


# -- Elasticsearch _bulk ------------------------------------------------------


class FakeElastic:
    """Checks NDJSON ``create`` actions and answers like Elasticsearch per item."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.reject: set[str] = set()

    def __call__(self, request: Request) -> tuple[int, dict[str, Any]]:
        if request.path != "/_bulk":
            return 404, {}
        assert request.headers["Content-Type"] == "application/x-ndjson"
        assert request.body.endswith(b"\n")
        lines = request.body.decode().splitlines()
        items, errors = [], False
        for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
            meta = json.loads(action_line)["create"]
            doc = json.loads(doc_line)
            if meta["_id"] in self.reject:
                items.append({"create": {"status": 400, "error": {"type": "mapper_parsing"}}})
                errors = True
            elif meta["_id"] in self.docs:
                items.append({"create": {"status": 409, "error": {"type": "version_conflict"}}})
                errors = True
            else:
                self.docs[meta["_id"]] = doc
                items.append({"create": {"_id": meta["_id"], "status": 201}})
        return 200, {"took": 1, "errors": errors, "items": items}


def test_elastic_bulk_is_idempotent_by_uid_and_rejects_bad_documents() -> None:
    es = FakeElastic()
    collector = Collector(es).start()
    try:
        sink = ElasticSink(collector.url, index="donjon-test")
        events = every_kind()
        sink.emit_batch(events)
        sink.emit_batch(events)  # a re-delivery: 409 per item, counted as delivered
        assert set(es.docs) == {e.uid for e in events}
        doc = es.docs[events[1].uid]
        assert doc["threat"]["framework"] == "MITRE ATLAS"
        assert doc["event"]["kind"] == "alert"
        es.reject = {events[0].uid}
        es.docs.clear()
        with pytest.raises(ExportError, match="rejected 1 event"):
            sink.emit_batch(events[:2])
    finally:
        collector.stop()


# -- HMAC webhook -------------------------------------------------------------


def test_webhook_signs_what_it_sends_and_receivers_catch_tampering() -> None:
    secret = secrets.token_hex(16)
    collector = Collector().start()
    try:
        WebhookSink(collector.url + "/hook", secret).emit_batch(every_kind()[:3])
        (request,) = collector.requests
        ts, sig = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
        verify_signature(secret.encode(), request.body, ts, sig)
        assert len(json.loads(request.body)["events"]) == 3
        with pytest.raises(VerificationError, match="does not match"):
            verify_signature(secret.encode(), request.body + b" ", ts, sig)
        with pytest.raises(VerificationError, match="does not match"):
            verify_signature(b"another-secret-entirely", request.body, ts, sig)
        with pytest.raises(VerificationError, match="replay"):
            verify_signature(secret.encode(), request.body, ts, sig, now=float(ts) + 3600)
    finally:
        collector.stop()
    with pytest.raises(ExportError, match="16 characters"):
        WebhookSink("http://127.0.0.1:9/", "short")


# -- delivery through the outbox to an HTTP collector that goes down -------------


def test_outbox_delivers_to_hec_that_is_down_then_back_in_order(tmp_path: Path) -> None:
    db = open_database(f"sqlite+pysqlite:///{tmp_path / 'o.db'}")
    store = SqlOutboxStore(db)
    bus = EventBus(journal=Outbox(store))
    collector = Collector(hec_answer).start()
    port = collector.server.server_address[1] if collector.server else 0
    sink = HecSink(collector.url, "5e0f-token")
    dispatcher = Dispatcher(store, [sink], batch_size=5, backoff_base=0.01, backoff_max=0.05)
    try:
        first = every_kind()
        bus.publish_all(first)
        assert dispatcher.drain(5)
        collector.stop()  # the collector goes away
        second = every_kind()
        bus.publish_all(second)
        assert dispatcher.drain(0.3) is False
        assert dispatcher.states["hec"].failures >= 1
        collector = Collector(hec_answer).start(port)  # and comes back on the same port
        assert dispatcher.drain(5)
        uids = [
            o["fields"]["donjon_uid"]
            for r in collector.requests
            for o in parse_concatenated_json(r.body)
        ]
        assert uids == [e.uid for e in second]
        assert store.dead_letters() == []
    finally:
        collector.stop()
        db.dispose()


# -- NATS JetStream -----------------------------------------------------------


async def _stream_messages(stream: str, subject: str) -> list[Any]:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        sub = await js.pull_subscribe(subject, durable=None, stream=stream)
        msgs = await sub.fetch(int(info.state.messages), timeout=5) if info.state.messages else []
        return list(msgs)
    finally:
        await js.delete_stream(stream)
        await nc.close()


@pytest.mark.nats
def test_nats_jetstream_publishes_each_event_once_by_uid() -> None:
    stream = f"DONJON_TEST_{uuid.uuid4().hex[:10].upper()}"
    prefix = f"donjon.test.{stream.lower()}"
    sink = NatsSink(stream=stream, subject_prefix=prefix, name="nats")
    events = every_kind()
    try:
        sink.emit_batch(events)
        sink.emit_batch(events[:4])  # re-delivery: JetStream drops it by Nats-Msg-Id
    finally:
        sink.close()
    msgs = asyncio.run(_stream_messages(stream, f"{prefix}.>"))
    assert len(msgs) == len(events)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [e.uid for e in events]
    assert msgs[0].subject == f"{prefix}.finding"
    for m in msgs:
        assert_valid_ocsf(json.loads(m.data))


def test_nats_down_is_unavailable() -> None:
    from tests.soc.rsyslog import free_port

    sink = NatsSink(f"nats://127.0.0.1:{free_port()}", timeout=1)
    try:
        with pytest.raises(SinkUnavailable):
            sink.emit(every_kind()[0])
    finally:
        sink.close()

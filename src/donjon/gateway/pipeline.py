"""The one rule pipeline every request goes through, in both forms of the gateway.

``admit``: request id, route, authenticate, authorise (per model, deny by
default), sticky refusals, quotas (per principal, then global; cost = rows),
validation, detectors. ``complete``: read the model's answer, feed labels back to
the detectors, harden the output, account. Any unexpected error inside denies the
request (500 ``gateway_error``) and emits a DJ-GW-009 event: fail closed.

The pipeline does no I/O of its own besides the quota store and the event bus;
the reverse proxy (:mod:`.proxy`) and the in-process wrapper
(:mod:`.middleware`) feed it requests and forward what it admits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

from donjon.core.bus import EventBus
from donjon.core.decision import Decision
from donjon.core.events import SecurityEvent
from donjon.core.findings import Finding, Subject
from donjon.core.identity import Principal
from donjon.core.ports import Authorizer
from donjon.core.rules import Rule
from donjon.core.severity import Severity
from donjon.errors import AccessDenied, AuthenticationError, GatewayError
from donjon.gateway.auth import Authenticator, TrustedHeaderAuthenticator
from donjon.gateway.detectors import Action, Signal
from donjon.gateway.detectors.stores import Charge, Refusal
from donjon.gateway.guard import Inspection, ModelGuard
from donjon.gateway.hardening import BadUpstreamResponse, harden
from donjon.gateway.metrics import GatewayMetrics, ModelMetrics
from donjon.gateway.outputs import ModelOutput
from donjon.gateway.quotas import Bucket, QuotaResult, QuotaStore
from donjon.gateway.redis_link import RedisLink, StateUnavailable
from donjon.gateway.replies import Reply, detector_reply, encode, request_id_of
from donjon.gateway.rules import (
    AUTH_FAILURE,
    FAIL_CLOSED,
    INVALID_REQUEST,
    QUOTA_EXCEEDED,
    UNREADABLE_RESPONSE,
)
from donjon.gateway.validation import (
    ApiFormat,
    InvalidRequest,
    ParsedRequest,
    Rows,
    parse_request,
)

PREDICT = "model.predict"  # the vault's action for querying a model
log = logging.getLogger("donjon.gateway")
request_log = logging.getLogger("donjon.gateway.requests")
SOURCE = "gateway"
MAX_ERROR_KEYS = 1000  # (endpoint, error type) pairs counted apart
T = TypeVar("T")


@dataclass(frozen=True)
class GatewayRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    client: str | None = None


@dataclass
class Admitted:
    request_id: str
    guard: ModelGuard
    principal: Principal
    fmt: ApiFormat
    rows: int
    slots: list[int]
    started: float
    spent: float  # seconds inside the pipeline so far
    body: bytes  # what to forward: the canonical form of exactly the rows checked
    inputs: Rows
    request: GatewayRequest  # where it came from: the findings of its answer name it
    metrics: ModelMetrics  # the model's metric children
    withheld: bool = False  # the answer was refused after the model gave it
    suspected: bool = False  # the detectors flag the principal (the watermark's rate)

    @property
    def body_digest(self) -> str:
        """A digest of the body as sent (for the sampled request log only)."""
        return hashlib.sha256(self.request.body).hexdigest()[:16]


class Pipeline:
    def __init__(
        self,
        models: Sequence[ModelGuard],
        authenticator: Authenticator,
        quotas: QuotaStore,
        *,
        principal_bucket: Bucket,
        global_bucket: Bucket,
        bus: EventBus | None = None,
        metrics: GatewayMetrics | None = None,
        cooldown: float = 900.0,
        event_interval: float = 60.0,
        log_sample_rate: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        authorizer: Authorizer | None = None,
        blocking: bool = False,
        identity_header: TrustedHeaderAuthenticator | None = None,
        probers: frozenset[str] = frozenset(),
        links: Sequence[RedisLink] = (),
    ) -> None:
        self.probers = probers  # principal ids whose queries skip quotas and detectors
        # (model, rows, labels) of every readable answer: the watch's drift monitor
        self.observer: Callable[[str, Rows, Any], None] | None = None
        self.models = tuple(models)
        self.authenticator = authenticator
        self.identity_header = identity_header  # X-Client-Id from trusted proxies
        self.authorizer = authorizer
        self.blocking = blocking  # the vault's store and policy: called in a thread
        self.quotas = quotas
        self.principal_bucket = principal_bucket
        self.global_bucket = global_bucket
        self.bus = bus
        self.metrics = metrics or GatewayMetrics()
        self.cooldown = cooldown
        self.event_interval = event_interval
        self.log_sample_rate = log_sample_rate
        self.clock = clock
        self._last_event: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._event_lock = threading.Lock()
        self._sampler = random.Random()  # noqa: S311 - log sampling, not security
        self.links = tuple(links)  # the Redis connections of the quotas and states
        self._state_down = False
        # fail-closed denials per (endpoint, error type): [time of the last event, denials
        # since it]; one event per event_interval for each, with the count
        self._errors: dict[tuple[str, str], list[float]] = {}

    # -- admission --------------------------------------------------------

    def route(self, path: str) -> ModelGuard | None:
        return next((m for m in self.models if m.matches(path)), None)

    async def admit_async(self, request: GatewayRequest) -> Admitted | Reply:
        """Admit or refuse a request (the servers' form: Redis calls are awaited)."""
        return await self._admission(request, inline=False)

    def admit(self, request: GatewayRequest) -> Admitted | Reply:
        """The synchronous form, for pipelines whose quotas and state are in the process."""
        self._check_inline()
        return _drive(self._admission(request, inline=True))

    async def _admission(self, request: GatewayRequest, *, inline: bool) -> Admitted | Reply:
        started = self.clock()
        request_id = request_id_of(request.headers)
        try:
            return await self._admit(request, request_id, started, inline)
        except StateUnavailable as e:
            return self._unavailable(request_id, request.path, e)
        except Exception as e:  # noqa: BLE001 - fail closed: any surprise denies
            return self._fail_closed(request_id, request.path, e, started)

    async def _admit(
        self, request: GatewayRequest, request_id: str, started: float, inline: bool
    ) -> Admitted | Reply:
        guard = self.route(request.path)
        if guard is None:
            return Reply(404, "not_found", "no model is served at this path", request_id)
        if self.blocking and not inline:  # the vault's store and policy: off the event loop
            who = await asyncio.to_thread(self._identify, guard, request, request_id)
        else:
            who = self._identify(guard, request, request_id)
        if isinstance(who, Reply):
            return self._refuse(guard, who)
        principal = who
        try:
            parsed = parse_request(request.body, guard.api, guard.contract)
        except InvalidRequest as e:
            # a refused principal stays refused, whatever it sends
            for rule_id, (_, action) in (
                await guard.states.refusals(principal.id, self.clock())
            ).items():
                return self._refuse(guard, detector_reply(rule_id, action, request_id))
            self._finding(
                INVALID_REQUEST, principal, guard, request, request_id, f"invalid request: {e}", {}
            )
            status = 413 if "exceeds" in str(e) and "bytes" in str(e) else 400
            return self._refuse(guard, Reply(status, "invalid_request", str(e), request_id))
        rows = parsed.rows
        metrics = self.metrics.model(guard.name)  # the one lookup of this request
        if principal.id in self.probers:
            metrics.queries.inc(len(rows))
            inspection = Inspection(slots=[-1] * len(rows))
            return self._admitted(
                request, request_id, started, guard, principal, parsed, inspection, metrics
            )
        cost = float(len(rows))
        charges = (
            Charge(f"p:{principal.id}", self.principal_bucket, cost),
            Charge("global", self.global_bucket, cost),
        )
        opened = await guard.states.open(principal.id, self.quotas, charges, self.clock())
        self._reachable()
        if opened.refused is not None:
            rule_id, action = opened.refused
            return self._refuse(guard, detector_reply(rule_id, action, request_id))
        if opened.denied is not None:
            return self._over_quota(guard, principal, request, request_id, *opened.denied)
        try:  # no await until the state is closed
            metrics.queries.inc(len(rows))
            inspection = guard.inspect(principal, rows, opened.state)
            reply, refusals = self._refusals(inspection.signals, request_id)
        except BaseException:
            await guard.states.abort(opened)
            raise
        await guard.states.close(opened, refusals)
        observe = metrics.ood_score.observe
        for score in inspection.ood_scores:
            observe(score)
        self._report(guard, principal, request, request_id, inspection.signals)
        if reply is not None:
            return self._refuse(guard, reply)
        return self._admitted(
            request, request_id, started, guard, principal, parsed, inspection, metrics
        )

    def _identify(
        self, guard: ModelGuard, request: GatewayRequest, request_id: str
    ) -> Principal | Reply:
        """Who is asking, and may they query this model (the reply says why not)."""
        try:
            principal = None
            if self.identity_header is not None:
                principal = self.identity_header.principal(request.headers, request.client)
            if principal is None:
                principal = self.authenticator.authenticate(request.headers)
        except AuthenticationError as e:
            self._finding(
                AUTH_FAILURE, None, guard, request, request_id, f"authentication failed: {e}", {}
            )
            return Reply(
                401,
                "unauthenticated",
                "invalid credentials",  # the reason stays in the finding, not the answer
                request_id,
                {"www-authenticate": "Bearer"},
            )
        denied = self._authorise(guard, principal, request, request_id)
        return principal if denied is None else denied

    def _over_quota(
        self,
        guard: ModelGuard,
        principal: Principal,
        request: GatewayRequest,
        request_id: str,
        key: str,
        quota: QuotaResult,
    ) -> Reply:
        scope = "global" if key == "global" else "principal"
        message = f"{scope} rate quota exceeded"
        self._finding(QUOTA_EXCEEDED, principal, guard, request, request_id, message, {})
        wait = max(1, int(np.ceil(quota.retry_after)))
        reply = Reply(
            429, "rate_limited", "rate quota exceeded", request_id, {"retry-after": str(wait)}
        )
        return self._refuse(guard, reply)

    def _admitted(
        self,
        request: GatewayRequest,
        request_id: str,
        started: float,
        guard: ModelGuard,
        principal: Principal,
        parsed: ParsedRequest,
        inspection: Inspection,
        metrics: ModelMetrics,
    ) -> Admitted:
        rows = parsed.rows
        now = self.clock()
        return Admitted(
            request_id=request_id,
            guard=guard,
            principal=principal,
            fmt=parsed.format,
            rows=len(rows),
            slots=inspection.slots,
            started=started,
            spent=now - started,
            body=parsed.body,
            inputs=rows,
            request=request,
            metrics=metrics,
            suspected=inspection.suspected,
        )

    def _authorise(
        self, guard: ModelGuard, principal: Principal, request: GatewayRequest, request_id: str
    ) -> Reply | None:
        """The model's allow list, the credential's scopes, then the vault's policy, if any."""
        resource = f"models/{guard.name}"
        why = None
        if not guard.authorised(principal, delegated=self.authorizer is not None):
            why = "no rule of this model grants it"
        elif not _scoped_for_predict(principal.scopes):
            why = f"the credential's scopes exclude {PREDICT}"
        if why is not None:
            decision = Decision.deny(principal, PREDICT, resource, why)
            self._publish(
                SecurityEvent.of_decision(
                    decision, SOURCE, request_id=request_id, path=request.path
                )
            )
        elif self.authorizer is not None:  # the vault's policy; it records its decision
            decision = self.authorizer.authorize(principal, PREDICT, resource)
            if decision.allowed:
                return None
        else:
            return None
        reason = "; ".join(decision.reasons) or "denied"
        message = f"not allowed to query model {guard.name!r}: {reason}"
        return Reply(403, "forbidden", message, request_id)

    def _refusals(
        self, signals: list[Signal], request_id: str
    ) -> tuple[Reply | None, list[Refusal]]:
        """The reply refusing this request, if a signal refuses, and the sticky refusals."""
        reply: Reply | None = None
        refusals = []
        for signal in signals:
            if signal.action.refuses and reply is None:
                if signal.detector != "ood":  # per-input refusals are not sticky
                    refusals.append(Refusal(signal.rule.id, signal.action, self.cooldown))
                reply = detector_reply(signal.rule.id, signal.action, request_id)
        return reply, refusals

    def _report(
        self,
        guard: ModelGuard,
        principal: Principal,
        request: GatewayRequest,
        request_id: str,
        signals: list[Signal],
    ) -> None:
        for signal in signals:
            self.metrics.signals.labels(guard.name, signal.detector, signal.action.value).inc()
            severity = Severity.INFO if signal.action is Action.LOG else signal.rule.severity
            self._finding(
                signal.rule,
                principal,
                guard,
                request,
                request_id,
                signal.message,
                {**signal.evidence, "detector": signal.detector, "action": signal.action.value},
                severity=severity,
            )

    # -- completion -------------------------------------------------------

    async def complete_async(
        self, admitted: Admitted, status: int, body: bytes
    ) -> tuple[int, bytes]:
        """The status and body to return for the model's answer (hardened)."""
        begin = self.clock()
        try:
            out_status, out_body = await self._complete(admitted, status, body)
        except StateUnavailable as e:
            reply = self._unavailable(admitted.request_id, admitted.guard.name, e)
            return reply.status, encode(reply.body())
        except Exception as e:  # noqa: BLE001 - fail closed
            reply = self._fail_closed(admitted.request_id, admitted.guard.name, e, begin)
            return reply.status, encode(reply.body())
        now = self.clock()
        spent = admitted.spent + (now - begin)
        metrics = admitted.metrics
        metrics.overhead.observe(spent)
        metrics.latency.observe(now - admitted.started)
        metrics.requests("deny" if admitted.withheld else "allow", out_status).inc()
        self._log_sample(admitted, out_status, now - admitted.started)
        if self._errors:  # a failure may have stopped: report its last window
            self.flush_denials()
        return out_status, out_body

    def complete(self, admitted: Admitted, status: int, body: bytes) -> tuple[int, bytes]:
        """The synchronous form of :meth:`complete_async` (in-process state only)."""
        self._check_inline()
        return _drive(self.complete_async(admitted, status, body))

    async def aclose(self) -> None:
        """Report the denials not yet reported; close this event loop's Redis clients."""
        self.flush_denials(every=True)
        for guard in self.models:
            await guard.states.aclose()
        for link in self.links:
            await link.aclose()

    async def _complete(self, admitted: Admitted, status: int, body: bytes) -> tuple[int, bytes]:
        if status >= 400:
            code = "upstream_error"
            reply = Reply(
                502 if status >= 500 else status,
                code,
                f"the model answered {status}",
                admitted.request_id,
            )
            return reply.status, encode(reply.body())
        guard = admitted.guard
        marked = False
        try:
            output = guard.reader.read(body)
            if guard.watermark is not None:  # before hardening, which keeps the marks
                marking = await guard.watermark.mark(
                    admitted.principal,
                    admitted.inputs,
                    output,
                    suspected=admitted.suspected,
                    slots=admitted.slots,
                )
                marked = marking.changed
                for event in marking.events:
                    self._publish(event)
            hardened = harden(output, guard.hardening)
            if hardened is None and marked:
                hardened = output.serialised()
        except BadUpstreamResponse as e:
            guard.reader.announce(None, str(e))
            self._unreadable(admitted, str(e))
            return status, body  # forwarded as it is, said once by the log and by an event
        guard.reader.announce(output)
        if len(output.labels) == admitted.rows:
            if any(slot >= 0 for slot in admitted.slots):
                await guard.states.label(admitted.principal.id, admitted.slots, output.labels)
            if self.observer is not None:
                self._observe(guard.name, admitted.inputs, output.labels)
            refusal = self._check_answer(admitted, output)
            if refusal is not None:  # the model answered; the gateway withholds it
                admitted.withheld = True
                return refusal.status, encode(refusal.body())
        return status, hardened if hardened is not None else body

    def _check_answer(self, admitted: Admitted, output: ModelOutput) -> Reply | None:
        """The answer-consistency test (DJ-GW-012): its events, and the refusal in block
        mode. Not sticky: the next request of the principal is judged on its own."""
        if admitted.principal.id in self.probers:
            return None
        signals = admitted.guard.check_answer(admitted.inputs, output)
        if not signals:
            return None
        self._report(
            admitted.guard, admitted.principal, admitted.request, admitted.request_id, signals
        )
        refusing = next((s for s in signals if s.action.refuses), None)
        if refusing is None:
            return None
        return detector_reply(refusing.rule.id, refusing.action, admitted.request_id)

    def _observe(self, model: str, rows: Rows, labels: Any) -> None:
        """Traffic for the watch's drift monitor; its failure never fails a request."""
        try:
            if self.observer is not None:
                self.observer(model, rows, labels)
        except Exception as e:  # noqa: BLE001 - monitoring, not a security decision
            log.warning("drift observer failed on %s: %s", model, type(e).__name__)

    def _unreadable(self, admitted: Admitted, problem: str) -> None:
        guard = admitted.guard
        if not self._due((f"model:{guard.name}", UNREADABLE_RESPONSE.id)):
            return
        hardened = guard.hardening.active
        finding = Finding(
            UNREADABLE_RESPONSE,
            Subject(model=guard.name, principal=admitted.principal.id),
            f"the model's answer could not be read ({problem}); forwarded "
            + ("WITHOUT the configured hardening" if hardened else "as it is"),
            severity=Severity.HIGH if hardened else Severity.MEDIUM,
            evidence={"request_id": admitted.request_id, "hardening_skipped": hardened},
        )
        self._publish(SecurityEvent.of_finding(finding, SOURCE, principal=admitted.principal))

    # -- events, refusals, logs -------------------------------------------

    def _refuse(self, guard: ModelGuard | None, reply: Reply) -> Reply:
        self.metrics.requests.labels(guard.name if guard else "-", "deny", str(reply.status)).inc()
        return reply

    def _unavailable(self, request_id: str, where: str, error: StateUnavailable) -> Reply:
        """Refuse (503) while the shared state is unreachable: one event per outage."""
        if not self._state_down:
            self._state_down = True
            log.error("shared gateway state unavailable, requests refused: %s", error)
            finding = Finding(
                FAIL_CLOSED,
                Subject(endpoint=where),
                "the gateway's shared state (Redis) is unavailable: every request is refused "
                f"(503) until it answers again ({error})",
                severity=Severity.HIGH,
                evidence={"request_id": request_id, "store": "redis"},
            )
            try:
                self._publish(SecurityEvent.of_finding(finding, SOURCE, request_id=request_id))
            except Exception:  # the bus failing must not turn a deny into a crash
                log.exception("could not publish the state outage event")
        self.metrics.requests.labels("-", "deny", "503").inc()
        message = "the gateway's shared state is unavailable; the request was denied"
        return Reply(503, "state_unavailable", message, request_id, {"retry-after": "1"})

    def _reachable(self) -> None:
        if self._state_down:
            self._state_down = False
            log.warning("shared gateway state reachable again: requests are admitted")

    def _check_inline(self) -> None:
        if self.links:
            raise GatewayError(
                "this pipeline keeps its state in Redis: call admit_async / complete_async "
                "from an event loop (the proxy and the middleware do)"
            )

    def _fail_closed(self, request_id: str, where: str, error: Exception, started: float) -> Reply:
        """Deny (500). One DJ-GW-009 event per endpoint and error type per
        ``event_interval``, counting the requests denied since the previous one."""
        log.error("request %s denied: gateway error", request_id, exc_info=error)
        kind = type(error).__name__
        now = self.clock()
        with self._event_lock:
            if (where, kind) not in self._errors and len(self._errors) >= MAX_ERROR_KEYS:
                where = "*"  # bounded: many endpoints failing share one count
            seen = self._errors.setdefault((where, kind), [-math.inf, 0.0])
            seen[1] += 1
            due = now - seen[0] >= self.event_interval
            denied = int(seen[1])
            if due:
                self._errors[(where, kind)] = [now, 0.0]
        if due:
            self._publish_denials(where, kind, denied, request_id)
        self.metrics.requests.labels("-", "deny", "500").inc()
        message = "the gateway could not process this request; it was denied"
        if isinstance(error, GatewayError | AccessDenied):
            message = f"{message}: {error}"
        return Reply(500, "gateway_error", message, request_id)

    def flush_denials(self, *, every: bool = False) -> None:
        """Publish the denials counted since the last event of each error once its window
        has passed (``every``: now, at shutdown), so a failure that stopped is reported."""
        now = self.clock()
        pending = []
        with self._event_lock:
            for key, (last, count) in list(self._errors.items()):
                if not (every or now - last >= self.event_interval):
                    continue
                if count:
                    pending.append((key, int(count)))
                    self._errors[key] = [now, 0.0]
                else:
                    del self._errors[key]  # a quiet window: forgotten
        for (where, kind), denied in pending:
            self._publish_denials(where, kind, denied, None)

    def _publish_denials(self, where: str, kind: str, denied: int, request_id: str | None) -> None:
        try:
            finding = Finding(
                FAIL_CLOSED,
                Subject(endpoint=where),
                f"gateway error, {denied} request(s) denied: {kind}",
                evidence={"request_id": request_id, "error": kind, "denied": denied},
            )
            self._publish(SecurityEvent.of_finding(finding, SOURCE, request_id=request_id))
        except Exception:  # the bus failing must not turn a deny into a crash
            log.exception("could not publish the fail-closed event (%s at %s)", kind, where)

    def _finding(
        self,
        rule: Rule,
        principal: Principal | None,
        guard: ModelGuard,
        request: GatewayRequest,
        request_id: str,
        message: str,
        evidence: dict[str, Any],
        *,
        severity: Severity | None = None,
    ) -> None:
        who = principal.id if principal else (request.client or "unknown")
        if not self._due((who, rule.id)):
            return
        finding = Finding(
            rule,
            Subject(
                model=guard.name,
                principal=principal.id if principal else None,
                endpoint=request.path,
            ),
            message,
            severity=severity,
            evidence={**evidence, "request_id": request_id, "client": request.client},
        )
        address: dict[str, Any] = {"src_ip": request.client} if request.client else {}
        self._publish(SecurityEvent.of_finding(finding, SOURCE, principal=principal, **address))

    def _due(self, key: tuple[str, str]) -> bool:
        """At most one event per (principal, rule) per ``event_interval`` seconds."""
        now = self.clock()
        with self._event_lock:
            last = self._last_event.get(key)
            if last is not None and now - last < self.event_interval:
                return False
            self._last_event[key] = now
            self._last_event.move_to_end(key)
            while len(self._last_event) > 100_000:
                self._last_event.popitem(last=False)
        return True

    def _publish(self, event: SecurityEvent) -> None:
        if self.bus is not None:
            self.bus.publish(event)

    def _log_sample(self, admitted: Admitted, status: int, seconds: float) -> None:
        if self.log_sample_rate <= 0 or self._sampler.random() >= self.log_sample_rate:
            return
        # redacted: who, what shape, a digest of the body; never the inputs or outputs
        request_log.info(
            "request_id=%s principal=%s model=%s rows=%d body_sha256=%s status=%d ms=%.2f",
            admitted.request_id,
            admitted.principal.id,
            admitted.guard.name,
            admitted.rows,
            admitted.body_digest,
            status,
            seconds * 1000,
        )


def _scoped_for_predict(scopes: frozenset[str] | None) -> bool:
    """Does a scoped credential (a vault token's scopes) cover ``model.predict``?"""
    return scopes is None or bool({"*", "model.*", PREDICT} & scopes)


def _drive(step: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (in-process stores) without an event loop."""
    try:
        step.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    step.close()
    raise GatewayError("an in-process gateway step waited on I/O")

"""The console's routes under ``/ui``: login, pages, the quarantine actions, the pulse.

Every page is authorised as the Cedar action ``ui.view`` on ``ui/<page>``
through the registry (so the decision is recorded in the ledger like an API
call's); an action is authorised as the API's own action (``admin`` to release,
``dataset.delete`` / ``model.delete`` to reject). A request without a live
session goes to the login page; a form without the session's CSRF token, or
posted from another origin, is refused (403) before anything happens.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from donjon.core.identity import Principal, PrincipalKind
from donjon.core.ports import Clock
from donjon.errors import AccessDenied, AuthenticationError, DonjonError, InputError, NotFound
from donjon.registry import Kind, Registry, check_name, check_version
from donjon.registry.guard import decide as decide_quietly
from donjon.server.auth_failures import FailedAuthLimiter
from donjon.server.ui import datasets as data_pages
from donjon.server.ui import views, watch
from donjon.server.ui.bom import model_bom
from donjon.server.ui.events import day_before
from donjon.server.ui.headers import SecurityHeaders
from donjon.server.ui.oidc import PENDING_COOKIE, PENDING_SECONDS, OidcLogin, Pending
from donjon.server.ui.oidc import PREFIX as OIDC_PREFIX
from donjon.server.ui.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    Session,
    SessionRows,
    SessionStore,
    same_secret,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PREFIX = "/ui"
VIEW = "ui.view"
PAGES = ("posture", "models", "datasets", "gateway", "events", "audit")
MAX_REASON = 1000
REFRESH_HEADER = "x-donjon-refresh"  # set by console.js when it re-reads the page it shows


# The only notices a page repeats from its URL: what the console's own actions said
# (a crafted link cannot put other words on the page).
NOTICE = re.compile(
    r"(released|rejected) [a-z0-9._/-]{1,200}@[0-9]{1,10}( \(deleted; its record stays\))?"
)


def shown_notice(text: str) -> str:
    return text if NOTICE.fullmatch(text) else ""


class LoginRequired(Exception):
    """No live session: the browser goes to the login page."""


@dataclass
class Console:
    registry: Registry
    authenticate: Callable[[str], Principal]
    sessions: SessionStore
    sources: views.Sources
    failures: FailedAuthLimiter | None
    verify_ledger: Callable[[], dict[str, Any]] | None = None
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    diffs: data_pages.DiffCache = field(default_factory=data_pages.DiffCache)
    warmed: float | None = None  # seconds the start-up warm-up took, once done
    oidc: OidcLogin | None = None  # sign-in through the configured OIDC provider
    _stop: threading.Event = field(default_factory=threading.Event)
    _warmer: threading.Thread | None = None
    poll_seconds: float = 30.0
    templates: Environment = field(
        default_factory=lambda: Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
    )

    @property
    def clock(self) -> Clock:
        return self.sessions.clock

    # -- who is asking -----------------------------------------------------------

    def session(self, request: Request) -> tuple[Session, Principal]:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            raise LoginRequired
        try:  # re-checked each time: revoked tokens and disabled accounts stop at once
            principal = self.identify(session.credential)
        except AuthenticationError:
            self.sessions.close(request.cookies.get(COOKIE))
            raise LoginRequired from None
        if principal.kind is PrincipalKind.ANONYMOUS:
            raise LoginRequired
        return session, principal

    def identify(self, credential: str) -> Principal:
        """The principal of a session's credential: an ID token of the console's OIDC
        provider, or what the API accepts (API token, JWT)."""
        if credential.startswith(OIDC_PREFIX):
            if self.oidc is None:
                raise AuthenticationError("OIDC sign-in is not configured")
            return self.oidc.verify(credential)
        return self.authenticate(credential)

    def view(self, request: Request, page: str) -> tuple[Session, Principal]:
        """The session's principal, allowed ``ui.view`` on ``ui/<page>``.

        Each view is authorised. It is ledgered too, unless it is a background
        refresh (the pulse, or the page script re-reading the page it shows) of a
        page whose view this session has already ledgered: an auditor sees every
        page each session opened and every navigation, and every refusal, but not
        one entry per tab every poll period (see docs/console.md).
        """
        session, principal = self.session(request)
        resource = f"ui/{page}"
        background = page == "pulse" or request.headers.get(REFRESH_HEADER) == "1"
        if background and page in session.viewed:
            decision = decide_quietly(self.registry.authorizer, principal, VIEW, resource)
            if decision.allowed:
                return session, principal
        self.registry.authorize(principal, VIEW, resource)  # recorded, raises on deny
        if page not in session.viewed:
            self.sessions.viewed(request.cookies.get(COOKIE), page)
        return session, principal

    # -- rendering ---------------------------------------------------------------

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        page = self.templates.get_template(template)
        poll_ms = int(self.poll_seconds * 1000)
        html = page.render(prefix=PREFIX, pages=PAGES, poll_ms=poll_ms, **context)
        return HTMLResponse(html, status)

    def page(
        self,
        request: Request,
        page: str,
        build: Callable[[Principal], dict[str, Any]],
        template: str | None = None,
    ) -> Response:
        try:
            session, principal = self.view(request, page)
            self.refresh()
            context = build(principal)
        except LoginRequired:
            return RedirectResponse(f"{PREFIX}/login", 303)
        except DonjonError as e:
            return self.error(e)
        return self.render(
            template or f"{page}.html",
            page=page,
            principal=principal,
            csrf=session.csrf,
            notice=shown_notice(request.query_params.get("notice", "")),
            alarm=self.alarm(),
            seen=self.sources.index.last_change if self.sources.index else 0,
            **context,
        )

    def error(self, e: DonjonError) -> HTMLResponse:
        if isinstance(e, AccessDenied):
            return self.render("error.html", 403, title="Not allowed", detail=str(e))
        if isinstance(e, NotFound):
            return self.render("error.html", 404, title="Not found", detail=str(e))
        if isinstance(e, InputError):
            return self.render("error.html", 400, title="Bad request", detail=str(e))
        log.error("console request failed: %s: %s", type(e).__name__, e)
        return self.render("error.html", 503, title="Unavailable", detail=type(e).__name__)

    def refresh(self) -> None:
        if self.sources.index is not None:
            self.sources.index.refresh()

    def start_warm_up(self) -> None:
        """Warm up in a background thread; :meth:`stop` ends it."""
        self._warmer = threading.Thread(target=self.warm, name="console-warm-up", daemon=True)
        self._warmer.start()

    def stop(self) -> None:
        """Stop the warm-up (at shutdown): it leaves what is left to the first pages."""
        self._stop.set()
        if self._warmer is not None:
            self._warmer.join(timeout=30)

    def warm(self) -> float:
        """Do at start what the first requests would: read the ledger's tail into the
        index, run the Sigma rules over it, compile the templates. Its seconds."""
        started = time.perf_counter()
        try:
            if self.sources.index is not None:
                self.sources.index.refresh(self._stop)
            if self.sources.sigma is not None and not self._stop.is_set():
                self.sources.sigma.refresh(self._stop)
            for name in self.templates.list_templates():
                self.templates.get_template(name)
        except DonjonError as e:  # the first page reads what is missing, and says why
            log.warning("console warm-up stopped: %s: %s", type(e).__name__, e)
        self.warmed = time.perf_counter() - started
        return self.warmed

    def alarm(self) -> dict[str, Any] | None:
        """The newest high or critical finding of the last 24 hours, and how many there were."""
        index = self.sources.index
        if index is None:
            return None
        start = day_before(self.clock.now())
        found = [e for e in index.since(start, "finding") if e.level >= 4]
        if not found:
            return None
        return {"count": len(found), "newest": found[0]}

    # -- actions -----------------------------------------------------------------

    def act(
        self,
        request: Request,
        page: str,
        form: dict[str, str],
        change: Callable[[Principal], str],
    ) -> Response:
        """Run a form's ``change`` for the session's principal, after the CSRF and origin
        checks and the ``ui.view`` decision on ``page``; then go where it says."""
        try:
            session, principal = self.session(request)
            if not self.same_origin(request) or not same_secret(form.get("csrf"), session.csrf):
                return self.render("error.html", 403, title="Refused", detail="CSRF check failed")
            self.registry.authorize(principal, VIEW, f"ui/{page}")
            target = change(principal)
        except LoginRequired:
            return RedirectResponse(f"{PREFIX}/login", 303)
        except DonjonError as e:
            return self.error(e)
        return RedirectResponse(target, 303)

    async def form(self, request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", "replace")
        try:
            return {k: v[0] for k, v in parse_qs(body, max_num_fields=20).items()}
        except ValueError:  # too many fields: no CSRF token either, so the form is refused
            return {}

    def same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            return True  # no Origin header: the SameSite cookie and the token still hold
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return origin == expected


def mount_console(
    app: FastAPI,
    *,
    registry: Registry,
    authenticate: Callable[[str], Principal],
    clock: Clock,
    sources: views.Sources,
    verify_ledger: Callable[[], dict[str, Any]] | None = None,
    session_ttl: float = 900.0,
    poll_seconds: float = 30.0,
    session_rows: SessionRows | None = None,
    oidc: OidcLogin | None = None,
) -> Console:
    """Serve the console under ``/ui`` on ``app`` (the vault's FastAPI app); sessions live
    in ``session_rows`` (the database's, shared by workers) or in this process."""
    console = Console(
        registry,
        authenticate,
        SessionStore(clock, session_ttl, session_rows),
        sources,
        getattr(app.state, "auth_failures", None),
        verify_ledger,
        poll_seconds=poll_seconds,
        oidc=oidc,
    )
    app.state.console = console
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    _add_login(app, console)
    if oidc is not None:
        _add_oidc(app, console, oidc)
    _add_pages(app, console)
    _add_actions(app, console)
    app.add_middleware(SecurityHeaders, prefix=PREFIX)
    return console


def _cookie_flags(request: Request) -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
        "path": PREFIX,
    }


def _add_login(app: FastAPI, console: Console) -> None:
    @app.get(PREFIX, include_in_schema=False)
    def home() -> Response:
        return RedirectResponse(f"{PREFIX}/posture", 303)

    @app.get(f"{PREFIX}/login", include_in_schema=False)
    def login_page(request: Request) -> Response:
        return _login_form(request, console, "")

    @app.post(f"{PREFIX}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await console.form(request)
        if not console.same_origin(request) or not same_secret(
            form.get("csrf"), request.cookies.get(LOGIN_COOKIE, "")
        ):
            return console.render("error.html", 403, title="Refused", detail="CSRF check failed")
        credential = form.get("token", "").strip()
        source = request.client.host if request.client else "unknown"
        request_id = str(request.scope.get("state", {}).get("request_id", ""))
        failures = console.failures
        if failures is not None and failures.retry_after(source, request_id) is not None:
            return _login_form(request, console, "Too many failed attempts; retry later.", 429)
        try:
            principal = await anyio.to_thread.run_sync(console.authenticate, credential)
            if principal.kind is PrincipalKind.ANONYMOUS:
                raise AuthenticationError("anonymous principal refused")
        except AuthenticationError as e:
            if failures is not None:
                await anyio.to_thread.run_sync(failures.failed, source, request_id, str(e))
            return _login_form(request, console, "Invalid credentials.", 401)
        session_id, _ = console.sessions.open(credential)
        response = RedirectResponse(f"{PREFIX}/posture", 303)
        ttl = int(console.sessions.ttl.total_seconds())
        response.set_cookie(COOKIE, session_id, max_age=ttl, **_cookie_flags(request))
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    @app.post(f"{PREFIX}/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        form = await console.form(request)
        session = console.sessions.get(request.cookies.get(COOKIE))
        if session is None or not same_secret(form.get("csrf"), session.csrf):
            return console.render("error.html", 403, title="Refused", detail="CSRF check failed")
        console.sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{PREFIX}/login", 303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response


def _add_oidc(app: FastAPI, console: Console, oidc: OidcLogin) -> None:
    def callback_url(request: Request) -> str:
        return str(request.url_for("ui-oidc-callback"))

    @app.get(f"{PREFIX}/oidc/start", include_in_schema=False)
    def start(request: Request) -> Response:
        try:
            url, pending = oidc.start(callback_url(request))
        except DonjonError as e:
            log.warning("OIDC sign-in unavailable: %s", e)
            return _login_form(request, console, "The identity provider is unavailable.", 503)
        response = RedirectResponse(url, 303)
        response.set_cookie(  # Lax: it must come back on the provider's redirect
            PENDING_COOKIE, pending.encode(), max_age=PENDING_SECONDS, httponly=True,
            samesite="lax", secure=request.url.scheme == "https", path=f"{PREFIX}/oidc",
        )  # fmt: skip
        return response

    @app.get(f"{PREFIX}/oidc/callback", name="ui-oidc-callback", include_in_schema=False)
    def callback(request: Request, state: str = "", code: str = "", error: str = "") -> Response:
        source = request.client.host if request.client else "unknown"
        request_id = str(request.scope.get("state", {}).get("request_id", ""))
        failures = console.failures
        if failures is not None and failures.retry_after(source, request_id) is not None:
            return _login_form(request, console, "Too many failed attempts; retry later.", 429)
        pending = Pending.decode(request.cookies.get(PENDING_COOKIE))
        try:
            if error:
                raise AuthenticationError(f"the identity provider said {error[:100]!r}")
            credential, _ = oidc.finish(pending, state, code, callback_url(request))
        except AuthenticationError as e:
            log.warning("OIDC sign-in refused: %s", e)
            if failures is not None:
                failures.failed(source, request_id, f"OIDC: {e}")
            return _login_form(request, console, "Sign-in refused.", 401)
        session_id, _ = console.sessions.open(credential)
        # A page, not a redirect: the session cookie is SameSite=Strict, and a browser
        # sends none on a navigation that started at the provider's site.
        response = console.render("signed_in.html", page="login")
        ttl = int(console.sessions.ttl.total_seconds())
        response.set_cookie(COOKIE, session_id, max_age=ttl, **_cookie_flags(request))
        response.delete_cookie(PENDING_COOKIE, path=f"{PREFIX}/oidc")
        return response


def _login_form(request: Request, console: Console, message: str, status: int = 200) -> Response:
    value = secrets.token_urlsafe(32)
    response = console.render(
        "login.html", status, csrf=value, message=message, page="login", oidc=console.oidc
    )
    response.set_cookie(LOGIN_COOKIE, value, max_age=600, **_cookie_flags(request))
    return response


def _add_pages(app: FastAPI, console: Console) -> None:
    registry, sources = console.registry, console.sources

    @app.get(f"{PREFIX}/posture", include_in_schema=False)
    def posture(request: Request) -> Response:
        return console.page(
            request,
            "posture",
            lambda who: views.posture(registry, who, sources, console.clock.now()),
        )

    @app.get(f"{PREFIX}/models", include_in_schema=False)
    def models(request: Request) -> Response:
        return console.page(
            request,
            "models",
            lambda who: {"names": views.visible_names(registry, who, Kind.MODEL)},
        )

    @app.get(f"{PREFIX}/bom", include_in_schema=False)
    def bom(request: Request, model: str = "", version: str = "") -> Response:
        """The ML-BOM download: ``ui.view`` on ``ui/models``, then the API's ``model.read``."""
        try:
            _, principal = console.view(request, "models")
            name, number = check_name(model), check_version(version)
            document = model_bom(registry, principal, name, number)
        except LoginRequired:
            return RedirectResponse(f"{PREFIX}/login", 303)
        except DonjonError as e:
            return console.error(e)
        filename = f"{name.replace('/', '_')}-{number}.cdx.json"
        return JSONResponse(
            document,
            media_type="application/vnd.cyclonedx+json",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @app.get(f"{PREFIX}/models/{{name:path}}", include_in_schema=False)
    def model(request: Request, name: str) -> Response:
        def build(who: Principal) -> dict[str, Any]:
            detail = views.model_detail(registry, who, check_name(name), sources)
            return {"model": detail, "gate_columns": views.GATE_COLUMNS}

        return console.page(request, "model", build)

    @app.get(f"{PREFIX}/datasets", include_in_schema=False)
    def datasets(request: Request) -> Response:
        return console.page(request, "datasets", lambda who: data_pages.overview(registry, who))

    @app.get(f"{PREFIX}/datasets/{{name:path}}", include_in_schema=False)
    def dataset(request: Request, name: str) -> Response:
        query = {k: request.query_params.get(k, "")[:20] for k in ("version", "old", "new")}

        def build(who: Principal) -> dict[str, Any]:
            found = data_pages.detail(registry, who, check_name(name), query, console.diffs)
            return {"dataset": found}

        return console.page(request, "dataset", build)

    @app.get(f"{PREFIX}/gateway", include_in_schema=False)
    def gateway(request: Request) -> Response:
        def build(who: Principal) -> dict[str, Any]:
            visible = set(views.visible_names(registry, who, Kind.MODEL))
            prints = {
                ref: found
                for ref, found in watch.fingerprint_attachments(registry).items()
                if ref.rsplit("@", 1)[0] in visible
            }
            entries = sources.index.entries() if sources.index else iter(())
            return {
                **views.gateway(sources, console.clock.now()),
                "watch": watch.watch_view(entries, prints),
            }

        return console.page(request, "gateway", build)

    @app.get(f"{PREFIX}/events", include_in_schema=False)
    def events(request: Request) -> Response:
        query = request.query_params
        filters = {k: query.get(k, "")[:200] for k in ("text", "kind", "severity", "source")}

        def build(who: Principal) -> dict[str, Any]:
            index = sources.index
            found = index.search(limit=200, **filters) if index else []
            return {"events": found, "filters": filters, "severities": views.SEVERITY_CHOICES}

        return console.page(request, "events", build)

    @app.get(f"{PREFIX}/events/{{seq}}", include_in_schema=False)
    def event(request: Request, seq: str) -> Response:
        def build(who: Principal) -> dict[str, Any]:
            if not seq.isascii() or not seq.isdigit() or len(seq) > 18:
                raise InputError("an entry number is digits")
            return views.event_detail(sources, int(seq))

        return console.page(request, "events", build, template="event.html")

    @app.get(f"{PREFIX}/audit", include_in_schema=False)
    def audit(request: Request) -> Response:
        return console.page(
            request,
            "audit",
            lambda who: {
                "ledger": views.ledger_status(sources),
                "verdict": console.verdicts[-1] if console.verdicts else None,
                "can_verify": console.verify_ledger is not None,
                "sigma": views.sigma_rules(sources),
            },
        )

    @app.get(f"{PREFIX}/pulse", include_in_schema=False)
    def pulse(request: Request) -> Response:
        """What the page script polls: has anything changed, is there an alarm."""
        try:
            console.view(request, "pulse")
        except LoginRequired:
            return JSONResponse({"error": "login"}, 401)
        except DonjonError:
            return JSONResponse({"error": "forbidden"}, 403)
        console.refresh()
        alarm = console.alarm()
        change = sources.index.last_change if sources.index else 0
        body: dict[str, Any] = {"change": change, "alarm": None}
        if alarm is not None:
            newest = alarm["newest"]
            body["alarm"] = {
                "count": alarm["count"],
                "text": f"{newest.severity}: {newest.rule} {newest.message}"[:300],
            }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _add_actions(app: FastAPI, console: Console) -> None:
    registry = console.registry

    @app.post(f"{PREFIX}/quarantine/{{kind}}/{{name:path}}/{{number}}", include_in_schema=False)
    async def decide(request: Request, kind: str, name: str, number: str) -> Response:
        form = await console.form(request)

        def act(principal: Principal) -> str:
            which = Kind(kind) if kind in ("dataset", "model") else None
            if which is None:
                raise InputError(f"unknown kind {kind!r}")
            reason = form.get("reason", "").strip()[:MAX_REASON]
            ref = f"{check_name(name)}@{check_version(number)}"
            verdict = form.get("verdict", "")
            if verdict == "approve":
                registry.release(principal, which, name, int(number), reason)
                notice = f"released {ref}"
            elif verdict == "reject":
                registry.delete(principal, which, name, int(number), reason)
                notice = f"rejected {ref} (deleted; its record stays)"
            else:
                raise InputError("verdict must be approve or reject")
            return f"{PREFIX}/datasets?notice={quote(notice)}"

        return await anyio.to_thread.run_sync(console.act, request, "datasets", form, act)

    @app.post(f"{PREFIX}/audit/verify", include_in_schema=False)
    async def verify(request: Request) -> Response:
        form = await console.form(request)

        def act(principal: Principal) -> str:
            if console.verify_ledger is None:
                raise NotFound("this server keeps no ledger")
            verdict = console.verify_ledger()
            console.verdicts[:] = [{**verdict, "by": principal.id, "at": console.clock.now()}]
            return f"{PREFIX}/audit"

        return await anyio.to_thread.run_sync(console.act, request, "audit/verify", form, act)

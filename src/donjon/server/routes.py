"""The vault's routes, the same for datasets and models (plus promotion for models).

Names are paths (``fraud/transactions``), so routes use ``{name:path}``; the
registry refuses names with ``..``, absolute paths or odd characters before
anything is read or stored. Uploads are the raw request body
(``application/octet-stream``), streamed to the blob store in a worker
thread; the announced ``X-Donjon-Digest`` is checked against what arrived.
"""

import contextlib
import functools
import json
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from donjon.core.artifacts import Digest
from donjon.core.bus import flush_deferred
from donjon.core.identity import Principal
from donjon.errors import InputError
from donjon.registry import (
    MAX_VERSION,
    NAME_PATTERN,
    PREFIX_PATTERN,
    VERSION_PATTERN,
    Kind,
    Registry,
    VersionRef,
    check_version,
)
from donjon.server.schemas import (
    ErrorOut,
    GatesOut,
    NamesOut,
    PromoteIn,
    ReasonIn,
    VersionOut,
    VersionsOut,
)

MAX_HEADER_JSON = 16 * 1024
# the digests Digest.parse accepts, as the schema publishes them (lower-case hex)
DIGEST_PATTERN = (
    r"^(?:sha256:[0-9a-f]{64}|blake3:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$"
)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "bad input (name, digest, metadata)",
        401: "no valid bearer token",
        403: "not allowed",
        404: "no such dataset, model or version",
        409: "conflict: quarantined version or failed admission gate",
        410: "the version was deleted (tombstoned)",
        413: "upload larger than the server's limit",
        422: "malformed request",
    }.items()
}

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def name_param(what: str) -> Any:
    """A name path parameter; its pattern is in the schema, ``check_name`` decides (400)."""
    return Path(
        description=f"{what} name, e.g. {'fraud-clf' if what == 'model' else 'fraud/transactions'}",
        json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 200},
    )


async def version_number(
    number: Annotated[
        str,
        Path(
            description=f"version number: ASCII digits, 1 to {MAX_VERSION}",
            json_schema_extra={"pattern": VERSION_PATTERN},
        ),
    ],
) -> int:
    """The ``{number}`` path parameter: ASCII digits within the column's range, else 400.

    ``async``: it only checks a string, so FastAPI runs it in the event loop
    instead of handing it to a worker thread.
    """
    return check_version(number)


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def recorded(endpoint: Endpoint) -> Endpoint:
    """A synchronous route that journals its request's events before it returns, in its
    worker thread (:func:`donjon.core.bus.flush_deferred`). If that fails after the route
    failed, its own error stands and the answer waits for the middleware, which tries
    once more and answers 503 if it cannot record (:mod:`donjon.server.recording`)."""

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            result = endpoint(*args, **kwargs)
        except BaseException:
            with contextlib.suppress(Exception):
                flush_deferred()
            raise
        flush_deferred()
        return result

    return run  # type: ignore[return-value]


def served_by_hot() -> NoReturn:
    """The body of a hot operation's declaration: :mod:`donjon.server.hot` replaces the
    route's handler when the app is built, so a request never reaches this."""
    raise RuntimeError("a hot route's declaration was called: serve_hot_routes was not run")


Number = Annotated[int, Depends(version_number)]
DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff"}


def attachment_disposition(name: str, number: int, suffix: str = "") -> str:
    """``attachment; filename=...`` from a checked name (safe characters only)."""
    filename = f"{name.replace('/', '_')}-{number}{suffix}"
    return f'attachment; filename="{filename}"'


def add_vault_routes(app: FastAPI, current_principal: Callable[..., Principal]) -> None:
    for kind in Kind:
        _add_kind_routes(app, kind, current_principal)
    _add_promotion(app, current_principal)


def _add_kind_routes(app: FastAPI, kind: Kind, current_principal: Callable[..., Principal]) -> None:
    base = f"/v1/{kind.collection}"
    tag = kind.collection
    Caller = Annotated[Principal, Depends(current_principal)]  # noqa: N806
    Name = Annotated[str, name_param(kind.value)]  # noqa: N806

    def registry(request: Request) -> Registry:
        reg: Registry = request.app.state.registry
        return reg

    @app.get(
        base, response_model=NamesOut, responses=ERRORS, tags=[tag], operation_id=f"list_{tag}"
    )
    @recorded
    def list_names(
        request: Request,
        principal: Caller,
        prefix: Annotated[
            str, Query(max_length=200, json_schema_extra={"pattern": PREFIX_PATTERN})
        ] = "",
    ) -> JSONResponse:
        # A list of plain strings (checked names): encoded directly, not walked
        # item by item by the response model (a 10,000-name list stays fast).
        return JSONResponse({"names": registry(request).names(principal, kind, prefix)})

    @app.get(
        f"{base}/{{name:path}}/versions",
        response_model=VersionsOut,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"list_{kind.value}_versions",
    )
    def list_versions(request: Request, principal: Caller, name: Name) -> JSONResponse:
        served_by_hot()

    @app.post(
        f"{base}/{{name:path}}/versions",
        response_model=VersionOut,
        status_code=201,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"push_{kind.value}",
        openapi_extra=UPLOAD_BODY,
    )
    async def push(
        request: Request,
        principal: Caller,
        name: Name,
        x_donjon_digest: Annotated[
            str | None,
            Header(
                max_length=200,
                description="sha256:<hex> of the body",
                json_schema_extra={"pattern": DIGEST_PATTERN},
            ),
        ] = None,
        x_donjon_metadata: Annotated[
            str | None, Header(max_length=MAX_HEADER_JSON, description="a JSON object")
        ] = None,
        x_donjon_lineage: Annotated[
            str | None,
            Header(max_length=4096, description="models: dataset versions, 'name@3,other@1'"),
        ] = None,
        content_type: Annotated[str | None, Header(max_length=200)] = None,
        x_donjon_filename: Annotated[
            str | None,
            Header(max_length=255, description="models: the pushed file's name, for the scan"),
        ] = None,
    ) -> dict[str, Any]:
        """Upload a new version; the body is the raw bytes."""
        served_by_hot()

    @app.get(
        f"{base}/{{name:path}}/versions/{{number}}",
        response_model=VersionOut,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"get_{kind.value}_version",
    )
    def get_version(
        request: Request, principal: Caller, name: Name, number: Number
    ) -> JSONResponse:
        served_by_hot()

    @app.get(
        f"{base}/{{name:path}}/versions/{{number}}/blob",
        responses={
            **ERRORS,
            200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
        },
        tags=[tag],
        operation_id=f"pull_{kind.value}",
        response_class=StreamingResponse,
    )
    def pull(request: Request, principal: Caller, name: Name, number: Number) -> StreamingResponse:
        """Download a version's bytes; ``X-Donjon-Digest`` lets the client check them."""
        # Served as opaque bytes, never as the uploader's Content-Type (which a browser
        # could render): the declared type is in the version record.
        served_by_hot()

    @app.get(
        f"{base}/{{name:path}}/versions/{{number}}/gates",
        response_model=GatesOut,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"get_{kind.value}_gates",
    )
    @recorded
    def gates(request: Request, principal: Caller, name: Name, number: Number) -> dict[str, Any]:
        results = registry(request).gate_results(principal, kind, name, number)
        return {"gates": [r.to_dict() for r in results]}

    for verb in ("quarantine", "release"):
        _add_status_route(app, kind, verb, base, tag, Caller, Name, registry)

    @app.delete(
        f"{base}/{{name:path}}/versions/{{number}}",
        response_model=VersionOut,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"delete_{kind.value}_version",
    )
    @recorded
    def delete(
        request: Request,
        principal: Caller,
        name: Name,
        number: Number,
        reason: Annotated[str, Query(min_length=1, max_length=1000)],
    ) -> dict[str, Any]:
        """Tombstone a version: the record stays, the bytes are no longer served."""
        return registry(request).delete(principal, kind, name, number, reason).to_dict()

    @app.get(
        f"{base}/{{name:path}}",
        response_model=VersionOut,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"get_{kind.value}",
    )
    @recorded
    def latest(request: Request, principal: Caller, name: Name) -> JSONResponse:
        """The latest version's record."""
        return JSONResponse(registry(request).get(principal, kind, name).to_dict())


def _add_status_route(
    app: FastAPI,
    kind: Kind,
    verb: str,
    base: str,
    tag: str,
    caller: Any,
    name_t: Any,
    registry: Callable[[Request], Registry],
) -> None:
    @app.post(
        f"{base}/{{name:path}}/versions/{{number}}/{verb}",
        response_model=VersionOut,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"{verb}_{kind.value}_version",
    )
    @recorded
    def change(
        request: Request, principal: caller, name: name_t, number: Number, body: ReasonIn
    ) -> dict[str, Any]:
        reg = registry(request)
        act = reg.quarantine if verb == "quarantine" else reg.release
        return act(principal, kind, name, number, body.reason).to_dict()


def _add_promotion(app: FastAPI, current_principal: Callable[..., Principal]) -> None:
    @app.post(
        "/v1/models/{name:path}/versions/{number}/promote",
        response_model=VersionOut,
        responses=ERRORS,
        tags=["models"],
        operation_id="promote_model_version",
    )
    def promote(
        request: Request,
        principal: Annotated[Principal, Depends(current_principal)],
        name: Annotated[str, name_param("model")],
        number: Number,
        body: PromoteIn,
    ) -> dict[str, Any]:
        """Run the target stage's admission gates, then move the version (409 if one fails)."""
        served_by_hot()


def parse_digest(text: str | None) -> Digest | None:
    if text is None or not text.strip():
        return None
    try:
        return Digest.parse(text.strip())
    except ValueError as e:
        raise InputError(f"X-Donjon-Digest: {e}") from None


def parse_metadata(text: str | None) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InputError(f"X-Donjon-Metadata is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise InputError("X-Donjon-Metadata must be a JSON object")
    return value


def parse_lineage(text: str | None) -> list[VersionRef]:
    if text is None or not text.strip():
        return []
    return [VersionRef.parse(part) for part in text.split(",") if part.strip()]

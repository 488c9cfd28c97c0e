"""Routes of the referrers store: documents attached to a model or dataset version.

``POST /v1/models/{name}/versions/{n}/attestations?kind=signature|provenance|fingerprint``
and ``POST /v1/datasets/{name}/versions/{n}/attestations?kind=manifest|check``
take the document as the raw body (JSON; at most ``max_attestation_bytes``);
``GET`` on the same path lists them and ``GET .../attestations/{digest}``
returns one document's bytes. The kind is checked against the version's kind
before the body is read. They are added before the vault's catch-all
``GET /v1/{kind}s/{name}`` routes, which would otherwise take these paths.
"""

from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Path, Query, Request, Response

from donjon.core.artifacts import Digest
from donjon.core.identity import Principal
from donjon.errors import InputError
from donjon.registry import Kind, Registry, parse_kind
from donjon.registry.attachments import KINDS_OF
from donjon.server.routes import (
    DIGEST_PATTERN,
    DOWNLOAD_HEADERS,
    ERRORS,
    Number,
    attachment_disposition,
    name_param,
)
from donjon.server.schemas import AttachmentOut, AttachmentsOut

KIND_HELP = {
    Kind.MODEL: (
        "signature (OMS bundle), provenance (DSSE SLSA envelope) or "
        "fingerprint (DSSE envelope of a donjon watch fingerprint)"
    ),
    Kind.DATASET: (
        "manifest (donjon.data.manifest-document/v1) or check "
        "(donjon.data.check-document/v1), each naming the version's digest"
    ),
}


def _body(of: Kind) -> dict[str, Any]:
    kinds = KINDS_OF[of.value]
    content = {k.media_type: {"schema": {"type": "object"}} for k in kinds}
    return {
        "requestBody": {
            "required": True,
            "content": content | {"application/json": {"schema": {"type": "object"}}},
        }
    }


DOCUMENT_OUT = {"content": {"application/json": {"schema": {"type": "object"}}}}


def add_attachment_routes(app: FastAPI, current_principal: Any) -> None:
    for of in (Kind.MODEL, Kind.DATASET):
        _add_routes(app, current_principal, of)


def _add_routes(app: FastAPI, current_principal: Any, of: Kind) -> None:
    Caller = Annotated[Principal, Depends(current_principal)]  # noqa: N806
    Name = Annotated[str, name_param(of.value)]  # noqa: N806
    base = f"/v1/{of.value}s/{{name:path}}/versions/{{number}}/attestations"
    tag = f"{of.value}s"

    def registry(request: Request) -> Registry:
        reg: Registry = request.app.state.registry
        return reg

    @app.post(
        base,
        response_model=AttachmentOut,
        status_code=201,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"attach_{of.value}_document",
        openapi_extra=_body(of),
    )
    async def attach(
        request: Request,
        principal: Caller,
        name: Name,
        number: Number,
        kind: Annotated[
            str,
            Query(
                description=KIND_HELP[of],
                json_schema_extra={"enum": [k.value for k in KINDS_OF[of.value]]},
            ),
        ],
    ) -> dict[str, Any]:
        """Attach a document to a version; it is checked, stored and immutable."""
        what = parse_kind(kind, of.value)  # before the body is read
        data = await request.body()
        reg = registry(request)
        found = await anyio.to_thread.run_sync(
            lambda: reg.attach(principal, name, number, what, data, of=of)
        )
        return found.to_dict()

    @app.get(
        base,
        response_model=AttachmentsOut,
        responses=ERRORS,
        tags=[tag],
        operation_id=f"list_{of.value}_documents",
    )
    def list_attachments(
        request: Request, principal: Caller, name: Name, number: Number
    ) -> dict[str, Any]:
        """The documents attached to a version, oldest first."""
        found = registry(request).attachments(principal, name, number, of=of)
        return {"attachments": [a.to_dict() for a in found]}

    @app.get(
        base + "/{digest}",
        responses={
            **ERRORS,
            200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        },
        tags=[tag],
        operation_id=f"get_{of.value}_document",
        response_class=Response,
    )
    def document(
        request: Request,
        principal: Caller,
        name: Name,
        number: Number,
        digest: Annotated[
            str,
            Path(
                max_length=200,
                description="sha256:<hex>",
                json_schema_extra={"pattern": DIGEST_PATTERN},
            ),
        ],
    ) -> Response:
        """One attached document's bytes, as attached."""
        try:
            key = Digest.parse(digest)
        except ValueError as e:
            raise InputError(f"digest: {e}") from None
        found, data = registry(request).attachment_bytes(principal, name, number, key, of=of)
        return Response(
            data,
            media_type=found.media_type,  # set by the server from the kind, never the uploader's
            headers={
                "X-Donjon-Digest": str(found.digest),
                "Content-Disposition": attachment_disposition(name, number, ".json"),
                **DOWNLOAD_HEADERS,
            },
        )

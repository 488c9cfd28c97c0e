"""Routes of the referrers store: signed documents attached to a model version.

``POST /v1/models/{name}/versions/{n}/attestations?kind=signature|provenance|fingerprint``
takes the document as the raw body (JSON; at most ``max_attestation_bytes``);
``GET`` on the same path lists them and ``GET .../attestations/{digest}``
returns one document's bytes. They are added before the vault's catch-all
``GET /v1/models/{name}`` route, which would otherwise take these paths.
"""

from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Path, Query, Request, Response

from donjon.core.artifacts import Digest
from donjon.core.identity import Principal
from donjon.errors import InputError
from donjon.registry import AttachmentKind, Registry, parse_kind
from donjon.server.routes import (
    DIGEST_PATTERN,
    DOWNLOAD_HEADERS,
    ERRORS,
    Number,
    attachment_disposition,
    name_param,
)
from donjon.server.schemas import AttachmentOut, AttachmentsOut

BASE = "/v1/models/{name:path}/versions/{number}/attestations"
DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {kind.media_type: {"schema": {"type": "object"}} for kind in AttachmentKind}
        | {"application/json": {"schema": {"type": "object"}}},
    }
}

DOCUMENT_OUT = {"content": {"application/json": {"schema": {"type": "object"}}}}


def add_attachment_routes(app: FastAPI, current_principal: Any) -> None:
    Caller = Annotated[Principal, Depends(current_principal)]  # noqa: N806
    Name = Annotated[str, name_param("model")]  # noqa: N806

    def registry(request: Request) -> Registry:
        reg: Registry = request.app.state.registry
        return reg

    @app.post(
        BASE,
        response_model=AttachmentOut,
        status_code=201,
        responses=ERRORS,
        tags=["models"],
        operation_id="attach_model_document",
        openapi_extra=DOCUMENT_BODY,
    )
    async def attach(
        request: Request,
        principal: Caller,
        name: Name,
        number: Number,
        kind: Annotated[
            str,
            Query(
                description=(
                    "signature (OMS bundle), provenance (DSSE SLSA envelope) or "
                    "fingerprint (DSSE envelope of a donjon watch fingerprint)"
                ),
                json_schema_extra={"enum": [k.value for k in AttachmentKind]},
            ),
        ],
    ) -> dict[str, Any]:
        """Attach a signed document to a model version; it is checked, stored and immutable."""
        what = parse_kind(kind)
        data = await request.body()
        reg = registry(request)
        found = await anyio.to_thread.run_sync(
            lambda: reg.attach(principal, name, number, what, data)
        )
        return found.to_dict()

    @app.get(
        BASE,
        response_model=AttachmentsOut,
        responses=ERRORS,
        tags=["models"],
        operation_id="list_model_documents",
    )
    def list_attachments(
        request: Request, principal: Caller, name: Name, number: Number
    ) -> dict[str, Any]:
        """The documents attached to a model version, oldest first."""
        found = registry(request).attachments(principal, name, number)
        return {"attachments": [a.to_dict() for a in found]}

    @app.get(
        BASE + "/{digest}",
        responses={
            **ERRORS,
            200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        },
        tags=["models"],
        operation_id="get_model_document",
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
        found, data = registry(request).attachment_bytes(principal, name, number, key)
        return Response(
            data,
            media_type=found.media_type,  # set by the server from the kind, never the uploader's
            headers={
                "X-Donjon-Digest": str(found.digest),
                "Content-Disposition": attachment_disposition(name, number, ".json"),
                **DOWNLOAD_HEADERS,
            },
        )

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from app.auth.dependencies import AnyKey, ReaderKey
from app.core.errors import error_responses
from app.core.session import SessionDep
from app.ropa import fides_export, processor, service
from app.ropa.fides_schemas import FIDESLANG_MEDIA_TYPE
from app.ropa.schemas import CSV_COLUMNS, ProcessorRecord, Ropa

router = APIRouter(prefix="/v1/ropa", tags=["ropa"])

CSV_MEDIA_TYPE = "text/csv"
_CSV_EXAMPLE = (
    ",".join(CSV_COLUMNS)
    + "\r\nbilling.transactions,Process transactions and manage billing,contract,billing.invoice,"
    ",,,,,0196f0c4-6a2b-7d4c-8e3f-5a7b9c1d2e3f,minimum,P10Y,collected_at,law,"
    "DE: HGB §257(1) no. 4\r\n"
)


def _quality(media_range: str) -> tuple[str, float]:
    media_type, *params = (part.strip() for part in media_range.split(";"))
    quality = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
    return media_type.lower(), quality


def wants_csv(accept: str | None) -> bool:
    """CSV when Accept ranks it above JSON; JSON otherwise, including ties and no header."""
    if not accept:
        return False
    ranges = [_quality(part) for part in accept.split(",") if part.strip()]

    def rank(media_type: str) -> float:
        kind = media_type.split("/")[0] + "/*"
        # The most specific range that matches decides (RFC 9110, 12.5.1).
        for candidate in (media_type, kind, "*/*"):
            matches = [q for name, q in ranges if name == candidate]
            if matches:
                return max(matches)
        return 0.0

    return rank(CSV_MEDIA_TYPE) > rank("application/json")


@router.get(
    "",
    response_model=Ropa,
    operation_id="get_ropa",
    summary="Read the record of processing activities (Art. 30)",
    responses={
        200: {
            "description": "The record as JSON, or with `Accept: text/csv` one CSV row per "
            "purpose and applicable retention rule, or with `format=fideslang` a fideslang "
            "manifest that Fides imports",
            "content": {
                CSV_MEDIA_TYPE: {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
                FIDESLANG_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/FidesManifest"},
                },
            },
        },
        **error_responses(401, 403),
    },
)
async def get_ropa(
    request: Request,
    session: SessionDep,
    principal: ReaderKey,
    response: Response,
    representation: Annotated[
        Literal["fideslang"] | None,
        Query(
            alias="format",
            description="`fideslang`: the organization, the systems with their privacy "
            "declarations, a dataset per system and the custom taxonomy entries, as one "
            "fideslang manifest (whatever `Accept` says)",
        ),
    ] = None,
) -> Ropa | Response:
    if representation == "fideslang":
        manifest = await fides_export.build_fides_manifest(session)
        return Response(
            fides_export.manifest_json(manifest),
            media_type=FIDESLANG_MEDIA_TYPE,
        )
    ropa = await service.build_ropa(session)
    # Vary: caches must keep the JSON and the CSV apart.
    if wants_csv(request.headers.get("accept")):
        return Response(
            service.ropa_csv(ropa),
            media_type=CSV_MEDIA_TYPE,
            headers={"Vary": "Accept", "Content-Disposition": 'attachment; filename="ropa.csv"'},
        )
    response.headers["Vary"] = "Accept"
    return ropa


@router.get(
    "/processor/{controller_id}",
    response_model=ProcessorRecord,
    operation_id="get_processor_record",
    summary="Read Spix's record as a processor for one customer (Art. 30(2))",
    responses=error_responses(401, 404),
)
async def get_processor_record(
    controller_id: uuid.UUID, session: SessionDep, principal: AnyKey
) -> ProcessorRecord:
    return await processor.build_processor_record(session, principal, controller_id)

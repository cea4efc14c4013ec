"""Schemathesis over the committed OpenAPI document, in-process (httpx's ASGI transport,
no port), for every operation, with an admin key and with a controller key.

Per answer: no server error; the status code, content type, headers and body are the ones
the document declares for the operation; data the schema calls invalid is refused; every
4xx is a problem document. Cases are drawn by Hypothesis from the document, bounded and
derandomized (the same cases on every run, drawn once and sent to each database), never
shrunk. Path parameters name the world's real objects half of the time, so the operations
get past their lookups. Everything is sent inside the test's rolled-back transaction:
nothing the fuzzing writes outlives the test."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import schemathesis
from httpx import AsyncClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.proof.conftest import World, object_id

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(SPEC)
# Every text refuses U+0000 (PostgreSQL text cannot hold it; app/core/middleware.py answers
# 422), as the document's description of 422 says: no NUL is drawn for valid data.
SCHEMA.config.generation.update(allow_x00=False)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# Cases per operation and key: valid ones, and ones the schema calls invalid.
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 5}
KEYS = ("admin", "controller A")
# Drawn with placeholders, filled with each database's own keys and ids when sent.
PLACEHOLDER = "Bearer placeholder-for-{}"
PINNED = "pinned-to-{}"
REGISTRY = {
    "/v1/systems/{key}": "messaging",
    "/v1/data-categories/{key}": "communications",
    "/v1/purposes/{key}": "marketing.communications",
    "/v1/recipients/{key}": "cloud-hosting",
    "/v1/systems/{key}/webhook-secret": "messaging",
}
TENANT = (
    "controller_id",
    "record_id",
    "rule_id",
    "hold_id",
    "request_id",
    "task_id",
    "flag_id",
    "key_id",
    "delivery_id",
    "job_id",
    "subject_request_id",
    "agent_id",
)


# Protocol adapters answer their refusals in the protocol's own shape (documented so).
PROTOCOL_PREFIXES = ("/opendsr/",)


def _protocol_refusal(response: Any, case: Case) -> bool:
    return case.operation.path.startswith(PROTOCOL_PREFIXES) and response.status_code in (400, 404)


def problem_document(ctx: Any, response: Any, case: Case) -> None:
    """Every 4xx is an RFC 9457 problem: its media type, and type, title and status. A
    protocol's routes answer its own error shape instead: OpenDSR's refusals its error object
    with the status as its code; the Data Rights Protocol's `{code, message, fatal}` (413 and
    422 aside: the middleware and the framework answer those before the route runs)."""
    if _protocol_refusal(response, case):
        assert response.json()["error"]["code"] == response.status_code
        return
    if case.operation.path.startswith("/drp/") and response.status_code not in (413, 422):
        if response.content:
            assert response.json()["code"] == str(response.status_code)
        return
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type == "application/problem+json", f"{response.status_code}: not a problem"
        problem = response.json()
        assert problem["status"] == response.status_code
        assert problem["type"] and problem["title"]


# Valid by the document, refused for a reason a JSON schema cannot state. This is the whole
# allowlist; anything else that valid data meets is a finding.
# - 400: a cursor is opaque; only the strings this service issued are cursors.
# - 412: If-Match is documented; a drawn ETag names a version the object does not have.
# - 422 whose every error is a `value_error`: a rule written as a validator, beyond what a
#   schema says: that a key or id names something that exists, formats (an email identity,
#   an http(s) URL, an ISO 8601 period), times since 1900 and not in the future, rules
#   across fields. Not "may be omitted but not null": the document can say that, and does.
#   Schema-level refusals (missing, wrong type, too long, unknown field, not in the enum...)
#   of schema-valid data are always findings.
CURSOR = "The cursor is not one this service issued"


def _beyond_the_schema(response: Any, case: Case) -> bool:
    if _protocol_refusal(response, case):
        # OpenDSR: refusals the adapter makes past the schema (identity types and formats it
        # cannot match, a request no longer pending, a reused id) are not `Validation`.
        errors = response.json()["error"]["errors"]
        return bool(errors) and all(e["domain"] != "Validation" for e in errors)
    problem = response.json()
    if response.status_code == 400:
        return bool(problem.get("detail") == CURSOR)
    if response.status_code == 412:
        return "If-Match" in (case.headers or {})
    errors = problem.get("errors") or []
    return (
        response.status_code == 422
        and bool(errors)
        and all(
            e.get("type") == "value_error" and "may be omitted but not null" not in e["msg"]
            for e in errors
        )
    )


def valid_data_accepted(ctx: Any, response: Any, case: Case) -> None:
    """Schemathesis' positive_data_acceptance, less the refusals the schema cannot state."""
    try:
        positive_data_acceptance(ctx, response, case)
    except AssertionError:
        if not _beyond_the_schema(response, case):
            raise


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    valid_data_accepted,
    problem_document,
]


def _pinned(path: str) -> dict[str, str]:
    names = {name: PINNED.format(name) for name in TENANT if f"{{{name}}}" in path}
    if "{key}" in path:
        names["key"] = REGISTRY[path]
    return names


@functools.cache
def cases(label: str, key: str, mode: GenerationMode) -> tuple[Case, ...]:
    """The cases of one operation, drawn once for every database."""
    operation = next(o for o in OPERATIONS if o.label == label)
    headers = {"Authorization": PLACEHOLDER.format(key)}
    strategy = operation.as_strategy(generation_mode=mode, headers=headers)
    pinned = _pinned(operation.path)
    if pinned and mode is GenerationMode.POSITIVE:
        strategy = st.one_of(
            operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=pinned),
            strategy,
        )
    drawn: list[Case] = []

    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def draw(case: Case) -> None:
        drawn.append(case)

    try:
        draw()
    except Unsatisfiable:
        # Nothing in the operation can be made invalid (no parameters, or free strings).
        assert mode is GenerationMode.NEGATIVE and not drawn, label
    return tuple(drawn)


async def test_every_answer_conforms(client: AsyncClient, world: World) -> None:
    failures: list[str] = []
    sent = 0
    for operation in OPERATIONS:
        for key in KEYS:
            for mode in EXAMPLES:
                for case in await asyncio.to_thread(cases, operation.label, key, mode):
                    failure = await _send(client, world, key, case)
                    sent += 1
                    if failure:
                        failures.append(failure)
                        break  # one failure per operation, key and mode is enough to read
    assert sent > 20 * len(OPERATIONS)
    assert not failures, "\n\n".join(failures)


async def _send(client: AsyncClient, world: World, key: str, case: Case) -> str | None:
    if case.path_parameters:
        case.path_parameters = {
            name: object_id(world, case.operation.path, name)
            if value == PINNED.format(name)
            else value
            for name, value in case.path_parameters.items()
        }
    kwargs = case.as_transport_kwargs(base_url="http://test")
    headers = dict(kwargs.get("headers") or {})
    if headers.get("Authorization") == PLACEHOLDER.format(key):
        headers.update(world.keys[key])
    request: dict[str, Any] = {"headers": headers, "params": kwargs.get("params")}
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        request["content"] = kwargs["data"]
    response = await client.request(kwargs["method"], kwargs["url"], **request)
    try:
        case.validate_response(response, checks=CHECKS)
    except (AssertionError, BaseExceptionGroup) as error:  # a failure, or several
        mode = case.meta.generation.mode.value if case.meta else ""
        return (
            f"{case.operation.label} as {key} ({mode})"
            f": {response.request.method} {response.request.url} "
            f"body={request.get('json', request.get('content'))!r:.300}\n"
            f"-> {response.status_code} {response.text[:300]}\n{str(error)[:600]}"
        )
    return None

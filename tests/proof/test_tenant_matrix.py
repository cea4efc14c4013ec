"""The tenant isolation matrix: every route of the app, for every kind of caller, against the
objects of tenant A. The routes come from the app's route table and each route's expected
answers from the roles its key dependency declares, so a new route joins the matrix (and
fails it until its path parameters and body are known here).

Callers hold API keys, or sign-in tokens of an identity provider (each customer's staff).
Per cell: no key, a bad key, a revoked key or an expired token: 401. A role the route does not
declare: 403. A caller of another tenant (by key or by token) naming one of A's objects in the
path: 404, as if absent. Nobody outside A ever reads one of A's ids in an answer it did not
send itself. Every 4xx is a problem document, nothing answers 5xx, and the insiders are let
through (so the 404s above are the tenant's, not a missing object's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.proof.conftest import ALICE, World, object_id
from tests.proof.routes import ROUTES, Route

# Path parameters naming one of A's objects (world.ids), and who must not see each: the
# other customer, and for rows that belong to a system, the key of another system.
TENANT_PARAMETERS = {
    "controller_id": {"controller B", "unknown role"},
    "record_id": {"controller B", "system B", "unknown role"},
    "rule_id": {"controller B", "unknown role"},
    "hold_id": {"controller B", "unknown role"},
    "request_id": {"controller B", "unknown role"},
    "task_id": {"system B", "unknown role"},
    "flag_id": {"controller B", "token B", "unknown role"},
    "key_id": {"controller B", "token B", "unknown role"},
    # A job recomputing A's settings: its controller's staff and the readers see it.
    "job_id": {"controller B", "token B", "system B", "unknown role"},
    # Deliveries are the operators' (admin, auditor): every other key is refused by role.
    "delivery_id": set(),
    # An OpenDSR request is its filing controller's alone.
    "subject_request_id": {"controller B", "unknown role"},
    # DRP agents are the operators' too.
    "agent_id": set(),
}
for _outsiders in TENANT_PARAMETERS.values():
    if "controller B" in _outsiders:  # B's staff, signed in, are B as much as B's key is
        _outsiders.add("token B")
# The registry is shared by every key: its objects belong to no tenant.
REGISTRY_KEYS = {
    "/v1/systems/{key}": "messaging",
    "/v1/data-categories/{key}": "communications",
    "/v1/purposes/{key}": "marketing.communications",
    "/v1/recipients/{key}": "cloud-hosting",
    "/v1/systems/{key}/webhook-secret": "messaging",
}
# What A's own strings are to each outsider: everything of A to the other customer; the
# rows of A's system to another system's key (systems serve every customer, so a system key
# reads the controllers and their settings, but not another system's records or tasks).
# A key of a role this code does not know (a newer release's, a hand-edited row) sees nothing.
OUTSIDERS = ("controller B", "token B", "system B", "unknown role")
# The admin goes last: it writes.
INSIDERS = ("auditor", "system A", "token A", "controller A", "admin")
NO_CREDENTIAL = ("no key", "bad key", "revoked key", "expired token")
ROLE_OF = {
    "admin": "admin",
    "auditor": "auditor",
    "system A": "system",
    "system B": "system",
    "controller A": "controller",
    "controller B": "controller",
    "token A": "controller",
    "token B": "controller",
    "unknown role": "support",
}

AT = "2026-01-01T00:00:00Z"


def body(route: Route, w: World) -> tuple[Any, set[str]]:
    """A valid body for the route, and the outsiders it is refused to: it names one of A's
    objects (True: both outsiders)."""
    a = w.ids["controller_id"]
    record = {
        "system": "messaging",
        "record_ref": "acme-sms-1",
        "controller_id": a,
        "categories": ["communications.sms_body"],
        "collected_at": AT,
    }
    rule = {
        "name": "Thirty days",
        "kind": "maximum",
        "period": "P30D",
        "anchor": "collected_at",
        "source": "customer_setting",
        "category": "communications",
        "controller_id": a,
    }
    bodies: dict[str, tuple[Any, bool | set[str]]] = {
        "POST /v1/controllers": ({"name": "Initech"}, False),
        "PATCH /v1/controllers/{controller_id}": ({"name": "Acme Corp"}, True),
        "POST /v1/systems": ({"key": "crm", "name": "CRM"}, False),
        "PATCH /v1/systems/{key}": ({"name": "Messaging"}, False),
        "POST /v1/data-categories": ({"key": "communications.mms", "name": "MMS"}, False),
        "PATCH /v1/data-categories/{key}": ({"name": "Communications"}, False),
        "POST /v1/purposes": (
            {"key": "analytics.product", "name": "Analytics", "legal_basis": "consent"},
            False,
        ),
        "PATCH /v1/purposes/{key}": ({"name": "Marketing"}, False),
        "POST /v1/retention-rules": (rule, True),
        "POST /v1/retention-rules/simulate": (rule, True),
        "PATCH /v1/retention-rules/{rule_id}": ({"period": "P60D"}, True),
        "POST /v1/legal-holds": ({"reason": "Matter 1", "controller_id": a}, True),
        "POST /v1/legal-holds/{hold_id}/release": ({}, True),
        "POST /v1/records": (record, True),
        "POST /v1/records/batch": ({"records": [record]}, True),
        "PATCH /v1/records/{record_id}": ({"last_activity_at": AT}, True),
        "POST /v1/records/erased": ({"system": "messaging", "record_refs": ["acme-sms-1"]}, True),
        "POST /v1/subjects/lookup": ({"identities": ALICE}, False),
        "POST /v1/retention/eligibility": (
            {"records": [{"id": w.ids["record_id"]}, {"system": "messaging", "record_ref": "x"}]},
            False,
        ),
        "POST /v1/requests": ({"type": "access", "regime": "gdpr", "identities": ALICE}, False),
        "POST /v1/requests/{request_id}/verify": ({}, True),
        "POST /v1/requests/{request_id}/extend": (
            {"reason": "Complex request", "subject_notified_at": datetime.now(UTC).isoformat()},
            True,
        ),
        "POST /v1/requests/{request_id}/cancel": ({}, True),
        "POST /v1/requests/{request_id}/deny": ({"reason": "manifestly_unfounded"}, True),
        "POST /v1/requests/{request_id}/scopes/{controller_id}/decision": (
            {"decision": "approve"},
            True,
        ),
        "POST /v1/tasks/claim": ({}, False),
        "POST /v1/tasks/{task_id}/complete": ({"result": {"data": {}}}, True),
        "POST /v1/tasks/{task_id}/fail": ({"error": "Disk full"}, True),
        "POST /v1/suppressions": (
            {"identity": ALICE[0], "channel": "sms", "source": "sms_stop", "controller_id": a},
            # A system serves every customer: it records a STOP for any of them.
            {"controller B"},
        ),
        "POST /v1/suppressions/check": ({"identities": ALICE, "channel": "sms"}, False),
        "POST /v1/requests/{request_id}/acknowledge": ({}, True),
        "POST /v1/subjects/reappeared/{flag_id}/review": ({"resolution": "erased_again"}, True),
        "POST /v1/recipients": (
            {
                "key": "analytics-vendor",
                "name": "Analytics Vendor Ltd.",
                "role": "processor",
                "country": "GB",
                "transfer_safeguard": "adequacy",
            },
            False,
        ),
        "PATCH /v1/recipients/{key}": ({"country": "IE", "transfer_safeguard": "adequacy"}, False),
        "POST /v1/drp-agents": (
            {
                "agent_id": "MATRIX_AGENT_NEW",
                "name": "Matrix Agent",
                "verify_key": "A" * 43 + "=",
            },
            False,
        ),
        "PATCH /v1/drp-agents/{agent_id}": (
            {"name": "Matrix Agent", "callback_allowed": False},
            False,
        ),
        # A customer's staff create keys for their own controller only.
        "POST /v1/api-keys": ({"role": "controller", "controller_id": a}, True),
        # Another customer files under its own controller, with its own ids: its right.
        "POST /opendsr/v1/opendsr_requests": (
            {
                "subject_request_id": "0b7e3f4c-8a4f-4c1e-9d55-3c2f3e0a9b11",
                "subject_request_type": "access",
                "regulation": "ccpa",
                "submitted_time": AT,
                "subject_identities": [{"identity_type": "email", "identity_value": "x@a.test"}],
            },
            False,
        ),
    }
    if route.id in bodies:
        payload, refused = bodies[route.id]
        if isinstance(refused, bool):
            refused = set(OUTSIDERS) if refused else set()
        return payload, refused
    assert route.method in ("GET", "DELETE") or route.id in BODYLESS, (
        f"{route.id} is new: give it a valid body here, so the matrix can reach its lookup"
    )
    return None, set()


BODYLESS = {
    "POST /v1/tasks/{task_id}/retry",
    "POST /v1/api-keys/{key_id}/revoke",
    "POST /v1/webhook-deliveries/{delivery_id}/redeliver",
    "POST /v1/systems/{key}/webhook-secret",
}


def accepted(response: Response) -> bool:
    """A 2xx that did something: a batch answers 200 with an error for each refused item."""
    if not 200 <= response.status_code < 300:
        return False
    results = response.json().get("results") if response.content else None
    return not (isinstance(results, list) and all(r.get("status") == "error" for r in results))


def url(route: Route, w: World) -> tuple[str, set[str]]:
    """The route's URL naming A's objects, and who must get 404 for them."""
    path, outsiders = route.path, set()
    for name, must_not_see in TENANT_PARAMETERS.items():
        if f"{{{name}}}" in path:
            path = path.replace(f"{{{name}}}", object_id(w, route.path, name))
            outsiders |= must_not_see
    if "{key}" in path:
        assert route.path in REGISTRY_KEYS, f"{route.id}: which object does {{key}} name?"
        path = path.replace("{key}", REGISTRY_KEYS[route.path])
    assert "{" not in path, f"{route.id} is new: name one of tenant A's objects for it here"
    return path, outsiders


def a_strings(w: World, principal: str) -> set[str]:
    if principal in ("controller B", "token B", "unknown role"):
        return set(w.a_secrets)
    if principal == "system B":
        a = w.extra["a"]
        return {a["record_id"], a["record_ref"], w.ids["task_id"]}
    return set()


def assert_problem(response: Response, status: int | None = None) -> None:
    where = f"{response.request.method} {response.request.url.path}: {response.text}"
    if status is not None:
        assert response.status_code == status, where
    if response.request.url.path.startswith(PROTOCOL_PREFIXES) and response.status_code in (
        400,
        404,
    ):
        # A protocol's refusals take the protocol's shape (OpenDSR: {"error": {"code"}}).
        assert response.json()["error"]["code"] == response.status_code, where
        return
    assert response.headers["content-type"] == "application/problem+json", where
    problem = response.json()
    assert problem["status"] == response.status_code and problem["type"] and problem["title"]


# Protocol adapters' keyed routes join the matrix; their public discovery does not.
PROTOCOL_PREFIXES = ("/opendsr/",)
ROUTES_UNDER_TEST = [
    route
    for route in ROUTES
    if route.path.startswith("/v1/") or (route.path.startswith(PROTOCOL_PREFIXES) and route.keyed)
]


def test_every_v1_route_needs_a_key_and_the_matrix_covers_it() -> None:
    assert len(ROUTES_UNDER_TEST) >= 74
    assert [r.id for r in ROUTES_UNDER_TEST if not r.keyed or not r.roles] == []


@pytest.mark.parametrize("route", ROUTES_UNDER_TEST, ids=lambda r: r.id)
async def test_tenant_matrix(route: Route, client: AsyncClient, world: World) -> None:
    path, outsiders = url(route, world)
    payload, refused_to = body(route, world)
    sent = path + (str(payload) if payload is not None else "")
    answers: dict[str, int] = {}
    inside: list[int] = []
    for principal in (*NO_CREDENTIAL, *OUTSIDERS, *INSIDERS):
        response = await client.request(
            route.method, path, json=payload, headers=world.keys[principal]
        )
        status = answers[principal] = response.status_code
        cell = f"{route.id} as {principal}: {status} {response.text[:300]}"
        assert status < 500, cell
        if 400 <= status < 500:
            assert_problem(response)
        if principal in NO_CREDENTIAL:
            assert status == 401, cell
            continue
        if not route.admits(ROLE_OF[principal]):
            assert status == 403, cell
            continue
        if principal in outsiders:
            assert status == 404, cell
        if principal in OUTSIDERS:
            assert not (principal in refused_to and accepted(response)), cell
            for leak in a_strings(world, principal):
                assert leak in sent or leak not in response.text, f"{cell}: leaks {leak}"
        else:
            assert status not in (401, 403), cell
            inside.append(status)
    if route.path != path:
        # The first insider let in finds the object (the later ones may meet it deleted).
        assert inside and inside[0] != 404, f"{route.id}: no insider found A's object: {answers}"

"""DRP 1.0 as an agent drives it: key setup, each action under `ccpa` to its end, status,
revoke, and the refusals the protocol names."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from nacl.signing import SigningKey

from tests.interop.drp.agent import Agent
from tests.interop.drp.conftest import SUBJECT

pytestmark = pytest.mark.usefixtures("business")


async def _work_tasks(client: AsyncClient, system: dict[str, str]) -> None:
    """The system holding the subject's record does what the request asks of it."""
    claimed = await client.post("/v1/tasks/claim", json={}, headers=system)
    assert claimed.status_code == 200, claimed.text
    for task in claimed.json()["tasks"]:
        result = {"data": {"profile": {"plan": "pro"}}} if task["action"] == "export" else {}
        done = await client.post(
            f"/v1/tasks/{task['id']}/complete", json={"result": result}, headers=system
        )
        assert done.status_code == 200, done.text


async def test_key_setup_issues_a_token_that_only_its_agent_uses(
    client: AsyncClient, admin: dict[str, str], agent: Agent
) -> None:
    assert agent.token
    info = await client.get(f"/drp/v1/agent/{agent.agent_id}", headers=agent.headers())
    assert (info.status_code, info.json()) == (200, {})
    other = Agent(client)
    await other.register(admin)
    assert (await other.set_up()).status_code == 200
    # Another agent's id with this token; a token nobody holds.
    mixed = await client.get(f"/drp/v1/agent/{other.agent_id}", headers=agent.headers())
    assert mixed.status_code == 403
    assert mixed.json()["code"] == "403"
    unknown = await client.get(f"/drp/v1/agent/{agent.agent_id}", headers=agent.headers("nope"))
    assert unknown.status_code == 403
    # Only the hash is kept: the registry never shows the token.
    shown = await client.get(f"/v1/drp-agents/{agent.agent_id}", headers=admin)
    assert agent.token not in shown.text and shown.json()["token_issued_at"] is not None


async def test_key_setup_refusals_answer_403_without_body(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    agent = Agent(client)
    await agent.register(admin)
    forged = await client.post(
        f"/drp/v1/agent/{agent.agent_id}",
        content=agent.sign(agent.envelope() | {"drp.version": "1.0"}, key=SigningKey.generate()),
        headers={"Content-Type": "text/plain"},
    )
    assert (forged.status_code, forged.content) == (403, b"")
    stale = await agent.set_up(issued=datetime.now(UTC) - timedelta(hours=1))
    assert (stale.status_code, stale.content) == (403, b"")
    unregistered = Agent(client)
    assert (await unregistered.set_up()).status_code == 403
    assert agent.token is None and (await agent.set_up()).status_code == 200


FINAL = {
    "access": "fulfilled",
    "access:categories": "fulfilled",
    "access:specific": "fulfilled",
    "deletion": "fulfilled",
    "sale:opt-out": "fulfilled",
    "sale:opt-in": "denied",
}


@pytest.mark.parametrize("action", list(FINAL))
async def test_each_action_under_ccpa_runs_to_its_end(
    client: AsyncClient, admin: dict[str, str], business: dict[str, Any], agent: Agent, action: str
) -> None:
    response = await agent.exercise(action, SUBJECT)
    assert response.status_code == 200, response.text
    filed = response.json()
    request_id = filed["request_id"]
    assert filed["received_at"]
    if action == "sale:opt-in":
        assert (filed["status"], filed["reason"]) == ("denied", "claim_not_covered")
    elif action == "sale:opt-out":
        # An opt-out needs no verification and acts at once.
        assert filed["status"] == "fulfilled"
    else:
        assert filed["status"] == "in_progress"
        assert datetime.fromisoformat(filed["expected_by"]) > datetime.now(UTC)
        ours = await client.get(f"/v1/requests/{request_id}", headers=admin)
        assert ours.json()["due_at"].replace("+00:00", "Z") == filed["expected_by"]
        assert ours.json()["requester_kind"] == "authorized_agent"
        assert ours.json()["regime"] == "ccpa"
        assert ours.json()["type"] == ("erasure" if action == "deletion" else "access")
        await _work_tasks(client, business["system"])
    final = await agent.status(request_id)
    assert final.status_code == 200, final.text
    assert final.json()["status"] == FINAL[action]
    assert final.json()["agent_request_id"] == filed["agent_request_id"]


async def test_an_unverified_subject_waits_and_a_denial_says_why(
    client: AsyncClient, admin: dict[str, str], agent: Agent
) -> None:
    response = await agent.exercise("access", SUBJECT, email_verified=False)
    assert response.json()["status"] == "open"
    request_id = response.json()["request_id"]
    denied = await client.post(
        f"/v1/requests/{request_id}/deny", json={"reason": "unverifiable"}, headers=admin
    )
    assert denied.status_code == 200, denied.text
    status = (await agent.status(request_id)).json()
    assert (status["status"], status["reason"]) == ("denied", "insuf_verification")


async def test_revoke_while_open_then_refused(client: AsyncClient, agent: Agent) -> None:
    response = await agent.exercise("deletion", SUBJECT, email_verified=False)
    request_id = response.json()["request_id"]
    revoked = await agent.revoke(request_id)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert (await agent.status(request_id)).json()["status"] == "revoked"
    again = await agent.revoke(request_id)
    assert again.status_code == 400 and again.json()["code"] == "400"


async def test_refusals_in_the_protocols_shape(
    client: AsyncClient, admin: dict[str, str], agent: Agent
) -> None:
    message = agent.exercise_message("access", SUBJECT)
    forged = await agent.post_signed(message, key=SigningKey.generate())
    assert forged.status_code == 403 and forged.json()["code"] == "403"
    past = datetime.now(UTC) - timedelta(hours=1)
    stale = await agent.post_signed(message | agent.envelope(issued=past))
    assert stale.status_code == 403 and stale.json()["fatal"] is True
    elsewhere = await agent.post_signed(message | {"business-id": "SOMEONE_ELSE"})
    assert elsewhere.status_code == 403
    unsupported = await agent.post_signed(message | {"exercise": "rectification"})
    assert unsupported.status_code == 400
    assert unsupported.json() == {"code": "400", "message": "Unsupported rights actions submitted."}
    assert (await agent.post_signed(message | {"regime": "gdpr"})).status_code == 400
    assert (await agent.post_signed(message | {"drp.version": "0.5"})).status_code == 400
    unusable = await agent.post_signed(message | {"phone_number": "not a phone"})
    assert unusable.status_code == 400 and unusable.json()["code"] == "400"
    garbage = await client.post(
        "/drp/v1/data-rights-request", content=b"not base64 at all!", headers=agent.headers()
    )
    assert garbage.status_code == 400
    # Another agent's token, and a message signed by this agent presented with it.
    mine = (await agent.exercise("access", SUBJECT)).json()["request_id"]
    other = Agent(client)
    await other.register(admin)
    await other.set_up()
    assert (await other.status(mine)).status_code == 403
    borrowed = await client.post(
        "/drp/v1/data-rights-request", content=agent.sign(message), headers=other.headers()
    )
    assert borrowed.status_code == 403
    assert (await agent.status(str(uuid.uuid4()))).status_code == 404
    assert (await agent.status("not-a-request")).status_code == 404
    anonymous = await client.get(f"/drp/v1/data-rights-request/{mine}")
    assert anonymous.status_code == 403 and anonymous.json()["code"] == "403"


async def test_what_real_agents_send_is_tolerated(client: AsyncClient, agent: Agent) -> None:
    for style in ("z", "offset", "naive"):
        message = agent.exercise_message("access", SUBJECT) | agent.envelope(style=style)
        response = await agent.post_signed(message)
        assert response.status_code == 200, (style, response.text)
    underscored = await agent.exercise("sale:opt_out", SUBJECT)
    assert underscored.json()["status"] == "fulfilled"
    refused = await agent.exercise("sale:opt_in", SUBJECT)
    assert refused.json()["reason"] == "claim_not_covered"
    voluntary = await agent.exercise("access", SUBJECT, regime="voluntary")
    assert voluntary.status_code == 200


async def test_a_replayed_message_answers_the_request_it_filed(
    client: AsyncClient, admin: dict[str, str], agent: Agent
) -> None:
    message = agent.exercise_message("access", SUBJECT)
    first = await agent.post_signed(message)
    again = await agent.post_signed(message)
    assert again.json()["request_id"] == first.json()["request_id"]
    listed = await client.get("/v1/requests", headers=admin)
    assert sum(1 for r in listed.json()["items"] if r["id"] == first.json()["request_id"]) == 1


async def test_a_suspended_agent_or_a_new_key_loses_its_token(
    client: AsyncClient, admin: dict[str, str], agent: Agent
) -> None:
    patch = await client.patch(
        f"/v1/drp-agents/{agent.agent_id}", json={"status": "suspended"}, headers=admin
    )
    assert patch.status_code == 200, patch.text
    assert (await agent.exercise("access", SUBJECT)).status_code == 403
    await client.patch(f"/v1/drp-agents/{agent.agent_id}", json={"status": "active"}, headers=admin)
    agent.key = SigningKey.generate()
    await client.patch(
        f"/v1/drp-agents/{agent.agent_id}", json={"verify_key": agent.verify_key}, headers=admin
    )
    assert (await agent.exercise("access", SUBJECT)).status_code == 403
    assert (await agent.set_up()).status_code == 200
    assert (await agent.exercise("access", SUBJECT)).status_code == 200


async def test_only_admins_register_agents(client: AsyncClient, auditor: dict[str, str]) -> None:
    agent = Agent(client)
    body = {"agent_id": agent.agent_id, "name": "x", "verify_key": agent.verify_key}
    assert (await client.post("/v1/drp-agents", json=body, headers=auditor)).status_code == 403
    bad = body | {"verify_key": "A" * 40}
    response = await client.post("/v1/drp-agents", json=bad, headers=auditor)
    assert response.status_code in (403, 422)

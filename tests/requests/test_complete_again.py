"""`POST /v1/tasks/{id}/complete`: an empty body is an empty result, and a repeated report
(a response lost on the way back) is answered as the first one was."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.requests.conftest import claim, file


async def test_complete_takes_no_body_and_a_repeat_is_answered_200(
    client: AsyncClient, spix: dict[str, Any]
) -> None:
    await file(client, spix["acme_key"], type="erasure", verified=True)
    key = spix["keys"]["messaging"]
    (task,) = await claim(client, key)
    assert task["action"] == "erase"
    url = f"/v1/tasks/{task['id']}/complete"
    first = await client.post(url, headers=key)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "completed"
    again = await client.post(url, headers=key)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert (await client.post(url, json={}, headers=key)).status_code == 200
    other = await client.post(url, json={"result": {"erased": 3}}, headers=key)
    assert other.status_code == 409
    assert "different result" in other.json()["detail"]


async def test_export_repeat_must_carry_the_same_data(
    client: AsyncClient, spix: dict[str, Any]
) -> None:
    await file(client, spix["acme_key"], verified=True)
    key = spix["keys"]["voice"]
    (task,) = await claim(client, key)
    assert task["action"] == "export"
    url = f"/v1/tasks/{task['id']}/complete"
    body = {"result": {"data": {"seconds": 42}}}
    assert (await client.post(url, json=body, headers=key)).status_code == 200
    assert (await client.post(url, json=body, headers=key)).status_code == 200
    changed = await client.post(url, json={"result": {"data": {"seconds": 7}}}, headers=key)
    assert changed.status_code == 409

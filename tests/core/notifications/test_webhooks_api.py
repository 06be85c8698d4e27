"""`/api/v1/webhooks` through the API, with jobs off: a delivery is attempted (and retried) right
after the commit of the request that queued it, so the receiver has it when the response comes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI

from tessera.core.notifications.signing import verify_signature
from tests.core.notifications.conftest import (
    WebhookReceiver,
    add_pending_delivery,
    create_endpoint,
    http_client,
    notification_settings,
    running_app,
)
from tests.factories import add_member, error_code, register

WEBHOOKS = "/api/v1/webhooks"


async def test_the_secret_is_shown_at_creation_only(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    owner = await register(client)

    created = await client.post(
        WEBHOOKS,
        json={"url": receiver.url, "events": ["support.handoff"], "description": "Helpdesk"},
        headers=owner.headers,
    )

    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_")
    assert created.headers["Location"] == f"{WEBHOOKS}/{endpoint['id']}"
    assert endpoint["events"] == ["support.handoff"]
    assert endpoint["active"] is True
    shown = await client.get(f"{WEBHOOKS}/{endpoint['id']}", headers=owner.headers)
    listed = await client.get(WEBHOOKS, headers=owner.headers)
    audit = await client.get("/api/v1/audit-events", headers=owner.headers)
    assert shown.status_code == listed.status_code == audit.status_code == 200
    assert "secret" not in shown.json()
    assert [item["id"] for item in listed.json()["items"]] == [endpoint["id"]]
    for response in (shown, listed, audit):
        assert endpoint["secret"] not in response.text
    assert "webhook.created" in audit.text


async def test_a_test_event_arrives_signed_and_is_logged(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, f"{receiver.url}/hooks", ["billing.invoice"])

    sent = await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=owner.headers)

    assert sent.status_code == 202, sent.text
    delivery_id = sent.json()["id"]
    assert sent.headers["Location"] == f"{WEBHOOKS}/deliveries/{delivery_id}"
    [request] = receiver.requests
    assert request.path == "/hooks"
    assert request.headers["x-tessera-event"] == "ping"
    assert request.headers["x-tessera-delivery"] == delivery_id
    assert request.headers["content-type"] == "application/json"
    assert verify_signature(endpoint["secret"], request.headers["x-tessera-signature"], request.body)
    body = json.loads(request.body)
    assert body["id"] == delivery_id
    assert body["event"] == "ping"
    assert body["org_id"] == owner.org_id
    assert body["data"]["endpoint_id"] == endpoint["id"]
    logged = (await client.get(f"{WEBHOOKS}/deliveries/{delivery_id}", headers=owner.headers)).json()
    assert logged["status"] == "succeeded"
    assert logged["attempts"] == 1
    assert logged["last_status_code"] == 200
    assert logged["delivered_at"] is not None


async def test_the_delivery_log_is_paged_and_filtered_by_status(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url)
    receiver.statuses = [404]
    failed = (await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=owner.headers)).json()
    succeeded = (await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=owner.headers)).json()
    log = f"{WEBHOOKS}/{endpoint['id']}/deliveries"

    everything = (await client.get(log, headers=owner.headers)).json()
    first_page = (await client.get(log, params={"limit": 1}, headers=owner.headers)).json()
    second_page = (
        await client.get(log, params={"limit": 1, "cursor": first_page["next_cursor"]}, headers=owner.headers)
    ).json()
    only_failed = (await client.get(log, params={"status": "failed"}, headers=owner.headers)).json()
    bad_status = await client.get(log, params={"status": "lost"}, headers=owner.headers)

    assert [item["id"] for item in everything["items"]] == [succeeded["id"], failed["id"]]
    assert [item["id"] for item in first_page["items"] + second_page["items"]] == [succeeded["id"], failed["id"]]
    [failure] = only_failed["items"]
    assert failure["id"] == failed["id"]
    assert failure["attempts"] == 1  # a 404 is not retried
    assert failure["last_status_code"] == 404
    assert failure["last_error"] == "HTTP 404: answer 404"
    assert bad_status.status_code == 422


async def test_a_failed_delivery_is_redelivered_as_a_new_one(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url)
    receiver.statuses = [410]
    failed = (await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=owner.headers)).json()

    again = await client.post(f"{WEBHOOKS}/deliveries/{failed['id']}/redeliver", headers=owner.headers)

    assert again.status_code == 202, again.text
    assert again.json()["id"] != failed["id"]
    first, second = receiver.requests
    assert second.headers["x-tessera-delivery"] == again.json()["id"]
    assert json.loads(second.body)["data"] == json.loads(first.body)["data"]
    original = (await client.get(f"{WEBHOOKS}/deliveries/{failed['id']}", headers=owner.headers)).json()
    redelivered = (await client.get(f"{WEBHOOKS}/deliveries/{again.json()['id']}", headers=owner.headers)).json()
    assert (original["status"], redelivered["status"]) == ("failed", "succeeded")


async def test_a_pending_delivery_cannot_be_redelivered(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url)
    pending = await add_pending_delivery(app, owner.org_id, endpoint["id"])

    response = await client.post(f"{WEBHOOKS}/deliveries/{pending}/redeliver", headers=owner.headers)

    assert response.status_code == 409
    assert error_code(response) == "delivery_in_progress"
    assert receiver.requests == []


async def test_updating_an_endpoint_and_rotating_its_secret(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url, ["support.handoff"])
    path = f"{WEBHOOKS}/{endpoint['id']}"

    changed = await client.patch(
        path, json={"events": ["support.*"], "description": "All support events"}, headers=owner.headers
    )
    rotated = await client.patch(path, json={"rotate_secret": True}, headers=owner.headers)
    await client.post(f"{path}/test", headers=owner.headers)

    assert changed.status_code == rotated.status_code == 200
    assert changed.json()["events"] == ["support.*"]
    assert changed.json()["description"] == "All support events"
    assert changed.json()["secret"] is None
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != endpoint["secret"]
    [request] = receiver.requests
    signature = request.headers["x-tessera-signature"]
    assert verify_signature(new_secret, signature, request.body)
    assert not verify_signature(endpoint["secret"], signature, request.body)


async def test_an_inactive_endpoint_refuses_tests_and_redeliveries(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url)
    delivered = (await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=owner.headers)).json()
    await client.patch(f"{WEBHOOKS}/{endpoint['id']}", json={"active": False}, headers=owner.headers)

    test = await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=owner.headers)
    redeliver = await client.post(f"{WEBHOOKS}/deliveries/{delivered['id']}/redeliver", headers=owner.headers)
    inactive = await client.get(WEBHOOKS, params={"active": "false"}, headers=owner.headers)

    assert test.status_code == redeliver.status_code == 409
    assert error_code(test) == "webhook_endpoint_inactive"
    assert len(receiver.requests) == 1
    assert [item["id"] for item in inactive.json()["items"]] == [endpoint["id"]]


async def test_deleting_an_endpoint_removes_its_log(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url)
    delivery = (await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=owner.headers)).json()

    deleted = await client.delete(f"{WEBHOOKS}/{endpoint['id']}", headers=owner.headers)

    assert deleted.status_code == 204
    assert (await client.get(f"{WEBHOOKS}/{endpoint['id']}", headers=owner.headers)).status_code == 404
    gone = await client.get(f"{WEBHOOKS}/deliveries/{delivery['id']}", headers=owner.headers)
    assert gone.status_code == 404
    assert error_code(gone) == "delivery_not_found"


async def test_only_owners_and_admins_manage_webhooks(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url)
    admin = await add_member(client, owner, "admin")
    member = await add_member(client, owner, "member")
    viewer = await add_member(client, owner, "viewer")
    body = {"url": receiver.url, "events": ["*"]}

    for outsider in (member, viewer):
        attempts = [
            await client.post(WEBHOOKS, json=body, headers=outsider.headers),
            await client.get(WEBHOOKS, headers=outsider.headers),
            await client.get(f"{WEBHOOKS}/{endpoint['id']}", headers=outsider.headers),
            await client.patch(f"{WEBHOOKS}/{endpoint['id']}", json={"active": False}, headers=outsider.headers),
            await client.delete(f"{WEBHOOKS}/{endpoint['id']}", headers=outsider.headers),
            await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=outsider.headers),
        ]
        assert [response.status_code for response in attempts] == [403] * 6
        assert {error_code(response) for response in attempts} == {"permission_denied"}

    assert (await client.post(WEBHOOKS, json=body, headers=admin.headers)).status_code == 201
    assert (await client.get(f"{WEBHOOKS}/{endpoint['id']}", headers=admin.headers)).status_code == 200
    assert receiver.requests == []


async def test_another_organizations_endpoints_and_deliveries_are_404(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    alpha = await register(client)
    beta = await register(client)
    endpoint = await create_endpoint(client, alpha, receiver.url)
    delivery = (await client.post(f"{WEBHOOKS}/{endpoint['id']}/test", headers=alpha.headers)).json()
    path = f"{WEBHOOKS}/{endpoint['id']}"

    attempts = [
        ("GET", path, None, "webhook_endpoint_not_found"),
        ("PATCH", path, {"rotate_secret": True}, "webhook_endpoint_not_found"),
        ("DELETE", path, None, "webhook_endpoint_not_found"),
        ("POST", f"{path}/test", None, "webhook_endpoint_not_found"),
        ("GET", f"{path}/deliveries", None, "webhook_endpoint_not_found"),
        ("GET", f"{WEBHOOKS}/deliveries/{delivery['id']}", None, "delivery_not_found"),
        ("POST", f"{WEBHOOKS}/deliveries/{delivery['id']}/redeliver", None, "delivery_not_found"),
        ("GET", f"{WEBHOOKS}/{uuid.uuid4()}", None, "webhook_endpoint_not_found"),
    ]
    for method, url, body, code in attempts:
        response = await client.request(method, url, json=body, headers=beta.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert error_code(response) == code
    assert (await client.get(WEBHOOKS, headers=beta.headers)).json()["items"] == []
    assert (await client.get(path, headers=alpha.headers)).status_code == 200
    assert len(receiver.requests) == 1


async def test_bad_endpoints_are_422(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    url = "https://hooks.example.com/in"
    valid = {"url": url, "events": ["support.handoff"]}
    bad_bodies = [
        {**valid, "url": "ftp://hooks.example.com/in"},
        {**valid, "url": "not a url"},
        {**valid, "url": "https://user:password@hooks.example.com/in"},
        {**valid, "url": "https://hooks.example.com/" + "x" * 2_100},
        {**valid, "events": []},
        {**valid, "events": ["Support Handoff"]},
        {**valid, "events": ["*", "support.handoff"]},
        {**valid, "events": "support.handoff"},
        {**valid, "description": "nul\x00"},
        {**valid, "secret": "mine"},
        {"url": url},
    ]

    for body in bad_bodies:
        response = await client.post(WEBHOOKS, json=body, headers=owner.headers)
        assert response.status_code == 422, (body, response.text)
    created = await create_endpoint(client, owner, url, ["support.*"])
    patched = await client.patch(f"{WEBHOOKS}/{created['id']}", json={"url": "gopher://x"}, headers=owner.headers)
    assert patched.status_code == 422
    assert error_code(patched) == "invalid_webhook_url"


async def test_private_targets_are_refused_where_configured(database_url: str, tmp_path: Path) -> None:
    settings = notification_settings(database_url, tmp_path, allow_private_targets=False)
    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        for url in ("http://127.0.0.1:8080/in", "http://localhost/in", "http://10.0.0.7/in", "http://[::1]/in"):
            response = await client.post(WEBHOOKS, json={"url": url, "events": ["*"]}, headers=owner.headers)
            assert response.status_code == 422, url
            assert error_code(response) == "invalid_webhook_url"
        public = await client.post(
            WEBHOOKS, json={"url": "https://hooks.example.com/in", "events": ["*"]}, headers=owner.headers
        )
        assert public.status_code == 201

"""The push endpoints as a paired page uses them, and what they store in the data directory."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request

from agent.push import PushService
from agent.push.keys import KEY_FILE_NAME, b64url_decode, load_or_create_vapid_key
from agent.push.store import STORE_FILE_NAME, EndpointPolicy, InvalidSubscription, parse_subscription
from agent.push_api import MAX_BODY_BYTES, PushIdentity, push_routes
from tests.push.helpers import make_push
from tests.support.push_service import LocalPushService


def identify(request: Request) -> PushIdentity | None:
    """Stand-in for the device check: the test names the user and device in headers."""
    user = request.headers.get("x-test-user")
    return PushIdentity(user, request.headers.get("x-test-device", "laptop")) if user else None


@pytest.fixture
async def client(push: PushService) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=push_routes(push, identify))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ringboard.test", headers={"x-test-user": "anna"}) as http:
        yield http


async def test_public_key_is_p256_point(client: httpx.AsyncClient, push: PushService) -> None:
    response = await client.get("/api/push/key")

    assert response.status_code == 200
    key = response.json()["public_key"]
    point = b64url_decode(key)
    assert len(point) == 65
    assert point[0] == 4
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    assert key == push.public_key


async def test_requests_without_device_rejected(client: httpx.AsyncClient) -> None:
    headers = {"x-test-user": ""}

    key = await client.get("/api/push/key", headers=headers)
    created = await client.post("/api/push/subscriptions", json={}, headers=headers)
    deleted = await client.delete("/api/push/subscriptions/s-1", headers=headers)
    tested = await client.post("/api/push/test", headers=headers)

    for response in (key, created, deleted, tested):
        assert response.status_code == 401
        assert response.json() == {"type": "error", "code": "unauthenticated", "params": {}}


async def test_subscribe_again_keeps_id(client: httpx.AsyncClient, local_push: LocalPushService, push: PushService) -> None:
    browser = local_push.new_subscription()

    first = await client.post("/api/push/subscriptions", json=browser.to_json())
    again = await client.post("/api/push/subscriptions", json=browser.to_json())

    assert first.status_code == 201
    assert first.json()["created"] is True
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "created": False}
    assert len(push.store) == 1


async def test_new_subscription_replaces_device_one(client: httpx.AsyncClient, local_push: LocalPushService, push: PushService) -> None:
    old = await client.post("/api/push/subscriptions", json=local_push.new_subscription().to_json())
    new = await client.post("/api/push/subscriptions", json=local_push.new_subscription().to_json())
    other_device = await client.post(
        "/api/push/subscriptions", json=local_push.new_subscription().to_json(), headers={"x-test-device": "phone"}
    )

    assert push.store.get(old.json()["id"]) is None
    assert push.store.get(new.json()["id"]) is not None
    assert push.store.get(other_device.json()["id"]).device == "phone"
    assert len(push.store.for_user("anna")) == 2


@pytest.mark.parametrize(
    ("change", "code", "params"),
    [
        ({"endpoint": "ftp://127.0.0.1/push/x"}, "bad_request", {"field": "endpoint"}),
        ({"endpoint": "http://192.168.1.10/push/x"}, "push_service_not_allowed", {"host": "192.168.1.10"}),
        ({"keys": {"p256dh": "BAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "bad_request", {"field": "keys.p256dh"}),
        ({"keys": None}, "bad_request", {"field": "keys"}),
    ],
)
async def test_unusable_subscription_rejected(
    client: httpx.AsyncClient, local_push: LocalPushService, push: PushService, change: dict, code: str, params: dict
) -> None:
    body = {**local_push.new_subscription().to_json(), **change}

    response = await client.post("/api/push/subscriptions", json=body)

    assert response.status_code == 400
    assert response.json() == {"type": "error", "code": code, "params": params}
    assert len(push.store) == 0


async def test_short_auth_secret_rejected(local_push: LocalPushService) -> None:
    body = local_push.new_subscription().to_json()
    body["keys"]["auth"] = "AAAA"

    with pytest.raises(InvalidSubscription) as raised:
        parse_subscription(body, EndpointPolicy(hosts=("127.0.0.1",), allow_http=True))

    assert raised.value.params == {"field": "keys.auth"}


async def test_body_rules(client: httpx.AsyncClient) -> None:
    form = await client.post("/api/push/subscriptions", content=b"endpoint=x", headers={"content-type": "application/x-www-form-urlencoded"})
    broken = await client.post("/api/push/subscriptions", content=b"{", headers={"content-type": "application/json"})
    huge = await client.post(
        "/api/push/subscriptions", content=b" " * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"}
    )

    assert form.status_code == 415
    assert broken.status_code == 400
    assert broken.json()["params"] == {"field": "body", "reason": "invalid_json"}
    assert huge.status_code == 413


async def test_delete_only_own_subscription(client: httpx.AsyncClient, local_push: LocalPushService, push: PushService) -> None:
    created = await client.post("/api/push/subscriptions", json=local_push.new_subscription().to_json())
    subscription_id = created.json()["id"]

    foreign = await client.delete(f"/api/push/subscriptions/{subscription_id}", headers={"x-test-user": "ben"})
    own = await client.delete(f"/api/push/subscriptions/{subscription_id}")
    again = await client.delete(f"/api/push/subscriptions/{subscription_id}")

    assert foreign.status_code == 404
    assert own.status_code == 204
    assert again.status_code == 404
    assert again.json()["code"] == "not_found"
    assert len(push.store) == 0


async def test_revoked_device_and_user_forgotten(local_push: LocalPushService, push: PushService) -> None:
    push.subscribe("anna", "laptop", local_push.new_subscription().to_json())
    push.subscribe("anna", "phone", local_push.new_subscription().to_json())
    push.subscribe("ben", "desktop", local_push.new_subscription().to_json())

    forgotten = push.forget_device("anna", "laptop")
    unknown = push.forget_device("anna", "laptop")
    removed = push.forget_user("anna")

    assert forgotten is not None
    assert forgotten.device == "laptop"
    assert unknown is None
    assert removed == 1
    assert [item.user for item in push.store.for_user("ben")] == ["ben"]
    assert len(push.store) == 1


async def test_test_notification_endpoint(client: httpx.AsyncClient, local_push: LocalPushService) -> None:
    browser = local_push.new_subscription()
    missing = await client.post("/api/push/test")
    created = await client.post("/api/push/subscriptions", json=browser.to_json())

    sent = await client.post("/api/push/test")

    assert missing.status_code == 404
    assert missing.json()["code"] == "no_subscription"
    assert sent.status_code == 200
    assert sent.json() == {"results": [{"subscription": created.json()["id"], "outcome": "sent", "status": 201}]}
    assert [item.payload["push"] for item in local_push.messages(browser)] == ["test"]


async def test_key_and_store_files_private(tmp_path: Path, local_push: LocalPushService) -> None:
    first = make_push(tmp_path, local_push)
    first.subscribe("anna", "laptop", local_push.new_subscription().to_json())
    first.store.close()

    again = make_push(tmp_path, local_push)

    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / STORE_FILE_NAME).stat().st_mode) == 0o600
    assert again.public_key == first.public_key
    assert [item.user for item in again.store.for_user("anna")] == ["anna"]
    again.store.close()


def test_loose_key_file_mode_tightened(tmp_path: Path) -> None:
    key = load_or_create_vapid_key(tmp_path)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)

    again = load_or_create_vapid_key(tmp_path)

    assert again.public_key == key.public_key
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600


def test_damaged_key_file_named(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text("not a key")

    with pytest.raises(RuntimeError, match=KEY_FILE_NAME):
        load_or_create_vapid_key(tmp_path)

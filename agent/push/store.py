"""Push subscriptions per user and device, in SQLite in the data directory.

A device (one browser profile, known by its device token) has at most one push
subscription for the page, so a new subscription from the same device replaces the old
one. Every row is also kept in memory: the call pipeline reads subscriptions on each
ringing call and must not wait for the disk.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from agent.push.keys import b64url_decode

log = logging.getLogger("ringboard.push")

STORE_FILE_NAME = "push.sqlite3"

# The file contains each subscription's auth secret, so it is created readable by the agent only.
STORE_FILE_MODE = 0o600

# Endpoints of the browser vendors' push services are 100-500 characters long; the limit
# keeps a careless or hostile client from storing arbitrary text.
MAX_ENDPOINT_LENGTH = 2048

# RFC 8291: the user agent's key is an uncompressed P-256 point, the auth secret 16 bytes.
P256_POINT_LENGTH = 65
AUTH_SECRET_LENGTH = 16

# The push services of Chrome and other Chromium browsers (FCM), Firefox (Mozilla
# autopush), Edge (Windows Notification Service) and Safari (Apple). A leading dot
# matches any host under that domain. The agent only sends to these hosts, so a
# subscription cannot make it post to a machine on the office network.
PUSH_SERVICE_HOSTS = (
    "fcm.googleapis.com",
    ".push.services.mozilla.com",
    ".notify.windows.com",
    ".push.apple.com",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS push_subscriptions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    endpoint TEXT NOT NULL UNIQUE,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (user, device)
);
"""


class InvalidSubscription(ValueError):
    """A subscription from a page is unusable; `code` and `params` go back to the page."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(f"{code} {params}")
        self.code = code
        self.params = params


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """The push service hosts the agent sends to, and whether plain HTTP is allowed."""

    hosts: tuple[str, ...] = PUSH_SERVICE_HOSTS
    # Plain HTTP is for a test push service on 127.0.0.1 only; real services use HTTPS.
    allow_http: bool = False

    def allows(self, host: str) -> bool:
        """Return whether a push service host is on the list."""
        host = host.lower().rstrip(".")
        for allowed in self.hosts:
            if allowed.startswith("."):
                if host.endswith(allowed):
                    return True
            elif host == allowed:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Subscription:
    """One browser's push subscription, as `PushSubscription.toJSON()` gave it."""

    id: str
    user: str
    device: str
    endpoint: str
    p256dh: str
    auth: str
    created_at: str

    @property
    def info(self) -> dict[str, Any]:
        """The subscription in the form pywebpush takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    @property
    def label(self) -> str:
        """A name for logs: our id, the user and device, and the push service host, never the endpoint path."""
        return f"subscription {self.id} (user {self.user}, device {self.device}, {urlsplit(self.endpoint).hostname})"


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """A checked subscription from a page, not yet stored."""

    endpoint: str
    p256dh: str
    auth: str


def parse_subscription(body: Any, policy: EndpointPolicy) -> SubscriptionInfo:
    """Check a `PushSubscription.toJSON()` object; raise InvalidSubscription naming the field."""
    if not isinstance(body, dict):
        raise InvalidSubscription("bad_request", field="subscription")

    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise InvalidSubscription("bad_request", field="endpoint")
    parts = urlsplit(endpoint)
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidSubscription("bad_request", field="endpoint")
    if not policy.allows(parts.hostname):
        raise InvalidSubscription("push_service_not_allowed", host=parts.hostname)

    keys = body.get("keys")
    if not isinstance(keys, dict):
        raise InvalidSubscription("bad_request", field="keys")
    p256dh = keys.get("p256dh")
    auth = keys.get("auth")
    try:
        point = b64url_decode(p256dh)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        if len(point) != P256_POINT_LENGTH:
            raise ValueError("not an uncompressed point")
    except (ValueError, TypeError):
        raise InvalidSubscription("bad_request", field="keys.p256dh") from None
    try:
        if len(b64url_decode(auth)) != AUTH_SECRET_LENGTH:
            raise ValueError("wrong length")
    except (ValueError, TypeError):
        raise InvalidSubscription("bad_request", field="keys.auth") from None
    return SubscriptionInfo(endpoint=endpoint, p256dh=p256dh, auth=auth)


class SubscriptionStore:
    """The push subscriptions of every user and device."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, STORE_FILE_MODE))
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.executescript(SCHEMA)
        self._by_id: dict[str, Subscription] = {}
        for row in self._db.execute(
            "SELECT id, user, device, endpoint, p256dh, auth, created_at FROM push_subscriptions"
        ):
            subscription = Subscription(*row)
            self._by_id[subscription.id] = subscription

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, subscription_id: str) -> Subscription | None:
        """Return a subscription by id."""
        return self._by_id.get(subscription_id)

    def all(self) -> list[Subscription]:
        """Return every subscription."""
        return list(self._by_id.values())

    def for_user(self, user: str) -> list[Subscription]:
        """Return the user's subscriptions, oldest first."""
        return sorted(
            (item for item in self._by_id.values() if item.user == user), key=lambda item: (item.created_at, item.id)
        )

    def for_device(self, user: str, device: str) -> Subscription | None:
        """Return the device's subscription, if it has one."""
        for item in self._by_id.values():
            if item.user == user and item.device == device:
                return item
        return None

    def save(self, user: str, device: str, info: SubscriptionInfo) -> tuple[Subscription, bool]:
        """Store the device's subscription; return it and whether it is new.

        The same endpoint again keeps its id. A new endpoint replaces the device's old
        subscription, and an endpoint that another device had moves to this one.
        """
        current = self.for_device(user, device)
        if current is not None and (current.endpoint, current.p256dh, current.auth) == (info.endpoint, info.p256dh, info.auth):
            return current, False

        subscription = Subscription(
            id="s-" + secrets.token_hex(8),
            user=user,
            device=device,
            endpoint=info.endpoint,
            p256dh=info.p256dh,
            auth=info.auth,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        replaced = [
            item for item in self._by_id.values()
            if (item.user == user and item.device == device) or item.endpoint == info.endpoint
        ]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for item in replaced:
                self._db.execute("DELETE FROM push_subscriptions WHERE id = ?", (item.id,))
            self._db.execute(
                "INSERT INTO push_subscriptions (id, user, device, endpoint, p256dh, auth, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (subscription.id, user, device, info.endpoint, info.p256dh, info.auth, subscription.created_at),
            )
        for item in replaced:
            del self._by_id[item.id]
            log.info("%s replaced by %s", item.label, subscription.id)
        self._by_id[subscription.id] = subscription
        return subscription, True

    def remove(self, subscription_id: str) -> Subscription | None:
        """Delete a subscription; return what was deleted, or None when it was not there."""
        subscription = self._by_id.pop(subscription_id, None)
        if subscription is not None:
            with self._db:
                self._db.execute("DELETE FROM push_subscriptions WHERE id = ?", (subscription_id,))
        return subscription

"""A Web Push service on 127.0.0.1 for tests, checking what RFC 8030, 8291 and 8292 require.

Each test subscription gets what a browser makes: a P-256 key pair and a 16-byte auth
secret. For every push request the service verifies the VAPID token: the ES256
signature with the key in `k`, which must be the agent's key, `aud` its own origin,
`exp` within 24 hours and `sub` a mailto: or https: URL. It checks the TTL, Urgency and
Topic headers, then decrypts the aes128gcm body with http_ece and records the message.
A test scripts the responses per subscription, such as 429 with Retry-After, 410 or 500.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# RFC 8292, section 2: a token must not expire more than 24 hours after the request.
MAX_TOKEN_LIFETIME = 24 * 3600
URGENCIES = ("very-low", "low", "normal", "high")
TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# RFC 8030, section 7.2: a push service must accept at least 4096 bytes of payload.
MAX_BODY_BYTES = 4096


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PushResponse:
    """One scripted response of the push service."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before responding, as a slow push service does.
    delay: float = 0.0


@dataclass
class BrowserSubscription:
    """A browser's side of a push subscription: the endpoint and the keys to decrypt with."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    def to_json(self) -> dict[str, Any]:
        """Return the subscription as `PushSubscription.toJSON()` does in a browser."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth_secret)},
        }


@dataclass
class ReceivedPush:
    """One push request as the service saw it, with its decrypted payload."""

    token: str
    headers: dict[str, str]
    claims: dict[str, Any]
    payload: dict[str, Any]
    status: int
    at: float


class LocalPushService:
    """The push service; `start()` returns its origin, e.g. http://127.0.0.1:PORT."""

    def __init__(self) -> None:
        self.expected_key: str | None = None
        self.received: list[ReceivedPush] = []
        self.errors: list[str] = []
        self._subscriptions: dict[str, BrowserSubscription] = {}
        self._responses: dict[str, deque[PushResponse]] = {}
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.origin = ""

    def start(self) -> str:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status, headers = service._handle(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-push-service", daemon=True)
        self._thread.start()
        return self.origin

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def new_subscription(self) -> BrowserSubscription:
        """Make a subscription as a browser would: a new endpoint, key pair and auth secret."""
        token = secrets.token_urlsafe(16)
        subscription = BrowserSubscription(
            token=token,
            endpoint=f"{self.origin}/push/{token}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=secrets.token_bytes(16),
        )
        self._subscriptions[token] = subscription
        return subscription

    def script(self, subscription: BrowserSubscription, *responses: PushResponse) -> None:
        """Respond to the subscription's next requests with these, then with 201 again."""
        self._responses.setdefault(subscription.token, deque()).extend(responses)

    def messages(self, subscription: BrowserSubscription) -> list[ReceivedPush]:
        """Return the requests received for the subscription so far."""
        with self._changed:
            return [item for item in self.received if item.token == subscription.token]

    def wait_for(self, subscription: BrowserSubscription, count: int, timeout: float = 5.0) -> list[ReceivedPush]:
        """Wait until the subscription has `count` requests; return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [item for item in self.received if item.token == subscription.token]
                if len(found) >= count or self.errors:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} pushes arrived within {timeout} s; errors: {self.errors}")
                self._changed.wait(left)

    # The checks ------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str]]:
        match = re.fullmatch(r"/push/([A-Za-z0-9_-]+)", request.path)
        subscription = self._subscriptions.get(match.group(1)) if match else None
        if subscription is None:
            return 404, {}
        headers = {name.lower(): value for name, value in request.headers.items()}
        length = int(headers.get("content-length", "0"))
        body = request.rfile.read(length)

        try:
            claims = self._check_authorization(headers.get("authorization", ""))
            self._check_headers(headers, body)
            plaintext = http_ece.decrypt(
                body, private_key=subscription.private_key, auth_secret=subscription.auth_secret, version="aes128gcm"
            )
            payload = json.loads(plaintext)
        except (AssertionError, ValueError, http_ece.ECEException, InvalidSignature) as error:
            with self._changed:
                self.errors.append(f"{type(error).__name__}: {error}")
                self._changed.notify_all()
            return 400, {}

        queue = self._responses.get(subscription.token)
        response = queue.popleft() if queue else PushResponse(201)
        received_at = time.monotonic()
        time.sleep(response.delay)
        with self._changed:
            self.received.append(ReceivedPush(subscription.token, headers, claims, payload, response.status, received_at))
            self._changed.notify_all()
        headers = dict(response.headers)
        if response.status == 201:
            # RFC 8030, section 5: the push service names the message it created.
            headers.setdefault("Location", f"{self.origin}/message/{secrets.token_hex(6)}")
        return response.status, headers

    def _check_authorization(self, value: str) -> dict[str, Any]:
        scheme, _, params = value.partition(" ")
        assert scheme.lower() == "vapid", f"Authorization scheme is {scheme!r}, not vapid (RFC 8292)"
        fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        token, key = fields.get("t"), fields.get("k")
        assert token and key, f"Authorization lacks t= or k=: {value[:40]}"
        if self.expected_key is not None:
            assert key == self.expected_key, "k= is not the agent's VAPID public key"

        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(b64url_decode(header_b64))
        assert header.get("alg") == "ES256", f"JWT alg is {header.get('alg')}, not ES256"
        signature = b64url_decode(signature_b64)
        assert len(signature) == 64, "ES256 signature is not 64 bytes (r || s)"
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public_key.verify(der, f"{header_b64}.{claims_b64}".encode("ascii"), ec.ECDSA(hashes.SHA256()))

        claims = json.loads(b64url_decode(claims_b64))
        now = time.time()
        assert claims.get("aud") == self.origin, f"aud is {claims.get('aud')!r}, not {self.origin}"
        expires = claims.get("exp")
        assert isinstance(expires, int) and now < expires <= now + MAX_TOKEN_LIFETIME, f"exp {expires} not within 24 h"
        subject = claims.get("sub", "")
        assert subject.startswith(("mailto:", "https:")), f"sub {subject!r} is not a mailto: or https: URL"
        return claims

    def _check_headers(self, headers: dict[str, str], body: bytes) -> None:
        assert headers.get("content-encoding") == "aes128gcm", f"Content-Encoding is {headers.get('content-encoding')}"
        assert headers.get("ttl", "").isdigit(), f"TTL header missing or invalid: {headers.get('ttl')!r}"
        if "urgency" in headers:
            assert headers["urgency"] in URGENCIES, f"Urgency {headers['urgency']!r} is not one of {URGENCIES}"
        if "topic" in headers:
            assert TOPIC.match(headers["topic"]), f"Topic {headers['topic']!r} is not 1-32 base64url characters"
        assert len(body) <= MAX_BODY_BYTES, f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}"
        assert "crypto-key" not in headers, "Crypto-Key header of the aesgcm draft sent"
        assert "encryption" not in headers, "Encryption header of the aesgcm draft sent"

"""HTTP endpoints of Web Push: the VAPID public key, subscriptions, and a test notification.

`push_routes(push, identify)` returns the routes to add to the application. `identify`
returns the paired user and device of a request, or None when the request has no valid
device token. It may be a plain or an async function. Errors are protocol `error`
objects (a code with parameters) that the page translates.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.protocol import error_message
from agent.push import InvalidSubscription, PushService

log = logging.getLogger("ringboard.http")

# A subscription from `PushSubscription.toJSON()` is about 500 bytes; nothing this API
# takes comes near this limit.
MAX_BODY_BYTES = 8192


@dataclass(frozen=True, slots=True)
class PushIdentity:
    """The user and device a request comes from."""

    user: str
    device: str


Identify = Callable[[Request], "PushIdentity | None | Awaitable[PushIdentity | None]"]


class _RequestError(Exception):
    def __init__(self, status: int, code: str, **params: Any) -> None:
        super().__init__(code)
        self.response = JSONResponse(error_message(code, **params), status_code=status)


def push_routes(push: PushService, identify: Identify) -> list[Route]:
    """Return the routes of `GET /api/push/key`, `/api/push/subscriptions` and `POST /api/push/test`."""

    async def who(request: Request) -> PushIdentity:
        identity = identify(request)
        if inspect.isawaitable(identity):
            identity = await identity
        if identity is None:
            raise _RequestError(401, "unauthorized")
        return identity

    async def public_key(request: Request) -> Response:
        try:
            await who(request)
        except _RequestError as error:
            return error.response
        return JSONResponse({"public_key": push.public_key})

    async def subscribe(request: Request) -> Response:
        try:
            identity = await who(request)
            body = await _read_json(request)
            subscription, created = push.subscribe(identity.user, identity.device, body)
        except _RequestError as error:
            return error.response
        except InvalidSubscription as error:
            log.warning(
                "push subscription of user %s, device %s rejected: %s %s",
                identity.user, identity.device, error.code, error.params,
            )
            return JSONResponse(error_message(error.code, **error.params), status_code=400)
        return JSONResponse({"id": subscription.id, "created": created}, status_code=201 if created else 200)

    async def unsubscribe(request: Request) -> Response:
        try:
            identity = await who(request)
        except _RequestError as error:
            return error.response
        subscription_id = request.path_params["subscription_id"]
        if push.unsubscribe(identity.user, subscription_id) is None:
            return JSONResponse(error_message("not_found", subscription=subscription_id), status_code=404)
        return Response(status_code=204)

    async def send_test(request: Request) -> Response:
        try:
            identity = await who(request)
        except _RequestError as error:
            return error.response
        results = await push.send_test(identity.user, identity.device)
        if not results:
            return JSONResponse(error_message("no_subscription"), status_code=404)
        return JSONResponse(
            {
                "results": [
                    {"subscription": item.subscription_id, "outcome": str(item.outcome), "status": item.status}
                    for item in results
                ]
            }
        )

    return [
        Route("/api/push/key", public_key, methods=["GET"]),
        Route("/api/push/subscriptions", subscribe, methods=["POST"]),
        Route("/api/push/subscriptions/{subscription_id}", unsubscribe, methods=["DELETE"]),
        Route("/api/push/test", send_test, methods=["POST"]),
    ]


async def _read_json(request: Request) -> Any:
    """Read a JSON body of at most MAX_BODY_BYTES."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        # Also keeps cross-site form posts out: they cannot send this type without CORS.
        raise _RequestError(415, "unsupported_media_type", expected="application/json")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _RequestError(413, "payload_too_large", limit=MAX_BODY_BYTES)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise _RequestError(413, "payload_too_large", limit=MAX_BODY_BYTES)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _RequestError(400, "bad_request", field="body") from None

"""HTTP endpoints of Web Push: the VAPID public key, subscriptions, and a test notification.

`push_routes(push, identify)` returns the routes to add to the application. `identify`
returns the paired user and device of a request, or None when the request has no valid
device token. It may be a plain or an async function. Errors are protocol `error`
objects (a code with parameters) that the page translates.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.middleware import ApiError, error_response, read_json
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


def push_routes(push: PushService, identify: Identify) -> list[Route]:
    """Return the routes of `GET /api/push/key`, `/api/push/subscriptions` and `POST /api/push/test`."""

    async def who(request: Request) -> PushIdentity:
        identity = identify(request)
        if inspect.isawaitable(identity):
            identity = await identity
        if identity is None:
            raise ApiError(401, "unauthenticated")
        return identity

    async def public_key(request: Request) -> Response:
        try:
            await who(request)
        except ApiError as error:
            return error.response()
        return JSONResponse({"public_key": push.public_key})

    async def subscribe(request: Request) -> Response:
        try:
            identity = await who(request)
            body = await read_json(request, MAX_BODY_BYTES)
            subscription, created = push.subscribe(identity.user, identity.device, body)
        except ApiError as error:
            return error.response()
        except InvalidSubscription as error:
            log.warning(
                "push subscription of user %s, device %s rejected: %s %s",
                identity.user, identity.device, error.code, error.params,
            )
            return error_response(400, error.code, **error.params)
        return JSONResponse({"id": subscription.id, "created": created}, status_code=201 if created else 200)

    async def unsubscribe(request: Request) -> Response:
        try:
            identity = await who(request)
        except ApiError as error:
            return error.response()
        subscription_id = request.path_params["subscription_id"]
        if push.unsubscribe(identity.user, subscription_id) is None:
            return error_response(404, "not_found", subscription=subscription_id)
        return Response(status_code=204)

    async def send_test(request: Request) -> Response:
        try:
            identity = await who(request)
        except ApiError as error:
            return error.response()
        results = await push.send_test(identity.user, identity.device)
        if not results:
            return error_response(404, "no_subscription")
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

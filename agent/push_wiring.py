"""Web Push tied to the agent's users: who gets a call's push, and whose subscriptions end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from starlette.requests import Request

from agent.push.audience import PushPreferences
from agent.push.service import PushService
from agent.push_api import PushIdentity
from agent.users import UserStore

log = logging.getLogger("ringboard.push")

# How often subscriptions of revoked devices and removed users are deleted. A revoked
# device's WebSocket closes within a second; a push it might still get in this window
# carries only what its page showed until then.
PRUNE_INTERVAL = 2.0


class UserAudience:
    """The users who see an extension, and their notification settings, from the user store."""

    def __init__(self, store: UserStore) -> None:
        self.store = store

    def users_for_extension(self, extension: str) -> Iterable[str]:
        """Return the names of the users who see calls of this extension."""
        return [user.name for user in self.store.users() if user.sees_all or extension in user.extensions]

    def preferences(self, user: str) -> PushPreferences:
        """Return the user's notification settings as the page saved them."""
        found = self.store.user(user)
        settings = self.store.settings(found.id) if found is not None else None
        return PushPreferences.from_user_settings(settings or {})


def identify(request: Request) -> PushIdentity | None:
    """Return the user and device of a request that passed the device-token check."""
    session = getattr(request.state, "session", None)
    if session is None:
        return None
    return PushIdentity(session.user_name, session.device_id)


async def prune_subscriptions(push: PushService, store: UserStore) -> None:
    """Delete, every few seconds, the subscriptions of revoked devices and removed users."""
    while True:
        await asyncio.sleep(PRUNE_INTERVAL)
        try:
            live = {device.id for device in store.devices()}
            users = {user.name for user in store.users()}
            for subscription in list(push.store.all()):
                if subscription.user not in users:
                    push.forget_user(subscription.user)
                elif subscription.device not in live:
                    push.forget_device(subscription.user, subscription.device)
        except Exception:  # A failed round must not stop the next one.
            log.exception("pruning push subscriptions failed")

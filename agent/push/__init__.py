"""Web Push: the VAPID key, browsers' subscriptions, and call notifications sent to them.

See docs/push-protocol.md for the payloads and docs/notifications.md for the network
and browser settings they need.
"""

from agent.push.audience import PushAudience, PushPreferences, StaticAudience
from agent.push.delivery import Outcome
from agent.push.payload import AlertMode, PushAction
from agent.push.service import DeliveryResult, PushService, PushTiming
from agent.push.store import EndpointPolicy, InvalidSubscription, Subscription

__all__ = [
    "AlertMode",
    "DeliveryResult",
    "EndpointPolicy",
    "InvalidSubscription",
    "Outcome",
    "PushAction",
    "PushAudience",
    "PushPreferences",
    "PushService",
    "PushTiming",
    "StaticAudience",
    "Subscription",
]

"""Sending one push message: the HTTP request (pywebpush) and what each response means.

`classify` is the protocol logic without I/O: it turns the push service's response into
sent, gone (RFC 8030, section 7.3: the subscription expired, 404 or 410), retry (429 or
a server error, RFC 8030 section 8.4) or failed. `post_push` does the blocking request
and runs on the push service's sender threads.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

import requests
from pywebpush import WebPusher, WebPushException

from agent.push.keys import VapidSigner
from agent.push.store import Subscription

log = logging.getLogger("ringboard.push")

# How long one request to a push service may take before it counts as failed and is
# retried. Push services respond within a second; a longer wait means a network problem.
REQUEST_TIMEOUT = 10.0

# Characters of the push service's error body kept for the log.
ERROR_BODY_LIMIT = 200


class Outcome(StrEnum):
    """The result of one push message for one subscription, the `outcome` label of the metric."""

    SENT = "sent"  # The push service accepted it (2xx).
    GONE = "gone"  # 404 or 410: the subscription no longer exists and was removed.
    FAILED = "failed"  # Refused (other 4xx), or still failing when retries ran out.
    SUPERSEDED = "superseded"  # A newer push for the same call replaced it before it went out.
    DROPPED = "dropped"  # Too many pushes were waiting; it was never sent.


@dataclass(frozen=True, slots=True)
class PushReply:
    """The push service's response; `status` is None when none came (a network error)."""

    status: int | None
    retry_after: str | None = None
    detail: str = ""
    # True when the message could not even be encrypted for the subscription.
    not_sent: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry limits and back-off for failed requests."""

    # 1 s, 2 s, 4 s, ... between attempts unless the push service sends Retry-After.
    initial_delay: float = 1.0
    max_delay: float = 60.0
    # Attempts per push message, the first included.
    max_attempts: int = 5


@dataclass(frozen=True, slots=True)
class Decision:
    """The step after an attempt: an outcome, or a retry after `delay` seconds."""

    outcome: Outcome | None
    delay: float = 0.0
    reason: str = ""

    @property
    def retry(self) -> bool:
        """True when the message should be sent again after `delay`."""
        return self.outcome is None


def classify(reply: PushReply, attempt: int, seconds_left: float, policy: RetryPolicy, now: float | None = None) -> Decision:
    """Decide what follows attempt number `attempt` (from 1) with `seconds_left` of the TTL."""
    status = reply.status
    if reply.not_sent:
        return Decision(Outcome.FAILED, reason=f"not sent: {reply.detail}")
    if status is not None and 200 <= status < 300:
        return Decision(Outcome.SENT)
    if status in (404, 410):
        return Decision(Outcome.GONE, reason=f"HTTP {status}")

    reason = f"HTTP {status}" if status is not None else f"no answer ({reply.detail})"
    if not (status is None or status == 429 or status >= 500):
        return Decision(Outcome.FAILED, reason=reason)
    if attempt >= policy.max_attempts:
        return Decision(Outcome.FAILED, reason=f"{reason}, {attempt} attempts made")

    delay = min(policy.initial_delay * 2 ** (attempt - 1), policy.max_delay)
    requested = parse_retry_after(reply.retry_after, now)
    if requested is not None:
        delay = requested
    if delay >= seconds_left:
        return Decision(Outcome.FAILED, reason=f"{reason}, no retry possible within the TTL")
    return Decision(None, delay=delay, reason=reason)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a Retry-After header requests (RFC 9110: seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def post_push(
    session: requests.Session,
    signer: VapidSigner,
    subscription: Subscription,
    data: bytes,
    ttl: int,
    urgency: str,
    topic: str | None,
) -> PushReply:
    """Encrypt `data` for the subscription (aes128gcm) and POST it; blocking."""
    headers = {"Authorization": signer.authorization(subscription.endpoint), "Urgency": urgency}
    if topic:
        headers["Topic"] = topic
    started = time.monotonic()
    try:
        response = WebPusher(subscription.info, requests_session=session).send(
            data, headers, ttl=ttl, content_encoding="aes128gcm", timeout=REQUEST_TIMEOUT
        )
    except requests.RequestException as error:
        return PushReply(status=None, detail=type(error).__name__)
    except (WebPushException, ValueError) as error:
        # Raised before sending, for keys that cannot be used; sending again cannot help.
        return PushReply(status=None, detail=str(getattr(error, "message", error)), not_sent=True)
    elapsed = time.monotonic() - started
    log.debug("%s: HTTP %d in %.3f s", subscription.label, response.status_code, elapsed)
    detail = "" if response.ok else response.text[:ERROR_BODY_LIMIT].replace("\n", " ")
    return PushReply(status=response.status_code, retry_after=response.headers.get("Retry-After"), detail=detail)

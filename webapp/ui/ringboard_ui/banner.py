"""The banner's health lines: the subscriptions that are not active, one line per cause.

A PBX restart or a wrong password fails every extension at once with the same reason,
so extensions that share a state and reason share one line.
"""

from __future__ import annotations

from .i18n import Catalog
from .state import Health, SubscriptionHealth

# A line names at most this many extensions and counts the rest, so that an outage of
# a large office still fits in one line.
MAX_LISTED_EXTENSIONS = 6


def health_messages(health: Health | None, texts: Catalog) -> list[str]:
    """Return one banner line per group of subscriptions with the same state and reason."""
    if health is None:
        return []

    groups: dict[tuple[str, str | None, int | None], list[SubscriptionHealth]] = {}
    for item in health.problems:
        groups.setdefault((item.state, item.reason_code, item.reason_status), []).append(item)

    messages = []
    for (state, _, _), items in groups.items():
        extensions = [item.extension for item in items]
        if state == "pending":
            messages.append(_line(texts, "health.pending", "health.pending_many", extensions))
        else:
            reason = _reason_text(items[0], texts)
            messages.append(_line(texts, "health.failing", "health.failing_many", extensions, reason=reason))
    return messages


def _line(texts: Catalog, one_key: str, many_key: str, extensions: list[str], **params: str) -> str:
    if len(extensions) == 1:
        return texts.text(one_key, extension=extensions[0], **params)
    return texts.text(many_key, extensions=_extension_list(extensions, texts), **params)


def _extension_list(extensions: list[str], texts: Catalog) -> str:
    listed = ", ".join(extensions[:MAX_LISTED_EXTENSIONS])
    hidden = len(extensions) - MAX_LISTED_EXTENSIONS
    if hidden <= 0:
        return listed
    return texts.text("health.more", extensions=listed, count=hidden)


def _reason_text(item: SubscriptionHealth, texts: Catalog) -> str:
    key = f"health.reason.{item.reason_code}"
    reason = texts.text(key if texts.has(key) else "health.reason.unknown")
    if item.reason_status is not None:
        reason = texts.text("health.reason_status", reason=reason, status=item.reason_status)
    return reason

"""Date, time and duration texts for call rows."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from .i18n import Catalog


def format_duration(seconds: float) -> str:
    """Format a talk time as `m:ss`, or `h:mm:ss` from one hour on; negatives show 0:00."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_when(moment: datetime, now: datetime, texts: Catalog, zone: tzinfo | None = None) -> str:
    """Format a call's start for its row: time alone today, "Yesterday …", else date and time.

    `zone` is the page's local time zone; None converts with the system's local zone,
    which in the browser is the one the browser reports.
    """
    local = moment.astimezone(zone)
    today = now.astimezone(zone).date()
    time_text = local.strftime(texts.text("format.time"))

    if local.date() == today:
        return texts.text("when.today", time=time_text)

    if local.date() == today - timedelta(days=1):
        return texts.text("when.yesterday", time=time_text)

    date_text = local.strftime(texts.text("format.date"))
    return texts.text("when.other", date=date_text, time=time_text)


def format_full(moment: datetime, texts: Catalog, zone: tzinfo | None = None) -> str:
    """Format a moment with date and seconds, for a row's tooltip."""
    local = moment.astimezone(zone)
    return local.strftime(texts.text("format.date") + " " + texts.text("format.time_seconds"))

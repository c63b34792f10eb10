"""The pairing form and the connection's reaction to close code 4401, under CPython with a fake DOM."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "webapp" / "ui"
if str(UI_DIR) not in sys.path:
    sys.path.insert(0, str(UI_DIR))

from ringboard_ui.backoff import Backoff  # noqa: E402
from ringboard_ui.connection import UNAUTHENTICATED_CLOSE_CODE, EventConnection, SocketHandlers  # noqa: E402
from ringboard_ui.i18n import load_catalog  # noqa: E402
from ringboard_ui.pairing import Pairing, PairingView, normalize_pin, retry_time  # noqa: E402
from ringboard_ui.state import BoardState  # noqa: E402
from tests.support.fake_dom import FakeDom  # noqa: E402

ZURICH_WINTER = timezone(timedelta(hours=1))
NOW = datetime(2026, 12, 4, 9, 30, 10, tzinfo=timezone.utc)


def shell() -> FakeDom:
    return FakeDom((ROOT / "webapp" / "index.html").read_text(encoding="utf-8"))


class FakeAgent:
    """`post_json` that returns the queued (status, body) pairs and records the requests."""

    def __init__(self, *replies: tuple[int, Any] | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def post_json(self, url: str, body: Any) -> tuple[int, Any]:
        self.requests.append((url, dict(body)))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def form(language: str = "en", *replies: tuple[int, Any] | Exception) -> tuple[FakeDom, Pairing, FakeAgent, list[str]]:
    dom = shell()
    view = PairingView(dom, load_catalog(language), ZURICH_WINTER)
    agent = FakeAgent(*replies)
    paired: list[str] = []
    pairing = Pairing(view, agent.post_json, on_paired=lambda: paired.append("paired"), clock=lambda: NOW)
    view.show()
    return dom, pairing, agent, paired


def type_pin(dom: FakeDom, text: str) -> None:
    dom.set_value(dom.element_by_id("pairing-pin"), text)


def error_text(dom: FakeDom) -> str:
    return dom.element_by_id("pairing-error").text


def hidden(dom: FakeDom, element_id: str) -> bool:
    return "hidden" in dom.element_by_id(element_id).attributes


@pytest.mark.parametrize(
    ("typed", "pin"),
    [
        ("123456789", "123456789"),
        ("123 456 789", "123456789"),
        ("123-456-789", "123456789"),
        (" 123 456789 ", "123456789"),
        ("12345678", None),
        ("1234567890", None),
        ("12345678a", None),
        ("１２３４５６７８９", None),
        ("", None),
    ],
)
def test_normalize_pin(typed: str, pin: str | None) -> None:
    assert normalize_pin(typed) == pin


def test_show_replaces_board() -> None:
    dom, _, _, _ = form()

    assert not hidden(dom, "pairing")
    assert hidden(dom, "active-calls")
    assert hidden(dom, "call-history")
    assert hidden(dom, "pairing-error")
    assert dom.focused is dom.element_by_id("pairing-pin")


async def test_right_pin_pairs() -> None:
    dom, pairing, agent, paired = form("en", (200, {"user": "anna", "role": "user", "extensions": ["201"], "device": "d-1"}))
    type_pin(dom, "123 456 789")

    assert await pairing.submit() is True

    assert agent.requests == [("/api/pair", {"pin": "123456789"})]
    assert paired == ["paired"]
    assert hidden(dom, "pairing")
    assert not hidden(dom, "active-calls")
    assert not hidden(dom, "call-history")
    assert dom.get_value(dom.element_by_id("pairing-pin")) == ""


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "This PIN is not valid."),
        ("de", "Diese PIN ist nicht gültig."),
        ("fr", "Ce code PIN n’est pas valide."),
        ("it", "Questo PIN non è valido."),
    ],
)
async def test_wrong_pin_translated(language: str, text: str) -> None:
    dom, pairing, _, paired = form(language, (401, {"type": "error", "code": "pin_invalid", "params": {}}))
    type_pin(dom, "123456780")

    assert await pairing.submit() is False

    assert error_text(dom) == text
    assert not hidden(dom, "pairing-error")
    assert not hidden(dom, "pairing")
    assert paired == []
    assert "disabled" not in dom.element_by_id("pairing-submit").attributes


async def test_lockout_shows_retry_time() -> None:
    dom, pairing, _, _ = form("de", (429, {"type": "error", "code": "pairing_locked", "params": {"retry_after": 95}}))
    type_pin(dom, "123456780")

    await pairing.submit()

    # 09:30:10 UTC + 95 s is 10:31:45 in Zurich, shown rounded up to the minute.
    assert error_text(dom) == "Zu viele falsche PINs. Versuchen Sie es nach 10:32 Uhr wieder."


async def test_short_pin_not_sent() -> None:
    dom, pairing, agent, _ = form("en")
    type_pin(dom, "12345")

    assert await pairing.submit() is False

    assert agent.requests == []
    assert error_text(dom) == "A PIN has 9 digits."


async def test_network_failure_shown() -> None:
    dom, pairing, _, paired = form("en", OSError("fetch failed"))
    type_pin(dom, "123456789")

    assert await pairing.submit() is False

    assert error_text(dom).startswith("The server could not be reached.")
    assert paired == []


async def test_unknown_error_code_shown() -> None:
    dom, pairing, _, _ = form("en", (503, {"type": "error", "code": "maintenance", "params": {}}))
    type_pin(dom, "123456789")

    await pairing.submit()

    assert "maintenance" in error_text(dom)


async def test_reply_without_json_shown_as_failure() -> None:
    dom, pairing, _, _ = form("en", (502, None))
    type_pin(dom, "123456789")

    await pairing.submit()

    assert error_text(dom).startswith("The server could not be reached.")


def test_retry_time_rounds_up() -> None:
    assert retry_time(NOW, 50) == datetime(2026, 12, 4, 9, 31, tzinfo=timezone.utc)
    assert retry_time(NOW.replace(second=0), 60) == datetime(2026, 12, 4, 9, 31, tzinfo=timezone.utc)
    assert retry_time(NOW, -5) == datetime(2026, 12, 4, 9, 31, tzinfo=timezone.utc)


def test_state_reset_forgets_calls() -> None:
    state = BoardState()
    state.apply({"type": "snapshot", "version": 1, "seq": 5, "active": [], "history": [], "health": None})

    state.reset()

    assert state.seq is None
    assert state.active == {}
    assert state.history == []


class ScriptedSockets:
    """Opens fake sockets that close at once with the queued close codes."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.urls: list[str] = []

    def open(self, url: str, handlers: SocketHandlers) -> Any:
        self.urls.append(url)
        code = self.codes.pop(0) if self.codes else None
        loop = asyncio.get_running_loop()
        if code is not None:
            loop.call_soon(handlers.on_close, code, "")

        class Socket:
            def close(self) -> None:
                pass

            def dispose(self) -> None:
                pass

        return Socket()


async def test_close_4401_waits_for_pairing() -> None:
    sockets = ScriptedSockets([UNAUTHENTICATED_CLOSE_CODE])
    statuses: list[str] = []
    unauthenticated: list[bool] = []
    connection = EventConnection(
        url_for_next_attempt=lambda: "ws://127.0.0.1/api/events",
        open_socket=sockets.open,
        on_message=lambda text: None,
        on_status=statuses.append,
        backoff=Backoff(first=30.0),
        on_unauthenticated=lambda: unauthenticated.append(True),
    )
    task = asyncio.create_task(connection.run())
    try:
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert unauthenticated == [True]
        assert connection.status == "unpaired"
        assert len(sockets.urls) == 1

        connection.paired()
        for _ in range(50):
            await asyncio.sleep(0.01)
        # Reconnected at once, not after the 30 s back-off.
        assert len(sockets.urls) == 2
        assert statuses == ["connecting", "unpaired", "connecting"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

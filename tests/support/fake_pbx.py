"""A scripted dialog-event notifier on 127.0.0.1, for tests and the benchmark.

It accepts the agent's SUBSCRIBEs over UDP, answers 200 with the granted expiry, sends
the empty first NOTIFY that Kamailio sends, and then sends whatever bodies the test
asks for, in the shape of Kamailio 5.6's presence_dialoginfo documents.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass, field

from sip.message import Request, Response, build_request, build_response, parse_message

DOMAIN = "pbx.local"


@dataclass
class FakeSubscription:
    """What the notifier keeps of one subscriber's dialog."""

    extension: str
    call_id: str
    subscriber_tag: str
    notifier_tag: str
    contact: tuple[str, int]
    cseq: itertools.count = field(default_factory=lambda: itertools.count(1))
    version: itertools.count = field(default_factory=lambda: itertools.count(1))
    answered: dict[int, int] = field(default_factory=dict)


class FakePbx(asyncio.DatagramProtocol):
    """Accept SUBSCRIBE for `Event: dialog` and send NOTIFYs on request."""

    def __init__(self, *, reject_with: int | None = None) -> None:
        self.reject_with = reject_with
        self.subscriptions: dict[str, FakeSubscription] = {}
        self.subscribe_count = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.notify_sent_at: dict[tuple[str, int], float] = {}
        self._subscribed = asyncio.Event()

    async def start(self, port: int = 0) -> tuple[str, int]:
        """Bind on 127.0.0.1 and return the address."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", port))
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()

    async def wait_subscribed(self, extensions: list[str], timeout: float = 5.0) -> None:
        """Wait until every extension has a subscription."""
        deadline = time.monotonic() + timeout
        while not all(ext in self.subscriptions for ext in extensions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no SUBSCRIBE for {set(extensions) - set(self.subscriptions)}")
            await asyncio.sleep(0.01)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, Response):
            self._on_response(message)
            return
        if message.method == "SUBSCRIBE":
            self._on_subscribe(message, addr)

    def _on_subscribe(self, request: Request, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.subscribe_count += 1
        if self.reject_with:
            self.transport.sendto(build_response(request, self.reject_with, "Forbidden", to_tag="x"), addr)
            return

        extension = request.uri.split(":", 1)[1].split("@", 1)[0]
        expires = request.headers.get("Expires") or "600"
        existing = self.subscriptions.get(extension)
        if existing is not None and existing.call_id == request.call_id:
            tag = existing.notifier_tag
        else:
            tag = secrets.token_hex(4)
        response = build_response(
            request, 200, "OK", to_tag=tag, headers=[("Expires", expires), ("Contact", f"<sip:{self._address}>")]
        )
        self.transport.sendto(response, addr)
        if expires == "0" or (existing is not None and existing.call_id == request.call_id):
            return

        subscription = FakeSubscription(
            extension=extension,
            call_id=request.call_id or "",
            subscriber_tag=request.from_tag or "",
            notifier_tag=tag,
            contact=addr,
        )
        self.subscriptions[extension] = subscription
        self.send_notify(extension, b"")

    def _on_response(self, response: Response) -> None:
        for subscription in self.subscriptions.values():
            if subscription.call_id == response.call_id:
                subscription.answered[response.cseq[0]] = response.status

    @property
    def _address(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def send_notify(self, extension: str, body: bytes, *, state: str = "active;expires=590") -> int:
        """Send one NOTIFY to the extension's subscriber and return its CSeq number."""
        assert self.transport is not None
        subscription = self.subscriptions[extension]
        cseq = next(subscription.cseq)
        headers = [
            ("Via", f"SIP/2.0/UDP {self._address};branch=z9hG4bK{secrets.token_hex(8)}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{extension}@{DOMAIN}>;tag={subscription.notifier_tag}"),
            ("To", f"<sip:ringboard@{DOMAIN}>;tag={subscription.subscriber_tag}"),
            ("Call-ID", subscription.call_id),
            ("CSeq", f"{cseq} NOTIFY"),
            ("Contact", f"<sip:{self._address}>"),
            ("Event", "dialog"),
            ("Subscription-State", state),
        ]
        if body:
            headers.append(("Content-Type", "application/dialog-info+xml"))
        host, port = subscription.contact
        data = build_request("NOTIFY", f"sip:ringboard@{host}:{port}", headers, body)
        self.notify_sent_at[(extension, cseq)] = time.perf_counter()
        self.transport.sendto(data, subscription.contact)
        return cseq

    def next_version(self, extension: str) -> int:
        """Return the next document version for the extension's subscription."""
        return next(self.subscriptions[extension].version)


def kamailio_document(
    extension: str,
    version: int,
    dialogs: list[tuple[str, str, str]],
    *,
    caller: str = "+41441234567",
    local_tag: str | None = None,
    remote_tag: str | None = None,
) -> bytes:
    """Build a Kamailio-style full document; `dialogs` holds (dialog id, call-id, state).

    Kamailio 5.6 adds `local-tag` and `remote-tag` once the INVITE's tags are known.
    With both, a one-dialog document is about 570 bytes, as Kamailio's are.
    """
    tags = ""
    if local_tag is not None:
        tags += f' local-tag="{local_tag}"'
    if remote_tag is not None:
        tags += f' remote-tag="{remote_tag}"'
    parts = [
        '<?xml version="1.0"?>\n',
        f'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="full" '
        f'entity="sip:{extension}@{DOMAIN}">\n',
    ]
    for dialog_id, call_id, state in dialogs:
        parts.append(
            f'  <dialog id="{dialog_id}" call-id="{call_id}"{tags} direction="recipient">\n'
            f"    <state>{state}</state>\n"
            f"    <remote>\n      <identity>sip:{caller}@{DOMAIN}</identity>\n"
            f'      <target uri="sip:{caller}@127.0.0.1:15080"/>\n    </remote>\n'
            f"    <local>\n      <identity>sip:{extension}@{DOMAIN}</identity>\n"
            f'      <target uri="sip:{extension}@{DOMAIN}"/>\n    </local>\n'
            "  </dialog>\n"
        )
    parts.append("</dialog-info>\n")
    return "".join(parts).encode()

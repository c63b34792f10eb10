"""Bad dialog-info bodies reaching the call service: rejected, counted by reason, state kept."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.bus import EventBus
from agent.config import AgentSettings, Config, SipSettings
from agent.history import History
from agent.metrics import Registry
from agent.service import CallService
from sip.dialoginfo import MAX_DOCUMENT_BYTES, DialogInfoError, parse_dialog_info
from sip.model import CallState
from sip.subscription import DocumentReceived

RINGING = (
    b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:201@pbx.local">'
    b'<dialog id="d1" call-id="c1" direction="recipient"><state>early</state>'
    b"<remote><identity>sip:+41441234567@pbx.local</identity></remote></dialog></dialog-info>"
)

BAD_BODIES = {
    "truncated": RINGING[:120],
    "too_large": b"<dialog-info><!--" + b"x" * MAX_DOCUMENT_BYTES + b"--></dialog-info>",
    "encoding": RINGING.replace(b"version=\"1\"", b"version=\"2\"").replace(b"early", b"\xe9arly"),
    "forbidden": (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><dialog-info version="3" state="full">&c;</dialog-info>'
    ),
    "malformed": b'<dialog-info version="4" state="full"><dialog id="d1"></state></dialog></dialog-info>',
    "invalid": b'<dialog-info version="four" state="full"/>',
}


@pytest.fixture
async def service(tmp_path):
    config = Config(
        agent=AgentSettings(data_dir=tmp_path),
        sip=SipSettings(server="127.0.0.1", port=5060, domain="pbx.local", extensions=("201",), pbx="kamailio"),
    )
    history = History(tmp_path / "ringboard.sqlite3")
    yield CallService(config, history, EventBus(), Registry())
    # Caller lookups start as tasks when a call rings; let them finish before closing.
    pending = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
    history.close()


def deliver(service: CallService, body: bytes, content_type: str = "application/dialog-info+xml") -> None:
    service.on_document(DocumentReceived("201", body, content_type, first_of_subscription=False))


@pytest.mark.parametrize("reason", sorted(BAD_BODIES))
async def test_bad_body_rejected_and_counted(service, reason, caplog):
    caplog.set_level(logging.WARNING, logger="ringboard.service")
    deliver(service, RINGING)

    deliver(service, BAD_BODIES[reason])

    metrics = service.metrics.render()
    assert f'ringboard_dialog_documents_rejected_total{{reason="{reason}"}} 1' in metrics
    assert 'ringboard_dialog_documents_total{result="rejected"} 1' in metrics
    assert service.rejected_documents == 1
    (record,) = [record for record in caplog.records if "skipped" in record.message]
    assert "extension 201" in record.message
    assert f"({reason}: " in record.message


async def test_bad_bodies_keep_extension_state(service):
    deliver(service, RINGING)

    for body in BAD_BODIES.values():
        deliver(service, body)
    (call,) = service.tracker.active_calls()

    # Every rejected body left the ringing call and the version count alone, so the next
    # good document (version 2) still applies.
    assert call.state == CallState.RINGING
    assert call.remote.number == "+41441234567"
    deliver(service, RINGING.replace(b'version="1"', b'version="2"').replace(b"early", b"confirmed"))
    assert [call.state for call in service.tracker.active_calls()] == [CallState.CONNECTED]


async def test_unexpected_content_type_rejected(service):
    deliver(service, b"<presence/>", "application/pidf+xml")

    assert 'ringboard_dialog_documents_rejected_total{reason="content_type"} 1' in service.metrics.render()


def test_utf16_billion_laughs_rejected():
    # UTF-16 without a byte order mark: expat detects it, so the fast path for plain
    # UTF-8 documents must not take it.
    body = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        '<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="&b;"/>'
    ).encode("utf-16-le")
    with pytest.raises(DialogInfoError):
        parse_dialog_info(body)

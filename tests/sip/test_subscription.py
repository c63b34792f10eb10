"""The sans-I/O dialog subscriber: SUBSCRIBE, NOTIFY, refresh, retransmission, failure."""

import random

from sip.message import Request, Response, build_request, build_response, parse_message
from sip.subscription import (
    T1,
    TIMER_F,
    DialogSubscriber,
    DocumentReceived,
    SendMessage,
    StateChanged,
    SubscriberConfig,
    SubscriptionState,
)

PBX = ("192.0.2.10", 5060)
CONFIG = SubscriberConfig(pbx_host=PBX[0], pbx_port=PBX[1], domain="pbx.local", local_host="192.0.2.50", local_port=5070)


def start(extensions=("201",)):
    subscriber = DialogSubscriber(CONFIG, list(extensions), rng=random.Random(1))
    effects = subscriber.start(now=0.0)
    requests = {}
    for effect in effects:
        request = parse_message(effect.data)
        requests[request.uri.split(":")[1].split("@")[0]] = request
    return subscriber, requests


def accept(subscriber, request, now=0.1, expires="600"):
    data = build_response(request, 200, "OK", to_tag="pbx-tag", headers=[("Expires", expires)])
    return subscriber.receive(data, PBX, now)


def notify(request, cseq, body=b"", state="active;expires=590", to_tag=None):
    headers = [
        ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKn" + str(cseq)),
        ("From", "<sip:201@pbx.local>;tag=pbx-tag"),
        ("To", f"<sip:ringboard@pbx.local>;tag={to_tag or request.from_tag}"),
        ("Call-ID", request.call_id),
        ("CSeq", f"{cseq} NOTIFY"),
        ("Event", "dialog"),
        ("Subscription-State", state),
    ]
    if body:
        headers.append(("Content-Type", "application/dialog-info+xml"))
    return build_request("NOTIFY", "sip:ringboard@192.0.2.50:5070", headers, body)


def responses(effects):
    return [parse_message(effect.data) for effect in effects if isinstance(effect, SendMessage)]


def test_subscribe_has_dialog_event_headers():
    _, requests = start()
    request = requests["201"]
    assert request.method == "SUBSCRIBE"
    assert request.uri == "sip:201@pbx.local"
    assert request.headers.get("Event") == "dialog"
    assert request.headers.get("Accept") == "application/dialog-info+xml"
    assert request.headers.get("Expires") == "600"
    assert request.top_via.params["branch"].startswith("z9hG4bK")


def test_accepted_subscription_becomes_active():
    subscriber, requests = start()
    effects = accept(subscriber, requests["201"])
    assert StateChanged("201", SubscriptionState.ACTIVE) in effects
    assert subscriber.states() == {"201": SubscriptionState.ACTIVE}


def test_notify_answered_and_document_reported():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    effects = subscriber.receive(notify(requests["201"], 1, b"<dialog-info/>"), PBX, 0.2)
    [reply] = responses(effects)
    assert isinstance(reply, Response) and reply.status == 200
    documents = [effect for effect in effects if isinstance(effect, DocumentReceived)]
    assert documents == [DocumentReceived("201", b"<dialog-info/>", "application/dialog-info+xml", True)]


def test_notify_before_200_completes_dialog():
    subscriber, requests = start()
    effects = subscriber.receive(notify(requests["201"], 1), PBX, 0.05)
    assert any(isinstance(effect, DocumentReceived) for effect in effects)
    assert subscriber.states()["201"] == SubscriptionState.ACTIVE


def test_retransmitted_notify_reported_once():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    data = notify(requests["201"], 5, b"<dialog-info/>")
    first = subscriber.receive(data, PBX, 0.2)
    second = subscriber.receive(data, PBX, 0.3)
    assert sum(isinstance(effect, DocumentReceived) for effect in first) == 1
    assert not any(isinstance(effect, DocumentReceived) for effect in second)
    assert responses(second)[0].status == 200


def test_unknown_dialog_notify_gets_481():
    subscriber, requests = start()
    stray = notify(requests["201"], 1, to_tag="someone-else")
    [reply] = responses(subscriber.receive(stray, PBX, 0.1))
    assert reply.status == 481


def test_subscribe_retransmitted_then_times_out():
    subscriber, _ = start()
    first = subscriber.on_timer(T1)
    assert len(responses(first)) == 1
    assert subscriber.next_deadline() > T1

    effects = subscriber.on_timer(TIMER_F + 0.01)
    assert StateChanged("201", SubscriptionState.FAILING, "timeout", None) in effects
    retry_at = subscriber.next_deadline()
    assert TIMER_F < retry_at < TIMER_F + 10

    again = responses(subscriber.on_timer(retry_at))
    assert again[0].method == "SUBSCRIBE"


def test_refresh_before_expiry():
    subscriber, requests = start()
    accept(subscriber, requests["201"], now=0.0, expires="100")
    refresh_at = subscriber.next_deadline()
    assert 0 < refresh_at < 100
    [refresh] = responses(subscriber.on_timer(refresh_at))
    assert refresh.call_id == requests["201"].call_id
    assert refresh.to_tag == "pbx-tag"
    assert refresh.cseq[0] == requests["201"].cseq[0] + 1


def test_rejected_subscription_fails_with_status():
    subscriber, requests = start()
    data = build_response(requests["201"], 403, "Forbidden", to_tag="x")
    effects = subscriber.receive(data, PBX, 0.1)
    assert StateChanged("201", SubscriptionState.FAILING, "rejected", 403) in effects


def test_terminated_notify_resubscribes_with_new_dialog():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    effects = subscriber.receive(notify(requests["201"], 2, state="terminated;reason=timeout"), PBX, 1.0)
    [ok, fresh] = responses(effects)
    assert ok.status == 200
    assert fresh.method == "SUBSCRIBE"
    assert fresh.call_id != requests["201"].call_id


def test_garbage_datagram_dropped():
    subscriber, _ = start()
    effects = subscriber.receive(b"\x00\x01 not sip", PBX, 0.1)
    assert len(effects) == 1 and "invalid SIP message" in effects[0].reason
    assert subscriber.receive(b"\r\n\r\n", PBX, 0.1) == []

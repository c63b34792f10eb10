"""The sans-I/O dialog subscriber: SUBSCRIBE, NOTIFY, refresh, retransmission, failure."""

import dataclasses
import random

import pytest

from sip.digest import Credentials, parse_auth_params
from sip.message import Request, Response, build_request, build_response, parse_message
from sip.subscription import (
    T1,
    TIMER_F,
    DialogSubscriber,
    DocumentReceived,
    Flow,
    ListUnavailable,
    RegistrationChanged,
    SendMessage,
    StateChanged,
    SubscriberConfig,
    SubscriptionState,
    TransactionTimedOut,
)
from sip.transaction import T2

PBX = ("192.0.2.10", 5060)
UDP = Flow("UDP", "192.0.2.50", 5070)
TCP = Flow("TCP", "192.0.2.50", 40001)
CONFIG = SubscriberConfig(domain="pbx.local")
SECRET = Credentials("ringboard", "s3cret")
REALM = "pbx.local"


def start(extensions=("201",), config=CONFIG, flow=UDP):
    subscriber = DialogSubscriber(config, list(extensions), rng=random.Random(1))
    effects = subscriber.connection_made(flow, now=0.0)
    requests = {}
    for request in sent(effects):
        key = "register" if request.method == "REGISTER" else request.uri.split(":")[1].split("@")[0]
        requests[key] = request
    return subscriber, requests


def sent(effects):
    return [parse_message(effect.data) for effect in effects if isinstance(effect, SendMessage)]


def advance(subscriber, limit=10_000.0):
    """Run the timers until the subscriber sends something; return (when, effects)."""
    while (deadline := subscriber.next_deadline()) is not None and deadline <= limit:
        effects = subscriber.on_timer(deadline)
        if sent(effects):
            return deadline, effects
    raise AssertionError("nothing was sent")


def of_type(effects, kind):
    return [effect for effect in effects if isinstance(effect, kind)]


def answer(subscriber, request, status=200, now=0.1, headers=(), reason="OK"):
    data = build_response(request, status, reason, to_tag="pbx-tag", headers=list(headers))
    return subscriber.receive(data, PBX, now)


def accept(subscriber, request, now=0.1, expires="600"):
    return answer(subscriber, request, 200, now, [("Expires", expires)])


def notify(request, cseq, body=b"", state="active;expires=590", to_tag=None, branch=None, from_user="201",
           content_type="application/dialog-info+xml", call_id=None):
    headers = [
        ("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch={branch or 'z9hG4bKn' + str(cseq)}"),
        ("From", f"<sip:{from_user}@pbx.local>;tag=pbx-tag"),
        ("To", f"<sip:ringboard@pbx.local>;tag={to_tag or request.from_tag}"),
        ("Call-ID", call_id or request.call_id),
        ("CSeq", f"{cseq} NOTIFY"),
        ("Event", "dialog"),
        ("Subscription-State", state),
    ]
    if body:
        headers.append(("Content-Type", content_type))
    return build_request("NOTIFY", "sip:ringboard@192.0.2.50:5070", headers, body)


def challenge(request, status=407, stale=False, algorithm="MD5"):
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    value = f'Digest realm="{REALM}", nonce="n{request.cseq[0]}", qop="auth", algorithm={algorithm}'
    if stale:
        value += ", stale=true"
    return build_response(request, status, "Unauthorized", to_tag="x", headers=[(header, value)])


# ----- subscribing -----


def test_subscribe_has_dialog_event_headers():
    _, requests = start()
    request = requests["201"]
    assert request.method == "SUBSCRIBE"
    assert request.uri == "sip:201@pbx.local"
    assert request.headers.get("Event") == "dialog"
    assert request.headers.get("Accept") == "application/dialog-info+xml"
    assert request.headers.get("Expires") == "600"
    assert request.top_via.params["branch"].startswith("z9hG4bK")
    assert "rport" in request.top_via.params
    assert request.headers.get("Contact") == "<sip:ringboard@192.0.2.50:5070>"


def test_tcp_contact_and_via_name_the_connection():
    _, requests = start(flow=TCP)
    request = requests["201"]
    assert request.top_via.transport == "TCP"
    assert "alias" in request.top_via.params
    assert request.headers.get("Contact") == "<sip:ringboard@192.0.2.50:40001;transport=tcp>"


def test_accepted_subscription_becomes_active():
    subscriber, requests = start()
    effects = accept(subscriber, requests["201"])
    assert StateChanged("201", SubscriptionState.ACTIVE) in effects
    assert subscriber.states() == {"201": SubscriptionState.ACTIVE}


def test_notify_answered_and_document_reported():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    effects = subscriber.receive(notify(requests["201"], 1, b"<dialog-info/>"), PBX, 0.2)
    [reply] = sent(effects)
    assert isinstance(reply, Response) and reply.status == 200
    assert of_type(effects, DocumentReceived) == [
        DocumentReceived("201", b"<dialog-info/>", "application/dialog-info+xml", True)
    ]
    later = subscriber.receive(notify(requests["201"], 2, b"<dialog-info/>"), PBX, 0.3)
    assert [document.first_of_subscription for document in of_type(later, DocumentReceived)] == [False]


def test_notify_before_200_completes_dialog():
    subscriber, requests = start()
    effects = subscriber.receive(notify(requests["201"], 1), PBX, 0.05)
    assert of_type(effects, DocumentReceived)
    assert subscriber.states()["201"] == SubscriptionState.ACTIVE


def test_pending_notify_keeps_extension_pending():
    subscriber, requests = start()
    effects = subscriber.receive(notify(requests["201"], 1, state="pending;expires=590"), PBX, 0.05)
    assert subscriber.states()["201"] == SubscriptionState.PENDING
    assert not of_type(effects, StateChanged)


# ----- server transactions -----


def test_retransmitted_notify_gets_same_response():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    data = notify(requests["201"], 5, b"<dialog-info/>")
    first = subscriber.receive(data, PBX, 0.2)
    second = subscriber.receive(data, PBX, 0.7)
    assert len(of_type(first, DocumentReceived)) == 1
    assert not of_type(second, DocumentReceived)
    assert [effect.data for effect in second] == [effect.data for effect in first if isinstance(effect, SendMessage)]


def test_retransmitted_rejected_notify_gets_481_again():
    subscriber, requests = start()
    stray = notify(requests["201"], 1, to_tag="someone-else")
    first = sent(subscriber.receive(stray, PBX, 0.1))
    again = sent(subscriber.receive(stray, PBX, 0.6))
    assert [reply.status for reply in first + again] == [481, 481]


def test_notify_server_transaction_forgotten_after_timer_j():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    data = notify(requests["201"], 5, b"<dialog-info/>")
    subscriber.receive(data, PBX, 0.2)
    subscriber.on_timer(0.2 + TIMER_F + 0.1)
    # A copy after timer J is out of order (same CSeq): it gets a 200 but is not reported again.
    late = subscriber.receive(data, PBX, 0.2 + TIMER_F + 0.2)
    assert [reply.status for reply in sent(late)] == [200]
    assert not of_type(late, DocumentReceived)


def test_unknown_dialog_notify_gets_481():
    subscriber, requests = start()
    stray = notify(requests["201"], 1, to_tag="someone-else")
    [reply] = sent(subscriber.receive(stray, PBX, 0.1))
    assert reply.status == 481


def test_unsolicited_notify_read_for_profile():
    config = dataclasses.replace(CONFIG, read_unsolicited=True)
    subscriber, requests = start(("201", "202"), config)
    data = notify(requests["201"], 1, b"<dialog-info/>", to_tag="other", call_id="pk-1@pbx", from_user="202")
    effects = subscriber.receive(data, PBX, 0.1)
    assert [reply.status for reply in sent(effects)] == [200]
    assert of_type(effects, DocumentReceived) == [
        DocumentReceived("202", b"<dialog-info/>", "application/dialog-info+xml", True)
    ]
    again = notify(requests["201"], 2, b"<dialog-info/>", to_tag="other", call_id="pk-1@pbx", from_user="202")
    assert of_type(subscriber.receive(again, PBX, 0.2), DocumentReceived)[0].first_of_subscription is False


def test_unsolicited_notify_for_other_extension_ignored():
    config = dataclasses.replace(CONFIG, read_unsolicited=True)
    subscriber, requests = start(("201",), config)
    data = notify(requests["201"], 1, b"<dialog-info/>", to_tag="other", call_id="pk-2@pbx", from_user="299")
    effects = subscriber.receive(data, PBX, 0.1)
    assert [reply.status for reply in sent(effects)] == [200]
    assert not of_type(effects, DocumentReceived)


def test_options_answered_200():
    subscriber, _ = start()
    options = build_request(
        "OPTIONS",
        "sip:ringboard@192.0.2.50:5070",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKq1"),
            ("From", "<sip:pbx.local>;tag=q"),
            ("To", "<sip:ringboard@pbx.local>"),
            ("Call-ID", "q1"),
            ("CSeq", "1 OPTIONS"),
        ],
    )
    [reply] = sent(subscriber.receive(options, PBX, 0.1))
    assert reply.status == 200


# ----- client transactions -----


def test_subscribe_retransmitted_on_timer_e():
    subscriber, _ = start()
    resent_at = []
    now = 0.0
    while len(resent_at) < 6:
        now = subscriber.next_deadline()
        if sent(subscriber.on_timer(now)):
            resent_at.append(round(now, 3))
    gaps = [round(later - earlier, 3) for earlier, later in zip([0.0, *resent_at], resent_at)]
    assert gaps == [T1, 2 * T1, 4 * T1, T2, T2, T2]


def test_subscribe_times_out_then_retries():
    subscriber, _ = start()
    effects = subscriber.on_timer(TIMER_F + 0.01)
    assert StateChanged("201", SubscriptionState.FAILING, "timeout", None) in effects
    assert of_type(effects, TransactionTimedOut) == [TransactionTimedOut("SUBSCRIBE", 0.0)]
    retry_at, effects = advance(subscriber)
    assert TIMER_F < retry_at < TIMER_F + 10

    again = sent(effects)
    assert again[0].method == "SUBSCRIBE"


def test_tcp_subscribe_not_retransmitted():
    subscriber, _ = start(flow=TCP)
    assert subscriber.next_deadline() == pytest.approx(TIMER_F)
    effects = subscriber.on_timer(TIMER_F)
    assert not sent(effects)
    assert StateChanged("201", SubscriptionState.FAILING, "timeout", None) in effects


def test_provisional_response_slows_retransmission():
    subscriber, requests = start()
    answer(subscriber, requests["201"], 100, now=0.1, reason="Trying")
    assert subscriber.next_deadline() == pytest.approx(0.1 + T2)


def test_response_matched_by_branch():
    subscriber, requests = start()
    request = requests["201"]
    other = Request(request.method, request.uri, request.headers, request.body)
    other.headers = type(request.headers)(
        [(name, value.replace(request.top_via.branch, "z9hG4bKother")) for name, value in request.headers.items()]
    )
    effects = answer(subscriber, other)
    assert "matches no pending request" in effects[0].reason
    assert subscriber.states()["201"] == SubscriptionState.PENDING


def test_retransmitted_final_response_ignored():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    assert accept(subscriber, requests["201"], now=0.2) == []


# ----- refresh and re-subscription -----


def test_refresh_before_expiry():
    subscriber, requests = start()
    accept(subscriber, requests["201"], now=0.0, expires="100")
    refresh_at, effects = advance(subscriber)
    assert 0 < refresh_at < 100
    [refresh] = sent(effects)
    assert refresh.call_id == requests["201"].call_id
    assert refresh.to_tag == "pbx-tag"
    assert refresh.cseq[0] == requests["201"].cseq[0] + 1


def test_short_grant_refreshed_in_time():
    subscriber, requests = start()
    accept(subscriber, requests["201"], now=0.0, expires="10")
    assert advance(subscriber)[0] == pytest.approx(8.0)


def test_481_to_refresh_starts_new_subscription():
    subscriber, requests = start()
    accept(subscriber, requests["201"], now=0.0, expires="100")
    [refresh] = sent(advance(subscriber)[1])
    effects = answer(subscriber, refresh, 481, now=81.0, reason="Subscription Does Not Exist")
    [fresh] = sent(effects)
    assert fresh.method == "SUBSCRIBE"
    assert fresh.call_id != requests["201"].call_id
    assert fresh.to_tag is None
    assert StateChanged("201", SubscriptionState.PENDING) in effects


def test_terminated_notify_resubscribes_with_new_dialog():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    effects = subscriber.receive(notify(requests["201"], 2, state="terminated;reason=timeout"), PBX, 1.0)
    [ok, fresh] = sent(effects)
    assert ok.status == 200
    assert fresh.method == "SUBSCRIBE"
    assert fresh.call_id != requests["201"].call_id


def test_terminated_noresource_backs_off():
    subscriber, requests = start()
    accept(subscriber, requests["201"])
    effects = subscriber.receive(notify(requests["201"], 2, state="terminated;reason=noresource"), PBX, 1.0)
    assert StateChanged("201", SubscriptionState.FAILING, "terminated", None) in effects
    assert len(sent(effects)) == 1  # only the 200


def test_rejected_subscription_fails_with_status():
    subscriber, requests = start()
    effects = answer(subscriber, requests["201"], 403, reason="Forbidden")
    assert StateChanged("201", SubscriptionState.FAILING, "rejected", 403) in effects


def test_interval_too_brief_retried_with_min_expires():
    subscriber, requests = start()
    effects = answer(subscriber, requests["201"], 423, headers=[("Min-Expires", "1800")], reason="Interval Too Brief")
    [again] = sent(effects)
    assert again.headers.get("Expires") == "1800"
    assert again.call_id == requests["201"].call_id


def test_backoff_doubles_and_stays_under_cap():
    config = dataclasses.replace(CONFIG, retry_first=1.0, retry_max=5.0)
    subscriber, requests = start(config=config)
    request = requests["201"]
    now = 0.0
    delays = []
    for _ in range(8):
        answer(subscriber, request, 500, now=now, reason="Server Error")
        retry_at, effects = advance(subscriber)
        delays.append(retry_at - now)
        now = retry_at
        [request] = sent(effects)
    assert delays[0] == pytest.approx(1.0, rel=0.25)
    assert delays[1] == pytest.approx(2.0, rel=0.25)
    assert max(delays) <= 5.0
    assert delays[-1] >= 5.0 * 0.75


# ----- connections -----


def test_connection_lost_fails_every_extension():
    subscriber, requests = start(("201", "202"), flow=TCP)
    for request in requests.values():
        accept(subscriber, request)
    effects = subscriber.connection_lost(now=5.0)
    assert set(of_type(effects, StateChanged)) == {
        StateChanged("201", SubscriptionState.FAILING, "transport", None),
        StateChanged("202", SubscriptionState.FAILING, "transport", None),
    }
    assert not sent(effects)
    # Nothing is retried until the adapter reports a new connection.
    assert subscriber.next_deadline() is None
    assert not sent(subscriber.on_timer(1000.0))


def test_new_connection_starts_new_dialogs():
    subscriber, requests = start(("201",), flow=TCP)
    accept(subscriber, requests["201"])
    subscriber.connection_lost(now=5.0)
    effects = subscriber.connection_made(Flow("TCP", "192.0.2.50", 40002), now=7.0)
    [fresh] = sent(effects)
    assert fresh.call_id != requests["201"].call_id
    assert fresh.headers.get("Contact") == "<sip:ringboard@192.0.2.50:40002;transport=tcp>"
    assert StateChanged("201", SubscriptionState.ACTIVE) in accept(subscriber, fresh, now=7.1)


def test_repeated_failure_reported_once():
    subscriber, _ = start(flow=TCP)
    first = subscriber.connection_lost(now=1.0, reason="dns")
    second = subscriber.connection_lost(now=2.0, reason="dns")
    assert len(of_type(first, StateChanged)) == 1
    assert of_type(second, StateChanged) == []


# ----- digest authentication -----


def test_challenge_answered_with_credentials():
    config = dataclasses.replace(CONFIG, credentials=SECRET)
    subscriber, requests = start(config=config)
    request = requests["201"]
    [retry] = sent(subscriber.receive(challenge(request), PBX, 0.1))
    assert retry.call_id == request.call_id
    assert retry.cseq[0] == request.cseq[0] + 1
    assert retry.top_via.branch != request.top_via.branch
    credentials = parse_auth_params(retry.headers.get("Proxy-Authorization").removeprefix("Digest "))
    assert credentials["username"] == "ringboard"
    assert credentials["realm"] == REALM
    assert credentials["nc"] == "00000001"
    assert credentials["uri"] == "sip:201@pbx.local"

    assert StateChanged("201", SubscriptionState.ACTIVE) in accept(subscriber, retry, now=0.2, expires="100")
    [refresh] = sent(advance(subscriber)[1])
    reused = parse_auth_params(refresh.headers.get("Proxy-Authorization").removeprefix("Digest "))
    assert reused["nonce"] == credentials["nonce"]
    assert reused["nc"] == "00000002"


def test_wrong_password_fails_auth():
    config = dataclasses.replace(CONFIG, credentials=SECRET)
    subscriber, requests = start(config=config)
    [retry] = sent(subscriber.receive(challenge(requests["201"]), PBX, 0.1))
    effects = subscriber.receive(challenge(retry), PBX, 0.2)
    assert StateChanged("201", SubscriptionState.FAILING, "auth_failed", 407) in effects
    assert not sent(effects)


def test_stale_nonce_retried_without_failure():
    config = dataclasses.replace(CONFIG, credentials=SECRET)
    subscriber, requests = start(config=config)
    [retry] = sent(subscriber.receive(challenge(requests["201"]), PBX, 0.1))
    effects = subscriber.receive(challenge(retry, stale=True), PBX, 0.2)
    [again] = sent(effects)
    assert not of_type(effects, StateChanged)
    nonce = parse_auth_params(again.headers.get("Proxy-Authorization").removeprefix("Digest "))["nonce"]
    assert nonce == f"n{retry.cseq[0]}"


def test_sha256_challenge_answered():
    config = dataclasses.replace(CONFIG, credentials=SECRET)
    subscriber, requests = start(config=config)
    [retry] = sent(subscriber.receive(challenge(requests["201"], 401, algorithm="SHA-256"), PBX, 0.1))
    credentials = parse_auth_params(retry.headers.get("Authorization").removeprefix("Digest "))
    assert credentials["algorithm"] == "SHA-256"
    assert len(credentials["response"]) == 64


def test_challenge_without_credentials_reported():
    subscriber, requests = start()
    effects = subscriber.receive(challenge(requests["201"], 401), PBX, 0.1)
    assert StateChanged("201", SubscriptionState.FAILING, "auth_required", 401) in effects


# ----- registration -----


def test_register_with_digest_and_refresh():
    config = dataclasses.replace(CONFIG, credentials=SECRET, register=True)
    subscriber, requests = start(config=config)
    register = requests["register"]
    assert register.uri == "sip:pbx.local"
    assert register.headers.get("To") == "<sip:ringboard@pbx.local>"
    assert register.headers.get("Expires") == "3600"

    [retry] = sent(subscriber.receive(challenge(register, 401), PBX, 0.1))
    assert retry.headers.get("Authorization").startswith("Digest ")
    assert retry.call_id == register.call_id
    contact = retry.headers.get("Contact") + ";expires=120"
    effects = answer(subscriber, retry, 200, now=0.2, headers=[("Contact", contact)])
    assert of_type(effects, RegistrationChanged) == [RegistrationChanged(True)]
    assert subscriber.next_deadline() <= 0.2 + 120 * 0.8 + 0.001


def test_stop_unsubscribes_and_unregisters():
    config = dataclasses.replace(CONFIG, register=True)
    subscriber, requests = start(config=config)
    accept(subscriber, requests["201"])
    answer(subscriber, requests["register"], 200, headers=[("Expires", "3600")])
    requests_sent = sent(subscriber.stop(now=1.0))
    assert sorted((request.method, request.headers.get("Expires")) for request in requests_sent) == [
        ("REGISTER", "0"),
        ("SUBSCRIBE", "0"),
    ]


def test_outbound_proxy_preloads_route():
    config = dataclasses.replace(CONFIG, outbound_proxy="sip:proxy.pbx.local;lr")
    subscriber, requests = start(config=config)
    assert requests["201"].headers.get_all("Route") == ["<sip:proxy.pbx.local;lr>"]
    accept(subscriber, requests["201"], expires="100")
    [refresh] = sent(advance(subscriber)[1])
    assert refresh.headers.get_all("Route") == []


# ----- list subscription (RFC 4662) -----

LIST_BODY = (
    b"--b1\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-ID: <rlmi@pbx>\r\n"
    b"Content-Type: application/rlmi+xml;charset=UTF-8\r\n\r\n"
    b'<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:blf@pbx.local" version="0" fullState="true">'
    b'<resource uri="sip:201@pbx.local"><instance id="a" state="active" cid="p201@pbx"/></resource>'
    b'<resource uri="sip:202@pbx.local"><instance id="b" state="active" cid="p202@pbx"/></resource>'
    b'<resource uri="sip:299@pbx.local"><instance id="c" state="active" cid="p299@pbx"/></resource>'
    b"</list>\r\n"
    b"--b1\r\n"
    b"Content-ID: <p201@pbx>\r\n"
    b"Content-Type: application/dialog-info+xml\r\n\r\n"
    b'<dialog-info version="0" state="full" entity="sip:201@pbx.local"/>\r\n'
    b"--b1\r\n"
    b"Content-ID: <p202@pbx>\r\n"
    b"Content-Type: application/dialog-info+xml\r\n\r\n"
    b'<dialog-info version="0" state="full" entity="sip:202@pbx.local"/>\r\n'
    b"--b1\r\n"
    b"Content-ID: <p299@pbx>\r\n"
    b"Content-Type: application/dialog-info+xml\r\n\r\n"
    b'<dialog-info version="0" state="full" entity="sip:299@pbx.local"/>\r\n'
    b"--b1--\r\n"
)
LIST_TYPE = 'multipart/related;type="application/rlmi+xml";start="<rlmi@pbx>";boundary="b1"'


def test_list_subscription_reports_each_extension():
    config = dataclasses.replace(CONFIG, list_uri="sip:blf@pbx.local")
    subscriber, requests = start(("201", "202"), config)
    [request] = requests.values()
    assert request.uri == "sip:blf@pbx.local"
    assert request.headers.get("Supported") == "eventlist"
    effects = accept(subscriber, request)
    assert {change.extension for change in of_type(effects, StateChanged)} == {"201", "202"}

    data = notify(request, 1, LIST_BODY, content_type=LIST_TYPE, from_user="blf")
    documents = of_type(subscriber.receive(data, PBX, 0.2), DocumentReceived)
    assert [(document.extension, document.first_of_subscription) for document in documents] == [
        ("201", True),
        ("202", True),
    ]
    assert documents[0].body.startswith(b"<dialog-info")
    assert documents[0].content_type == "application/dialog-info+xml"


def test_list_refused_falls_back_per_extension():
    config = dataclasses.replace(CONFIG, list_uri="sip:blf@pbx.local")
    subscriber, requests = start(("201", "202"), config)
    [request] = requests.values()
    effects = answer(subscriber, request, 404, reason="Not Found")
    assert of_type(effects, ListUnavailable) == [ListUnavailable(404, "404 Not Found")]
    assert sorted(fresh.uri for fresh in sent(effects)) == ["sip:201@pbx.local", "sip:202@pbx.local"]
    assert not subscriber.uses_list

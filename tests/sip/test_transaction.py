"""Non-INVITE transaction timers (RFC 3261 §17): E, F and J."""

import pytest

from sip.transaction import T1, T2, TIMER_F_FACTOR, ClientState, ClientTransaction, ServerTransactions

TIMER_F = TIMER_F_FACTOR * T1


def test_udp_retransmits_until_t2_then_times_out():
    transaction = ClientTransaction("z9hG4bK1", "SUBSCRIBE", b"REQ", started=0.0)
    moments = []
    while (deadline := transaction.deadline()) is not None:
        if transaction.on_timer(deadline) is not None:
            moments.append(deadline)
    gaps = [later - earlier for earlier, later in zip([0.0, *moments], moments)]
    assert gaps[:4] == [T1, 2 * T1, 4 * T1, T2]
    assert set(gaps[3:]) == {T2}
    assert transaction.state == ClientState.TERMINATED
    assert moments[-1] < TIMER_F


def test_reliable_transport_never_retransmits():
    transaction = ClientTransaction("z9hG4bK2", "SUBSCRIBE", b"REQ", started=10.0, reliable=True)
    assert transaction.deadline() == pytest.approx(10.0 + TIMER_F)
    assert transaction.on_timer(10.0 + TIMER_F) is None
    assert transaction.state == ClientState.TERMINATED


def test_provisional_then_final_response():
    transaction = ClientTransaction("z9hG4bK3", "SUBSCRIBE", b"REQ", started=0.0)
    assert transaction.on_response(100, 0.2) is False
    assert transaction.state == ClientState.PROCEEDING
    assert transaction.deadline() == pytest.approx(0.2 + T2)
    assert transaction.on_response(200, 0.3) is True
    assert transaction.deadline() is None
    assert transaction.on_response(200, 0.4) is False


def test_server_transactions_replay_response():
    table = ServerTransactions()
    table.remember("z9hG4bKa", "NOTIFY", b"SIP/2.0 200 OK", now=1.0, reliable=False)
    assert table.lookup("z9hG4bKa", "NOTIFY") == b"SIP/2.0 200 OK"
    assert table.lookup("z9hG4bKa", "OPTIONS") is None
    assert table.deadline() == pytest.approx(1.0 + TIMER_F)
    table.expire(1.0 + TIMER_F)
    assert table.lookup("z9hG4bKa", "NOTIFY") is None


def test_server_transactions_skip_reliable():
    table = ServerTransactions()
    table.remember("z9hG4bKb", "NOTIFY", b"SIP/2.0 200 OK", now=1.0, reliable=True)
    assert len(table) == 0

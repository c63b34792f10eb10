"""The SQLite history: numbering, snapshot queries and restarts."""

from agent.history import History


def make_call(call_id, state="ringing", extension="201"):
    return {"id": call_id, "extension": extension, "state": state, "started_at": "2026-12-04T09:00:00.000Z"}


def test_seq_rises_strictly(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    first = history.record("a", "201", "ringing", make_call("a"))
    second = history.record("a", "201", "connected", make_call("a", "connected"))
    third = history.record("b", "202", "ringing", make_call("b", extension="202"))
    assert first < second < third
    assert history.last_seq() == third


def test_seq_survives_restart_and_purge(tmp_path):
    path = tmp_path / "h.sqlite3"
    history = History(path)
    last = history.record("a", "201", "ended", make_call("a", "ended") | {"started_at": "2000-01-01T00:00:00.000Z"})
    assert history.purge(days=1) == 1
    history.close()

    reopened = History(path)
    assert reopened.record("b", "201", "ringing", make_call("b")) > last


def test_active_and_recent_split(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    history.record("a", "201", "ringing", make_call("a"))
    history.record("b", "202", "ringing", make_call("b", extension="202"))
    history.record("a", "201", "ended", make_call("a", "ended"))

    assert [call["id"] for call in history.active_calls()] == ["b"]
    assert [call["id"] for call in history.recent_calls(10)] == ["a"]
    assert history.active_calls({"201"}) == []


def test_recent_calls_page_before(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    seqs = [history.record(f"c{i}", "201", "ended", make_call(f"c{i}", "ended")) for i in range(5)]
    page = history.recent_calls(2, before=seqs[3])
    assert [call["id"] for call in page] == ["c2", "c1"]


def test_events_since_replays_in_order(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    first = history.record("a", "201", "ringing", make_call("a"))
    history.record("a", "201", "connected", make_call("a", "connected"))
    history.record("b", "202", "ringing", make_call("b", extension="202"))
    replay = history.events_since(first)
    assert [(kind, call["id"]) for _, kind, call in replay] == [("connected", "a"), ("ringing", "b")]
    assert [kind for _, kind, _ in history.events_since(first, {"202"})] == ["ringing"]

"""The session step function: every message in every state, without a network."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from types import MappingProxyType

import pytest

from pandanode.services.replication.session import (
    AnnounceReceived,
    DigestReceived,
    DoneReceived,
    DriftTick,
    EntriesReceived,
    Event,
    Finish,
    HaveReceived,
    HeightsLoaded,
    IdleTimeout,
    Ingest,
    IngestResult,
    LiveDigest,
    LoadDigest,
    LoadHeights,
    LocalStored,
    MessageInvalid,
    MissingSent,
    PeerClosed,
    Phase,
    ReceivedEntry,
    Send,
    SendMissing,
    SessionConfig,
    SessionState,
    Start,
    StartLive,
    Target,
    have_messages,
    new_session,
    step,
)

ME = "a" * 64
PEER = "b" * 64
AUTHOR = "c" * 64
SCHEMA = "venue_0020" + "d" * 64
OTHER_SCHEMA = "event_0020" + "e" * 64
LOG = (AUTHOR, 0)


def entry(seq: int, schema: str = SCHEMA, log_id: int = 0) -> ReceivedEntry:
    return ReceivedEntry(AUTHOR, log_id, seq, schema, b"entry%d" % seq, b"op%d" % seq)


def run(state: SessionState, *events: Event) -> tuple[SessionState, list[object]]:
    actions: list[object] = []
    for event in events:
        state, new = step(state, event)
        actions.extend(new)
    return state, actions


def kinds(actions: list[object]) -> list[str]:
    out = []
    for action in actions:
        if isinstance(action, Send):
            out.append(str(action.message.WhichOneof("message")))
        else:
            out.append(type(action).__name__)
    return out


def finish_reason(actions: list[object]) -> str | None:
    for action in actions:
        if isinstance(action, Finish):
            return action.reason
    return None


def config(live: bool = False) -> SessionConfig:
    return SessionConfig(node_id=ME, live=live, max_have_logs=10, max_batch_items=5)


ANNOUNCE = AnnounceReceived(1, PEER, ("*",), live=False)
LOCAL = HeightsLoaded(MappingProxyType({LOG: 2}), b"mine")
SAME_DIGEST = DigestReceived(b"mine", 1)
OTHER_DIGEST = DigestReceived(b"theirs", 1)
HAVE_LAST = HaveReceived(((AUTHOR, 0, 1),), last=True)


# States by name, each built by running real events from a new session.
def s_start() -> SessionState:
    return new_session(config())


def s_announce() -> SessionState:
    return run(s_start(), Start())[0]


def s_digest() -> SessionState:
    return run(s_announce(), ANNOUNCE)[0]


def s_digest_loaded() -> SessionState:
    return run(s_digest(), LOCAL)[0]


def s_sync_equal() -> SessionState:
    return run(s_digest_loaded(), SAME_DIGEST)[0]


def s_sync_diff() -> SessionState:
    return run(s_digest_loaded(), OTHER_DIGEST)[0]


def s_sync_have_done() -> SessionState:
    return run(s_sync_diff(), HAVE_LAST)[0]


def s_sync_sent() -> SessionState:
    return run(s_sync_have_done(), MissingSent(MappingProxyType({LOG: 2}), 1))[0]


def s_live() -> SessionState:
    live = run(new_session(config(live=True)), Start(), AnnounceReceived(1, PEER, ("*",), True))
    return run(live[0], LOCAL, SAME_DIGEST, DoneReceived(live=True))[0]


def s_done() -> SessionState:
    return run(s_sync_equal(), DoneReceived(live=False))[0]


def s_failed() -> SessionState:
    return run(s_announce(), IdleTimeout())[0]


def s_digest_peer() -> SessionState:
    return run(s_digest(), OTHER_DIGEST)[0]


def s_sync_peer_done() -> SessionState:
    return run(s_sync_have_done(), DoneReceived(live=False))[0]


# Every phase, and within a phase every point where the session answers differently.
STATES: dict[str, Callable[[], SessionState]] = {
    "start": s_start,
    "announce": s_announce,
    "digest": s_digest,  # neither our heights nor the peer's digest yet
    "digest_loaded": s_digest_loaded,  # our heights loaded and HaveDigest sent
    "digest_peer": s_digest_peer,  # the peer's HaveDigest, our heights still loading
    "sync_equal": s_sync_equal,  # equal digests: our SyncDone sent
    "sync_diff": s_sync_diff,  # our Have sent, the peer's awaited
    "sync_have_done": s_sync_have_done,  # sending what the peer lacks
    "sync_sent": s_sync_sent,  # our SyncDone sent, the peer's awaited
    "sync_peer_done": s_sync_peer_done,  # the peer's SyncDone, ours not yet
    "live": s_live,
    "done": s_done,
    "failed": s_failed,
}

# One event of every kind: the peer's messages, then the results of local work and timers.
EVENTS: dict[str, Event] = {
    "start": Start(),
    "announce": ANNOUNCE,
    "digest": OTHER_DIGEST,
    "have": HAVE_LAST,
    "entries": EntriesReceived((entry(3),)),
    "done": DoneReceived(live=False),
    "heights": LOCAL,
    "missing_sent": MissingSent(MappingProxyType({LOG: 2}), 1),
    "ingest_stored": IngestResult(stored=1, held=1),
    "ingest_rejected": IngestResult(stored=0, rejected=1, reason="INVALID_SIGNATURE"),
    "local_stored": LocalStored((entry(3),)),
    "drift_tick": DriftTick(),
    "live_digest": LiveDigest(b"ours", 1),
    "idle": IdleTimeout(),
    "closed": PeerClosed(),
    "invalid": MessageInvalid("INVALID_ENTRY", "unreadable"),
}

VIOLATION = "failed Finish:PROTOCOL_VIOLATION"
# The outcome of each event kind in a running session, unless EXCEPTIONS says otherwise:
# "same" (state and actions unchanged), or "<phase after> <actions…>" (a Send by the message
# kind, a Finish with its reason).
DEFAULT: dict[str, str] = {
    "start": VIOLATION,
    "announce": VIOLATION,
    "digest": VIOLATION,
    "have": VIOLATION,
    "entries": VIOLATION,
    "done": VIOLATION,
    "heights": VIOLATION,
    "missing_sent": VIOLATION,
    "ingest_stored": "same",
    "ingest_rejected": "failed Finish:INVALID_SIGNATURE",
    "local_stored": "same",  # only pushed in live mode
    "drift_tick": "same",  # only checked in live mode
    "live_digest": VIOLATION,
    "idle": "failed Finish:SYNC_IDLE_TIMEOUT",
    "closed": "failed Finish:PEER_CLOSED",
    "invalid": "failed Finish:INVALID_ENTRY",
}
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("start", "start"): "announce announce",
    ("announce", "announce"): "digest LoadHeights",
    ("digest", "digest"): "digest",
    ("digest", "heights"): "digest have_digest",
    ("digest_loaded", "digest"): "sync have",
    ("digest_peer", "heights"): "sync have_digest have",
    ("sync_equal", "done"): "done Finish:",
    ("sync_diff", "have"): "sync SendMissing",
    ("sync_diff", "entries"): "sync Ingest",
    ("sync_have_done", "have"): "failed Finish:SECOND_HAVE",
    ("sync_have_done", "entries"): "sync Ingest",
    ("sync_have_done", "done"): "sync",
    ("sync_have_done", "missing_sent"): "sync sync_done",
    ("sync_sent", "have"): "failed Finish:SECOND_HAVE",
    ("sync_sent", "entries"): "sync Ingest",
    ("sync_sent", "done"): "done Finish:",
    ("sync_peer_done", "have"): "failed Finish:SECOND_HAVE",
    ("sync_peer_done", "missing_sent"): "done sync_done Finish:",
    # After the peer's SyncDone it has nothing more to send: silence and a half-close are fine.
    ("sync_peer_done", "idle"): "same",
    ("sync_peer_done", "closed"): "same",
    ("live", "digest"): "live",  # kept for the next drift check
    ("live", "entries"): "live Ingest",
    ("live", "local_stored"): "live entries",
    ("live", "drift_tick"): "live LoadDigest",
    ("live", "live_digest"): "live have_digest",
    ("live", "idle"): "same",
    ("live", "closed"): "done Finish:",
}
EXPECTED: dict[tuple[str, str], str] = {
    (state, event): "same"
    if state in ("done", "failed")  # an ended session ignores everything
    else EXCEPTIONS.get((state, event), DEFAULT[event])
    for state in STATES
    for event in EVENTS
}


def outcome(before: SessionState, after: SessionState, actions: tuple[object, ...]) -> str:
    """A step's outcome in the notation of EXPECTED."""
    if (after, actions) == (before, ()):
        return "same"
    described = [
        f"Finish:{action.reason}" if isinstance(action, Finish) else kind
        for action, kind in zip(actions, kinds(list(actions)), strict=True)
    ]
    return " ".join([after.phase.value, *described])


def test_the_matrix_covers_every_event_kind_in_every_phase() -> None:
    assert {type(event) for event in EVENTS.values()} == set(typing.get_args(Event))
    assert {make().phase for make in STATES.values()} == set(Phase)
    assert set(EXCEPTIONS) <= set(EXPECTED)
    assert len(EXPECTED) == len(STATES) * len(EVENTS)


@pytest.mark.parametrize(("state_name", "event_name"), list(EXPECTED))
def test_every_event_in_every_state_has_its_outcome(state_name: str, event_name: str) -> None:
    before = STATES[state_name]()
    after, actions = step(before, EVENTS[event_name])
    expected = EXPECTED[(state_name, event_name)]
    assert outcome(before, after, actions) == expected
    if expected.startswith("failed"):
        assert after.reason == expected.rpartition(":")[2]
        assert after.ended


def test_start_sends_our_announce() -> None:
    state, actions = run(new_session(config(live=True)), Start())
    assert kinds(actions) == ["announce"]
    sent = actions[0]
    assert isinstance(sent, Send)
    assert sent.message.announce.node_id == ME
    assert list(sent.message.announce.schema_ids) == ["*"]
    assert sent.message.announce.live
    assert state.phase is Phase.ANNOUNCE


def test_peer_announce_sets_the_target_to_the_intersection_and_loads_heights() -> None:
    ours = SessionConfig(node_id=ME, schema_ids=(SCHEMA, OTHER_SCHEMA), live=True)
    state, actions = run(
        new_session(ours), Start(), AnnounceReceived(1, PEER, (SCHEMA, "x_v1"), live=True)
    )
    assert state.target == Target(schema_ids=frozenset({SCHEMA}))
    assert actions[-1] == LoadHeights(Target(schema_ids=frozenset({SCHEMA})), subscribe=True)


def test_live_is_only_subscribed_when_both_announce_live() -> None:
    _, actions = run(new_session(config(live=True)), Start(), ANNOUNCE)
    assert actions[-1] == LoadHeights(Target(any=True), subscribe=False)


@pytest.mark.parametrize(
    ("announce", "reason"),
    [
        (AnnounceReceived(2, PEER, ("*",), False), "UNSUPPORTED_VERSION"),
        (AnnounceReceived(1, ME, ("*",), False), "SELF_SYNC"),
        (AnnounceReceived(1, "not a key", ("*",), False), "INVALID_NODE_ID"),
        (AnnounceReceived(1, "f" * 64, ("*",), False), "UNEXPECTED_NODE_ID"),
    ],
)
def test_a_bad_announce_ends_the_session(announce: AnnounceReceived, reason: str) -> None:
    cfg = SessionConfig(node_id=ME, expected_node_id=PEER)
    _, actions = run(new_session(cfg), Start(), announce)
    assert finish_reason(actions) == reason


@pytest.mark.parametrize("digest_first", [True, False])
def test_equal_digests_send_sync_done_at_once_whichever_comes_first(digest_first: bool) -> None:
    events: list[Event] = [SAME_DIGEST, LOCAL] if digest_first else [LOCAL, SAME_DIGEST]
    state, actions = run(s_digest(), *events)
    assert kinds(actions) == ["have_digest", "sync_done"]
    assert state.sent_done and not state.diff
    state, actions = run(state, DoneReceived(live=False))
    assert actions == [Finish()]
    assert state.phase is Phase.DONE


def test_different_digests_send_our_have_then_what_the_peer_lacks_then_sync_done() -> None:
    state, actions = run(s_digest(), LOCAL, OTHER_DIGEST)
    assert kinds(actions) == ["have_digest", "have"]
    have = actions[1]
    assert isinstance(have, Send) and have.message.have.last
    assert have.message.have.authors[0].logs[0].seq_num == 2
    state, actions = run(state, HAVE_LAST)
    assert actions == [SendMissing(Target(any=True), MappingProxyType({LOG: 1}))]
    state, actions = run(state, MissingSent(MappingProxyType({LOG: 2}), 1))
    assert kinds(actions) == ["sync_done"]
    assert state.peer_known[LOG] == 2
    state, actions = run(state, DoneReceived(live=False))
    assert actions == [Finish()]


def test_have_chunks_accumulate_until_the_last() -> None:
    state, actions = run(s_sync_diff(), HaveReceived(((AUTHOR, 0, 1),), last=False))
    assert actions == []
    state, actions = run(state, HaveReceived(((AUTHOR, 1, 4),), last=True))
    assert actions == [SendMissing(Target(any=True), MappingProxyType({LOG: 1, (AUTHOR, 1): 4}))]


def test_have_over_max_have_logs_ends_the_session() -> None:
    heights = tuple((AUTHOR, i, 1) for i in range(11))
    _, actions = run(s_sync_diff(), HaveReceived(heights, last=False))
    assert finish_reason(actions) == "HAVE_TOO_LARGE"


def test_have_naming_an_invalid_log_ends_the_session() -> None:
    _, actions = run(s_sync_diff(), HaveReceived((("zz", 0, 1),), last=True))
    assert finish_reason(actions) == "INVALID_HAVE"


def test_have_messages_are_chunked_and_only_the_last_is_last() -> None:
    heights = {(AUTHOR, i): i + 1 for i in range(5)}
    haves = have_messages(heights, chunk=2)
    assert [h.last for h in haves] == [False, False, True]
    assert sum(len(a.logs) for h in haves for a in h.authors) == 5
    assert [h.last for h in have_messages({})] == [True]


def test_received_entries_go_to_ingest() -> None:
    items = (entry(3), entry(4))
    state, actions = run(s_sync_diff(), EntriesReceived(items))
    assert actions == [Ingest(items)]
    assert state.entries_received == 2
    assert state.received[LOG] == 4


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ((entry(3, schema=OTHER_SCHEMA),), "ENTRY_OUTSIDE_TARGET_SET"),
        ((entry(2),), "ENTRY_ALREADY_HELD"),
        ((entry(4), entry(3)), "ENTRY_OUT_OF_ORDER"),
        ((entry(3), entry(3)), "ENTRY_OUT_OF_ORDER"),
        (tuple(entry(3 + i) for i in range(6)), "BATCH_TOO_LARGE"),
    ],
)
def test_bad_entries_end_the_session_before_ingest(
    items: tuple[ReceivedEntry, ...], reason: str
) -> None:
    cfg = SessionConfig(node_id=ME, schema_ids=(SCHEMA,), max_batch_items=5)
    state, _ = run(new_session(cfg), Start(), ANNOUNCE, LOCAL, OTHER_DIGEST)
    state, actions = run(state, EntriesReceived(items))
    assert finish_reason(actions) == reason
    assert not any(isinstance(a, Ingest) for a in actions)


def test_entries_out_of_order_across_messages_end_the_session() -> None:
    state, _ = run(s_sync_diff(), EntriesReceived((entry(4),)))
    _, actions = run(state, EntriesReceived((entry(3),)))
    assert finish_reason(actions) == "ENTRY_OUT_OF_ORDER"


def test_a_rejected_entry_ends_the_session_with_ingests_reason() -> None:
    state, actions = run(s_sync_diff(), IngestResult(stored=1, rejected=1, reason="X"))
    assert finish_reason(actions) == "X"
    assert state.entries_rejected == 1


def test_held_entries_do_not_end_the_session() -> None:
    state, actions = run(s_sync_diff(), IngestResult(stored=1, held=2))
    assert actions == []
    assert state.phase is Phase.SYNC


def test_sync_done_both_ways_with_live_starts_live_mode() -> None:
    state, actions = run(
        new_session(config(live=True)),
        Start(),
        AnnounceReceived(1, PEER, ("*",), True),
        LOCAL,
        SAME_DIGEST,
        DoneReceived(live=True),
    )
    assert state.phase is Phase.LIVE
    assert actions[-1] == StartLive()


def test_live_pushes_new_entries_of_the_target_and_skips_what_the_peer_holds() -> None:
    state = s_live()
    # The peer holds entry 2 (equal digests); 3 is new; another schema's entry is not pushed.
    stored = (entry(2), entry(3), entry(1, schema=OTHER_SCHEMA, log_id=1))
    state = dataclasses.replace(state, target=Target.of((SCHEMA,)))
    state, actions = run(state, LocalStored(stored))
    assert kinds(actions) == ["entries"]
    sent = actions[0]
    assert isinstance(sent, Send)
    assert [i.entry for i in sent.message.entries.items] == [b"entry3"]
    # Pushed once: the same entry again (or one the peer sent us) is not pushed back.
    state, actions = run(state, LocalStored((entry(3),)))
    assert actions == []
    state, _ = run(state, EntriesReceived((entry(4),)))
    state, actions = run(state, LocalStored((entry(4),)))
    assert actions == []


def test_live_pushes_are_batched_by_max_batch_items() -> None:
    state = s_live()
    _, actions = run(state, LocalStored(tuple(entry(3 + i) for i in range(7))))
    assert kinds(actions) == ["entries", "entries"]


def test_local_entries_before_live_are_not_pushed() -> None:
    _, actions = run(s_sync_equal(), LocalStored((entry(3),)))
    assert actions == []


@pytest.mark.parametrize("state_name", ["announce", "digest", "sync_diff", "sync_sent"])
def test_silence_before_sync_done_ends_the_session(state_name: str) -> None:
    _, actions = run(STATES[state_name](), IdleTimeout())
    assert finish_reason(actions) == "SYNC_IDLE_TIMEOUT"


def test_silence_in_live_mode_is_fine() -> None:
    state, actions = run(s_live(), IdleTimeout())
    assert actions == [] and state.phase is Phase.LIVE


@pytest.mark.parametrize(
    ("state_name", "reason"),
    [("announce", "PEER_CLOSED"), ("sync_diff", "PEER_CLOSED"), ("live", "")],
)
def test_peer_closing_ends_the_session(state_name: str, reason: str) -> None:
    _, actions = run(STATES[state_name](), PeerClosed())
    assert finish_reason(actions) == reason


@pytest.mark.parametrize(
    "event",
    [Start(), LOCAL, MissingSent(MappingProxyType({}), 0)],
    ids=["start", "heights", "missing_sent"],
)
def test_local_results_out_of_state_are_violations_not_crashes(event: Event) -> None:
    _, actions = run(s_sync_equal(), event)
    assert finish_reason(actions) == "PROTOCOL_VIOLATION"


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        (("*",), ("*",), Target(any=True)),
        (("*",), ("a",), Target(schema_ids=frozenset({"a"}))),
        (("a", "b"), ("*",), Target(schema_ids=frozenset({"a", "b"}))),
        (("a", "b"), ("b", "c"), Target(schema_ids=frozenset({"b"}))),
        ((), ("*",), Target()),
    ],
)
def test_target_is_the_intersection(
    ours: tuple[str, ...], theirs: tuple[str, ...], expected: Target
) -> None:
    assert Target.of(ours).intersect(Target.of(theirs)) == expected


@pytest.mark.parametrize("state_name", ["announce", "sync_diff", "live"])
def test_an_unreadable_message_ends_the_session_with_its_reason(state_name: str) -> None:
    _, actions = run(STATES[state_name](), MessageInvalid("INVALID_ENTRY", "bad bytes"))
    assert finish_reason(actions) == "INVALID_ENTRY"


def test_a_peer_closing_after_its_sync_done_lets_us_finish_our_side() -> None:
    state, actions = run(s_sync_have_done(), DoneReceived(live=False), PeerClosed(), IdleTimeout())
    assert actions == []
    state, actions = run(state, MissingSent(MappingProxyType({LOG: 2}), 1))
    assert kinds(actions) == ["sync_done", "Finish"]
    assert state.phase is Phase.DONE


def test_a_drift_tick_in_live_mode_loads_our_digest_and_sends_it() -> None:
    state, actions = run(s_live(), DriftTick())
    assert actions == [LoadDigest(Target(any=True))]
    state, actions = run(state, LiveDigest(b"ours", 3))
    assert kinds(actions) == ["have_digest"]
    sent = actions[0]
    assert isinstance(sent, Send)
    assert (sent.message.have_digest.digest, sent.message.have_digest.log_count) == (b"ours", 3)
    assert state.phase is Phase.LIVE


@pytest.mark.parametrize("state_name", ["announce", "digest", "sync_diff", "sync_equal"])
def test_a_drift_tick_before_live_mode_does_nothing(state_name: str) -> None:
    before = STATES[state_name]()
    assert step(before, DriftTick()) == (before, ())


def test_the_peers_digest_in_live_mode_is_kept_for_our_next_check() -> None:
    state, actions = run(s_live(), DigestReceived(b"theirs", 1))
    assert actions == [] and state.live_peer_digest == b"theirs"


def test_equal_live_digests_clear_a_previous_mismatch() -> None:
    state, _ = run(s_live(), DigestReceived(b"theirs", 1), LiveDigest(b"ours", 1))
    assert state.drift == (b"ours", b"theirs")
    state, actions = run(state, DigestReceived(b"same", 1), LiveDigest(b"same", 1))
    assert finish_reason(actions) is None
    assert state.drift is None and state.live_peer_digest is None


def test_the_same_live_mismatch_twice_ends_the_session_with_live_drift() -> None:
    state, actions = run(s_live(), DigestReceived(b"theirs", 1), LiveDigest(b"ours", 1))
    assert finish_reason(actions) is None  # entries in flight explain one mismatch
    state, actions = run(state, DigestReceived(b"theirs", 1), LiveDigest(b"ours", 1))
    assert finish_reason(actions) == "LIVE_DRIFT"
    assert state.phase is Phase.FAILED


def test_a_moving_live_mismatch_is_entries_in_flight_not_drift() -> None:
    state = s_live()
    for n in range(5):
        ours, theirs = b"ours%d" % n, b"theirs%d" % n
        state, actions = run(state, DigestReceived(theirs, 1), LiveDigest(ours, 1))
        assert finish_reason(actions) is None
    assert state.phase is Phase.LIVE


def test_without_a_new_peer_digest_a_check_only_sends_ours() -> None:
    state, _ = run(s_live(), DigestReceived(b"theirs", 1), LiveDigest(b"ours", 1))
    # The peer sent nothing since: the same stale pair is not compared again.
    state, actions = run(state, LiveDigest(b"ours", 1), LiveDigest(b"ours", 1))
    assert kinds(actions) == ["have_digest", "have_digest"]
    assert state.phase is Phase.LIVE

"""One replication session as a state machine: a pure step function (spec §8.3–§8.5).

:func:`step` takes the session's :class:`SessionState` and one :class:`Event` (a message the
peer sent, or the result of local work the session asked for) and returns the next state and
the :class:`Action` s to carry out: messages to send, heights to load, entries to read or to
ingest, the session's end. It does no I/O, so every message in every state is tested without a
network (``tests/services/replication/test_session.py``); :mod:`.driver` runs it over a stream.

The flow, the same for both sides whoever dialed:

1. ``Start`` sends our Announce. The peer's Announce fixes the target set (the intersection of
   both schema id sets) and asks for our log heights in it (``LoadHeights``; in live mode the
   driver subscribes to new entries first, so nothing falls between snapshot and pushes).
2. Our heights loaded, we send our HaveDigest. With both digests known: equal → SyncDone at
   once; different → our Have (chunked), and on the peer's last Have chunk we send every entry
   it lacks (``SendMissing``), then SyncDone.
3. Entries received are checked (target set, ascending seq per log, not at a position we
   announced holding, batch size) and handed to ingest (``Ingest``).
4. SyncDone from both: live (both announced live) → ``StartLive`` and new local entries are
   pushed (``LocalStored``), skipping what the peer is known to hold; else the session ends.
5. Live, every ``replication_interval`` (``DriftTick``), each side loads the digest of its log
   heights (``LoadDigest`` → ``LiveDigest``) and sends it as a HaveDigest; it compares it with
   the peer's latest HaveDigest received since its previous check. Entries in flight explain a
   mismatch, but not the same mismatch twice: when neither digest moved between two checks
   and they still differ, something was lost and the session ends with ``LIVE_DRIFT`` (the
   redial starts with a catch-up).

Any violation ends the session (``Finish`` with a reason), as does silence before both
SyncDone (``IdleTimeout``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from pandanode.core.hexid import is_public_key_hex
from pandanode.ingest.v1 import ingest_pb2
from pandanode.replication.v1 import replication_pb2 as pb

__all__ = [
    "ANY_SCHEMA",
    "HAVE_CHUNK_LOGS",
    "PROTOCOL_VERSION",
    "Action",
    "AnnounceReceived",
    "DigestReceived",
    "DoneReceived",
    "DriftTick",
    "EntriesReceived",
    "Event",
    "Finish",
    "HaveReceived",
    "HeightsLoaded",
    "IdleTimeout",
    "Ingest",
    "IngestResult",
    "LiveDigest",
    "LoadDigest",
    "LoadHeights",
    "LocalStored",
    "Log",
    "MessageInvalid",
    "MissingSent",
    "PeerClosed",
    "Phase",
    "ReceivedEntry",
    "Send",
    "SendMissing",
    "SessionConfig",
    "SessionState",
    "Start",
    "StartLive",
    "Target",
    "have_messages",
    "new_session",
    "step",
]

PROTOCOL_VERSION: Final = 1
ANY_SCHEMA: Final = "*"
# Logs per Have message: ~50 bytes each, well inside a gRPC message.
HAVE_CHUNK_LOGS: Final = 10_000

Log = tuple[str, int]
"""A log: (public key hex, log id)."""

_EMPTY: Final[Mapping[Log, int]] = MappingProxyType({})


class Phase(enum.Enum):
    """Where a session is."""

    START = "start"
    ANNOUNCE = "announce"  # our Announce sent, waiting for the peer's
    DIGEST = "digest"  # loading our heights and/or waiting for the peer's HaveDigest
    SYNC = "sync"  # Have and entries, until SyncDone both ways
    LIVE = "live"  # caught up both ways, pushing new entries
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Target:
    """The schema ids both sides replicate.

    Attributes:
        any: Every schema.
        schema_ids: The schema ids, when not ``any``.
    """

    any: bool = False
    schema_ids: frozenset[str] = frozenset()

    def contains(self, schema_id: str) -> bool:
        """Whether entries of ``schema_id`` are replicated."""
        return self.any or schema_id in self.schema_ids

    def names(self) -> tuple[str, ...]:
        """As Announce schema ids: ``("*",)`` or the sorted ids."""
        return (ANY_SCHEMA,) if self.any else tuple(sorted(self.schema_ids))

    @classmethod
    def of(cls, schema_ids: Iterable[str]) -> Target:
        """The target of one side's announced schema ids (``*`` among them: any)."""
        ids = frozenset(schema_ids)
        return cls(any=True) if ANY_SCHEMA in ids else cls(schema_ids=ids)

    def intersect(self, other: Target) -> Target:
        """What both replicate."""
        if self.any:
            return other
        if other.any:
            return self
        return Target(schema_ids=self.schema_ids & other.schema_ids)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What this side brings to a session.

    Attributes:
        node_id: Our node id.
        schema_ids: The schema ids we replicate (``*``: any).
        live: Whether we want live mode after catching up.
        max_have_logs: Most logs the peer's Have may name.
        max_batch_items: Most entries in one Entries message, each way.
        expected_node_id: The node id we dialed, when known (a different one ends the session).
    """

    node_id: str
    schema_ids: tuple[str, ...] = (ANY_SCHEMA,)
    live: bool = False
    max_have_logs: int = 1_000_000
    max_batch_items: int = 1000
    expected_node_id: str = ""


@dataclass(frozen=True, slots=True)
class ReceivedEntry:
    """An entry of the peer's Entries, with what the session checks about it.

    Attributes:
        public_key: Its author.
        log_id: Its log.
        seq_num: Its position in the log.
        schema_id: Its operation's schema id.
        entry: The encoded entry.
        operation: The encoded operation.
    """

    public_key: str
    log_id: int
    seq_num: int
    schema_id: str
    entry: bytes
    operation: bytes


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """The stream is open."""


@dataclass(frozen=True, slots=True)
class AnnounceReceived:
    """The peer's Announce."""

    protocol_version: int
    node_id: str
    schema_ids: tuple[str, ...]
    live: bool


@dataclass(frozen=True, slots=True)
class DigestReceived:
    """The peer's HaveDigest."""

    digest: bytes
    log_count: int


@dataclass(frozen=True, slots=True)
class HaveReceived:
    """One chunk of the peer's Have: (public key, log id, seq num) of each log."""

    heights: tuple[tuple[str, int, int], ...]
    last: bool


@dataclass(frozen=True, slots=True)
class EntriesReceived:
    """The peer's Entries, decoded far enough to be checked."""

    items: tuple[ReceivedEntry, ...]


@dataclass(frozen=True, slots=True)
class DoneReceived:
    """The peer's SyncDone."""

    live: bool


@dataclass(frozen=True, slots=True)
class HeightsLoaded:
    """Our log heights in the target set (the snapshot we announce) and their digest."""

    heights: Mapping[Log, int]
    digest: bytes


@dataclass(frozen=True, slots=True)
class MissingSent:
    """Everything the peer lacked is sent; ``heights`` is the top seq num sent per log."""

    heights: Mapping[Log, int]
    count: int


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingest made of one received batch.

    Attributes:
        stored: Entries stored (or already held).
        held: Entries waiting for a missing dependency.
        rejected: Entries rejected for good.
        reason: The reason of the first rejection (empty: none was rejected).
    """

    stored: int
    held: int = 0
    rejected: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LocalStored:
    """Entries this node newly stored (live mode), in store order."""

    items: tuple[ReceivedEntry, ...]


@dataclass(frozen=True, slots=True)
class DriftTick:
    """Time for a live drift check (every ``replication_interval`` in live mode)."""


@dataclass(frozen=True, slots=True)
class LiveDigest:
    """The digest of our log heights in the target set now (live drift check)."""

    digest: bytes
    log_count: int


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    """Nothing arrived from the peer for ``sync_idle_timeout``."""


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer's side of the stream ended."""


@dataclass(frozen=True, slots=True)
class MessageInvalid:
    """The peer sent a message that cannot be read (e.g. an entry that does not decode)."""

    reason: str
    message: str


Event = (
    Start
    | AnnounceReceived
    | DigestReceived
    | HaveReceived
    | EntriesReceived
    | DoneReceived
    | HeightsLoaded
    | MissingSent
    | IngestResult
    | LocalStored
    | DriftTick
    | LiveDigest
    | IdleTimeout
    | PeerClosed
    | MessageInvalid
)

# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send one message to the peer."""

    message: pb.SyncMessage


@dataclass(frozen=True, slots=True)
class LoadHeights:
    """Load our log heights in ``target`` (→ :class:`HeightsLoaded`); subscribe first if live."""

    target: Target
    subscribe: bool


@dataclass(frozen=True, slots=True)
class SendMissing:
    """Send, as Entries, every entry of ``target`` the peer lacks (→ :class:`MissingSent`)."""

    target: Target
    peer_heights: Mapping[Log, int]


@dataclass(frozen=True, slots=True)
class Ingest:
    """Hand received entries to ingest (→ :class:`IngestResult`)."""

    items: tuple[ReceivedEntry, ...]


@dataclass(frozen=True, slots=True)
class LoadDigest:
    """Load the digest of our log heights in ``target`` (→ :class:`LiveDigest`)."""

    target: Target


@dataclass(frozen=True, slots=True)
class StartLive:
    """Caught up both ways: start delivering :class:`LocalStored`."""


@dataclass(frozen=True, slots=True)
class Finish:
    """End the session; ``reason`` empty means it completed."""

    reason: str = ""
    message: str = ""


Action = Send | LoadHeights | SendMissing | Ingest | StartLive | LoadDigest | Finish


# -- state ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionState:
    """Everything a session knows between two events.

    Attributes:
        config: What this side brings.
        phase: Where the session is.
        peer: The peer's Announce, once received.
        target: The target set, once both Announce are known.
        local: Our heights snapshot (what we announced holding).
        local_digest: Its digest.
        peer_digest: The peer's digest.
        diff: The digests differed (Have and entries are exchanged).
        peer_have: The peer's Have so far.
        peer_have_done: The peer's last Have chunk arrived.
        received: The highest seq num received per log.
        peer_known: What the peer is known to hold per log (its Have, what it sent, what we
            sent): live pushes skip it.
        sent_done: We sent SyncDone.
        peer_done: The peer sent SyncDone.
        entries_sent: Entries sent so far.
        entries_received: Entries received so far.
        entries_rejected: Entries ingest rejected.
        live_peer_digest: The peer's latest HaveDigest in live mode, not yet compared.
        drift: The (ours, peer's) digests of the last live check, when they differed.
        reason: Why the session failed.
    """

    config: SessionConfig
    phase: Phase = Phase.START
    peer: AnnounceReceived | None = None
    target: Target | None = None
    local: Mapping[Log, int] | None = None
    local_digest: bytes | None = None
    peer_digest: bytes | None = None
    diff: bool = False
    peer_have: Mapping[Log, int] = field(default_factory=lambda: _EMPTY)
    peer_have_done: bool = False
    received: Mapping[Log, int] = field(default_factory=lambda: _EMPTY)
    peer_known: Mapping[Log, int] = field(default_factory=lambda: _EMPTY)
    sent_done: bool = False
    peer_done: bool = False
    entries_sent: int = 0
    entries_received: int = 0
    entries_rejected: int = 0
    live_peer_digest: bytes | None = None
    drift: tuple[bytes, bytes] | None = None
    reason: str = ""

    @property
    def ended(self) -> bool:
        """The session is over."""
        return self.phase in (Phase.DONE, Phase.FAILED)


def new_session(config: SessionConfig) -> SessionState:
    """A session before :class:`Start`."""
    return SessionState(config=config)


Step = tuple[SessionState, tuple[Action, ...]]


def _fail(state: SessionState, reason: str, message: str) -> Step:
    return replace(state, phase=Phase.FAILED, reason=reason), (Finish(reason, message),)


def _violation(state: SessionState, what: str) -> Step:
    return _fail(state, "PROTOCOL_VIOLATION", f"{what} in phase {state.phase.value}")


def _merged(base: Mapping[Log, int], updates: Mapping[Log, int]) -> Mapping[Log, int]:
    if not updates:
        return base
    merged = dict(base)
    for log, seq in updates.items():
        if seq > merged.get(log, 0):
            merged[log] = seq
    return MappingProxyType(merged)


def _message(**kwargs: object) -> pb.SyncMessage:
    return pb.SyncMessage(**kwargs)  # type: ignore[arg-type]


def have_messages(heights: Mapping[Log, int], chunk: int = HAVE_CHUNK_LOGS) -> list[pb.Have]:
    """``heights`` as Have messages of at most ``chunk`` logs each, the last one ``last``."""
    logs = sorted(heights.items())
    messages: list[pb.Have] = []
    for start in range(0, max(len(logs), 1), chunk):
        have = pb.Have(last=start + chunk >= len(logs))
        author: pb.AuthorHeights | None = None
        for (public_key, log_id), seq_num in logs[start : start + chunk]:
            if author is None or author.public_key != public_key:
                author = have.authors.add(public_key=public_key)
            author.logs.add(log_id=log_id, seq_num=seq_num)
        messages.append(have)
    return messages


def _announce(config: SessionConfig) -> pb.SyncMessage:
    return _message(
        announce=pb.Announce(
            protocol_version=PROTOCOL_VERSION,
            node_id=config.node_id,
            schema_ids=list(config.schema_ids),
            live=config.live,
        )
    )


def _done(state: SessionState) -> pb.SyncMessage:
    return _message(sync_done=pb.SyncDone(live=state.config.live))


def _both_done(state: SessionState, actions: tuple[Action, ...]) -> Step:
    if not (state.sent_done and state.peer_done):
        return state, actions
    assert state.peer is not None
    if state.config.live and state.peer.live:
        return replace(state, phase=Phase.LIVE), (*actions, StartLive())
    return replace(state, phase=Phase.DONE), (*actions, Finish())


def _compare(state: SessionState) -> Step:
    """Both digests known: SyncDone at once when equal, else our Have."""
    local = state.local
    if local is None or state.peer_digest is None:
        return state, ()
    if state.local_digest == state.peer_digest:
        state = replace(
            state,
            phase=Phase.SYNC,
            diff=False,
            peer_have_done=True,
            peer_known=local,
            sent_done=True,
        )
        return _both_done(state, (Send(_done(state)),))
    haves = tuple(Send(_message(have=have)) for have in have_messages(local))
    return replace(state, phase=Phase.SYNC, diff=True), haves


def _on_announce(state: SessionState, event: AnnounceReceived) -> Step:
    if state.phase is not Phase.ANNOUNCE:
        return _violation(state, "Announce")
    if event.protocol_version != PROTOCOL_VERSION:
        return _fail(
            state,
            "UNSUPPORTED_VERSION",
            f"protocol version {event.protocol_version} is not {PROTOCOL_VERSION}",
        )
    if not is_public_key_hex(event.node_id, lowercase=True):
        return _fail(state, "INVALID_NODE_ID", "the Announce's node id is not a public key")
    if event.node_id == state.config.node_id:
        return _fail(state, "SELF_SYNC", "a node does not sync with itself")
    expected = state.config.expected_node_id
    if expected and event.node_id != expected:
        return _fail(state, "UNEXPECTED_NODE_ID", f"expected node {expected}, not {event.node_id}")
    target = Target.of(state.config.schema_ids).intersect(Target.of(event.schema_ids))
    live = state.config.live and event.live
    state = replace(state, phase=Phase.DIGEST, peer=event, target=target)
    return state, (LoadHeights(target, subscribe=live),)


def _on_heights(state: SessionState, event: HeightsLoaded) -> Step:
    if state.phase is not Phase.DIGEST or state.local is not None:
        return _violation(state, "HeightsLoaded")
    state = replace(state, local=event.heights, local_digest=event.digest)
    sent = Send(
        _message(have_digest=pb.HaveDigest(digest=event.digest, log_count=len(event.heights)))
    )
    state, actions = _compare(state)
    return state, (sent, *actions)


def _on_digest(state: SessionState, event: DigestReceived) -> Step:
    if state.phase is Phase.LIVE:
        # Compared on our next drift check; only the latest counts.
        return replace(state, live_peer_digest=event.digest), ()
    if state.phase is not Phase.DIGEST or state.peer_digest is not None:
        return _violation(state, "HaveDigest")
    return _compare(replace(state, peer_digest=event.digest))


def _on_have(state: SessionState, event: HaveReceived) -> Step:
    if state.phase is not Phase.SYNC or not state.diff:
        return _violation(state, "Have")
    if state.peer_have_done:
        return _fail(state, "SECOND_HAVE", "a Have after the last Have chunk")
    if len(state.peer_have) + len(event.heights) > state.config.max_have_logs:
        return _fail(
            state,
            "HAVE_TOO_LARGE",
            f"the Have names over max_have_logs ({state.config.max_have_logs}) logs",
        )
    have = dict(state.peer_have)
    for public_key, log_id, seq_num in event.heights:
        if not is_public_key_hex(public_key, lowercase=True) or seq_num < 1:
            return _fail(state, "INVALID_HAVE", "a Have names an invalid log")
        have[(public_key, log_id)] = seq_num
    frozen = MappingProxyType(have)
    state = replace(state, peer_have=frozen, peer_have_done=event.last)
    if not event.last:
        return state, ()
    state = replace(state, peer_known=_merged(state.peer_known, frozen))
    assert state.target is not None
    return state, (SendMissing(state.target, frozen),)


def _on_missing_sent(state: SessionState, event: MissingSent) -> Step:
    if state.phase is not Phase.SYNC or not state.peer_have_done or state.sent_done:
        return _violation(state, "MissingSent")
    state = replace(
        state,
        sent_done=True,
        peer_known=_merged(state.peer_known, event.heights),
        entries_sent=state.entries_sent + event.count,
    )
    return _both_done(state, (Send(_done(state)),))


def _on_entries(state: SessionState, event: EntriesReceived) -> Step:
    receiving = state.phase is Phase.SYNC and state.diff and not state.peer_done
    if not (receiving or state.phase is Phase.LIVE):
        return _violation(state, "Entries")
    if len(event.items) > state.config.max_batch_items:
        return _fail(
            state,
            "BATCH_TOO_LARGE",
            f"{len(event.items)} entries in one message, over {state.config.max_batch_items}",
        )
    assert state.target is not None and state.local is not None
    received: dict[Log, int] = {}
    for item in event.items:
        log = (item.public_key, item.log_id)
        if not state.target.contains(item.schema_id):
            return _fail(
                state,
                "ENTRY_OUTSIDE_TARGET_SET",
                f"entry {item.seq_num} of log {item.log_id} of {item.public_key} has schema "
                f"{item.schema_id[:200]}, outside the target set",
            )
        if item.seq_num <= state.local.get(log, 0):
            return _fail(
                state,
                "ENTRY_ALREADY_HELD",
                f"entry {item.seq_num} of log {item.log_id} of {item.public_key} is at a "
                "position we announced holding",
            )
        last = received.get(log) or state.received.get(log, 0)
        if item.seq_num <= last:
            return _fail(
                state,
                "ENTRY_OUT_OF_ORDER",
                f"entry {item.seq_num} of log {item.log_id} of {item.public_key} comes after "
                f"entry {last}",
            )
        received[log] = item.seq_num
    frozen = MappingProxyType(received)
    state = replace(
        state,
        received=_merged(state.received, frozen),
        peer_known=_merged(state.peer_known, frozen),
        entries_received=state.entries_received + len(event.items),
    )
    return state, ((Ingest(event.items),) if event.items else ())


def _on_ingest_result(state: SessionState, event: IngestResult) -> Step:
    state = replace(state, entries_rejected=state.entries_rejected + event.rejected)
    if event.rejected and not state.ended:
        return _fail(state, event.reason or "ENTRY_REJECTED", "the peer sent an invalid entry")
    return state, ()


def _on_done(state: SessionState, event: DoneReceived) -> Step:
    if state.phase is not Phase.SYNC or state.peer_done:
        return _violation(state, "SyncDone")
    if state.diff and not state.peer_have_done:
        # The peer cannot have sent what we lack without reading our whole Have; but its
        # own Have must come first.
        return _violation(state, "SyncDone before the last Have")
    return _both_done(replace(state, peer_done=True), ())


def _on_local(state: SessionState, event: LocalStored) -> Step:
    if state.phase is not Phase.LIVE:
        return state, ()
    assert state.target is not None
    batch: list[ReceivedEntry] = []
    pushed: dict[Log, int] = {}
    for item in event.items:
        log = (item.public_key, item.log_id)
        if not state.target.contains(item.schema_id):
            continue
        if item.seq_num <= max(state.peer_known.get(log, 0), pushed.get(log, 0)):
            continue
        batch.append(item)
        pushed[log] = item.seq_num
    size = state.config.max_batch_items
    actions = tuple(
        Send(
            _message(
                entries=pb.Entries(
                    items=[
                        ingest_pb2.PublishRequest(entry=i.entry, operation=i.operation)
                        for i in batch[start : start + size]
                    ]
                )
            )
        )
        for start in range(0, len(batch), size)
    )
    state = replace(
        state,
        peer_known=_merged(state.peer_known, pushed),
        entries_sent=state.entries_sent + len(batch),
    )
    return state, actions


def _on_drift_tick(state: SessionState, event: DriftTick) -> Step:
    if state.phase is not Phase.LIVE:
        return state, ()  # the timer only matters once live
    assert state.target is not None
    return state, (LoadDigest(state.target),)


def _on_live_digest(state: SessionState, event: LiveDigest) -> Step:
    if state.phase is not Phase.LIVE:
        return _violation(state, "LiveDigest")
    sent = Send(_message(have_digest=pb.HaveDigest(digest=event.digest, log_count=event.log_count)))
    peer = state.live_peer_digest
    if peer is None:
        # Nothing new from the peer since the last check: nothing to compare.
        return state, (sent,)
    pair = (event.digest, peer)
    if event.digest == peer:
        return replace(state, live_peer_digest=None, drift=None), (sent,)
    if state.drift == pair:
        return _fail(
            state,
            "LIVE_DRIFT",
            "the log heights differ from the peer's and neither side moved since the last "
            "check: a catch-up follows",
        )
    return replace(state, live_peer_digest=None, drift=pair), (sent,)


def _on_start(state: SessionState, event: Start) -> Step:
    if state.phase is not Phase.START:
        return _violation(state, "Start")
    return replace(state, phase=Phase.ANNOUNCE), (Send(_announce(state.config)),)


def _on_idle(state: SessionState, event: IdleTimeout) -> Step:
    if state.phase is Phase.LIVE or state.peer_done:
        # Live: silence is normal. After its SyncDone the peer has nothing more to send.
        return state, ()
    return _fail(state, "SYNC_IDLE_TIMEOUT", "the peer was silent before SyncDone")


def _on_closed(state: SessionState, event: PeerClosed) -> Step:
    if state.phase is Phase.LIVE:
        return replace(state, phase=Phase.DONE), (Finish(),)
    if state.peer_done and not (state.config.live and state.peer is not None and state.peer.live):
        # The peer sent everything and closed its side (a half-close): we finish ours.
        return state, ()
    return _fail(state, "PEER_CLOSED", "the peer ended the stream before SyncDone")


def _on_invalid(state: SessionState, event: MessageInvalid) -> Step:
    return _fail(state, event.reason, event.message)


_HANDLERS: Final[dict[type, Callable[[SessionState, Any], Step]]] = {
    Start: _on_start,
    AnnounceReceived: _on_announce,
    HeightsLoaded: _on_heights,
    DigestReceived: _on_digest,
    HaveReceived: _on_have,
    MissingSent: _on_missing_sent,
    EntriesReceived: _on_entries,
    IngestResult: _on_ingest_result,
    DoneReceived: _on_done,
    LocalStored: _on_local,
    DriftTick: _on_drift_tick,
    LiveDigest: _on_live_digest,
    IdleTimeout: _on_idle,
    PeerClosed: _on_closed,
    MessageInvalid: _on_invalid,
}


def step(state: SessionState, event: Event) -> Step:
    """The next state of a session and what to do, after ``event``.

    An ended session ignores every event. Never raises on anything the peer sends: a
    violation is a :class:`Finish` with its reason.
    """
    if state.ended:
        return state, ()
    return _HANDLERS[type(event)](state, event)

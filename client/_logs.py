"""Where an author's next entries go: log ids and positions, kept per key pair.

p2panda writes every operation of one author on one document into one log, and a new
document starts a new log. Two concurrent writes by one key pair must therefore never pick the
same log id for two new documents, nor the same seq num in one log. :class:`Author` hands out
log ids under one lock (reserving them locally, so concurrent creates get distinct ids without
waiting for each other) and serializes the writes to each log with a per-log lock.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pandanode.core.lipmaa import is_skiplink_required, lipmaa
from pandanode.core.publish import NextArgs

if TYPE_CHECKING:
    from pandanode.core.keypair import KeyPair

__all__ = ["Author", "LatestWrite", "LogState", "Writes"]


@dataclass(eq=False)
class LogState:
    """What the client knows about one of its logs.

    Attributes:
        log_id: The log.
        latest: Seq num of the latest entry known to be stored or in flight; 0 for a new log;
            None when unknown (after a rejection), so the node must be asked.
        hashes: Entry hashes by seq num that are known (enough for links when present).
        lock: Held while an entry for this log is signed and published.
    """

    log_id: int
    latest: int | None = 0
    hashes: dict[int, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def next_args(self) -> NextArgs | None:
        """The next entry's arguments, or None when a needed hash is not known here."""
        if self.latest is None:
            return None
        seq_num = self.latest + 1
        if seq_num == 1:
            return NextArgs(log_id=self.log_id, seq_num=1, backlink=None, skiplink=None)
        backlink = self.hashes.get(self.latest)
        skiplink = None
        if is_skiplink_required(seq_num):
            skiplink = self.hashes.get(lipmaa(seq_num))
            if skiplink is None:
                return None
        if backlink is None:
            return None
        return NextArgs(log_id=self.log_id, seq_num=seq_num, backlink=backlink, skiplink=skiplink)

    def load(self, args: NextArgs) -> None:
        """Take the node's next arguments for this log as the truth."""
        self.latest = args.seq_num - 1
        self.hashes = {}
        if args.backlink:
            self.hashes[args.seq_num - 1] = args.backlink
        if args.skiplink:
            self.hashes[lipmaa(args.seq_num)] = args.skiplink

    def advance(self, seq_num: int, entry_hash: str, following: NextArgs | None = None) -> None:
        """Record the entry at ``seq_num`` (and the links of the one after, when known)."""
        if self.latest is None or seq_num > self.latest:
            self.latest = seq_num
        self.hashes[seq_num] = entry_hash
        if following is not None and following.skiplink:
            self.hashes[lipmaa(following.seq_num)] = following.skiplink

    def forget(self) -> None:
        """Something was rejected: ask the node before the next entry."""
        self.latest = None
        self.hashes = {}


@dataclass(eq=False)
class Author:
    """One key pair's logs.

    Attributes:
        key_pair: The key pair (its private key stays in this process).
        lock: Held while a log is chosen (not while publishing).
        logs: Log id → state.
        documents: Document id → the author's log for it.
        next_log_id: The lowest log id not yet handed out here; None until the node was asked.
    """

    key_pair: KeyPair
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    logs: dict[int, LogState] = field(default_factory=dict)
    documents: dict[str, int] = field(default_factory=dict)
    next_log_id: int | None = None

    @property
    def public_key(self) -> str:
        """The author's public key (hex)."""
        return self.key_pair.public_key()

    def reserve_new_log(self, proposed: int) -> LogState:
        """Hand out a fresh log id: the node's proposal or above any id already handed out."""
        log_id = max(proposed, self.next_log_id or 0)
        self.next_log_id = log_id + 1
        state = LogState(log_id)
        self.logs[log_id] = state
        return state

    def log(self, log_id: int) -> LogState:
        """The state of ``log_id`` (created, unknown, when new to this client)."""
        state = self.logs.get(log_id)
        if state is None:
            state = self.logs[log_id] = LogState(log_id, latest=None)
        return state


@dataclass(frozen=True, slots=True)
class LatestWrite:
    """The latest operation one connection wrote to a document.

    Attributes:
        operation_id: The operation (for a CREATE also the document id).
        schema_id: The document's schema.
        stored: Whether the node acknowledged it; False while it is signed and on its way in
            a bulk stream (then the query service cannot know it yet).
    """

    operation_id: str
    schema_id: str
    stored: bool


@dataclass(eq=False)
class Writes:
    """The latest operation written to each document through one connection (any key pair).

    A write that builds on "the current view" of a document must not build on a view older
    than this connection's own last write to it: the query service materializes asynchronously,
    so its current view may lag. :meth:`latest` says what to wait for (or build on). Only the
    most recently written ``limit`` documents are remembered; older writes are long
    materialized.
    """

    limit: int = 65_536
    _latest: OrderedDict[str, tuple[LatestWrite, LatestWrite | None]] = field(
        default_factory=OrderedDict
    )

    def latest(self, document_id: str) -> LatestWrite | None:
        """The latest write to ``document_id`` (acknowledged or in flight), if remembered."""
        found = self._latest.get(document_id)
        return None if found is None else found[0]

    def wrote(self, document_id: str, operation_id: str, schema_id: str, *, stored: bool) -> None:
        """Record a write: acknowledged by the node (``stored``) or signed and in flight."""
        current = self._latest.pop(document_id, None)
        before = None
        if current is not None:
            before = current[0] if current[0].stored else current[1]
        self._latest[document_id] = (LatestWrite(operation_id, schema_id, stored), before)
        while len(self._latest) > self.limit:
            self._latest.popitem(last=False)

    def stored(self, document_id: str, operation_id: str) -> None:
        """An in-flight write was acknowledged."""
        current = self._latest.get(document_id)
        if current is not None and current[0].operation_id == operation_id:
            latest = current[0]
            self._latest[document_id] = (LatestWrite(operation_id, latest.schema_id, True), None)

    def rejected(self, document_id: str, operation_id: str) -> None:
        """An in-flight write was rejected: the write before it (if any) is the latest again."""
        current = self._latest.get(document_id)
        if current is not None and current[0].operation_id == operation_id:
            if current[1] is None:
                del self._latest[document_id]
            else:
                self._latest[document_id] = (current[1], None)

"""The one writer: it signs entries for a key pair and owns where they go in its logs.

Both ways of writing use it: :meth:`Writer.publish` signs one entry and publishes it (holding
the log's lock until the node answered), :meth:`Writer.sign_ahead` signs an entry for a
``PublishStream`` and moves the log position on at once, so the next item of the stream can
follow it before the node has answered. Both find the next position the same way
(:meth:`Writer._position`): from what the client knows of the log, completed from the node
(``NextArgs``, or the stored hashes of ``ReadLog``) only when needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pandanode.core.entry import sign_and_encode_entry
from pandanode.core.errors import LogIntegrityError, Reason
from pandanode.core.hash import generate_hash
from pandanode.core.keypair import KeyPair
from pandanode.core.publish import NextArgs
from pandanode.core.schema import Schema
from pandanode.ingest.v1 import ingest_pb2 as pb

from ._connection import Connection, next_args_from_pb
from ._logs import Author, LogState
from ._models import Published
from ._requests import Target, check_operation

__all__ = ["POSITION_REASONS", "Action", "Outgoing", "Writer"]

Action = Literal["create", "update", "delete"]

POSITION_REASONS: Final = frozenset(
    {
        Reason.SEQ_NUM_MISMATCH,
        Reason.BACKLINK_MISMATCH,
        Reason.SKIPLINK_MISMATCH,
        Reason.SKIPLINK_MISSING,
        Reason.LOG_ID_MISMATCH,
        Reason.LOG_ID_IN_USE,
        Reason.LOG_NOT_FOUND,
    }
)
"""Rejections for a lost race on a log position: a write is re-signed once on fresh arguments."""


@dataclass(slots=True)
class Outgoing:
    """One item of a bulk stream: what to send and what it means.

    Attributes:
        index: Its place in the caller's input.
        entry: The signed entry.
        operation: The operation.
        schema_id: The operation's schema.
        action: The operation's action.
        public_key: The author.
        log_id: The entry's log.
        seq_num: The entry's seq num.
        log: The writer's state of that log, for items signed here (None for raw imports).
        document_id: For items signed here: the document.
        operation_id: For items signed here: the operation's id.
    """

    index: int
    entry: bytes
    operation: bytes
    schema_id: str
    action: Action
    public_key: str
    log_id: int
    seq_num: int
    log: LogState | None = None
    document_id: str = ""
    operation_id: str = ""


class Writer:
    """Signs and places the entries of one key pair (shared by every client of a connection).

    Args:
        connection: The connection (its author table and its record of writes are used).
        key_pair: The key pair to sign with.
    """

    def __init__(self, connection: Connection, key_pair: KeyPair) -> None:
        self._connection = connection
        public_key = key_pair.public_key()
        author = connection.authors.get(public_key)
        if author is None:
            author = connection.authors[public_key] = Author(key_pair)
        self._author = author

    @property
    def public_key(self) -> str:
        """The author's public key (hex)."""
        return self._author.public_key

    async def publish(
        self, operation: bytes, schema: Schema, action: Action, target: Target | None
    ) -> Published:
        """Check, sign and publish one operation; wait for the node's answer.

        A write that lost a race on its log position (another writer with the same key pair)
        is signed once more on the node's fresh arguments.

        Raises:
            SchemaError: The operation does not fit ``schema`` (nothing was signed).
            LogIntegrityError: No free log position was found.
            PandanodeError: The node rejected the entry.
        """
        check_operation(operation, schema)
        author = self._author
        for attempt in range(2):
            log, hint = await self._choose_log(target, refresh=attempt > 0)
            async with log.lock:
                args = await self._position(log, hint, target)
                if args is None:
                    continue
                entry = self._sign(operation, args)
                try:
                    response = await self._send(entry, operation)
                except LogIntegrityError as err:
                    log.forget()
                    if attempt == 0 and err.reason in POSITION_REASONS:
                        continue
                    raise
                log.advance(
                    args.seq_num, response.operation_id, next_args_from_pb(response.next_args)
                )
                author.documents[response.document_id] = log.log_id
                self._connection.writes.wrote(
                    response.document_id, response.operation_id, str(schema.id), stored=True
                )
                return Published(
                    operation_id=response.operation_id,
                    document_id=response.document_id,
                    view_id=response.operation_id,
                    schema_id=str(schema.id),
                    action=action,
                    public_key=author.public_key,
                    log_id=args.log_id,
                    seq_num=args.seq_num,
                )
        raise LogIntegrityError(
            "could not find a free log position for this write after asking the node twice; "
            "is another process writing with the same key pair?",
            Reason.SEQ_NUM_MISMATCH,
        )

    async def sign_ahead(
        self, index: int, operation: bytes, schema: Schema, action: Action, target: Target | None
    ) -> Outgoing:
        """Sign one operation for a stream and move the log on without waiting for the node.

        The write is recorded as in flight, so later items of the stream that update the
        document by id build on it. The stream reports the node's answer to the connection's
        record of writes (and makes the log forget its position on a rejection).

        Raises:
            LogIntegrityError: The next position cannot be worked out.
        """
        log, hint = await self._choose_log(target, refresh=False)
        async with log.lock:
            args = await self._position(log, hint, target)
            if args is None:
                raise LogIntegrityError(
                    f"cannot work out the next position in log {log.log_id}",
                    Reason.SEQ_NUM_MISMATCH,
                )
            entry = self._sign(operation, args)
            operation_id = generate_hash(entry)
            log.advance(args.seq_num, operation_id)
        document_id = operation_id if target is None else target.document_id
        self._connection.writes.wrote(document_id, operation_id, str(schema.id), stored=False)
        return Outgoing(
            index=index,
            entry=entry,
            operation=operation,
            schema_id=str(schema.id),
            action=action,
            public_key=self._author.public_key,
            log_id=args.log_id,
            seq_num=args.seq_num,
            log=log,
            document_id=document_id,
            operation_id=operation_id,
        )

    async def _choose_log(
        self, target: Target | None, *, refresh: bool
    ) -> tuple[LogState, NextArgs | None]:
        """Pick the log of a write (and the node's next arguments if they were asked)."""
        author = self._author
        async with author.lock:
            if target is None:
                proposed = 0
                if author.next_log_id is None or refresh:
                    proposed = (await self._connection.next_args(author.public_key, "")).log_id
                return author.reserve_new_log(proposed), None
            if not refresh:
                log_id = author.documents.get(target.document_id)
                if log_id is not None:
                    return author.log(log_id), None
            args = await self._connection.next_args(author.public_key, target.view_id)
            if args.seq_num == 1:
                log = author.reserve_new_log(args.log_id)
                author.documents[target.document_id] = log.log_id
                return log, None
            author.documents[target.document_id] = args.log_id
            return author.log(args.log_id), args

    async def _position(
        self, log: LogState, hint: NextArgs | None, target: Target | None
    ) -> NextArgs | None:
        """The next entry's arguments in ``log`` (its lock held); None if the node disagrees.

        What the client knows comes first; the node's ``hint`` when the log's position is
        unknown here; the stored hashes when only a link is missing (entries signed ahead may
        not be stored yet, so the node's position would be behind); the node's ``NextArgs``
        last. None when the node puts the write into another log than ``log``.
        """
        args = log.next_args()
        if args is None and hint is not None and log.latest is None:
            log.load(hint)
            args = log.next_args()
        if args is None and log.latest is not None:
            await self._fill_hashes(log)
            args = log.next_args()
        if args is None:
            fresh = await self._connection.next_args(
                self._author.public_key, "" if target is None else target.view_id
            )
            if fresh.log_id != log.log_id:
                log.forget()
                return None
            log.load(fresh)
            args = log.next_args()
        return args

    def _sign(self, operation: bytes, args: NextArgs) -> bytes:
        return sign_and_encode_entry(
            operation,
            self._author.key_pair,
            log_id=args.log_id,
            seq_num=args.seq_num,
            backlink=args.backlink,
            skiplink=args.skiplink,
        )

    async def _send(self, entry: bytes, operation: bytes) -> pb.PublishResponse:
        # Publishing the very same entry again is idempotent, so UNAVAILABLE is retried.
        request = pb.PublishRequest(entry=entry, operation=operation)
        connection = self._connection
        ingest = connection.ingest
        return await connection.call(lambda: ingest.Publish(request, timeout=connection.timeout))

    async def _fill_hashes(self, log: LogState) -> None:
        """Learn the stored entries' hashes of ``log`` (for links the client did not keep)."""
        request = pb.ReadLogRequest(public_key=self._author.public_key, log_id=log.log_id)
        connection = self._connection
        ingest = connection.ingest

        async def read() -> None:
            async for response in ingest.ReadLog(request, timeout=connection.timeout):
                for stored in response.entries:
                    log.hashes.setdefault(stored.seq_num, generate_hash(stored.entry))

        await connection.call(read)

"""Publishing rules: the stateful checks of spec §4.3 and the next arguments of spec §4.2.

Both are pure functions. The caller (the ingest service, or a test) reads what the rules need
from its store into a :class:`PublishState` and hands it over; nothing here does I/O. The same
code checks entries from clients and from peers, so both are held to the same rules.

Typical use by a store::

    entry = decode_entry(entry_bytes)
    operation = decode_operation(operation_bytes)
    needed = seq_nums_needed(entry.seq_num)             # which of the log's hashes to read
    state = PublishState(...)                            # read from the store
    result = validate_publish(entry, operation_bytes, operation, schema, state)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from .construct import slot_constructor
from .entry import Entry
from .errors import (
    DocumentError,
    LogIntegrityError,
    NotFoundError,
    Reason,
    SchemaError,
    quote,
)
from .hash import generate_hash
from .ids import DocumentViewId
from .lipmaa import is_skiplink_required, lipmaa
from .operation import Operation
from .schema import Schema, check_operation
from .varu64 import MAX_U64

__all__ = [
    "LogTip",
    "NextArgs",
    "OperationRef",
    "PublishResult",
    "PublishState",
    "document_id_of",
    "next_args",
    "next_args_in_log",
    "seq_nums_needed",
    "validate_publish",
]


@dataclass(frozen=True, slots=True)
class NextArgs:
    """The arguments a client needs to sign its next entry (spec §4.2).

    Attributes:
        log_id: The log to append to.
        seq_num: The next sequence number.
        backlink: Hash of the entry at ``seq_num - 1``; None for a new log.
        skiplink: Hash of the entry at ``lipmaa(seq_num)``; None when not required.
    """

    log_id: int
    seq_num: int
    backlink: str | None
    skiplink: str | None


@dataclass(frozen=True, slots=True)
class OperationRef:
    """What the rules need to know about an already stored operation.

    Attributes:
        document_id: The document the operation belongs to.
        schema_id: The schema id it claims.
    """

    document_id: str
    schema_id: str


@dataclass(frozen=True, slots=True)
class LogTip:
    """The end of one stored log.

    Attributes:
        log_id: The log.
        seq_num: Its latest sequence number (≥ 1).
        hashes: Entry hashes by seq num; at least those :func:`seq_nums_needed` names for
            ``seq_num + 1``.
    """

    log_id: int
    seq_num: int
    hashes: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class PublishState:
    """What a store knows that the publish rules need, read before validation.

    Attributes:
        latest_seq_num: Latest seq num in the entry's (public key, log id); None if empty.
        log_hashes: Entry hashes of that log by seq num, for the seq nums that
            :func:`seq_nums_needed` names for the entry (missing ones are simply absent).
        previous: Every operation named in the operation's ``previous`` that the store holds.
        document_deleted: Whether the document those operations belong to holds a DELETE.
        author_log_id: The log id the entry's author already uses for that document, if any.
    """

    latest_seq_num: int | None = None
    log_hashes: Mapping[int, str] = field(default_factory=dict)
    previous: Mapping[str, OperationRef] = field(default_factory=dict)
    document_deleted: bool = False
    author_log_id: int | None = None


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The outcome of a successful validation.

    Attributes:
        operation_id: The entry hash, which is the operation id.
        document_id: The document the operation belongs to.
        next_args: The arguments for the next entry in the same log.
    """

    operation_id: str
    document_id: str
    next_args: NextArgs


_new_next_args = slot_constructor(NextArgs)
_new_result = slot_constructor(PublishResult)


@lru_cache(maxsize=4096)  # the same small seq nums over and over
def seq_nums_needed(seq_num: int) -> tuple[int, ...]:
    """Seq nums of the log whose entry hashes publishing an entry at ``seq_num`` needs.

    They are the backlink and skiplink targets of the entry and of the next one (the latter to
    answer with next arguments). All are below ``seq_num``.
    """
    needed: set[int] = set()
    if seq_num > 1:
        needed.add(seq_num - 1)
        if is_skiplink_required(seq_num):
            needed.add(lipmaa(seq_num))
    if seq_num < MAX_U64 and is_skiplink_required(seq_num + 1):
        target = lipmaa(seq_num + 1)
        if target < seq_num:
            needed.add(target)
    return tuple(sorted(needed))


def document_id_of(
    operation: Operation, operation_id: str, previous: Mapping[str, OperationRef]
) -> str:
    """Return the document an operation belongs to (spec §4.3 step 8).

    A CREATE starts a document named by its own id; UPDATE and DELETE belong to the document of
    their ``previous`` operations, which must all be known, share the operation's schema id, and
    belong to one document.

    Raises:
        NotFoundError: a previous operation is not known (PREVIOUS_NOT_FOUND).
        SchemaError: a previous operation has another schema id (INVALID_CLAIMED_SCHEMA).
        DocumentError: the previous operations belong to several documents (MULTIPLE_DOCUMENTS).
    """
    if operation.action == "create" or operation.previous is None:
        return operation_id
    documents: set[str] = set()
    for op_id in operation.previous:
        ref = previous.get(op_id)
        if ref is None:
            raise NotFoundError(
                f"previous operation {op_id} not found: publish the operations this one builds "
                "on first",
                Reason.PREVIOUS_NOT_FOUND,
            )
        if ref.schema_id != operation.schema_id:
            raise SchemaError(
                f"invalid claimed schema: operation claims {quote(operation.schema_id)} "
                "but previous "
                f"operation {op_id} has schema {quote(ref.schema_id)}",
                Reason.INVALID_CLAIMED_SCHEMA,
            )
        documents.add(ref.document_id)
    if len(documents) != 1:
        raise DocumentError(
            "previous operations belong to different documents: " + ", ".join(sorted(documents)),
            Reason.MULTIPLE_DOCUMENTS,
        )
    return documents.pop()


def next_args_in_log(tip: LogTip) -> NextArgs:
    """Return the arguments for the entry after ``tip`` in the same log.

    Raises:
        LogIntegrityError: the log is full (MAX_SEQ_NUM_REACHED) or a needed hash is missing.
    """
    if tip.seq_num >= MAX_U64:
        raise LogIntegrityError(
            f"log {tip.log_id} reached the maximum seq num; start a new log",
            Reason.MAX_SEQ_NUM_REACHED,
        )
    seq_num = tip.seq_num + 1
    skiplink = None
    if is_skiplink_required(seq_num):
        skiplink = _hash_at(tip.hashes, lipmaa(seq_num), tip.log_id)
    return NextArgs(
        log_id=tip.log_id,
        seq_num=seq_num,
        backlink=_hash_at(tip.hashes, tip.seq_num, tip.log_id),
        skiplink=skiplink,
    )


def _hash_at(hashes: Mapping[int, str], seq_num: int, log_id: int) -> str:
    try:
        return hashes[seq_num]
    except KeyError:
        raise LogIntegrityError(
            f"entry {seq_num} of log {log_id} is not stored", Reason.SKIPLINK_MISSING
        ) from None


def _new_log(max_log_id: int | None) -> NextArgs:
    if max_log_id is not None and max_log_id >= MAX_U64:
        raise LogIntegrityError(
            "max log id reached: this author used log id 2^64−1, so no new log can follow; "
            "use another key pair",
            Reason.MAX_LOG_ID_REACHED,
        )
    log_id = 0 if max_log_id is None else max_log_id + 1
    return NextArgs(log_id=log_id, seq_num=1, backlink=None, skiplink=None)


def next_args(
    *,
    view_id: DocumentViewId | None = None,
    previous: Mapping[str, OperationRef] | None = None,
    document_deleted: bool = False,
    author_log: LogTip | None = None,
    max_log_id: int | None = None,
) -> NextArgs:
    """Compute the next arguments for an author, like p2panda's ``nextArgs`` (spec §4.2).

    Args:
        view_id: The document view the next operation builds on; None for a new document.
        previous: The stored operations of ``view_id`` (by id); ignored without ``view_id``.
        document_deleted: Whether that document holds a DELETE.
        author_log: The author's log for that document, if the author has one.
        max_log_id: The author's highest used log id, None if the author has no logs.

    Raises:
        NotFoundError: an operation of ``view_id`` is unknown.
        DocumentError: the view id spans several documents, or the document was deleted.
    """
    if view_id is None:
        return _new_log(max_log_id)
    refs = previous or {}
    documents: set[str] = set()
    for op_id in view_id.ids:
        ref = refs.get(op_id)
        if ref is None:
            raise NotFoundError(f"previous operation {op_id} not found", Reason.PREVIOUS_NOT_FOUND)
        documents.add(ref.document_id)
    if len(documents) != 1:
        raise DocumentError(
            "invalid document view id: its operations belong to different documents",
            Reason.MULTIPLE_DOCUMENTS,
        )
    if document_deleted:
        raise DocumentError(
            f"document {documents.pop()} is deleted; no further operations are accepted",
            Reason.DOCUMENT_DELETED,
        )
    if author_log is not None:
        return next_args_in_log(author_log)
    return _new_log(max_log_id)


def validate_publish(
    entry: Entry,
    operation_bytes: bytes,
    operation: Operation,
    schema: Schema,
    state: PublishState,
    *,
    operation_hash: str | None = None,
) -> PublishResult:
    """Check an entry and its operation against the node's state (spec §4.3 steps 3–10).

    ``entry`` and ``operation`` must come from :func:`decode_entry` and :func:`decode_operation`
    of the received bytes (steps 1–2), and ``schema`` is the schema the operation claims.

    Args:
        entry: The decoded, signature-checked entry.
        operation_bytes: The raw operation bytes, exactly as received.
        operation: The decoded operation.
        schema: The schema named by ``operation.schema_id``.
        state: What the store knows (see :class:`PublishState`).
        operation_hash: ``generate_hash(operation_bytes)`` when the caller already computed it
            (e.g. on a worker thread); computed here otherwise.

    Returns:
        The operation id, the document id and the next arguments for the same log.

    Raises:
        LogIntegrityError: seq num, links, payload or log id do not fit.
        SchemaError: the operation does not fit its schema, or claims another schema than its
            previous operations.
        NotFoundError: a previous operation is unknown.
        DocumentError: the document was deleted, or previous spans several documents.
    """
    # 3. seq num follows the latest entry of the log
    expected_seq = 1 if state.latest_seq_num is None else state.latest_seq_num + 1
    if entry.seq_num != expected_seq:
        raise LogIntegrityError(
            f"seq num {entry.seq_num} does not follow {_log_name(entry)}: expected seq num "
            f"{expected_seq}",
            Reason.SEQ_NUM_MISMATCH,
        )
    # 4. the skiplink target is stored locally
    skiplink_target = None
    if entry.skiplink is not None:
        skiplink_target = state.log_hashes.get(lipmaa(entry.seq_num))
        if skiplink_target is None:
            raise LogIntegrityError(
                f"skiplink target, entry {lipmaa(entry.seq_num)} of {_log_name(entry)}, "
                "is not stored",
                Reason.SKIPLINK_MISSING,
            )
    # 5. payload hash and size match the operation bytes
    if entry.payload_size != len(operation_bytes):
        raise LogIntegrityError(
            f"payload size {entry.payload_size} in the entry does not match the operation's "
            f"{len(operation_bytes)} bytes",
            Reason.PAYLOAD_SIZE_MISMATCH,
        )
    if operation_hash is None:
        operation_hash = generate_hash(operation_bytes)
    if entry.payload_hash != operation_hash:
        raise LogIntegrityError(
            "payload hash in the entry does not match the hash of the operation bytes",
            Reason.PAYLOAD_HASH_MISMATCH,
        )
    # 6. links equal the stored entries' hashes
    if entry.backlink is not None and state.log_hashes.get(entry.seq_num - 1) != entry.backlink:
        raise LogIntegrityError(
            f"backlink {entry.backlink} is not the hash of entry {entry.seq_num - 1} of "
            f"{_log_name(entry)}",
            Reason.BACKLINK_MISMATCH,
        )
    if skiplink_target is not None and skiplink_target != entry.skiplink:
        raise LogIntegrityError(
            f"skiplink {entry.skiplink} is not the hash of entry {lipmaa(entry.seq_num)} of "
            f"{_log_name(entry)}",
            Reason.SKIPLINK_MISMATCH,
        )
    # 7. the operation fits its schema
    check_operation(operation, schema)
    # 8. the document
    document_id = document_id_of(operation, entry.hash, state.previous)
    # 9. no operation after a DELETE
    if operation.action != "create" and state.document_deleted:
        raise DocumentError(
            f"document {document_id} is deleted; no further operations are accepted",
            Reason.DOCUMENT_DELETED,
        )
    # 10. one log per (author, document)
    if operation.action != "create" and state.author_log_id is not None:
        if entry.log_id != state.author_log_id:
            raise LogIntegrityError(
                f"author already writes document {document_id} in log {state.author_log_id}, "
                f"not log {entry.log_id}",
                Reason.LOG_ID_MISMATCH,
            )
    elif entry.seq_num != 1:
        raise LogIntegrityError(
            f"expected log not found: {_log_name(entry)} does not belong to document "
            f"{document_id}; "
            "a new document (or an author's first operation on one) starts a new log at seq 1",
            Reason.LOG_NOT_FOUND,
        )
    return _new_result(entry.hash, document_id, _next_args_after(entry, state.log_hashes))


def _log_name(entry: Entry) -> str:
    # Only for messages: built when an error is raised, not for every entry.
    return f"log {entry.log_id} of {entry.public_key}"


def _next_args_after(entry: Entry, log_hashes: Mapping[int, str]) -> NextArgs:
    """``next_args_in_log`` of the log once ``entry`` is appended (the log's hashes plus its own).

    Raises:
        LogIntegrityError: as :func:`next_args_in_log`.
    """
    seq_num = entry.seq_num
    if seq_num >= MAX_U64:
        raise LogIntegrityError(
            f"log {entry.log_id} reached the maximum seq num; start a new log",
            Reason.MAX_SEQ_NUM_REACHED,
        )
    next_seq = seq_num + 1
    skiplink = None
    if is_skiplink_required(next_seq):
        target = lipmaa(next_seq)
        skiplink = entry.hash if target == seq_num else _hash_at(log_hashes, target, entry.log_id)
    return _new_next_args(entry.log_id, next_seq, entry.hash, skiplink)

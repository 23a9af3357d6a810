"""``pandanode check``: an offline checker of a stopped node's data directory.

It reads what a node stored and says whether it still holds together:

- **entries** — every stored entry decodes with a valid signature, sits at the position its
  key names, has the hash it is stored under, and its payload hash and size are those of the
  stored operation, which decodes; its backlink and skiplink are the hashes of the stored
  entries at those positions;
- **logs** — every log is contiguous from seq num 1, and its ``G`` record (document, schema,
  height) agrees with its entries;
- **indexes** — every index of the log store agrees with the entries and nothing else is in
  it: ``H`` (operation id → position, document, schema), ``A`` (author and document → log),
  ``M`` (author → highest log id), ``D`` (document → deleted, schema), ``O`` (the operations
  of a definition document; an ``O`` key of any other document, as older directories hold,
  must name an operation of that document) and ``N`` (the next store sequence: one per stored
  entry);
- **outbox** — the outbox records after the cursor name stored entries and cover every store
  sequence after the cursor exactly once;
- **events** — every stored entry's ``operations.ingested`` event is in JetStream (with the
  stored bytes and ids) or still in the outbox, and the stream names no operation that is not
  stored;
- **query** — the query store equals a rebuild from the event stream up to its checkpoint
  (:func:`pandanode.services.query.materializer.rebuild` into a temporary directory, compared
  key by key).

It takes the data directory's lock (``pandanode.lock``, held by ``pandanode up``) and opens
the stores the way the services do, so RocksDB's lock refuses a store a service still uses;
either way it refuses with one line. JetStream is read through an embedded NATS started on
``<data dir>/nats`` (as ``pandanode query rebuild`` does) or at ``--nats-url``. Duplicate events
(a re-announce after the stream's duplicate window) are counted, not violations: consumers
skip them.

Check functions are pure where they can be; :func:`check_data_dir` runs them all and returns a
:class:`CheckReport`.

It stays one module: the checks are small each, but they share the findings, the ingest pass's
state and the lock-then-open sequence of the one command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from pandanode.core.entry import Entry, decode_entry
from pandanode.core.errors import PandanodeError
from pandanode.core.hash import generate_hash
from pandanode.core.lipmaa import is_skiplink_required, lipmaa
from pandanode.core.operation import Operation, decode_operation

from .ingest.store import (
    LogStore,
    OutboxRecord,
    StoredEntry,
    StoredOperationRef,
    split_entry_value,
)
from .query.materializer import DEFAULT_BATCH_SIZE, rebuild
from .query.store import QueryStore, decode_view
from .runtime.bus import Bus, connect_bus
from .runtime.events import OPERATIONS_INGESTED, IngestedOperation, parse_operations_ingested
from .runtime.nats_server import EmbeddedNats
from .runtime.nats_users import CredentialsError, read_credentials
from .runtime.schemas import FIELD_DEFINITION, SCHEMA_DEFINITION
from .supervisor import DataDirInUseError, lock_data_dir

__all__ = [
    "DEFAULT_MAX_SHOWN",
    "CheckRefusedError",
    "CheckReport",
    "EntryCheck",
    "Violation",
    "check_data_dir",
    "check_entry",
    "compare_stores",
    "format_report",
    "log_gap",
    "outbox_problems",
    "register",
    "report_json",
    "run",
]

DEFAULT_MAX_SHOWN: Final = 20
_DETAIL_LIMIT: Final = 240
_U64: Final = struct.Struct(">Q")
_ID: Final = 34
_PK: Final = 32
_FETCH_TIMEOUT: Final = 10.0
_S = TypeVar("_S", bound=LogStore | QueryStore)
_INDEXED_BY_DOCUMENT: Final = frozenset((SCHEMA_DEFINITION, FIELD_DEFINITION))

_QUERY_KEYS: Final = {
    "E": "entry",
    "O": "operation",
    "P": "document operation",
    "F": "folded flag",
    "D": "document view",
    "I": "schema index",
    "V": "pinned view",
    "S": "schema",
    "B": "blob header",
    "K": "blob chunk",
    "C": "checkpoint",
    "W": "pending document",
    "X": "pending view",
    "Y": "pending blob",
    "Z": "format version",
}


class CheckRefusedError(Exception):
    """The checker cannot run on this data directory (in use, not a data directory, no NATS)."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One thing found wrong.

    Attributes:
        kind: What was checked: ``entry``, ``link``, ``payload``, ``log``, ``index``,
            ``outbox``, ``event`` or ``query``.
        where: Which record (an entry's ``author/log/seq``, an id, a key).
        detail: What is wrong, bounded in length.
    """

    kind: str
    where: str
    detail: str


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What a check found.

    Attributes:
        counts: How many of each kind of thing were checked.
        violations: The first violations found (at most the ``max_shown`` asked for).
        total_violations: How many violations were found in all.
        skipped: Checks that could not run, with why.
    """

    counts: dict[str, int]
    violations: tuple[Violation, ...]
    total_violations: int
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether nothing was found wrong."""
        return self.total_violations == 0


@dataclass
class _Findings:
    max_shown: int
    counts: dict[str, int] = field(default_factory=dict)
    shown: list[Violation] = field(default_factory=list)
    total: int = 0
    skipped: list[str] = field(default_factory=list)

    def add(self, kind: str, where: str, detail: str) -> None:
        self.total += 1
        if len(self.shown) < self.max_shown:
            self.shown.append(Violation(kind, _bounded(where, 120), _bounded(detail)))

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def report(self) -> CheckReport:
        return CheckReport(dict(self.counts), tuple(self.shown), self.total, tuple(self.skipped))


def _bounded(text: str, limit: int = _DETAIL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(hex_id: str) -> str:
    return hex_id[:12] + "…" if len(hex_id) > 16 else hex_id


def _position(public_key: str, log_id: int, seq_num: int) -> str:
    return f"{_short(public_key)}/{log_id}/{seq_num}"


# -- pure checks ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryCheck:
    """The outcome of :func:`check_entry`.

    Attributes:
        entry: The decoded entry (None when it does not decode).
        operation: The decoded operation (None when it does not decode).
        problems: (kind, detail) of each thing wrong with the entry.
    """

    entry: Entry | None
    operation: Operation | None
    problems: tuple[tuple[str, str], ...]


def check_entry(
    stored: StoredEntry, *, backlink_target: str | None, skiplink_target: str | None
) -> EntryCheck:
    """Re-verify a stored entry and its operation.

    Args:
        stored: The entry as stored, with its position and stored hash.
        backlink_target: The stored hash at ``seq_num - 1`` (None: not stored, not checked).
        skiplink_target: The stored hash at ``lipmaa(seq_num)`` (None: not stored, not checked).

    Returns:
        The decoded entry and operation, and every problem found.
    """
    problems: list[tuple[str, str]] = []
    operation: Operation | None = None
    try:
        operation = decode_operation(stored.operation)
    except PandanodeError as err:
        problems.append(("payload", f"the stored operation does not decode: {err}"))
    try:
        entry = decode_entry(stored.entry)
    except PandanodeError as err:
        problems.append(("entry", f"does not decode or verify: {err}"))
        return EntryCheck(None, operation, tuple(problems))
    position = (entry.public_key, entry.log_id, entry.seq_num)
    if position != (stored.public_key, stored.log_id, stored.seq_num):
        problems.append(
            ("entry", f"stored at this position but is {_position(*position)} (author/log/seq)")
        )
    if entry.hash != stored.hash:
        problems.append(("entry", f"hash {entry.hash} but stored under {stored.hash}"))
    if entry.payload_size != len(stored.operation):
        problems.append(
            (
                "payload",
                f"payload size {entry.payload_size} but the stored operation has "
                f"{len(stored.operation)} bytes",
            )
        )
    if entry.payload_hash != generate_hash(stored.operation):
        problems.append(("payload", "payload hash is not the hash of the stored operation"))
    if backlink_target is not None and entry.backlink != backlink_target:
        problems.append(
            (
                "link",
                f"backlink {entry.backlink} but entry {entry.seq_num - 1} is {backlink_target}",
            )
        )
    if skiplink_target is not None and entry.skiplink != skiplink_target:
        problems.append(
            (
                "link",
                f"skiplink {entry.skiplink} but entry {lipmaa(entry.seq_num)} is {skiplink_target}",
            )
        )
    return EntryCheck(entry, operation, tuple(problems))


def log_gap(expected: int, found: int) -> str | None:
    """Describe the hole before seq num ``found`` when ``expected`` was next (None: none)."""
    if found == expected:
        return None
    if found < expected:  # pragma: no cover - keys are unique and sorted
        return f"seq num {found} after {expected - 1}"
    if found == expected + 1:
        return f"seq num {expected} is missing"
    return f"seq nums {expected}..{found - 1} are missing"


def outbox_problems(
    cursor: int, next_sequence: int, records: Sequence[OutboxRecord]
) -> list[tuple[str, str]]:
    """Check the outbox: its records after the cursor cover each later store sequence once.

    Args:
        cursor: The outbox cursor (every entry up to it was announced).
        next_sequence: The next store sequence (``N``).
        records: Every outbox record, by first store sequence.

    Returns:
        (where, detail) of each problem.
    """
    problems: list[tuple[str, str]] = []
    last_stored = next_sequence - 1
    if cursor > last_stored:
        problems.append(
            ("cursor", f"cursor {cursor} is beyond the last store sequence {last_stored}")
        )
    expected = cursor + 1
    for record in records:
        where = f"record {record.first}..{record.last}"
        if record.first <= cursor:
            problems.append((where, f"at or below the cursor {cursor}: announced but not dropped"))
            continue
        if record.last - record.first + 1 != len(record.operation_ids):
            problems.append(
                (where, f"names {len(record.operation_ids)} operations for its sequences")
            )
        if record.first != expected:
            problems.append(
                (where, f"store sequences {expected}..{record.first - 1} are in no record")
            )
        expected = max(expected, record.last + 1)
    if expected <= last_stored:
        problems.append(
            (
                f"sequences {expected}..{last_stored}",
                "stored after the cursor but in no outbox record: never announced",
            )
        )
    return problems


def _view_difference(live: bytes, rebuilt: bytes) -> str:
    try:
        ours, theirs = decode_view(live), decode_view(rebuilt)
    except Exception:
        return "differs from the rebuild (does not decode)"
    names = [
        name
        for name in ("view_id", "schema_id", "owner", "edited", "deleted", "appendable")
        if getattr(ours, name) != getattr(theirs, name)
    ]
    fields = sorted(
        name
        for name in set(ours.fields) | set(theirs.fields)
        if ours.fields.get(name) != theirs.fields.get(name)
    )
    if fields:
        names.append("fields " + ", ".join(fields))
    return "differs from the rebuild in " + ("; ".join(names) or "encoding")


def compare_stores(
    live: Iterable[tuple[bytes, bytes]], rebuilt: Iterable[tuple[bytes, bytes]]
) -> Iterator[tuple[str, str]]:
    """Compare two query stores' key-value dumps (both in key order).

    Yields:
        (where, detail) of each key missing, extra or different in ``live``.
    """

    def where(key: bytes) -> str:
        prefix = chr(key[0]) if key else ""
        return f"{_QUERY_KEYS.get(prefix, 'key ' + repr(prefix))} {_bounded(key[1:].hex(), 80)}"

    ours, theirs = iter(live), iter(rebuilt)
    a, b = next(ours, None), next(theirs, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            yield where(a[0]), "in the query store but not in a rebuild from the stream"
            a = next(ours, None)
        elif a is None or b[0] < a[0]:
            yield where(b[0]), "missing from the query store (a rebuild from the stream has it)"
            b = next(theirs, None)
        else:
            if a[1] != b[1]:
                if a[0][:1] in (b"D", b"V"):
                    yield where(a[0]), _view_difference(a[1], b[1])
                else:
                    yield where(a[0]), "differs from a rebuild from the stream"
            a, b = next(ours, None), next(theirs, None)


# -- the stores -----------------------------------------------------------------------------


class _IngestReader(LogStore):
    """The log store with raw scans, for checking every record (opened as found: no migration)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, migrate=False)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._scan(prefix)

    def has(self, key: bytes) -> bool:
        return self._get(key) is not None


class _QueryReader(QueryStore):
    """The query store, opened without wiping a store of another format."""

    other_format = False

    def _reset_if_other_format(self) -> None:
        self.other_format = next(self._scan(b""), None) is not None


def _open(opener: Callable[[Path], _S], path: Path, what: str) -> _S:
    try:
        return opener(path)
    except Exception as err:
        text = str(err)
        if "lock" in text.lower():
            raise CheckRefusedError(
                f"the {what} store at {path} is in use (stop the node first): "
                f"{_bounded(text.splitlines()[0] if text else '', 160)}"
            ) from err
        raise CheckRefusedError(
            f"cannot open the {what} store at {path}: {_bounded(text)}"
        ) from err


@dataclass
class _IngestState:
    """What the log store pass keeps for the later checks."""

    stored_ops: set[bytes] = field(default_factory=set)
    op_docs: dict[bytes, bytes] = field(default_factory=dict)
    outbox_ops: set[bytes] = field(default_factory=set)
    entries: int = 0


_LogSummary = tuple[int, bytes | None, str | None]
"""A log as its entries say: height, document, schema (None: not known)."""


class _IngestPass:
    """One scan of the entries in key order (author, log, seq num), checking each in turn."""

    def __init__(self, store: _IngestReader, findings: _Findings) -> None:
        self.store = store
        self.findings = findings
        self.state = _IngestState()
        self.logs: dict[tuple[bytes, int], _LogSummary] = {}
        self.authors: dict[bytes, int] = {}
        self.documents: dict[bytes, tuple[bool, str]] = {}
        self._log: tuple[bytes, int] | None = None
        self._expected = 1
        self._previous_hash: str | None = None
        self._log_doc: bytes | None = None
        self._log_schema: str | None = None

    def run(self) -> _IngestState:
        for key, value in self.store.scan(b"E"):
            if len(key) != 1 + _PK + 16 or len(value) < _ID + 2:
                self.findings.add("entry", key.hex()[:80], "malformed key or value")
                continue
            self._entry(key, value)
        self._finish_log()
        _check_log_records(self.store, self.findings, self.logs)
        _check_other_indexes(self.store, self.findings, self.state, self.authors, self.logs)
        _check_documents(self.store, self.findings, self.state, self.documents)
        _check_outbox(self.store, self.findings, self.state)
        return self.state

    def _finish_log(self) -> None:
        if self._log is not None:
            self.logs[self._log] = (self._expected - 1, self._log_doc, self._log_schema)

    def _start_log(self, pk: bytes, log_id: int) -> None:
        self._finish_log()
        self._log, self._expected, self._previous_hash = (pk, log_id), 1, None
        self._log_doc = self._log_schema = None
        self.findings.count("logs")
        self.authors[pk] = max(self.authors.get(pk, log_id), log_id)

    def _entry(self, key: bytes, value: bytes) -> None:
        pk, log_id, seq_num = key[1:33], _U64.unpack_from(key, 33)[0], _U64.unpack_from(key, 41)[0]
        sequence, entry, operation = split_entry_value(value)
        stored = StoredEntry(
            public_key=pk.hex(),
            log_id=log_id,
            seq_num=seq_num,
            hash=value[:_ID].hex(),
            entry=entry,
            operation=operation,
            sequence=sequence,
        )
        where = _position(stored.public_key, log_id, seq_num)
        self.state.entries += 1
        self.findings.count("entries")
        if (pk, log_id) != self._log:
            self._start_log(pk, log_id)
        gap = log_gap(self._expected, seq_num)
        if gap is not None:
            self.findings.add(
                "log", f"{_short(stored.public_key)}/{log_id}", f"not contiguous: {gap}"
            )
        skiplink_target = None
        if is_skiplink_required(seq_num):
            skiplink_target = self.store.entry_hash_at(stored.public_key, log_id, lipmaa(seq_num))
        checked = check_entry(
            stored,
            # A missing target is the gap reported above.
            backlink_target=self._previous_hash if seq_num > 1 and gap is None else None,
            skiplink_target=skiplink_target,
        )
        for kind, detail in checked.problems:
            self.findings.add(kind, where, detail)
        self._expected, self._previous_hash = seq_num + 1, stored.hash
        self.state.stored_ops.add(value[:_ID])
        if checked.operation is not None:
            self._indexes(stored, checked.operation, where)

    def _document_of(self, stored: StoredEntry, operation: Operation, where: str) -> str | None:
        """Its own id for a CREATE, else the one document of the operations it names."""
        if operation.action == "create" or not operation.previous:
            return stored.hash
        docs = set()
        for previous in operation.previous:
            ref = self.store.operation_ref(previous)
            if ref is None:
                self.findings.add("index", where, f"previous operation {previous} is not stored")
            else:
                docs.add(ref.document_id)
        return docs.pop() if len(docs) == 1 else None

    def _indexes(self, stored: StoredEntry, operation: Operation, where: str) -> None:
        store, findings = self.store, self.findings
        document_id = self._document_of(stored, operation, where)
        schema_id = operation.schema_id
        ref = store.operation_ref(stored.hash)
        if ref is None:
            findings.add("index", where, "H: no operation record for the entry's hash")
        else:
            found = (ref.public_key, ref.log_id, ref.seq_num, ref.schema_id)
            if found != (stored.public_key, stored.log_id, stored.seq_num, schema_id):
                findings.add("index", where, f"H: names {found[:3]} with schema {found[3]}")
            if document_id is not None and ref.document_id != document_id:
                findings.add("index", where, f"H: document {ref.document_id}, not {document_id}")
        if document_id is None:
            return
        doc = bytes.fromhex(document_id)
        op_id = bytes.fromhex(stored.hash)
        self.state.op_docs[op_id] = doc
        if self._log_doc is None:
            self._log_doc, self._log_schema = doc, schema_id
            log_id = store.author_log_id(stored.public_key, document_id)
            if log_id != stored.log_id:
                findings.add(
                    "index",
                    where,
                    f"A: the author's log of document {_short(document_id)} is {log_id}, "
                    f"not {stored.log_id}",
                )
        elif self._log_doc != doc:
            findings.add("log", where, f"document {document_id} in a log of {self._log_doc.hex()}")
        deleted, _ = self.documents.get(doc, (False, schema_id))
        self.documents[doc] = (deleted or operation.action == "delete", schema_id)
        # O indexes definition documents only (older directories: every document).
        if schema_id in _INDEXED_BY_DOCUMENT and not store.has(b"O" + doc + op_id):
            findings.add("index", where, "O: not listed among its document's operations")


def _check_log_records(
    store: _IngestReader,
    findings: _Findings,
    logs: dict[tuple[bytes, int], _LogSummary],
) -> None:
    seen = set()
    for key, value in store.scan(b"G"):
        pk, log_id = key[1:33], _U64.unpack_from(key, 33)[0]
        seen.add((pk, log_id))
        where = f"{_short(pk.hex())}/{log_id}"
        found = logs.get((pk, log_id))
        if found is None:
            findings.add("index", where, "G: a log record without entries")
            continue
        height, doc, schema = found
        if _U64.unpack_from(value, _ID)[0] != height:
            findings.add(
                "log", where, f"G: height {_U64.unpack_from(value, _ID)[0]}, entries up to {height}"
            )
        if doc is not None and value[:_ID] != doc:
            findings.add("index", where, f"G: document {value[:_ID].hex()}, not {doc.hex()}")
        if schema is not None and value[42:].decode(errors="replace") != schema:
            findings.add("index", where, f"G: schema {value[42:]!r}, not {schema}")
    for pk, log_id in logs.keys() - seen:
        findings.add("index", f"{_short(pk.hex())}/{log_id}", "G: entries without a log record")


def _check_other_indexes(
    store: _IngestReader,
    findings: _Findings,
    state: _IngestState,
    authors: dict[bytes, int],
    logs: dict[tuple[bytes, int], _LogSummary],
) -> None:
    operations = 0
    for key, _ in store.scan(b"H"):
        operations += 1
        if key[1:] not in state.stored_ops:
            findings.add("index", key[1:].hex(), "H: an operation record without its entry")
    findings.count("operations", operations)
    for key, value in store.scan(b"A"):
        pk, doc = key[1:33], key[33:]
        log_id = _U64.unpack(value)[0]
        found = logs.get((pk, log_id))
        if found is None or (found[1] is not None and found[1] != doc):
            findings.add(
                "index",
                f"{_short(pk.hex())}/{_short(doc.hex())}",
                f"A: names log {log_id} which holds no entries of this document",
            )
    findings.count("authors", len(authors))
    for key, value in store.scan(b"M"):
        pk = key[1:]
        if authors.get(pk) != _U64.unpack(value)[0]:
            findings.add(
                "index",
                _short(pk.hex()),
                f"M: highest log id {_U64.unpack(value)[0]}, entries up to {authors.get(pk)}",
            )
        authors.pop(pk, None)
    for pk in authors:
        findings.add("index", _short(pk.hex()), "M: no highest log id for an author with logs")
    last = store.next_outbox_sequence() - 1
    if last != state.entries:
        findings.add("index", "N", f"next store sequence {last + 1} for {state.entries} entries")


def _check_documents(
    store: _IngestReader,
    findings: _Findings,
    state: _IngestState,
    documents: dict[bytes, tuple[bool, str]],
) -> None:
    findings.count("documents", len(documents))
    for key, value in store.scan(b"D"):
        doc = key[1:]
        record = documents.pop(doc, None)
        if record is None:
            findings.add("index", doc.hex(), "D: a document record without operations")
            continue
        deleted, schema = record
        if (value[0] == 1) != deleted:
            findings.add(
                "index", doc.hex(), f"D: deleted flag {value[0]}, operations say {deleted}"
            )
        if value[1:].decode(errors="replace") != schema:
            findings.add("index", doc.hex(), f"D: schema {value[1:]!r}, not {schema}")
    for doc in documents:
        findings.add("index", doc.hex(), "D: no document record")
    for key, _ in store.scan(b"O"):
        doc, op_id = key[1 : 1 + _ID], key[1 + _ID :]
        if op_id not in state.stored_ops:
            findings.add("index", op_id.hex(), "O: a document's operation that is not stored")
        elif state.op_docs.get(op_id, doc) != doc:
            findings.add(
                "index",
                op_id.hex(),
                f"O: listed under document {doc.hex()}, belongs to {state.op_docs[op_id].hex()}",
            )


def _check_outbox(store: _IngestReader, findings: _Findings, state: _IngestState) -> None:
    # Records at or below the cursor stay as the store-order index; the outbox is after it.
    records = store.outbox(store.outbox_cursor(), 2**62)
    findings.count("outbox records", len(records))
    for where, detail in outbox_problems(
        store.outbox_cursor(), store.next_outbox_sequence(), records
    ):
        findings.add("outbox", where, detail)
    for record in records:
        for op_id in record.operation_ids:
            raw = bytes.fromhex(op_id)
            state.outbox_ops.add(raw)
            if raw not in state.stored_ops:
                findings.add(
                    "outbox", f"record {record.first}..{record.last}", f"names {op_id}: not stored"
                )


# -- the event stream and the query store ---------------------------------------------------


def _event_differences(
    event: IngestedOperation, stored: StoredEntry, ref: StoredOperationRef
) -> list[str]:
    """The fields in which an announced operation differs from what is stored."""
    expected = {
        "entry": stored.entry,
        "operation": stored.operation,
        "public_key": ref.public_key,
        "log_id": ref.log_id,
        "seq_num": ref.seq_num,
        "document_id": ref.document_id,
        "schema_id": ref.schema_id,
    }
    return [name for name, value in expected.items() if getattr(event, name) != value]


async def _check_events(bus: Bus, store: LogStore, findings: _Findings, state: _IngestState) -> int:
    """Read every ``operations.ingested`` message; return the stream sequence of the last."""
    target = await bus.last_sequence(OPERATIONS_INGESTED)
    announced: set[bytes] = set()
    if target:
        consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=1, max_pending=512)
        try:
            done = False
            while not done:
                messages = await consumer.take(256, timeout=_FETCH_TIMEOUT)
                for message in messages:
                    if message.sequence > target:
                        done = True
                        break
                    done = message.sequence == target
                    findings.count("event messages")
                    _check_message(
                        message.sequence, message.payload, store, findings, state, announced
                    )
                if messages:
                    await consumer.ack(messages[-1])
        finally:
            await consumer.close()
    waiting = 0
    for op_id in state.stored_ops - announced:
        if op_id in state.outbox_ops:
            waiting += 1
            continue
        ref = store.operation_ref(op_id.hex())
        where = op_id.hex() if ref is None else _position(ref.public_key, ref.log_id, ref.seq_num)
        findings.add("event", where, f"{op_id.hex()} is neither in the stream nor in the outbox")
    findings.count("events only in the outbox", waiting)
    return target


def _check_message(
    sequence: int,
    payload: bytes,
    store: LogStore,
    findings: _Findings,
    state: _IngestState,
    announced: set[bytes],
) -> None:
    try:
        message = parse_operations_ingested(payload)
    except Exception:
        findings.add("event", f"message {sequence}", "not an OperationsIngested message")
        return
    for event in message.operations:
        findings.count("events")
        try:
            op_id = bytes.fromhex(event.operation_id)
        except ValueError:
            findings.add("event", f"message {sequence}", "an operation id that is not hex")
            continue
        if op_id in announced:
            findings.count("duplicate events")  # consumers skip them; not a violation
        announced.add(op_id)
        ref = store.operation_ref(event.operation_id) if op_id in state.stored_ops else None
        stored = None if ref is None else store.entry(ref.public_key, ref.log_id, ref.seq_num)
        if ref is None or stored is None:
            findings.add(
                "event", f"message {sequence}", f"operation {event.operation_id} is not stored"
            )
            continue
        differences = _event_differences(event, stored, ref)
        if differences:
            findings.add(
                "event",
                f"message {sequence}",
                f"operation {_short(event.operation_id)} differs from the stored entry in "
                + ", ".join(differences),
            )


async def _check_query(
    query: _QueryReader, bus: Bus, findings: _Findings, last_event: int, batch_size: int
) -> None:
    if query.other_format:
        findings.add("query", "format", "the query store has another format (rebuilt on start)")
        return
    checkpoint = query.checkpoint()
    if checkpoint > last_event:
        findings.add(
            "query",
            "checkpoint",
            f"checkpoint {checkpoint} is beyond the stream's last event {last_event}: the "
            "stream was reset (run `pandanode query rebuild`)",
        )
    with tempfile.TemporaryDirectory(prefix="pandanode-check-") as temporary:
        path = Path(temporary) / "query"
        rebuilt_operations = await rebuild(path, bus, batch_size=batch_size, through=checkpoint)
        findings.count("operations rebuilt", rebuilt_operations)
        rebuilt = QueryStore(path)
        try:
            live = _counting(query.dump(), findings)
            for where, detail in compare_stores(live, rebuilt.dump()):
                findings.add("query", where, detail)
        finally:
            rebuilt.close()


def _counting(
    items: Iterator[tuple[bytes, bytes]], findings: _Findings
) -> Iterator[tuple[bytes, bytes]]:
    for key, value in items:
        findings.count("query keys")
        if key[:1] == b"D":
            findings.count("query documents")
        yield key, value


# -- the use case ---------------------------------------------------------------------------


async def check_data_dir(
    data_dir: Path,
    *,
    nats_url: str | None = None,
    max_shown: int = DEFAULT_MAX_SHOWN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    nats_credentials: tuple[str, str] | None = None,
) -> CheckReport:
    """Check a stopped node's data directory (see the module docstring for what is checked).

    Args:
        data_dir: The node's data directory (``ingest/``, ``query/``, ``nats/``).
        nats_url: The NATS server the node used; default: an embedded one started on
            ``<data_dir>/nats``.
        max_shown: How many violations the report lists (all are counted).
        batch_size: Operations per batch when rebuilding the query store to compare.
        nats_credentials: ``(user, password)`` to connect to ``nats_url`` with (a split
            deployment's ``admin``); None: those of the URL, if any.

    Raises:
        CheckRefusedError: the data directory is in use, is not a node's, or NATS is unreachable.
    """
    ingest_path = data_dir / "ingest"
    if not ingest_path.is_dir():
        raise CheckRefusedError(f"{data_dir} is not a pandanode data directory (no ingest/ in it)")
    if not nats_url and not (data_dir / "nats").is_dir():
        raise CheckRefusedError(
            f"{data_dir} has no nats/ store: pass --nats-url URL, the NATS server the node used"
        )
    try:
        lock = lock_data_dir(data_dir)  # `pandanode up` holds it while it runs
    except DataDirInUseError as err:
        raise CheckRefusedError(f"{err}: stop the node first") from err
    try:
        return await _check_locked(data_dir, nats_url, max_shown, batch_size, nats_credentials)
    finally:
        os.close(lock)


async def _check_locked(
    data_dir: Path,
    nats_url: str | None,
    max_shown: int,
    batch_size: int,
    nats_credentials: tuple[str, str] | None = None,
) -> CheckReport:
    findings = _Findings(max_shown)
    # A service run on its own (`serve`) or in-process holds its store's RocksDB lock.
    store = _open(_IngestReader, data_dir / "ingest", "ingest")
    query: _QueryReader | None = None
    nats: EmbeddedNats | None = None
    bus: Bus | None = None
    try:
        if (data_dir / "query").is_dir():
            query = _open(_QueryReader, data_dir / "query", "query")
        else:
            findings.skipped.append("query views: the data directory has no query/ store")
        state = await asyncio.to_thread(_IngestPass(store, findings).run)
        if not nats_url:
            nats = EmbeddedNats.for_data_dir(data_dir)
            await nats.start()
            nats_url = nats.client_url
        try:
            user, password = nats_credentials if nats is None and nats_credentials else ("", "")
            bus = await connect_bus(
                nats_url, name="pandanode-check", user=user or None, password=password or None
            )
        except Exception as err:
            raise CheckRefusedError(f"cannot read the event stream: {_bounded(str(err))}") from err
        last_event = await _check_events(bus, store, findings, state)
        if query is not None:
            await _check_query(query, bus, findings, last_event, batch_size)
    finally:
        if bus is not None:
            await bus.close()
        if nats is not None:
            await nats.stop()
        if query is not None:
            query.close()
        store.close()
    return findings.report()


# -- output and the command -----------------------------------------------------------------


def format_report(report: CheckReport, data_dir: Path) -> str:
    """The report as a short text: counts, skipped checks, verdict, the violations shown."""
    lines = [f"pandanode check {data_dir}"]
    counted = ", ".join(f"{count} {name}" for name, count in report.counts.items())
    lines.append(f"  checked: {counted or 'nothing'}")
    lines.extend(f"  skipped: {reason}" for reason in report.skipped)
    if report.ok:
        lines.append("OK: no violations")
        return "\n".join(lines)
    shown = len(report.violations)
    more = "" if shown == report.total_violations else f", first {shown} shown"
    lines.append(f"FAILED: {report.total_violations} violations{more}")
    lines.extend(f"  {v.kind:<8} {v.where}: {v.detail}" for v in report.violations)
    return "\n".join(lines)


def report_json(report: CheckReport) -> dict[str, object]:
    """The report as a JSON-ready dict."""
    return {
        "ok": report.ok,
        "counts": report.counts,
        "total_violations": report.total_violations,
        "violations": [
            {"kind": v.kind, "where": v.where, "detail": v.detail} for v in report.violations
        ],
        "skipped": list(report.skipped),
    }


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check`` to the ``pandanode`` parser's subcommands (it sets ``args.run``)."""
    parser = subparsers.add_parser(
        "check",
        help="check a stopped node's data directory (entries, logs, indexes, events, views)",
        description="Check a stopped node's data directory: every entry re-verifies, every "
        "log is contiguous, every index agrees, every entry's event is in the stream or the "
        "outbox, the query views equal a rebuild. Exit 0: clean, 1: violations, 2: not checked.",
    )
    parser.add_argument("--data-dir", dest="data_dir", type=Path, default=Path("data"))
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,  # `pandanode --json check` sets it too
        help="print the report as JSON",
    )
    parser.add_argument(
        "--nats-url",
        dest="nats_url",
        metavar="URL",
        help="NATS server URL (default: an embedded NATS on the data dir's nats/ store)",
    )
    parser.add_argument("--nats", dest="nats_url", help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument(
        "--nats-credentials-file",
        dest="nats_credentials_file",
        metavar="PATH",
        default=os.environ.get("PANDANODE_NATS_CREDENTIALS_FILE") or None,
        help="a file with the NATS user:password for --nats-url (a split deployment's "
        "admin.credentials; default $PANDANODE_NATS_CREDENTIALS_FILE)",
    )
    parser.add_argument(
        "--max-shown",
        dest="max_shown",
        type=int,
        default=DEFAULT_MAX_SHOWN,
        help=f"violations to list (default {DEFAULT_MAX_SHOWN}; all are counted)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``pandanode check``; 0: no violations, 1: violations, 2: could not check."""
    data_dir: Path = args.data_dir
    try:
        credentials = None
        if args.nats_credentials_file and args.nats_url:
            credentials = read_credentials(Path(args.nats_credentials_file))
        report = asyncio.run(
            check_data_dir(
                data_dir,
                nats_url=args.nats_url,
                max_shown=max(args.max_shown, 0),
                nats_credentials=credentials,
            )
        )
    except CredentialsError as err:
        print(f"pandanode check: {err}", file=sys.stderr)
        return 2
    except CheckRefusedError as err:
        print(f"pandanode check: {err}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(report_json(report), indent=2))
    else:
        print(format_report(report, data_dir))
    return 0 if report.ok else 1

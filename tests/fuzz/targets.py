"""Fuzz targets: every decoder and parser that reads untrusted bytes or text.

Each target takes one input (``bytes``) and feeds it to a parser. Only the parser's typed,
documented errors may escape it; they are caught here. Any other exception, and any failed
``assert`` of a property checked on what the parser accepted, escapes the target: that is a
finding. The same targets run under atheris (:mod:`tests.fuzz.run`, coverage-guided) and
in-process over the kept corpus (:mod:`tests.fuzz.test_fuzz`), so a crash, once its input is in
``tests/fuzz/corpus/<target>/``, stays a regression test.

Nothing here may import pandanode at module level outside the targets' own imports: the fuzz
runner imports this module inside atheris' instrumentation, so every pandanode module the
targets use gets coverage feedback.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError as ProtobufDecodeError

from pandanode.core.entry import decode_entry
from pandanode.core.errors import (
    DecodeError,
    EntryDecodeError,
    HashDecodeError,
    InvalidRequestError,
    OperationDecodeError,
    Reason,
    SchemaIdError,
    SignatureError,
)
from pandanode.core.hash import decode_hash, generate_hash, hash_from_hex
from pandanode.core.hexid import is_public_key_hex, require_hex_ids
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import (
    Operation,
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
    _decode_canonical,
    _decode_general,
    decode_operation,
)
from pandanode.core.schema import FieldType, Schema
from pandanode.core.schema_id import SchemaId, parse_schema_id
from pandanode.core.varu64 import decode_varu64, encode_varu64
from pandanode.discovery.v1 import discovery_pb2
from pandanode.events.v1 import events_pb2
from pandanode.query.v1 import query_pb2
from pandanode.services.discovery.lan import AnnouncementError, decode_announcement
from pandanode.services.query.convert import order_from_pb, predicates_from_pb
from pandanode.services.query.ingested import IngestedEvent
from pandanode.services.query.listing import SchemaIndex
from pandanode.services.query.listing.targets import ABSENT, NAN, PRESENT
from pandanode.services.query.listing.tokens import PageTokens, Truncated
from pandanode.services.query.model import MaterializedDocument

__all__ = [
    "FUZZ_SECRET",
    "FUZZ_SOURCE",
    "TARGETS",
    "TOKEN_FINGERPRINT",
    "TOKEN_KINDS",
    "QUIET_LOGGERS",
    "FuzzTarget",
    "listing_index",
    "quiet",
]

FUZZ_SECRET: Final = b"pandanode fuzz secret, not a real one"
"""The node secret the page token targets use (seeds with valid tokens are made with it)."""

TOKEN_FINGERPRINT: Final = "f" * 32
"""The query fingerprint the page token target decodes against."""

TOKEN_KINDS: Final = (
    "bool",
    "int",
    "float",
    "str",
    "bytes",
    "relation",
    "pinned_relation",
    "id",
)
"""Order key kinds a page token is decoded for (the first input byte picks one)."""

FUZZ_SOURCE: Final = "192.0.2.7"
"""The source address of fuzzed LAN datagrams."""


def _text(data: bytes) -> str:
    # Requests carry valid UTF-8 only (protobuf and CBOR check it), so decode as a client would.
    return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# core: entries, varu64, hashes and view ids, schema ids, operations


def fuzz_entry(data: bytes) -> None:
    """Bamboo entries: the layout without and with the signature check."""
    try:
        unverified = decode_entry(data, verify=False)
    except DecodeError:  # SignatureError too: bytes after the signature never verify
        unverified = None
    if unverified is not None:
        assert unverified.raw == data
        assert unverified.seq_num >= 1
        assert (unverified.backlink is None) == (unverified.seq_num == 1)
        assert unverified.hash == generate_hash(data)
        assert unverified.payload_size >= 0
    try:
        verified = decode_entry(data)
    except SignatureError:
        return
    except DecodeError:
        assert unverified is None, (
            "a well-formed entry failed with another error than its signature"
        )
        return
    assert verified == unverified, "an entry that verifies has another layout unverified"


def fuzz_varu64(data: bytes) -> None:
    """Canonical varu64s, read one after the other as an entry reads them."""
    offset = 0
    while offset < len(data):
        try:
            value, end = decode_varu64(data, offset)
        except EntryDecodeError as err:
            assert err.reason in (Reason.INVALID_VARU64, Reason.NON_CANONICAL_VARU64)
            return
        assert end > offset
        assert encode_varu64(value) == data[offset:end], "a varu64 read back differently"
        offset = end


def fuzz_hash(data: bytes) -> None:
    """YASMF hashes (raw and hex), document view ids and hex id arguments."""
    try:
        hex_hash, end = decode_hash(data)
    except HashDecodeError:
        pass
    else:
        assert end == 34
        assert hash_from_hex(hex_hash)[2:] == data[2:34]
    text = _text(data)
    try:
        raw = hash_from_hex(text)
    except HashDecodeError:
        pass
    else:
        assert raw.hex() == text.lower()
    try:
        view = DocumentViewId.from_str(text)
    except HashDecodeError:
        pass
    else:
        assert str(view) == text
        assert DocumentViewId.from_ids(view.ids) == view
        view.view_hash()
    try:
        ids = require_hex_ids(text, "document view id")
    except InvalidRequestError:
        pass
    else:
        assert ids == text.lower()


_parse_schema_id_uncached = parse_schema_id.__wrapped__


def fuzz_schema_id(data: bytes) -> None:
    """Schema ids as p2panda-rs parses them."""
    text = _text(data)
    try:
        schema_id: SchemaId = _parse_schema_id_uncached(text)
    except SchemaIdError:
        return
    assert _parse_schema_id_uncached(str(schema_id)) == schema_id
    if not schema_id.is_system:
        assert str(schema_id) == text
    schema_id.hash_id()


def _operation_outcome(decode: Callable[[bytes], Operation], data: bytes) -> tuple[str, ...]:
    try:
        return ("ok", repr(decode(data)))
    except (OperationDecodeError, SchemaIdError) as err:
        return ("error", type(err).__name__, str(err.reason), str(err))


def fuzz_operation(data: bytes) -> None:
    """Operations: the cbor2 fast path and the general reader agree on every input."""
    canonical = _decode_canonical(data)
    general = _operation_outcome(_decode_general, data)
    if canonical is not None:
        assert general == ("ok", repr(canonical)), "the fast path read what the reader did not"
    assert _operation_outcome(decode_operation, data) == general
    if general[0] != "ok":
        return
    operation = _decode_general(data)
    try:
        encoded = operation.to_bytes()
    except (OperationDecodeError, SchemaIdError):
        # A `previous` written as text in mixed case sorts as text but not as bytes: p2panda
        # reads it, and no canonical encoding of it exists.
        assert operation.previous is not None and any(
            op_id != op_id.lower() for op_id in operation.previous
        ), "an operation that decoded does not encode"
        return
    again = _decode_canonical(encoded)
    assert again is not None, "the fast path refuses a canonical encoding"
    lowered = Operation(
        operation.version,
        operation.action,
        operation.schema_id,
        None if operation.previous is None else tuple(i.lower() for i in operation.previous),
        operation.fields,
    )
    assert repr(again) == repr(lowered), "an operation reads back differently"


# ---------------------------------------------------------------------------------------------
# query: page tokens, listing requests (filters, orders, tokens), the events stream


_TOKENS: Final = PageTokens(FUZZ_SECRET)


def _check_rejection(err: InvalidRequestError) -> None:
    assert err.reason == Reason.INVALID_PAGE_TOKEN, err.reason


def fuzz_page_token(data: bytes) -> None:
    """Page tokens: the first byte picks the order kind and whether the rest is a token as a
    client sends it (mode 0) or a payload sealed with the node's secret (mode 1, which reaches
    the JSON past the mac)."""
    if not data:
        return
    mode, kind = data[0] & 1, TOKEN_KINDS[(data[0] >> 1) % len(TOKEN_KINDS)]
    rest = data[1:]
    token = _TOKENS.seal(rest) if mode else _text(rest)
    try:
        cursor = _TOKENS.decode(token, TOKEN_FINGERPRINT, kind)
    except InvalidRequestError as err:
        _check_rejection(err)
        return
    if isinstance(cursor, Truncated):
        assert cursor.rank == PRESENT
        return
    rank, _value, _document_id = cursor
    assert rank in (PRESENT, NAN, ABSENT)
    again = _TOKENS.decode(_TOKENS.encode(TOKEN_FINGERPRINT, kind, cursor), TOKEN_FINGERPRINT, kind)
    if not isinstance(again, Truncated):
        assert again == cursor, "a cursor reads back differently from its own token"


def _op_id(rng: random.Random) -> str:
    return "0020" + rng.randbytes(32).hex()


def _fields(rng: random.Random, related: list[str], views: list[str]) -> dict[str, object]:
    return {
        "count": rng.choice([0, 1, -1, 42, 2**63 - 1, -(2**63)]),
        "data": rng.choice([b"", b"\x00", b"ab", b"\xff" * 40]),
        "flag": rng.random() < 0.5,
        "owner": rng.choice(["", "a", "b"]),
        "pin": PinnedRelation(rng.choice(views)),
        "pins": PinnedRelationList([rng.choice(views) for _ in range(rng.randrange(3))]),
        "relation": Relation(rng.choice(related)),
        "score": rng.choice([0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 1e-8]),
        "tags": RelationList([rng.choice(related) for _ in range(rng.randrange(4))]),
        "title": rng.choice(["", "a", "ab", "しろくま", "🐼 panda", "x" * 2000]),
    }


def listing_index() -> SchemaIndex:
    """The index the listing target queries: every field type, 40 documents, fixed contents."""
    rng = random.Random(15)
    blob = SchemaId.system("blob")
    schema = Schema(
        SchemaId.application("things", _op_id(rng)),
        "Every field type",
        {
            "count": FieldType("int"),
            "data": FieldType("bytes"),
            "flag": FieldType("bool"),
            "owner": FieldType("str"),
            "pin": FieldType("pinned_relation", blob),
            "pins": FieldType("pinned_relation_list", blob),
            "relation": FieldType("relation", blob),
            "score": FieldType("float"),
            "tags": FieldType("relation_list", blob),
            "title": FieldType("str"),
        },
    )
    related = [_op_id(rng) for _ in range(6)]
    views = ["_".join(sorted(rng.sample(related, k))) for k in (1, 2, 3)]
    index = SchemaIndex(schema, max_page_size=16, tokens=PageTokens(FUZZ_SECRET))
    for _ in range(40):
        deleted = rng.random() < 0.1
        index.upsert(
            MaterializedDocument(
                document_id=_op_id(rng),
                view_id=_op_id(rng),
                schema_id=str(schema.id),
                owner=rng.randbytes(32).hex(),
                edited=deleted or rng.random() < 0.3,
                deleted=deleted,
                fields={} if deleted else _fields(rng, related, views),  # type: ignore[arg-type]
            )
        )
    return index


_INDEX: Final = listing_index()


def fuzz_listing(data: bytes) -> None:
    """ListDocuments requests as the query service reads them: filters compiled against the
    schema, the order, the page size and the page token, run on an index of 40 documents."""
    try:
        request = query_pb2.ListDocumentsRequest.FromString(data)
    except ProtobufDecodeError:
        return  # the malformed-request guard answers these (MALFORMED_REQUEST)
    try:
        predicates = predicates_from_pb(request.filters)
        order = order_from_pb(request.order_by, request.descending)
        page = _INDEX.list(predicates, order, request.page_size or None, request.page_token or None)
    except InvalidRequestError:
        return
    matches = _INDEX.filter(predicates)
    assert all(matches(document) for document in page.documents)
    assert len(page.documents) <= _INDEX.max_page_size
    assert page.total_size >= len(page.documents)
    if page.next_page_token is not None:
        following = _INDEX.list(predicates, order, request.page_size or None, page.next_page_token)
        seen = {document.document_id for document in page.documents}
        assert not seen & {document.document_id for document in following.documents}


def fuzz_events(data: bytes) -> None:
    """``operations.ingested`` messages as the materializer reads them from JetStream."""
    try:
        message = events_pb2.OperationsIngested.FromString(data)
    except ProtobufDecodeError:
        message = None
    # Each operation on its own first: parse_message logs and skips what fails, which would
    # hide an unexpected exception.
    if message is not None:
        for index, operation in enumerate(message.operations[:64]):
            try:
                event = IngestedEvent.parse(index, operation)
            except (ValueError, DecodeError):
                continue
            assert event.operation.operation_id == operation.operation_id
    try:
        events = IngestedEvent.parse_message(7, data)
    except ValueError:
        assert message is None or len(message.operations) >= 1 << 20
        return
    assert message is not None
    assert [event.sequence for event in events] == sorted({event.sequence for event in events})


# ---------------------------------------------------------------------------------------------
# discovery


def fuzz_lan(data: bytes) -> None:
    """LAN discovery datagrams (anyone on the network segment can send them)."""
    try:
        node_id, address = decode_announcement(data, FUZZ_SOURCE)
    except AnnouncementError:
        return
    assert is_public_key_hex(node_id, lowercase=True)
    host, _, port = address.rpartition(":")
    assert 0 < int(port) <= 65535
    again = discovery_pb2.LanAnnouncement.FromString(data)
    assert (node_id, address.rpartition(":")[2]) == (again.node_id, port)
    assert host


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FuzzTarget:
    """One fuzz target.

    Attributes:
        name: The name (and corpus folder).
        run: Feeds one input to the parser; raises only on a finding.
        max_len: The longest input the fuzzer makes.
    """

    name: str
    run: Callable[[bytes], None]
    max_len: int = 4096


TARGETS: Final[dict[str, FuzzTarget]] = {
    target.name: target
    for target in (
        FuzzTarget("entry", fuzz_entry, 1024),
        FuzzTarget("operation", fuzz_operation, 4096),
        FuzzTarget("varu64", fuzz_varu64, 64),
        FuzzTarget("hash", fuzz_hash, 1024),
        FuzzTarget("schema_id", fuzz_schema_id, 1024),
        FuzzTarget("page_token", fuzz_page_token, 8192),
        FuzzTarget("listing", fuzz_listing, 4096),
        FuzzTarget("events", fuzz_events, 8192),
        FuzzTarget("lan", fuzz_lan, 2048),
    )
}
"""Every target by name."""

QUIET_LOGGERS: Final = ("pandanode.services.query.ingested",)
"""Loggers to silence while fuzzing: the materializer logs every operation it skips with a
traceback, and the fuzzer feeds it thousands a second."""


@contextmanager
def quiet() -> Iterator[None]:
    """Silence :data:`QUIET_LOGGERS` for a while (restored afterwards)."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)

"""The pure parts of the materializer: the view codec, typing, pins, changes, blob assembly."""

from __future__ import annotations

import dataclasses
import math
import struct

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pandanode.core import KeyPair, cbor, decode_operation, encode_operation, sign_and_encode_entry
from pandanode.core.document import DocumentOperation, materialize
from pandanode.core.errors import DocumentError, PandanodeError, Reason, SchemaError
from pandanode.core.hash import generate_hash
from pandanode.core.operation import (
    Operation,
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
)
from pandanode.core.schema import (
    BLOB_V1,
    FieldType,
    Schema,
    SchemaId,
    typed_fields,
    validate_operation,
)
from pandanode.services.query.blobs import (
    InvalidBlobError,
    assemble_blob,
    blob_piece_views,
    is_blob,
)
from pandanode.services.query.ingested import POSITIONS_PER_MESSAGE, IngestedEvent
from pandanode.services.query.model import ChangeKind, MaterializedDocument, TypedValue
from pandanode.services.query.store import StoredOperation, decode_view, encode_view
from pandanode.services.query.views import (
    affected_documents,
    build_view,
    change_kind,
    create_view,
    fold_into_view,
    linear_extension,
    pinned_view_ids,
)
from pandanode.services.runtime.events import operations_ingested
from pandanode.services.runtime.settings import Settings, SettingsError
from tests.core.test_document import PANDA, SCHEMA, random_documents

OP_IDS = st.binary(min_size=32, max_size=32).map(lambda raw: "0020" + raw.hex())
VIEW_IDS = st.lists(OP_IDS, min_size=1, max_size=3, unique=True).map(lambda ids: tuple(sorted(ids)))
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.binary(min_size=8, max_size=8).map(
    lambda raw: float(struct.unpack(">d", raw)[0])
)
TYPED_VALUES: st.SearchStrategy[TypedValue] = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    FLOATS,
    st.text(),
    st.binary(),
    OP_IDS.map(Relation),
    st.lists(OP_IDS, max_size=4).map(RelationList),
    VIEW_IDS.map(PinnedRelation),
    st.lists(VIEW_IDS, max_size=3).map(PinnedRelationList),
)


def _same_value(a: TypedValue, b: TypedValue) -> bool:
    """Equality that tells floats apart by their bits (NaN payloads, -0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return type(a) is type(b) and a == b


@given(
    fields=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), TYPED_VALUES),
    document_id=OP_IDS,
    view_id=VIEW_IDS,
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_view_codec_round_trips_every_typed_value_exactly(
    fields: dict[str, TypedValue],
    document_id: str,
    view_id: tuple[str, ...],
    flags: tuple[bool, bool, bool],
) -> None:
    document = MaterializedDocument(
        document_id=document_id,
        view_id="_".join(view_id),
        schema_id="event_" + "_".join(view_id),
        owner=KeyPair().public_key(),
        edited=flags[0],
        deleted=flags[1],
        fields=dict(sorted(fields.items())),
        appendable=flags[2],
    )
    encoded = encode_view(document)
    assert encoded == cbor.dumps(cbor.loads(encoded))  # exactly as our own CBOR writer writes
    decoded = decode_view(encoded)
    assert list(decoded.fields) == list(document.fields)
    for name, value in document.fields.items():
        assert _same_value(decoded.fields[name], value), name
    assert decoded == dataclasses.replace(document, fields=decoded.fields)  # floats: see above


def test_view_codec_keeps_nan_payloads_and_negative_zero() -> None:
    quiet_nan_with_payload = struct.unpack(">d", bytes.fromhex("7ff8000000000123"))[0]
    document = MaterializedDocument(
        document_id="0020" + "11" * 32,
        view_id="0020" + "11" * 32,
        schema_id="blob_v1",
        owner="22" * 32,
        edited=False,
        deleted=False,
        fields={"a": quiet_nan_with_payload, "b": -0.0, "c": math.inf},
    )
    fields = decode_view(encode_view(document)).fields
    nan, zero = fields["a"], fields["b"]
    assert isinstance(nan, float) and isinstance(zero, float)
    assert struct.pack(">d", nan).hex() == "7ff8000000000123"
    assert math.copysign(1.0, zero) == -1.0
    assert fields["c"] == math.inf


ALL_TYPES = Schema(
    SchemaId.application("everything", "0020" + "ab" * 32),
    "every field type",
    {
        "b": FieldType("bool"),
        "by": FieldType("bytes"),
        "f": FieldType("float"),
        "i": FieldType("int"),
        "pr": FieldType("pinned_relation", SchemaId.system("blob")),
        "prl": FieldType("pinned_relation_list", SchemaId.system("blob")),
        "r": FieldType("relation", SchemaId.system("blob")),
        "rl": FieldType("relation_list", SchemaId.system("blob")),
        "s": FieldType("str"),
    },
)
A, B, C, D = ("0020" + c * 64 for c in "abcd")


def test_typed_fields_gives_what_validate_operation_gives() -> None:
    values: dict[str, TypedValue] = {
        "b": True,
        "by": b"\x00\x01",
        "f": -0.0,
        "i": -(2**63),
        "pr": PinnedRelation([A, B]),
        "prl": PinnedRelationList([[A], [B, C]]),
        "r": Relation(C),
        "rl": RelationList([C, A, C]),
        "s": "しろくま",
    }
    operation = decode_operation(encode_operation(schema_id=str(ALL_TYPES.id), fields=values))
    assert operation.fields is not None
    expected = validate_operation(operation, ALL_TYPES)
    assert typed_fields(operation.fields, ALL_TYPES) == expected
    # A subset is fine (a view keeps every field, an UPDATE gives some).
    assert typed_fields({"s": "x"}, ALL_TYPES) == {"s": "x"}
    with pytest.raises(SchemaError) as unexpected:
        typed_fields({"zzz": 1}, ALL_TYPES)
    assert unexpected.value.reason == Reason.UNEXPECTED_FIELD
    with pytest.raises(SchemaError) as mismatch:
        typed_fields({"i": "1"}, ALL_TYPES)
    assert mismatch.value.reason == Reason.FIELD_TYPE_MISMATCH


def test_pinned_view_ids_lists_each_pinned_view_once_in_field_order() -> None:
    fields: dict[str, TypedValue] = {
        "a": PinnedRelation([A, B]),
        "b": PinnedRelationList([[C], [A, B], [C]]),
        "c": Relation(A),
        "d": RelationList([B]),
    }
    assert pinned_view_ids(fields) == [f"{A}_{B}", C]
    assert pinned_view_ids({}) == []


def _document(view_id: str, *, deleted: bool = False) -> MaterializedDocument:
    return MaterializedDocument(A, view_id, "blob_v1", "22" * 32, edited=False, deleted=deleted)


def test_change_kind_says_created_updated_deleted_or_nothing() -> None:
    assert change_kind(None, _document(A)) == ChangeKind.CREATED
    assert change_kind(_document(A), _document(B)) == ChangeKind.UPDATED
    assert change_kind(_document(A), _document(B, deleted=True)) == ChangeKind.DELETED
    assert change_kind(None, _document(B, deleted=True)) == ChangeKind.DELETED
    assert change_kind(_document(A), _document(A)) is None


def _signed_event(sequence: int, document_id: str | None = None) -> IngestedEvent:
    key_pair = KeyPair()
    operation = encode_operation(
        schema_id="schema_field_definition_v1", fields={"name": "a", "type": "str"}
    )
    entry = sign_and_encode_entry(operation, key_pair, log_id=0, seq_num=1)
    op_id = generate_hash(entry)
    stored = StoredOperation(
        op_id, key_pair.public_key(), 0, 1, document_id or op_id, "x", operation
    )
    return IngestedEvent(sequence, stored, entry, stored.decode())


def test_affected_documents_keeps_first_order_and_last_sequence() -> None:
    first, second = _signed_event(1), _signed_event(2)
    again = _signed_event(3, first.operation.document_id)
    assert affected_documents([first, second, again]) == {
        first.operation.document_id: 3,
        second.operation.document_id: 2,
    }


def test_ingested_event_parses_the_announced_payload() -> None:
    from pandanode.events.v1.events_pb2 import IngestedOperation

    event = _signed_event(1)
    stored = event.operation
    announced = IngestedOperation(
        entry=event.entry,
        operation=stored.operation,
        operation_id=stored.operation_id,
        document_id=stored.document_id,
        schema_id=stored.schema_id,
        public_key=stored.public_key,
        log_id=stored.log_id,
        seq_num=stored.seq_num,
        sequence=99,
    )
    assert IngestedEvent.parse(7, announced) == IngestedEvent(7, stored, event.entry, event.decoded)

    broken = IngestedOperation()
    broken.CopyFrom(announced)
    broken.document_id = "not hex"
    with pytest.raises(ValueError, match="document_id"):
        IngestedEvent.parse(8, broken)
    broken.document_id, broken.operation = stored.document_id, b"\x80"
    with pytest.raises(PandanodeError):
        IngestedEvent.parse(9, broken)


def test_a_message_gives_its_operations_in_order_at_increasing_positions() -> None:
    from pandanode.events.v1.events_pb2 import IngestedOperation

    events = [_signed_event(1), _signed_event(2), _signed_event(3)]
    announced = [
        IngestedOperation(
            entry=e.entry,
            operation=e.operation.operation,
            operation_id=e.operation.operation_id,
            document_id=e.operation.document_id,
            schema_id=e.operation.schema_id,
            public_key=e.operation.public_key,
            log_id=e.operation.log_id,
            seq_num=e.operation.seq_num,
            sequence=index + 1,
        )
        for index, e in enumerate(events)
    ]
    announced[1].document_id = "not hex"  # left out, the rest still applies
    (message,) = operations_ingested(announced, 1 << 20)

    parsed = IngestedEvent.parse_message(5, message.payload)

    assert [e.operation.operation_id for e in parsed] == [
        events[0].operation.operation_id,
        events[2].operation.operation_id,
    ]
    assert [e.sequence for e in parsed] == [
        5 * POSITIONS_PER_MESSAGE,
        5 * POSITIONS_PER_MESSAGE + 2,
    ]
    later = IngestedEvent.parse_message(6, message.payload)
    assert later[0].sequence > parsed[-1].sequence
    with pytest.raises(ValueError, match="not OperationsIngested"):
        IngestedEvent.parse_message(7, b"\x0a\x03not a message")


def test_malformed_operations_in_a_message_are_logged_as_one_line_without_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pandanode.events.v1.events_pb2 import IngestedOperation
    from pandanode.services.query import ingested
    from pandanode.services.runtime.guard import RateLimitedLog

    monkeypatch.setattr(ingested, "_MALFORMED", RateLimitedLog(ingested.log))
    forged = [
        IngestedOperation(operation_id="x" * 10_000, document_id="y", public_key="z")
        for _ in range(50)
    ]
    (message,) = operations_ingested(forged, 1 << 20)
    with caplog.at_level("WARNING", logger=ingested.log.name):
        assert IngestedEvent.parse_message(3, message.payload) == []
        assert IngestedEvent.parse_message(4, message.payload) == []
    [record] = [r for r in caplog.records if r.name == ingested.log.name]
    assert record.exc_info is None
    assert len(record.getMessage()) < 300


def test_build_view_is_materialize_with_typed_fields() -> None:
    key_pair = KeyPair()
    schema_id = str(ALL_TYPES.id)
    create_fields: dict[str, TypedValue] = {
        "b": False,
        "by": b"",
        "f": 1.5,
        "i": 1,
        "pr": PinnedRelation([A]),
        "prl": PinnedRelationList([]),
        "r": Relation(B),
        "rl": RelationList([]),
        "s": "a",
    }
    create_bytes = encode_operation(schema_id=schema_id, fields=create_fields)
    create_entry = sign_and_encode_entry(create_bytes, key_pair, log_id=0, seq_num=1)
    create_id = generate_hash(create_entry)
    update_bytes = encode_operation(
        action="update", schema_id=schema_id, previous=[create_id], fields={"s": "b"}
    )
    update_entry = sign_and_encode_entry(
        update_bytes, key_pair, log_id=0, seq_num=2, backlink=create_id
    )
    operations = [
        DocumentOperation(create_id, key_pair.public_key(), decode_operation(create_bytes)),
        DocumentOperation(
            generate_hash(update_entry), key_pair.public_key(), decode_operation(update_bytes)
        ),
    ]
    current = build_view(operations, ALL_TYPES)
    reference = materialize(operations)
    assert current.view_id == str(reference.view_id)
    assert (current.edited, current.deleted, current.owner) == (True, False, key_pair.public_key())
    assert current.fields == {**create_fields, "s": "b"}
    assert current.appendable  # a line: the next update can be folded in
    first = build_view(operations, ALL_TYPES, create_id)
    assert first.fields == create_fields and first.view_id == create_id and not first.edited
    with pytest.raises(DocumentError):
        build_view(operations[1:], ALL_TYPES)
    assert create_view(operations[0], ALL_TYPES) == build_view(operations[:1], ALL_TYPES)
    with pytest.raises(ValueError, match="not a CREATE"):
        create_view(operations[1], ALL_TYPES)


@given(
    st.dictionaries(st.sampled_from("abc"), st.integers(-(2**63), 2**63 - 1)),
    st.sampled_from([PANDA, "33" * 32]),
    OP_IDS,
)
def test_a_create_alone_gives_the_view_build_view_gives(
    fields: dict[str, int], author: str, create_id: str
) -> None:
    create = DocumentOperation(
        create_id, author, Operation(1, "create", SCHEMA, None, dict(sorted(fields.items())))
    )
    assert create_view(create, VENUE) == build_view([create], VENUE)


def _blob(length: int, pieces: list[list[str]], *, deleted: bool = False) -> MaterializedDocument:
    fields: dict[str, TypedValue] = {
        "length": length,
        "mime_type": "text/plain",
        "pieces": PinnedRelationList(pieces),
    }
    return MaterializedDocument(
        A, A, str(BLOB_V1.id), "22" * 32, False, deleted, {} if deleted else fields
    )


def _piece(view_id: str, data: bytes, schema_id: str = "blob_piece_v1") -> MaterializedDocument:
    return MaterializedDocument(
        view_id, view_id, schema_id, "22" * 32, False, False, {"data": data}
    )


def test_assemble_blob_concatenates_in_list_order_and_checks_the_length() -> None:
    blob = _blob(7, [[B], [C], [B]])
    assert is_blob(blob) and blob_piece_views(blob) == [B, C, B]
    assembled = assemble_blob(blob, [_piece(B, b"ab"), _piece(C, b"cde"), _piece(B, b"ab")])
    assert (assembled.mime_type, assembled.length) == ("text/plain", 7)
    assert b"".join(assembled.chunks) == b"abcdeab"
    empty = assemble_blob(_blob(0, []), [])
    assert empty.chunks == [] and empty.length == 0


@pytest.mark.parametrize(
    ("blob", "pieces", "problem"),
    [
        (_blob(3, [[B]]), [_piece(B, b"ab")], "claims 3 bytes, its pieces hold 2"),
        (_blob(2, [[B], [C]]), [_piece(B, b"ab")], "lists 2 pieces, 1 were given"),
        (_blob(2, [[B]]), [_piece(B, b"ab", "blob_v1")], "not a blob_piece_v1 view"),
        (_blob(0, [], deleted=True), [], "is not a blob_v1 view"),
    ],
)
def test_assemble_blob_refuses_pieces_that_do_not_make_the_file(
    blob: MaterializedDocument, pieces: list[MaterializedDocument], problem: str
) -> None:
    with pytest.raises(InvalidBlobError, match=problem):
        assemble_blob(blob, pieces)


def test_the_durable_consumer_name_is_a_setting_jetstream_accepts() -> None:
    assert Settings().query_durable == "query"
    assert Settings.load({}, env={"PANDANODE_QUERY_DURABLE": "query-2"}).query_durable == "query-2"
    for bad in ("", "a.b", "a b", "a>", "x" * 65):
        with pytest.raises(SettingsError, match="query_durable"):
            Settings(query_durable=bad)


# -- folding a line of operations into a stored view ---------------------------------------

VENUE = Schema(
    SchemaId.application("venue", "0020" + "c6" * 32),
    "the schema of tests.core.test_document's random documents",
    {"a": FieldType("int"), "b": FieldType("int"), "c": FieldType("int")},
)


def _line_from(
    start: str, ids: list[str], writes: list[dict[str, int]], delete: bool
) -> list[DocumentOperation]:
    line: list[DocumentOperation] = []
    tip = start
    for index, (op_id, fields) in enumerate(zip(ids, writes, strict=True)):
        last_delete = delete and index == len(ids) - 1
        operation = Operation(
            1,
            "delete" if last_delete else "update",
            SCHEMA,
            (tip,),
            None if last_delete else fields,
        )
        line.append(DocumentOperation(op_id, PANDA, operation))
        tip = op_id
    return line


@settings(max_examples=300, deadline=None)
@given(random_documents(), st.data())
def test_folding_new_operations_into_a_view_equals_rebuilding_it_from_all(
    ops: list[DocumentOperation], data: st.DataObject
) -> None:
    assert str(VENUE.id) == SCHEMA
    length = data.draw(st.integers(0, 4))
    known = {op.id for op in ops}
    ids = data.draw(
        st.lists(OP_IDS.filter(lambda i: i not in known), min_size=length, max_size=length)
    )
    if len(set(ids)) != len(ids):
        return
    writes = data.draw(
        st.lists(
            st.dictionaries(st.sampled_from("abc"), st.integers(-5, 5)),
            min_size=length,
            max_size=length,
        )
    )
    start = data.draw(st.sampled_from([op.id for op in ops]))
    grown = ops + _line_from(start, ids, writes, data.draw(st.booleans()))
    split = data.draw(st.integers(1, len(grown)))
    try:
        view = build_view(grown[:split], VENUE)
    except DocumentError:
        return
    rest = data.draw(st.permutations(grown[split:]))
    line = linear_extension(view, rest)
    if line is None:
        return
    event("folded")
    assert sorted(op.id for op in line) == sorted(op.id for op in rest)
    assert fold_into_view(view, line, VENUE) == build_view(grown, VENUE)


def test_linear_extension_orders_a_shuffled_line_from_the_tip() -> None:
    create = DocumentOperation(A, PANDA, Operation(1, "create", SCHEMA, None, {"a": 0}))
    line = _line_from(A, [B, C, D], [{"a": 1}, {"b": 2}, {}], delete=True)
    view = build_view([create], VENUE)
    assert view.appendable
    ordered = linear_extension(view, [line[2], line[0], line[1]])
    assert ordered == line
    folded = fold_into_view(view, line[:2], VENUE)
    assert folded.fields == {"a": 1, "b": 2} and folded.view_id == C and folded.edited
    assert fold_into_view(view, line, VENUE).deleted


def test_linear_extension_refuses_a_fork_a_gap_and_a_view_that_is_not_appendable() -> None:
    create = DocumentOperation(A, PANDA, Operation(1, "create", SCHEMA, None, {"a": 0}))
    view = build_view([create], VENUE)
    first, second = _line_from(A, [B], [{"a": 1}], False), _line_from(A, [C], [{"a": 2}], False)
    assert linear_extension(view, first + second) is None  # two operations on one tip
    assert linear_extension(view, _line_from(B, [C], [{"a": 1}], False)) is None  # a gap
    assert linear_extension(dataclasses.replace(view, appendable=False), first) is None

"""Every rejection path of spec §4.3: the right gRPC code and ErrorInfo reason, nothing stored,
nothing announced, and the service keeps serving afterwards (see ``assert_rejected``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from nats.js import JetStreamContext

from pandanode.core import Relation
from pandanode.core.operation import FieldValue
from pandanode.ingest.v1 import ingest_pb2 as pb

from .helpers import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    Author,
    Signed,
    assert_rejected,
    create_operation,
    delete_operation,
    publish,
    publish_schema,
    sign_raw,
    update_operation,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED = grpc.StatusCode.FAILED_PRECONDITION
UNKNOWN_ID = "0020" + "ab" * 32


def field_definition(name: str = "title", field_type: str = "str") -> bytes:
    return create_operation(FIELD_DEFINITION, {"name": name, "type": field_type})


def rename(previous: str, name: str) -> bytes:
    return update_operation(FIELD_DEFINITION, [previous], {"name": name})


async def write_log(ingest: IngestServiceAsyncStub, author: Author, length: int) -> list[Signed]:
    """One document of ``author`` with ``length`` entries (a CREATE, then UPDATEs)."""
    first = author.create(FIELD_DEFINITION, {"name": "field", "type": "str"})
    await publish(ingest, first)
    log = [first]
    for index in range(1, length):
        signed = author.write(rename(log[-1].hash, f"name{index}"), first.hash)
        await publish(ingest, signed)
        log.append(signed)
    return log


# -- bytes that do not decode: INVALID_ARGUMENT -------------------------------------------------


async def test_publish_rejects_an_empty_request(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    await assert_rejected(ingest, js, pb.PublishRequest(), INVALID, "INVALID_CBOR")


async def test_publish_rejects_entry_bytes_too_short_for_an_entry(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    request = pb.PublishRequest(entry=signed.entry[:20], operation=signed.operation)
    await assert_rejected(ingest, js, request, INVALID, "ENTRY_TOO_SHORT")


async def test_publish_rejects_entry_cut_off_inside_its_payload_hash(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    request = pb.PublishRequest(entry=signed.entry[:50], operation=signed.operation)
    await assert_rejected(ingest, js, request, INVALID, "INVALID_HASH")


async def test_publish_rejects_entry_with_non_canonical_varu64_log_id(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    operation = field_definition()
    entry = sign_raw(author.key_pair, operation, log_id=b"\xf8\x05")
    request = pb.PublishRequest(entry=entry, operation=operation)
    await assert_rejected(ingest, js, request, INVALID, "NON_CANONICAL_VARU64")


async def test_publish_rejects_entry_with_seq_num_zero(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    operation = field_definition()
    entry = sign_raw(author.key_pair, operation, seq_num=b"\x00")
    request = pb.PublishRequest(entry=entry, operation=operation)
    await assert_rejected(ingest, js, request, INVALID, "INVALID_SEQ_NUM")


async def test_publish_rejects_entry_whose_skiplink_equals_its_backlink(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    log = await write_log(ingest, author, 3)
    operation = rename(log[-1].hash, "fourth")
    link = log[-1].hash
    entry = sign_raw(author.key_pair, operation, seq_num=b"\x04", links=[link, link])
    request = pb.PublishRequest(entry=entry, operation=operation)
    await assert_rejected(ingest, js, request, INVALID, "INVALID_LINKS")


async def test_publish_rejects_entry_with_a_changed_signature(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    entry = bytearray(signed.entry)
    entry[-1] ^= 0x01
    request = pb.PublishRequest(entry=bytes(entry), operation=signed.operation)
    await assert_rejected(ingest, js, request, INVALID, "INVALID_SIGNATURE")


async def test_publish_rejects_entry_signed_by_another_key_than_its_public_key(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    impostor = Author().public_key
    entry = signed.entry[:1] + bytes.fromhex(impostor) + signed.entry[33:]
    request = pb.PublishRequest(entry=entry, operation=signed.operation)
    await assert_rejected(ingest, js, request, INVALID, "INVALID_SIGNATURE")


async def test_publish_rejects_entry_with_bytes_after_its_signature(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    request = pb.PublishRequest(entry=signed.entry + b"\x00", operation=signed.operation)
    await assert_rejected(ingest, js, request, INVALID, "INVALID_SIGNATURE")


async def test_publish_rejects_operation_that_is_not_a_cbor_array(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().sign_next(b"\xa0")  # an empty map, correctly signed
    await assert_rejected(ingest, js, signed, INVALID, "INVALID_OPERATION")


async def test_publish_rejects_operation_with_truncated_cbor(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().sign_next(field_definition()[:-3])
    await assert_rejected(ingest, js, signed, INVALID, "INVALID_CBOR")


async def test_publish_rejects_operation_of_an_unsupported_version(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    operation = field_definition()
    assert operation[:2] == b"\x84\x01"
    signed = Author().sign_next(b"\x84\x02" + operation[2:])
    await assert_rejected(ingest, js, signed, INVALID, "UNSUPPORTED_VERSION")


async def test_publish_rejects_operation_whose_field_names_are_not_sorted(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    operation = field_definition()
    swapped = operation.replace(
        b"\xa2dnameetitledtypecstr", b"\xa2dtypecstrdnameetitle"
    )  # {type, name}: out of byte-wise order
    assert swapped != operation
    signed = Author().sign_next(swapped)
    await assert_rejected(ingest, js, signed, INVALID, "UNSORTED_FIELDS")


async def test_publish_rejects_operation_whose_schema_id_does_not_parse(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    operation = create_operation(f"ab_{UNKNOWN_ID}", {"title": "x"})
    unparsable = operation.replace(b"ab_", b"1b_")  # a schema name starts with a letter
    signed = Author().sign_next(unparsable)
    await assert_rejected(ingest, js, signed, INVALID, "INVALID_SCHEMA_ID")


# -- size limits ---------------------------------------------------------------------------------


async def test_publish_rejects_entry_over_the_entry_size_limit(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    request = pb.PublishRequest(entry=signed.entry + bytes(2048), operation=signed.operation)
    await assert_rejected(ingest, js, request, INVALID, "LIMIT_EXCEEDED")


async def test_publish_rejects_operation_over_the_operation_size_limit(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create("blob_piece_v1", {"data": bytes(300_000)})
    await assert_rejected(ingest, js, signed, INVALID, "LIMIT_EXCEEDED")


async def test_publish_accepts_a_blob_piece_of_the_maximum_size(
    ingest: IngestServiceAsyncStub,
) -> None:
    # The default operation limit leaves room for a full blob piece (256 000 bytes of data).
    signed = Author().create("blob_piece_v1", {"data": bytes(256_000)})
    response = await publish(ingest, signed)
    assert response.operation_id == signed.hash


# -- log integrity: FAILED_PRECONDITION ----------------------------------------------------------


async def test_publish_rejects_entry_that_skips_a_seq_num(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    (first,) = await write_log(ingest, author, 1)
    gap = author.sign_at(rename(first.hash, "gap"), log_id=0, seq_num=3, backlink=first.hash)
    await assert_rejected(ingest, js, gap, FAILED, "SEQ_NUM_MISMATCH")


async def test_publish_rejects_a_create_at_seq_num_1_of_a_log_in_use(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    await write_log(ingest, author, 2)
    other_create = author.sign_at(field_definition("other"), log_id=0, seq_num=1)
    await assert_rejected(ingest, js, other_create, FAILED, "SEQ_NUM_MISMATCH")


async def test_publish_rejects_a_new_log_that_does_not_start_at_seq_num_1(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    signed = author.sign_at(field_definition(), log_id=0, seq_num=2, backlink=UNKNOWN_ID)
    await assert_rejected(ingest, js, signed, FAILED, "SEQ_NUM_MISMATCH")


async def test_publish_rejects_entry_whose_backlink_is_not_the_previous_entry(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    (first,) = await write_log(ingest, author, 1)
    other = author.create(FIELD_DEFINITION, {"name": "other", "type": "int"})
    await publish(ingest, other)
    wrong = author.sign_at(rename(first.hash, "next"), log_id=0, seq_num=2, backlink=other.hash)
    await assert_rejected(ingest, js, wrong, FAILED, "BACKLINK_MISMATCH")


async def test_publish_rejects_entry_whose_skiplink_is_not_the_lipmaa_entry(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    log = await write_log(ingest, author, 3)
    # lipmaa(4) = 1: the skiplink must be the hash of entry 1, not of entry 2.
    wrong = author.sign_at(
        rename(log[2].hash, "fourth"),
        log_id=0,
        seq_num=4,
        backlink=log[2].hash,
        skiplink=log[1].hash,
    )
    await assert_rejected(ingest, js, wrong, FAILED, "SKIPLINK_MISMATCH")
    right = author.sign_next(rename(log[2].hash, "fourth"), log[0].hash)
    assert (await publish(ingest, right)).next_args.seq_num == 5


async def test_publish_rejects_operation_whose_hash_is_not_the_entry_payload_hash(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    same_size = field_definition("tithe")
    assert len(same_size) == len(signed.operation)
    request = pb.PublishRequest(entry=signed.entry, operation=same_size)
    await assert_rejected(ingest, js, request, FAILED, "PAYLOAD_HASH_MISMATCH")


async def test_publish_rejects_operation_whose_size_is_not_the_entry_payload_size(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    request = pb.PublishRequest(entry=signed.entry, operation=field_definition("headline"))
    await assert_rejected(ingest, js, request, FAILED, "PAYLOAD_SIZE_MISMATCH")


# -- operations against their schema -------------------------------------------------------------


async def test_publish_rejects_operations_that_do_not_fit_their_application_schema(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    schema_id = await publish_schema(
        ingest, author, "event", {"title": "str", "guests": "int", "venue": "relation(blob_v1)"}
    )
    valid: dict[str, FieldValue] = {"guests": 3, "title": "Party", "venue": Relation(UNKNOWN_ID)}
    missing = author.sign_next(create_operation(schema_id, {"guests": 3, "title": "Party"}))
    await assert_rejected(ingest, js, missing, FAILED, "MISSING_FIELD")
    surplus = author.sign_next(create_operation(schema_id, {**valid, "zebra": True}))
    await assert_rejected(ingest, js, surplus, FAILED, "UNEXPECTED_FIELD")
    wrong_type = author.sign_next(create_operation(schema_id, {**valid, "guests": "three"}))
    await assert_rejected(ingest, js, wrong_type, FAILED, "FIELD_TYPE_MISMATCH")
    not_a_relation = author.sign_next(create_operation(schema_id, {**valid, "venue": "x"}))
    await assert_rejected(ingest, js, not_a_relation, FAILED, "FIELD_TYPE_MISMATCH")
    created = author.create(schema_id, valid)
    await publish(ingest, created)
    unknown_in_update = author.sign_next(
        update_operation(schema_id, [created.hash], {"colour": "red"}), created.hash
    )
    await assert_rejected(ingest, js, unknown_in_update, FAILED, "UNEXPECTED_FIELD")


async def test_publish_rejects_a_field_definition_with_an_unknown_field_type(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().sign_next(field_definition("title", "nonsense"))
    await assert_rejected(ingest, js, signed, FAILED, "INVALID_SYSTEM_FIELD")


# -- documents -----------------------------------------------------------------------------------


async def test_publish_rejects_update_whose_previous_operation_is_unknown(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().sign_next(rename(UNKNOWN_ID, "orphan"))
    await assert_rejected(ingest, js, signed, FAILED, "PREVIOUS_NOT_FOUND")


async def test_publish_rejects_update_claiming_another_schema_than_its_previous(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    (field_doc,) = await write_log(ingest, author, 1)
    # Fits schema_definition_v1 (an UPDATE may give any subset of fields), but the document
    # it updates is a schema_field_definition_v1 document.
    operation = update_operation(SCHEMA_DEFINITION, [field_doc.hash], {"name": "renamed"})
    signed = author.sign_next(operation, field_doc.hash)
    await assert_rejected(ingest, js, signed, FAILED, "INVALID_CLAIMED_SCHEMA")


async def test_publish_rejects_update_whose_previous_span_two_documents(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    one = author.create(FIELD_DEFINITION, {"name": "one", "type": "str"})
    two = author.create(FIELD_DEFINITION, {"name": "two", "type": "str"})
    await publish(ingest, one)
    await publish(ingest, two)
    operation = update_operation(FIELD_DEFINITION, [one.hash, two.hash], {"name": "both"})
    signed = Author().sign_next(operation)
    await assert_rejected(ingest, js, signed, FAILED, "MULTIPLE_DOCUMENTS")


async def test_publish_rejects_any_operation_on_a_deleted_document(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    (created,) = await write_log(ingest, author, 1)
    deleted = author.delete(FIELD_DEFINITION, created.hash, [created.hash])
    await publish(ingest, deleted)
    update = author.sign_next(rename(deleted.hash, "zombie"), created.hash)
    await assert_rejected(ingest, js, update, FAILED, "DOCUMENT_DELETED")
    stale_update = Author().sign_next(rename(created.hash, "zombie"))
    await assert_rejected(ingest, js, stale_update, FAILED, "DOCUMENT_DELETED")
    second_delete = author.sign_next(
        delete_operation(FIELD_DEFINITION, [deleted.hash]), created.hash
    )
    await assert_rejected(ingest, js, second_delete, FAILED, "DOCUMENT_DELETED")


# -- one log per author and document -------------------------------------------------------------


async def test_publish_rejects_update_into_another_log_than_the_authors_log_for_the_document(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    document = author.create(FIELD_DEFINITION, {"name": "document", "type": "str"})
    other = author.create(FIELD_DEFINITION, {"name": "other", "type": "str"})
    await publish(ingest, document)
    await publish(ingest, other)
    operation = rename(document.hash, "moved")
    # Appended validly to the author's log 1 (which holds another document) …
    in_other_log = author.sign_next(operation, other.hash)
    assert (in_other_log.log_id, in_other_log.seq_num) == (1, 2)
    await assert_rejected(ingest, js, in_other_log, FAILED, "LOG_ID_MISMATCH")
    # … or as the start of a new log 2.
    in_new_log = author.sign_next(operation)
    assert (in_new_log.log_id, in_new_log.seq_num) == (2, 1)
    await assert_rejected(ingest, js, in_new_log, FAILED, "LOG_ID_MISMATCH")


async def test_publish_rejects_create_that_does_not_start_a_new_log(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    (first,) = await write_log(ingest, author, 1)
    create_in_log = author.sign_next(field_definition("second"), first.hash)
    assert (create_in_log.log_id, create_in_log.seq_num) == (0, 2)
    await assert_rejected(ingest, js, create_in_log, FAILED, "LOG_NOT_FOUND")


async def test_publish_rejects_first_update_of_an_author_that_does_not_start_a_new_log(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    owner, newcomer = Author(), Author()
    (document,) = await write_log(ingest, owner, 1)
    (own_first,) = await write_log(ingest, newcomer, 1)
    # The newcomer appends its first operation on `document` to its existing log 0.
    signed = newcomer.sign_next(rename(document.hash, "hijack"), own_first.hash)
    assert (signed.log_id, signed.seq_num) == (0, 2)
    await assert_rejected(ingest, js, signed, FAILED, "LOG_NOT_FOUND")

"""The pure publish rules (spec §4.2, §4.3 steps 3–10), without a node or a store."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pandanode.core.entry import decode_entry, sign_and_encode_entry
from pandanode.core.errors import DocumentError, LogIntegrityError, NotFoundError, Reason
from pandanode.core.errors import SchemaError as CoreSchemaError
from pandanode.core.ids import DocumentViewId
from pandanode.core.keypair import KeyPair
from pandanode.core.lipmaa import lipmaa
from pandanode.core.operation import decode_operation, encode_operation
from pandanode.core.publish import (
    LogTip,
    OperationRef,
    PublishResult,
    PublishState,
    next_args,
    next_args_in_log,
    seq_nums_needed,
    validate_publish,
)
from pandanode.core.schema import (
    SCHEMA_FIELD_DEFINITION_V1_ID,
    SYSTEM_SCHEMAS,
    Schema,
    parse_schema_id,
)
from pandanode.core.varu64 import MAX_U64

FIELD_DEFINITION: Schema = SYSTEM_SCHEMAS[parse_schema_id(SCHEMA_FIELD_DEFINITION_V1_ID)]


def _fields(name: str = "title") -> dict[str, str]:
    return {"name": name, "type": "str"}


@dataclass
class Log:
    """One author's log, signed in memory; records what a store would know."""

    key_pair: KeyPair = field(default_factory=KeyPair)
    log_id: int = 0
    hashes: dict[int, str] = field(default_factory=dict)

    def sign(
        self,
        operation: bytes,
        seq_num: int,
        *,
        backlink: str | None = None,
        skiplink: str | None = None,
    ) -> bytes:
        if seq_num > 1:
            backlink = backlink or self.hashes[seq_num - 1]
            skiplink = skiplink or self.hashes.get(lipmaa(seq_num))
        return sign_and_encode_entry(
            operation,
            self.key_pair,
            log_id=self.log_id,
            seq_num=seq_num,
            backlink=backlink,
            skiplink=skiplink,
        )

    def state(self, seq_num: int, **overrides: object) -> PublishState:
        values: dict[str, object] = {
            "latest_seq_num": max(self.hashes) if self.hashes else None,
            "log_hashes": {s: self.hashes[s] for s in seq_nums_needed(seq_num) if s in self.hashes},
        }
        values.update(overrides)
        return PublishState(**values)  # type: ignore[arg-type]

    def publish(self, operation: bytes, seq_num: int, **state: object) -> PublishResult:
        entry_bytes = self.sign(operation, seq_num)
        result = _validate(entry_bytes, operation, self.state(seq_num, **state))
        self.hashes[seq_num] = result.operation_id
        return result


def _validate(entry_bytes: bytes, operation: bytes, state: PublishState) -> PublishResult:
    return validate_publish(
        decode_entry(entry_bytes), operation, decode_operation(operation), FIELD_DEFINITION, state
    )


def _update(previous: str, name: str = "renamed") -> bytes:
    return encode_operation(
        action="update",
        schema_id=SCHEMA_FIELD_DEFINITION_V1_ID,
        previous=[previous],
        fields={"name": name},
    )


def _create() -> bytes:
    return encode_operation(schema_id=SCHEMA_FIELD_DEFINITION_V1_ID, fields=_fields())


def _ref(document_id: str) -> OperationRef:
    return OperationRef(document_id, SCHEMA_FIELD_DEFINITION_V1_ID)


def test_publish_accepts_a_create_at_seq_1_of_a_new_log_and_names_the_document_by_its_hash() -> (
    None
):
    log = Log()
    result = log.publish(_create(), 1)
    assert result.document_id == result.operation_id
    assert (result.next_args.log_id, result.next_args.seq_num) == (0, 2)
    assert result.next_args.backlink == result.operation_id


def test_publish_accepts_updates_that_follow_their_log_with_backlinks_and_skiplinks() -> None:
    log = Log()
    document = log.publish(_create(), 1).document_id
    for seq_num in range(2, 10):
        result = log.publish(
            _update(log.hashes[seq_num - 1]),
            seq_num,
            previous={log.hashes[seq_num - 1]: _ref(document)},
            author_log_id=0,
        )
        assert result.document_id == document
    assert next_args_in_log(LogTip(0, 7, log.hashes)).skiplink == log.hashes[lipmaa(8)]
    assert next_args_in_log(LogTip(0, 9, log.hashes)).skiplink is None  # 10 needs none


def test_publish_rejects_entry_whose_seq_num_does_not_follow_the_log() -> None:
    log = Log()
    log.publish(_create(), 1)
    with pytest.raises(LogIntegrityError) as raised:
        _validate(log.sign(_create(), 3, backlink=log.hashes[1]), _create(), log.state(3))
    assert raised.value.reason == Reason.SEQ_NUM_MISMATCH


def test_publish_rejects_entry_whose_backlink_is_not_the_previous_entry() -> None:
    log = Log()
    document = log.publish(_create(), 1).document_id
    other = Log(key_pair=log.key_pair)
    other.publish(encode_operation(schema_id=SCHEMA_FIELD_DEFINITION_V1_ID, fields=_fields("x")), 1)
    operation = _update(log.hashes[1])
    entry = log.sign(operation, 2, backlink=other.hashes[1])
    state = log.state(2, previous={log.hashes[1]: _ref(document)}, author_log_id=0)
    with pytest.raises(LogIntegrityError) as raised:
        _validate(entry, operation, state)
    assert raised.value.reason == Reason.BACKLINK_MISMATCH


def test_publish_rejects_entry_whose_skiplink_target_is_not_stored() -> None:
    log = Log()
    document = log.publish(_create(), 1).document_id
    for seq_num in range(2, 4):
        log.publish(
            _update(log.hashes[seq_num - 1]),
            seq_num,
            previous={log.hashes[seq_num - 1]: _ref(document)},
            author_log_id=0,
        )
    operation = _update(log.hashes[3])
    entry = log.sign(operation, 4)  # lipmaa(4) == 1: a skiplink is required
    state = log.state(
        4,
        log_hashes={3: log.hashes[3]},
        previous={log.hashes[3]: _ref(document)},
        author_log_id=0,
    )
    with pytest.raises(LogIntegrityError) as raised:
        _validate(entry, operation, state)
    assert raised.value.reason == Reason.SKIPLINK_MISSING


def test_publish_rejects_operation_bytes_the_entry_did_not_sign() -> None:
    log = Log()
    entry = log.sign(_create(), 1)
    other = encode_operation(schema_id=SCHEMA_FIELD_DEFINITION_V1_ID, fields=_fields("titel"))
    with pytest.raises(LogIntegrityError) as raised:
        _validate(entry, other, log.state(1))
    assert raised.value.reason == Reason.PAYLOAD_HASH_MISMATCH


def test_publish_rejects_an_update_whose_previous_operation_is_unknown() -> None:
    log = Log()
    log.publish(_create(), 1)
    operation = _update(log.hashes[1])
    with pytest.raises(NotFoundError) as raised:
        _validate(log.sign(operation, 2), operation, log.state(2))
    assert raised.value.reason == Reason.PREVIOUS_NOT_FOUND


def test_publish_rejects_an_update_claiming_another_schema_than_its_previous_operation() -> None:
    log = Log()
    document = log.publish(_create(), 1).document_id
    operation = _update(log.hashes[1])
    state = log.state(
        2,
        previous={log.hashes[1]: OperationRef(document, "schema_definition_v1")},
        author_log_id=0,
    )
    with pytest.raises(CoreSchemaError) as raised:
        _validate(log.sign(operation, 2), operation, state)
    assert raised.value.reason == Reason.INVALID_CLAIMED_SCHEMA


def test_publish_rejects_an_operation_on_a_deleted_document() -> None:
    log = Log()
    document = log.publish(_create(), 1).document_id
    operation = _update(log.hashes[1])
    state = log.state(
        2, previous={log.hashes[1]: _ref(document)}, author_log_id=0, document_deleted=True
    )
    with pytest.raises(DocumentError) as raised:
        _validate(log.sign(operation, 2), operation, state)
    assert raised.value.reason == Reason.DOCUMENT_DELETED


def test_publish_rejects_an_update_in_another_log_than_the_authors_log_of_the_document() -> None:
    log = Log()
    document = log.publish(_create(), 1).document_id
    second = Log(key_pair=log.key_pair, log_id=1)
    operation = _update(log.hashes[1])
    state = second.state(1, previous={log.hashes[1]: _ref(document)}, author_log_id=0)
    with pytest.raises(LogIntegrityError) as raised:
        _validate(second.sign(operation, 1), operation, state)
    assert raised.value.reason == Reason.LOG_ID_MISMATCH


def test_publish_rejects_a_first_operation_on_a_document_that_does_not_start_a_log() -> None:
    writer = Log()
    document = writer.publish(_create(), 1).document_id
    other = Log()
    other.publish(_create(), 1)
    operation = _update(writer.hashes[1])
    state = other.state(2, previous={writer.hashes[1]: _ref(document)})
    with pytest.raises(LogIntegrityError) as raised:
        _validate(other.sign(operation, 2), operation, state)
    assert raised.value.reason == Reason.LOG_NOT_FOUND


def test_next_args_for_a_new_document_take_the_next_free_log_id() -> None:
    assert next_args(max_log_id=None).log_id == 0
    assert next_args(max_log_id=6).log_id == 7
    with pytest.raises(LogIntegrityError) as raised:
        next_args(max_log_id=MAX_U64)
    assert raised.value.reason == Reason.MAX_LOG_ID_REACHED


def test_next_args_continue_the_authors_log_of_the_document() -> None:
    log = Log()
    document = log.publish(_create(), 1).document_id
    args = next_args(
        view_id=DocumentViewId.from_str(document),
        previous={document: _ref(document)},
        author_log=LogTip(0, 1, log.hashes),
        max_log_id=3,
    )
    assert (args.log_id, args.seq_num, args.backlink) == (0, 2, document)


def test_next_args_refuse_a_deleted_document_and_an_unknown_view() -> None:
    document = Log().publish(_create(), 1).document_id
    view = DocumentViewId.from_str(document)
    with pytest.raises(DocumentError):
        next_args(view_id=view, previous={document: _ref(document)}, document_deleted=True)
    with pytest.raises(NotFoundError):
        next_args(view_id=view, previous={})


def test_seq_nums_needed_name_the_links_of_the_entry_and_of_the_next_one() -> None:
    assert seq_nums_needed(1) == ()
    assert seq_nums_needed(2) == (1,)
    assert seq_nums_needed(4) == (1, 3)
    for seq_num in range(2, 300):
        needed = set(seq_nums_needed(seq_num))
        assert seq_num - 1 in needed
        assert all(0 < s < seq_num for s in needed)

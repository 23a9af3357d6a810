"""The query store's own rules: its format version, its decoded-operation cache budget."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from rocksdict import Options, Rdict

from pandanode.core import KeyPair, decode_entry, encode_operation, sign_and_encode_entry
from pandanode.core.document import DocumentOperation
from pandanode.core.operation import FieldValue, decode_operation
from pandanode.services.query.store import (
    FORMAT_VERSION,
    QueryStore,
    StoredOperation,
    decoded_size,
)


def test_a_query_store_of_another_format_is_wiped_to_be_rematerialized(tmp_path: Path) -> None:
    path = tmp_path / "query"
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    old = Rdict(str(path), options=options)
    old[b"C"] = struct.pack(">Q", 41)  # a checkpoint written by a store without a version
    old[b"D" + b"\x00" * 34] = b"an old view"
    old.close()

    store = QueryStore(path)
    try:
        assert store.checkpoint() == 0
        assert list(store.dump()) == [(b"Z", struct.pack(">I", FORMAT_VERSION))]
    finally:
        store.close()


def test_a_query_store_of_this_format_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "query"
    store = QueryStore(path)
    batch = store.begin()
    batch.set_checkpoint(7)
    store.commit(batch)
    store.close()

    store = QueryStore(path)
    try:
        assert store.checkpoint() == 7
    finally:
        store.close()


def _deep_size(value: object, seen: set[int] | None = None) -> int:
    """Memory of an object graph: ``sys.getsizeof`` over containers, slots and attributes."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        size += sum(_deep_size(item, seen) for item in value)
    elif not isinstance(value, str | bytes | int | float | bool | type(None)):
        for name in getattr(type(value), "__slots__", ()):
            if hasattr(value, name):
                size += _deep_size(getattr(value, name), seen)
        if hasattr(value, "__dict__"):
            size += _deep_size(vars(value), seen)
    return size


def _store_blob_pieces(store: QueryStore, count: int, size: int) -> list[str]:
    """Store ``count`` one-operation documents of ``size``-byte blob pieces; their ids."""
    key_pair = KeyPair()
    document_ids = []
    batch = store.begin()
    for log_id in range(count):
        operation = encode_operation(schema_id="blob_piece_v1", fields={"data": bytes(size)})
        entry = sign_and_encode_entry(operation, key_pair, log_id=log_id, seq_num=1)
        op_id = decode_entry(entry).hash
        stored = StoredOperation(
            op_id, key_pair.public_key(), log_id, 1, op_id, "blob_piece_v1", operation
        )
        batch.put_operation(stored, entry, stored.decode())
        document_ids.append(op_id)
    store.commit(batch)
    return document_ids


def test_the_decoded_operation_cache_stays_within_its_byte_budget_with_large_operations(
    tmp_path: Path,
) -> None:
    budget = 2 * 1024 * 1024
    store = QueryStore(tmp_path / "query", decoded_cache_bytes=budget)
    try:
        document_ids = _store_blob_pieces(store, count=40, size=200_000)
        for document_id in document_ids:
            (operation,) = store.document_operations(document_id)
            assert operation.id == document_id
            assert operation.operation.fields == {"data": bytes(200_000)}
            assert store.decoded_cache_bytes <= budget
        kept = [entry for entry, _ in store._decoded.values()]
        assert 5 <= len(kept) < len(document_ids)  # it caches, within the budget
        assert _deep_size(kept) <= budget  # the estimate does not undercount the memory
        # The most recently used are kept; reading an evicted one again still works.
        assert [operation.id for operation in kept] == document_ids[-len(kept) :]
        assert store.document_operations(document_ids[0])[0].id == document_ids[0]
        assert store.decoded_cache_bytes <= budget
    finally:
        store.close()


def test_decoded_size_is_close_to_the_memory_a_decoded_operation_takes() -> None:
    key_pair = KeyPair()
    examples: list[dict[str, FieldValue]] = [
        {"name": "Hall", "seats": 80},
        {"data": bytes(200_000)},
        {f"field{i}": "x" * 10 for i in range(50)},
    ]
    for fields in examples:
        operation = encode_operation(schema_id="venue_0020" + "ab" * 32, fields=fields)
        entry = sign_and_encode_entry(operation, key_pair, log_id=0, seq_num=1)
        decoded = DocumentOperation(
            decode_entry(entry).hash, key_pair.public_key(), decode_operation(operation)
        )
        actual = _deep_size(decoded)
        assert actual <= decoded_size(decoded) <= 1.5 * actual + 1024

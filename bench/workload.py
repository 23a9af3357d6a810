"""Pre-signed workloads: a benchmark schema, many short logs, one long log.

Everything is signed before the clock starts, so the figures measure the node, not the client.
The schema is signed by a fixed key: signing is deterministic (Ed25519), so its schema id is the
same on every fresh node and the pre-signed entries that use it are valid on each of them.

Every log is one document of the schema ``bench_item`` (``title: str, rank: int, score: float,
done: bool``): a CREATE at seq 1, then UPDATEs, each pointing at the operation before it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pandanode.core import (
    KeyPair,
    PinnedRelationList,
    encode_operation,
    generate_hash,
    is_skiplink_required,
    lipmaa,
    sign_and_encode_entry,
)
from pandanode.ingest.v1 import ingest_pb2 as pb

__all__ = [
    "SCHEMA_FIELDS",
    "SCHEMA_NAME",
    "BenchSchema",
    "bench_schema",
    "create_fields",
    "document_log",
    "long_log",
    "short_logs",
    "update_fields",
]

SCHEMA_NAME = "bench_item"
SCHEMA_FIELDS = {"title": "str", "rank": "int", "score": "float", "done": "bool"}


def _fixed_key(label: str) -> KeyPair:
    return KeyPair(hashlib.sha256(f"pandanode bench: {label}".encode()).hexdigest())


def create_fields(n: int) -> dict[str, str | int | float | bool]:
    """The fields of the CREATE of document number ``n``."""
    return {"title": f"item {n}", "rank": n, "score": n / 4, "done": n % 2 == 0}


def update_fields(n: int, seq_num: int) -> dict[str, str | int | float | bool]:
    """The fields the UPDATE at ``seq_num`` of document number ``n`` sets."""
    return {"title": f"item {n} v{seq_num}", "rank": n + seq_num}


@dataclass(frozen=True, slots=True)
class BenchSchema:
    """The benchmark schema: its id and the entries that define it (publish them first)."""

    schema_id: str
    setup: tuple[pb.PublishRequest, ...]


@functools.cache
def bench_schema() -> BenchSchema:
    """The field definitions and schema definition of ``bench_item``, signed by a fixed key."""
    author = _fixed_key("schema author")
    setup: list[pb.PublishRequest] = []
    views: list[list[str]] = []
    for log_id, (name, field_type) in enumerate(SCHEMA_FIELDS.items()):
        operation = encode_operation(
            schema_id="schema_field_definition_v1", fields={"name": name, "type": field_type}
        )
        entry = sign_and_encode_entry(operation, author, log_id=log_id)
        setup.append(pb.PublishRequest(entry=entry, operation=operation))
        views.append([generate_hash(entry)])
    operation = encode_operation(
        schema_id="schema_definition_v1",
        fields={
            "name": SCHEMA_NAME,
            "description": "Documents of the pandanode benchmarks",
            "fields": PinnedRelationList(views),
        },
    )
    entry = sign_and_encode_entry(operation, author, log_id=len(SCHEMA_FIELDS))
    setup.append(pb.PublishRequest(entry=entry, operation=operation))
    return BenchSchema(f"{SCHEMA_NAME}_{generate_hash(entry)}", tuple(setup))


def document_log(
    schema_id: str, author: KeyPair, log_id: int, n: int, length: int
) -> list[pb.PublishRequest]:
    """One log of ``length`` entries: document number ``n`` created, then updated."""
    requests: list[pb.PublishRequest] = []
    hashes: list[str] = []
    for seq_num in range(1, length + 1):
        if seq_num == 1:
            operation = encode_operation(schema_id=schema_id, fields=create_fields(n))
        else:
            operation = encode_operation(
                action="update",
                schema_id=schema_id,
                previous=[hashes[-1]],
                fields=update_fields(n, seq_num),
            )
        entry = sign_and_encode_entry(
            operation,
            author,
            log_id=log_id,
            seq_num=seq_num,
            backlink=hashes[-1] if hashes else None,
            skiplink=hashes[lipmaa(seq_num) - 1] if is_skiplink_required(seq_num) else None,
        )
        hashes.append(generate_hash(entry))
        requests.append(pb.PublishRequest(entry=entry, operation=operation))
    return requests


def short_logs(
    schema_id: str, logs: int, length: int, *, logs_per_author: int = 4, first: int = 0
) -> list[list[pb.PublishRequest]]:
    """``logs`` documents, each a log of ``length`` entries; each author writes a few of them.

    Args:
        schema_id: The schema of the documents.
        logs: How many logs (documents).
        length: Entries per log.
        logs_per_author: Logs per author (log ids 0, 1, …).
        first: Number of the first document (keeps titles distinct across workloads).
    """
    result: list[list[pb.PublishRequest]] = []
    author = KeyPair()
    for index in range(logs):
        log_id = index % logs_per_author
        if log_id == 0 and index > 0:
            author = KeyPair()
        result.append(document_log(schema_id, author, log_id, first + index, length))
    return result


def long_log(schema_id: str, length: int) -> list[pb.PublishRequest]:
    """One author's single log of ``length`` entries (one document, updated over and over)."""
    return document_log(schema_id, KeyPair(), 0, 0, length)


def flatten(logs: Sequence[Sequence[pb.PublishRequest]]) -> list[pb.PublishRequest]:
    """The entries of many logs, log after log (each log in seq order)."""
    return [request for log in logs for request in log]

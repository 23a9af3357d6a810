"""The decoding hot path of pandanode.core, per entry, against raw Ed25519 verification.

What ingest does with every entry before it is stored, without gRPC, storage or NATS:
``decode_operation`` of typical operations (a CREATE with four fields, an UPDATE with
``previous``, a schema definition with a pinned relation list, a relation list) and
``decode_entry`` with and without its signature check. Raw verification (``crypto_sign_open``,
the call ``baseline.verify`` times) runs on the same entries, timed the same way, and is the
reference of every ratio here; the Python overhead per entry is ``decode_entry +
decode_operation - raw verify``. Each figure is the CPU time of the calling thread
(``time.thread_time``), the best of three passes over the whole sample: all of it is
single-threaded CPU work, and on a shared machine CPU time is what stays comparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

import nacl.bindings

from pandanode.core import KeyPair, decode_entry, decode_operation, encode_operation, generate_hash
from pandanode.core.operation import PinnedRelationList, RelationList

from ..context import Context
from ..registry import Option, ScenarioResult, scenario
from ..workload import bench_schema, document_log

__all__: list[str] = []

T = TypeVar("T")

_PASSES = 3
_RAW = "raw verify"
_RAW_COST = f"core.decode/{_RAW}/µs each"
_RAW_RATE = f"core.decode/{_RAW}/entries/s"


def _best_us(items: Sequence[T], call: Callable[[T], object]) -> float:
    """The best of three passes calling ``call`` on every item, in CPU µs per item."""
    best = float("inf")
    for _ in range(_PASSES):
        start = time.thread_time()
        for item in items:
            call(item)
        best = min(best, time.thread_time() - start)
    return best / len(items) * 1e6


def _relation_list_operations(schema_id: str, count: int) -> list[bytes]:
    ids = [generate_hash(i.to_bytes(4, "big")) for i in range(8)]
    return [
        encode_operation(
            schema_id=schema_id,
            fields={"members": RelationList(ids[i % 4 : i % 4 + 4]), "name": f"group {i}"},
        )
        for i in range(count)
    ]


def _schema_definitions(count: int) -> list[bytes]:
    views = [[generate_hash(i.to_bytes(4, "big"))] for i in range(4)]
    return [
        encode_operation(
            schema_id="schema_definition_v1",
            fields={
                "description": f"Schema number {i}",
                "fields": PinnedRelationList(views),
                "name": f"schema_{i}",
            },
        )
        for i in range(count)
    ]


def _raw_verify(entry: bytes) -> None:
    # What the baseline times: signature + signed bytes, the public key at bytes 1..33.
    nacl.bindings.crypto_sign_open(entry[-64:] + entry[:-64], entry[1:33])


@scenario(
    "core.decode",
    title="Decoding per entry (pandanode.core): operations, entries, signature check vs raw verify",
    options=(
        Option("--decode-count", int, 6000, "entries (and operations of each kind)", smoke=60),
    ),
)
async def decode(ctx: Context, out: ScenarioResult) -> None:
    """Time decode_operation and decode_entry on pre-signed entries of short document logs."""
    count = ctx.args.decode_count
    schema_id = bench_schema().schema_id
    logs = [document_log(schema_id, KeyPair(), 0, n, 10) for n in range(max(1, count // 10))]
    requests = [request for log in logs for request in log][:count]
    entries = [request.entry for request in requests]
    creates = [r.operation for r in requests if decode_operation(r.operation).action == "create"]
    updates = [r.operation for r in requests if decode_operation(r.operation).action == "update"]
    operations = {
        "CREATE, 4 fields": creates,
        "UPDATE, previous + 2 fields": updates,
        "CREATE, relation list + text": _relation_list_operations(schema_id, count),
        "schema definition, pinned relation list": _schema_definitions(count),
    }
    raw = _best_us(entries, _raw_verify)
    out.metric(_RAW, "µs each", raw, "µs", "cost")
    out.rate(_RAW, 1, raw / 1e6)
    for row, items in operations.items():
        us = _best_us(items, decode_operation)
        out.metric(f"decode_operation: {row}", "µs each", us, "µs", "cost", baseline=_RAW_COST)

    def no_verify(entry: bytes) -> object:
        return decode_entry(entry, verify=False)

    unverified = _best_us(entries, no_verify)
    verified = _best_us(entries, decode_entry)
    out.metric("decode_entry, no verify", "µs each", unverified, "µs", "cost", baseline=_RAW_COST)
    out.metric("decode_entry, verify", "µs each", verified, "µs", "cost", baseline=_RAW_COST)
    out.metric(
        "decode_entry: its verify step", "µs each", max(verified - unverified, 0.01), "µs", "cost"
    )

    def both(pair: tuple[bytes, bytes]) -> None:
        decode_entry(pair[0])
        decode_operation(pair[1])

    pairs = [(request.entry, request.operation) for request in requests]
    per_entry = _best_us(pairs, both)
    out.metric(
        "decode_entry + decode_operation", "µs each", per_entry, "µs", "cost", baseline=_RAW_COST
    )
    out.rate("decode_entry + decode_operation", 1, per_entry / 1e6, baseline=_RAW_RATE)
    out.metric(
        "Python overhead beyond raw verify", "µs each", max(per_entry - raw, 0.01), "µs", "cost"
    )
    try:
        cbor2_version = version("cbor2")
    except PackageNotFoundError:
        cbor2_version = "not installed"
    out.notes["cbor2"] = cbor2_version
    out.notes["entries"] = len(entries)

"""The seeds of the kept fuzz corpus: spec vectors and valid (and nearly valid) encodings.

    python -m tests.fuzz.seeds

writes ``tests/fuzz/corpus/<target>/seed-<name>`` for every seed (deterministic: the same
files every time). Inputs the fuzzer found and that were merged into the corpus, and the inputs
of fixed findings (``crash-…``), live next to them and are left alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from pandanode.core.entry import sign_and_encode_entry
from pandanode.core.hash import generate_hash
from pandanode.core.keypair import KeyPair
from pandanode.core.operation import (
    FieldValue,
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
    encode_operation,
)
from pandanode.core.varu64 import encode_varu64
from pandanode.discovery.v1 import discovery_pb2
from pandanode.events.v1 import events_pb2
from pandanode.query.v1 import query_pb2 as pb
from pandanode.services.discovery.lan import PROTOCOL, encode_announcement
from pandanode.services.query.listing.targets import ABSENT, NAN, PRESENT

from .run import CORPUS
from .targets import FUZZ_SECRET, TOKEN_FINGERPRINT, TOKEN_KINDS, listing_index

__all__ = ["seeds", "write"]

_VECTORS: Final = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "spec_vectors.json").read_text()
)
_KEY: Final = KeyPair("4c21b14046f284f87f1ea4be4b973664221ad483079a68ed35a6812553b41176")
_ID_A: Final = "0020" + "ab" * 32
_ID_B: Final = "0020" + "cd" * 32
_SCHEMA: Final = _VECTORS["A"]["operation_schema_id"]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _operations() -> Iterator[tuple[str, bytes]]:
    yield "spec-a", _hex(_VECTORS["A"]["operation"])
    yield "spec-d", _hex(_VECTORS["D"]["operation"])
    for name, operation in _VECTORS["operation_examples"].items():
        yield f"spec-{name}", _hex(operation)
    for name in ("field_definition_title", "schema_definition"):
        yield f"spec-e-{name}", _hex(_VECTORS["E"][name]["operation"])
    every_type: dict[str, FieldValue] = {
        "bool": True,
        "bytes": b"\x00\xff",
        "float": 12.5,
        "float64": 0.1,
        "int": -(2**63),
        "nan": math.nan,
        "pin": PinnedRelation([_ID_B, _ID_A]),
        "pins": PinnedRelationList([[_ID_A], [_ID_A, _ID_B]]),
        "relation": Relation(_ID_A),
        "relations": RelationList([_ID_B, _ID_A, _ID_B]),
        "text": "しろくま 🐼",
    }
    yield "create-every-type", encode_operation(schema_id=_SCHEMA, fields=every_type)
    yield "create-empty", encode_operation(schema_id="blob_v1", fields={})
    yield (
        "update",
        encode_operation(
            action="update", schema_id=_SCHEMA, previous=[_ID_A, _ID_B], fields={"name": "x"}
        ),
    )
    yield "delete", encode_operation(action="delete", schema_id="blob_piece_v1", previous=_ID_A)
    # Lenient forms p2panda reads: an indefinite array, a tag around it, `previous` as text.
    canonical = encode_operation(schema_id="blob_v1", fields={"a": 1})
    yield "indefinite-array", b"\x9f" + canonical[1:] + b"\xff"
    yield "tagged", b"\xd8\x18" + canonical
    text_previous = _ID_A.upper() + "_" + _ID_B
    yield (
        "previous-as-text",
        (b"\x84\x01\x02\x67blob_v1\x78" + bytes((len(text_previous),)) + text_previous.encode()),
    )


def _entries() -> Iterator[tuple[str, bytes]]:
    for name in "ABC":
        yield f"spec-{name.lower()}", _hex(_VECTORS[name]["entry"])
    payload = encode_operation(schema_id="blob_v1", fields={"a": 1})
    hashes: dict[int, str] = {}
    for seq_num in (1, 2, 3, 4):
        entry = sign_and_encode_entry(
            payload,
            _KEY,
            log_id=300,
            seq_num=seq_num,
            backlink=hashes.get(seq_num - 1),
            skiplink=hashes.get(1),
        )
        hashes[seq_num] = generate_hash(entry)
        yield f"log-300-seq-{seq_num}", entry


def _varu64s() -> Iterator[tuple[str, bytes]]:
    values = (0, 1, 247, 248, 255, 256, 2**16, 2**32 + 1, 2**56, 2**64 - 1)
    yield "boundaries", b"".join(encode_varu64(value) for value in values)
    yield "non-canonical", b"\xf8\x05"
    yield "cut", b"\xff\x01\x02"


def _hashes() -> Iterator[tuple[str, bytes]]:
    yield "raw", bytes.fromhex(_ID_A)
    yield "hex", _ID_A.encode()
    yield "view-id", _VECTORS["E"]["view_id_of_both_fields"].encode()
    yield "view-id-upper", (_ID_A.upper() + "_" + _ID_B).encode()


def _schema_ids() -> Iterator[tuple[str, bytes]]:
    yield "spec-a", _SCHEMA.encode()
    yield "spec-e", _VECTORS["E"]["schema_id"].encode()
    yield "two-ids", ("post_" + _VECTORS["E"]["view_id_of_both_fields"]).encode()
    for text in ("blob_v1", "blob_v01", "blob_piece_v+1", "schema_definition_v1", "nope_v1"):
        yield text, text.encode()


def _page_tokens() -> Iterator[tuple[str, bytes]]:
    # The first byte: bit 0 the mode (0: a token as sent, 1: a payload to seal), the rest the kind.
    tokens = listing_index()._tokens  # the fuzz secret's
    cursors = {
        "bool": (PRESENT, True, _ID_A),
        "int": (PRESENT, -(2**63), _ID_A),
        "float": (NAN, 0.0, _ID_A),
        "str": (PRESENT, "x" * 4000, _ID_A),
        "bytes": (PRESENT, b"\x01" * 1000, _ID_A),
        "relation": (ABSENT, None, _ID_A),
        "pinned_relation": (PRESENT, _ID_A, _ID_B),
        "id": (PRESENT, _ID_A, _ID_B),
    }
    for index, kind in enumerate(TOKEN_KINDS):
        token = tokens.encode(TOKEN_FINGERPRINT, kind, cursors[kind])
        yield f"token-{kind}", bytes((index << 1,)) + token.encode()
        yield f"payload-{kind}", bytes((index << 1 | 1,)) + tokens.open(token)
    assert tokens.open(tokens.seal(b"x")) == b"x" and FUZZ_SECRET


def _listing_requests() -> Iterator[tuple[str, bytes]]:
    value = pb.FilterValue
    requests = {
        "empty": pb.ListDocumentsRequest(),
        "int-range": pb.ListDocumentsRequest(
            filters=[
                pb.Filter(field="count", operator=pb.FILTER_OPERATOR_GT, value=value(int_value=-5)),
                pb.Filter(
                    field="count", operator=pb.FILTER_OPERATOR_LTE, value=value(int_value=50)
                ),
            ],
            order_by=pb.OrderBy(field="count"),
            page_size=3,
        ),
        "float-in": pb.ListDocumentsRequest(
            filters=[
                pb.Filter(
                    field="score",
                    operator=pb.FILTER_OPERATOR_IN,
                    values=[value(float_value=1.5), value(float_value=math.nan)],
                )
            ],
            order_by=pb.OrderBy(field="score"),
            descending=True,
            page_size=2,
        ),
        "str-contains": pb.ListDocumentsRequest(
            filters=[
                pb.Filter(
                    field="title", operator=pb.FILTER_OPERATOR_CONTAINS, value=value(str_value="a")
                )
            ],
            order_by=pb.OrderBy(field="title"),
            page_size=2,
        ),
        "meta": pb.ListDocumentsRequest(
            filters=[
                pb.Filter(
                    meta=pb.META_FIELD_DELETED,
                    operator=pb.FILTER_OPERATOR_EQ,
                    value=value(bool_value=True),
                ),
                pb.Filter(
                    meta=pb.META_FIELD_OWNER,
                    operator=pb.FILTER_OPERATOR_NOT_IN,
                    values=[value(str_value="00" * 32)],
                ),
            ],
            order_by=pb.OrderBy(meta=pb.META_FIELD_DOCUMENT_VIEW_ID),
        ),
        "relations": pb.ListDocumentsRequest(
            filters=[
                pb.Filter(
                    field="tags", operator=pb.FILTER_OPERATOR_IN, values=[value(str_value=_ID_A)]
                ),
                pb.Filter(
                    field="relation",
                    operator=pb.FILTER_OPERATOR_NOT_EQ,
                    value=value(str_value=_ID_B),
                ),
                pb.Filter(
                    field="data", operator=pb.FILTER_OPERATOR_EQ, value=value(bytes_value=b"ab")
                ),
                pb.Filter(
                    field="flag", operator=pb.FILTER_OPERATOR_EQ, value=value(bool_value=False)
                ),
            ],
            order_by=pb.OrderBy(field="pin"),
        ),
        "bytes-order": pb.ListDocumentsRequest(order_by=pb.OrderBy(field="data"), page_size=4),
    }
    index = listing_index()
    from pandanode.services.query.convert import order_from_pb, predicates_from_pb

    for name, request in list(requests.items()):
        yield f"request-{name}", request.SerializeToString()
        page = index.list(
            predicates_from_pb(request.filters),
            order_from_pb(request.order_by, request.descending),
            request.page_size or None,
        )
        if page.next_page_token:
            request.page_token = page.next_page_token
            yield f"request-{name}-page-2", request.SerializeToString()


def _events() -> Iterator[tuple[str, bytes]]:
    payload = _hex(_VECTORS["A"]["operation"])
    entry = _hex(_VECTORS["A"]["entry"])
    entry_hash = _VECTORS["A"]["entry_hash"]
    operation = events_pb2.IngestedOperation(
        entry=entry,
        operation=payload,
        operation_id=entry_hash,
        document_id=entry_hash,
        schema_id=_SCHEMA,
        public_key=_VECTORS["A"]["public_key"],
        log_id=0,
        seq_num=1,
        sequence=1,
    )
    bad = events_pb2.IngestedOperation()
    bad.CopyFrom(operation)
    bad.operation = b"\x84\x01\x00"
    yield "one", events_pb2.OperationsIngested(operations=[operation]).SerializeToString()
    yield "one-bad", events_pb2.OperationsIngested(operations=[bad, operation]).SerializeToString()


def _announcements() -> Iterator[tuple[str, bytes]]:
    node_id = _KEY.public_key()
    yield "ipv4", encode_announcement(node_id, "192.168.1.20:2020")
    yield "unspecified", encode_announcement(node_id, "0.0.0.0:2020")
    yield "ipv6", encode_announcement(node_id, "[fe80::1]:2020")
    yield (
        "other-protocol",
        discovery_pb2.LanAnnouncement(
            protocol=PROTOCOL + "x", node_id=node_id, address="h:1"
        ).SerializeToString(),
    )


def seeds() -> dict[str, dict[str, bytes]]:
    """Target name → seed name → input."""
    return {
        "entry": dict(_entries()),
        "operation": dict(_operations()),
        "varu64": dict(_varu64s()),
        "hash": dict(_hashes()),
        "schema_id": dict(_schema_ids()),
        "page_token": dict(_page_tokens()),
        "listing": dict(_listing_requests()),
        "events": dict(_events()),
        "lan": dict(_announcements()),
    }


def write(corpus: Path = CORPUS) -> int:
    """Write every seed into ``corpus/<target>/seed-<name>``; return how many."""
    count = 0
    for target, inputs in seeds().items():
        folder = corpus / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in inputs.items():
            (folder / f"seed-{name}").write_bytes(data)
            count += 1
    return count


if __name__ == "__main__":
    print(f"wrote {write()} seeds under {CORPUS}")

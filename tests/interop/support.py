"""Helpers shared by the interop tests: JSON conventions of ``oracle.js`` and raw byte builders.

The raw builders (varu64, CBOR items, Bamboo entries) are written here from the spec, on purpose
independent of ``pandanode.core``: malformed cases must be built byte by byte, and the encoder under
test must not be used to build its own test inputs.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import blake3
import nacl.signing

from pandanode.core import (
    DecodeError,
    Entry,
    Operation,
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
)
from pandanode.core.operation import FieldValue, PlainValue

from .oracle_client import JsEntry, JsOperation, TypedSpec

# -- floats ---------------------------------------------------------------------------------------


def float_bits(value: float) -> str:
    """The binary64 bit pattern of ``value`` as 16 hex digits (the oracle's float encoding)."""
    return struct.pack(">d", value).hex()


def bits_float(bits: str) -> float:
    """Inverse of :func:`float_bits`."""
    return cast(float, struct.unpack(">d", bytes.fromhex(bits))[0])


def _float_key(bits: str) -> str:
    # NaN payloads are not preserved by every JavaScript engine: compare all NaNs as equal.
    return "nan" if math.isnan(bits_float(bits)) else bits.lower()


# -- typed fields (encodeOperation input) ---------------------------------------------------------


def field_value(type_: str, value: Any) -> FieldValue:
    """Turn a typed JSON field (oracle convention) into the value ``encode_operation`` takes."""
    if type_ == "bool":
        return bool(value)
    if type_ == "int":
        return int(value)
    if type_ == "float":
        return bits_float(value)
    if type_ == "str":
        return str(value)
    if type_ == "bytes":
        return bytes.fromhex(value)
    if type_ == "relation":
        return Relation(value)
    if type_ == "relation_list":
        return RelationList(value)
    if type_ == "pinned_relation":
        return PinnedRelation(value)
    if type_ == "pinned_relation_list":
        return PinnedRelationList(value)
    raise AssertionError(f"unknown field type {type_!r}")


def typed_field(name: str, value: FieldValue) -> list[Any]:
    """Turn a Python field value into the oracle's ``[name, type, JSON value]``."""
    if isinstance(value, bool):
        return [name, "bool", value]
    if isinstance(value, int):
        return [name, "int", str(value)]
    if isinstance(value, float):
        return [name, "float", float_bits(value)]
    if isinstance(value, str):
        return [name, "str", value]
    if isinstance(value, bytes):
        return [name, "bytes", value.hex()]
    if isinstance(value, Relation):
        return [name, "relation", value.document_id]
    if isinstance(value, RelationList):
        return [name, "relation_list", list(value.document_ids)]
    if isinstance(value, PinnedRelation):
        return [name, "pinned_relation", list(value.view_id)]
    return [name, "pinned_relation_list", [list(view) for view in value.view_ids]]


def make_spec(
    action: str,
    schema_id: str,
    previous: Iterable[str] | None = None,
    fields: Mapping[str, FieldValue] | None = None,
) -> TypedSpec:
    """A typed spec for the oracle from Python values (field order kept as given)."""
    return {
        "action": action,
        "schemaId": schema_id,
        "previous": None if previous is None else list(previous),
        "fields": None if fields is None else [typed_field(n, v) for n, v in fields.items()],
    }


def encode_kwargs(spec: TypedSpec) -> dict[str, Any]:
    """Keyword arguments for ``encode_operation`` equivalent to an oracle spec."""
    fields = spec["fields"]
    return {
        "action": spec["action"],
        "schema_id": spec["schemaId"],
        "previous": spec["previous"],
        "fields": None if fields is None else {n: field_value(t, v) for n, t, v in fields},
    }


# -- decoded values (decodeOperation / decodeEntry output) ----------------------------------------


def tagged_plain(value: PlainValue) -> dict[str, Any]:
    """Our decoded plain value in the oracle's tagged form (``{"int": "5"}`` …)."""
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, float):
        return {"float": float_bits(value)}
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if all(isinstance(item, str) for item in value):
        return {"hashes": list(value)}
    return {"hashLists": [list(item) for item in value]}


def _normalise_tagged(tagged: Mapping[str, Any]) -> dict[str, Any]:
    if "float" in tagged:
        return {"float": _float_key(tagged["float"])}
    return dict(tagged)


def operation_json(operation: Operation) -> dict[str, Any]:
    """Our decoded operation in the normalised shape :func:`normalise_js_operation` gives."""
    fields = operation.fields
    return {
        "version": operation.version,
        "action": operation.action,
        "schemaId": operation.schema_id,
        "previous": None if operation.previous is None else list(operation.previous),
        "fields": None
        if fields is None
        else [[name, _normalise_tagged(tagged_plain(value))] for name, value in fields.items()],
    }


def normalise_js_operation(operation: JsOperation) -> dict[str, Any]:
    """p2panda-js' decoded operation, with every NaN written the same way."""
    fields = operation["fields"]
    return {
        "version": operation["version"],
        "action": operation["action"],
        "schemaId": operation["schemaId"],
        "previous": operation["previous"],
        "fields": None
        if fields is None
        else [[name, _normalise_tagged(tagged)] for name, tagged in fields],
    }


def entry_json(entry: Entry) -> JsEntry:
    """Our decoded entry in the shape of the oracle's ``decodeEntry``."""
    return {
        "publicKey": entry.public_key,
        "logId": str(entry.log_id),
        "seqNum": str(entry.seq_num),
        "skiplink": entry.skiplink,
        "backlink": entry.backlink,
        "payloadSize": str(entry.payload_size),
        "payloadHash": entry.payload_hash,
        "signature": entry.signature,
    }


def expect_decode_error(decode: Callable[[bytes], object], data: bytes) -> DecodeError:
    """Assert that ``decode(data)`` raises a :class:`DecodeError` (and nothing else)."""
    try:
        result = decode(data)
    except DecodeError as error:
        return error
    except Exception as error:  # the point is to name the wrong class
        raise AssertionError(
            f"expected a DecodeError for {data.hex()}, got {type(error).__name__}: {error}"
        ) from error
    raise AssertionError(f"expected a DecodeError for {data.hex()}, it decoded to {result!r}")


# -- raw bytes ------------------------------------------------------------------------------------


def varu64(value: int) -> bytes:
    """Canonical varu64 (spec §1.4)."""
    if value < 248:
        return bytes((value,))
    length = (value.bit_length() + 7) // 8
    return bytes((247 + length,)) + value.to_bytes(length, "big")


def blake3_yasmf(data: bytes) -> bytes:
    """The 34-byte YASMF hash (spec §1.3)."""
    return b"\x00\x20" + blake3.blake3(data).digest()


def raw_entry(
    signing_key: nacl.signing.SigningKey,
    *,
    tag: bytes = b"\x00",
    log_id: bytes = b"\x00",
    seq_num: bytes = b"\x01",
    skiplink: bytes | None = None,
    backlink: bytes | None = None,
    payload: bytes = b"\x11\x22\x33",
    payload_size: bytes | None = None,
    payload_hash: bytes | None = None,
    before_signature: bytes = b"",
    after_signature: bytes = b"",
    public_key: bytes | None = None,
) -> bytes:
    """A Bamboo entry assembled field by field from raw bytes and signed with ``signing_key``.

    ``before_signature`` is appended to the signed part (so the signature still verifies over
    "everything but the last 64 bytes"); ``after_signature`` is appended after the signature.
    """
    key = bytes(signing_key.verify_key) if public_key is None else public_key
    unsigned = b"".join(
        (
            tag,
            key,
            log_id,
            seq_num,
            skiplink or b"",
            backlink or b"",
            varu64(len(payload)) if payload_size is None else payload_size,
            blake3_yasmf(payload) if payload_hash is None else payload_hash,
            before_signature,
        )
    )
    return unsigned + signing_key.sign(unsigned).signature + after_signature


def cbor_head(major: int, value: int, *, width: int | None = None) -> bytes:
    """A CBOR head; ``width`` (0, 1, 2, 4, 8 bytes) forces a non-minimal form."""
    if width is None:
        if value < 24:
            width = 0
        elif value < 1 << 8:
            width = 1
        elif value < 1 << 16:
            width = 2
        elif value < 1 << 32:
            width = 4
        else:
            width = 8
    if width == 0:
        return bytes((major << 5 | value,))
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes((major << 5 | info,)) + value.to_bytes(width, "big")


def cbor_int(value: int) -> bytes:
    """A CBOR integer (major 0 or 1)."""
    return cbor_head(0, value) if value >= 0 else cbor_head(1, -1 - value)


def cbor_text(value: str) -> bytes:
    """A definite CBOR text string."""
    data = value.encode()
    return cbor_head(3, len(data)) + data


def cbor_bytes(value: bytes) -> bytes:
    """A definite CBOR byte string."""
    return cbor_head(2, len(value)) + value


def cbor_array(*items: bytes) -> bytes:
    """A definite CBOR array of already-encoded items."""
    return cbor_head(4, len(items)) + b"".join(items)


def cbor_indefinite_array(*items: bytes) -> bytes:
    """An indefinite-length CBOR array."""
    return b"\x9f" + b"".join(items) + b"\xff"


def cbor_map(*pairs: tuple[bytes, bytes]) -> bytes:
    """A definite CBOR map of already-encoded keys and values, in the order given."""
    return cbor_head(5, len(pairs)) + b"".join(k + v for k, v in pairs)


def cbor_hashes(*hex_ids: str) -> bytes:
    """A CBOR array of 34-byte hash byte strings."""
    return cbor_array(*(cbor_bytes(bytes.fromhex(h)) for h in hex_ids))

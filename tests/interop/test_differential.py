"""Differential fuzzing: thousands of mutated entries and operations, decoded by both sides.

For every mutant, p2panda-js and pandanode must agree on accept / reject; when both accept, on
every decoded value; when we reject, with a ``DecodeError``. Mutations are seeded; the corpus
mixes fixed cases with operations and logs p2panda-js makes up afresh on every run, so a failure
message always carries the exact bytes to reproduce it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

import nacl.signing
import pytest

from pandanode.core import DecodeError, Operation, decode_entry, decode_operation
from pandanode.core.schema import parse_schema_id

from .cases import ENTRIES_ACCEPTED, OPERATIONS_ACCEPTED
from .oracle_client import Oracle, Outcome
from .support import entry_json, normalise_js_operation, operation_json

pytestmark = pytest.mark.interop

# CBOR heads that change meaning (lengths, indefinite, tags, simple values, floats) and the
# varu64 length markers of entries.
SPECIAL_BYTES: tuple[int, ...] = (
    *(0x00, 0x01, 0x17, 0x18, 0x1F, 0x20, 0x40, 0x5F, 0x60, 0x7F, 0x80, 0x9F, 0xA0),
    *(0xBF, 0xC2, 0xC3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFF),
)
T = TypeVar("T")


def _mutate(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(1 + (rng.random() < 0.3)):
        if not raw:
            raw.append(rng.randrange(256))
            continue
        i = rng.randrange(len(raw))
        kind = rng.randrange(7)
        if kind == 0:
            raw[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            raw[i] = rng.choice(SPECIAL_BYTES)
        elif kind == 2:
            del raw[i]
        elif kind == 3:
            raw.insert(i, rng.choice(SPECIAL_BYTES))
        elif kind == 4:
            del raw[i:]
        elif kind == 5:
            raw[i] = (raw[i] + rng.choice((-1, 1))) % 256
        else:
            j = rng.randrange(len(raw))
            raw[i], raw[j] = raw[j], raw[i]
    return bytes(raw)


def _compare(
    data: bytes,
    js: Outcome,
    decode: Callable[[bytes], T],
    as_json: Callable[[T], object],
    js_json: Callable[[Any], object],
) -> str | None:
    """None when both sides agree on ``data``, else a description of the disagreement."""
    try:
        ours = decode(data)
    except DecodeError as error:
        if js.accepted:
            return f"{data.hex()}: p2panda-js accepts ({js.ok}), we raise {error!r}"
        return None
    except Exception as error:
        return f"{data.hex()}: we raise {type(error).__name__}: {error} (not a DecodeError)"
    if not js.accepted:
        return f"{data.hex()}: p2panda-js rejects ({js.error}), we accept ({ours!r})"
    if as_json(ours) != js_json(js.ok):
        return f"{data.hex()}: values differ: ours {as_json(ours)}, p2panda-js {js_json(js.ok)}"
    return None


def _decode_operation_and_schema_id(data: bytes) -> Operation:
    operation = decode_operation(data)
    parse_schema_id(operation.schema_id)  # p2panda-js parses it while decoding
    return operation


def test_mutated_operations_are_accepted_or_rejected_alike(oracle: Oracle) -> None:
    rng = random.Random(0x0FF)
    corpus = [bytes.fromhex(m["operation"]) for m in oracle.random_operations(60)]
    corpus += list(OPERATIONS_ACCEPTED.values())
    mutants = sorted({_mutate(rng, rng.choice(corpus)) for _ in range(4000)})
    answers = oracle.batch([("decodeOperation", {"operation": m.hex()}) for m in mutants])
    problems = [
        problem
        for data, js in zip(mutants, answers, strict=True)
        if (
            problem := _compare(
                data,
                js,
                _decode_operation_and_schema_id,
                operation_json,
                normalise_js_operation,
            )
        )
    ]
    accepted = sum(answer.accepted for answer in answers)
    assert not problems, f"{len(problems)} of {len(mutants)} mutants disagree:\n" + "\n".join(
        problems[:20]
    )
    assert accepted > 100, "the mutants should not all be rejected"


def test_mutated_and_re_signed_entries_are_accepted_or_rejected_alike(oracle: Oracle) -> None:
    rng = random.Random(0xE117)
    logs = [oracle.make_log(14, log_id=log_id) for log_id in (None, 300, 2**64 - 1)]
    keys = {
        log["publicKey"]: nacl.signing.SigningKey(bytes.fromhex(log["privateKey"])) for log in logs
    }
    corpus = [(bytes.fromhex(e), log["publicKey"]) for log in logs for e in log["entries"]]
    corpus += [(data, "") for data in ENTRIES_ACCEPTED.values()]
    mutants: set[bytes] = set()
    for _ in range(2000):
        entry, public_key = rng.choice(corpus)
        if public_key and rng.random() < 0.7:
            # Mutate the signed part and sign again, so decoding reaches past the signature.
            unsigned = _mutate(rng, entry[:-64])
            mutants.add(unsigned + keys[public_key].sign(unsigned).signature)
        else:
            mutants.add(_mutate(rng, entry))
    ordered = sorted(mutants)
    answers = oracle.batch([("decodeEntry", {"entry": m.hex()}) for m in ordered])
    problems = [
        problem
        for data, js in zip(ordered, answers, strict=True)
        if (
            problem := _compare(
                data,
                js,
                decode_entry,
                entry_json,
                lambda js_entry: js_entry,
            )
        )
    ]
    accepted = sum(answer.accepted for answer in answers)
    assert not problems, f"{len(problems)} of {len(ordered)} mutants disagree:\n" + "\n".join(
        problems[:20]
    )
    assert accepted > 100, "the mutants should not all be rejected"

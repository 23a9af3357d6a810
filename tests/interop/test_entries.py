"""Bamboo entries: p2panda-js' entries decode here, ours decode there, byte for byte (spec §2).

Ed25519 is deterministic, so for the same private key and inputs both sides must produce the
very same bytes; the logs below are built by p2panda-js at test time (fresh random keys, log ids
and operations) and rebuilt here.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pandanode.core import (
    Entry,
    KeyPair,
    PandanodeError,
    decode_entry,
    decode_operation,
    encode_entry,
    generate_hash,
    is_skiplink_required,
    lipmaa,
    sign_and_encode_entry,
)

from .oracle_client import JsEntry, JsLog, Oracle
from .support import entry_json, normalise_js_operation, operation_json

pytestmark = pytest.mark.interop

U64_MAX = 2**64 - 1
# Spec §2.2: up to 40 these seq nums carry a skiplink.
SKIPLINK_SEQ_NUMS_UP_TO_40 = {4, 8, 12, 13, 17, 21, 25, 26, 30, 34, 38, 39, 40}


def _build_log(
    key_pair: KeyPair, log_id: int, payloads: list[bytes], start: int = 1
) -> list[bytes]:
    """A log built with our own encoder, links taken from our own entry hashes."""
    entries: list[bytes] = []
    hashes: dict[int, str] = {}
    for offset, payload in enumerate(payloads):
        seq_num = start + offset
        backlink = hashes.get(seq_num - 1)
        skiplink = hashes.get(lipmaa(seq_num)) if is_skiplink_required(seq_num) else None
        entry = sign_and_encode_entry(
            payload, key_pair, log_id=log_id, seq_num=seq_num, backlink=backlink, skiplink=skiplink
        )
        hashes[seq_num] = decode_entry(entry).hash
        entries.append(entry)
    return entries


def _assert_js_log_matches_ours(oracle: Oracle, log: JsLog) -> list[Entry]:
    """Decode a p2panda-js log both ways, and rebuild it here byte for byte."""
    entries = [bytes.fromhex(e) for e in log["entries"]]
    payloads = [bytes.fromhex(op) for op in log["operations"]]
    answers = oracle.batch(
        [("decodeEntry", {"entry": e}) for e in log["entries"]]
        + [("decodeOperation", {"operation": op}) for op in log["operations"]]
    )
    js_entries: list[JsEntry] = [a.unwrap() for a in answers[: len(entries)]]
    js_operations = [a.unwrap() for a in answers[len(entries) :]]
    ours = [decode_entry(e) for e in entries]
    key_pair = KeyPair(log["privateKey"])
    assert key_pair.public_key() == log["publicKey"]
    for seq_num, (entry, data, payload, js, js_hash) in enumerate(
        zip(ours, entries, payloads, js_entries, log["hashes"], strict=True), start=1
    ):
        where = f"log {log['logId']} seq {seq_num}"
        assert entry_json(entry) == js, where
        assert entry.hash == js_hash == generate_hash(data), where
        assert entry.public_key == log["publicKey"]
        assert entry.log_id == int(log["logId"])
        assert entry.seq_num == seq_num
        assert entry.tag == 0
        assert entry.payload_size == len(payload)
        assert entry.payload_hash == generate_hash(payload)
        assert entry.backlink == (None if seq_num == 1 else ours[seq_num - 2].hash), where
        expected_skiplink = (
            ours[lipmaa(seq_num) - 1].hash if is_skiplink_required(seq_num) else None
        )
        assert entry.skiplink == expected_skiplink, where
        resigned = sign_and_encode_entry(
            payload,
            key_pair,
            log_id=entry.log_id,
            seq_num=seq_num,
            backlink=entry.backlink,
            skiplink=entry.skiplink,
        )
        assert resigned.hex() == data.hex(), f"{where}: our signed entry differs"
        rebuilt = encode_entry(
            payload,
            entry.public_key,
            entry.signature,
            log_id=entry.log_id,
            seq_num=seq_num,
            backlink=entry.backlink,
            skiplink=entry.skiplink,
        )
        assert rebuilt == data, f"{where}: encode_entry differs"
    rebuilt_log = _build_log(key_pair, int(log["logId"]), payloads)
    assert [e.hex() for e in rebuilt_log] == log["entries"]
    for payload, js_operation in zip(payloads, js_operations, strict=True):
        assert operation_json(decode_operation(payload)) == normalise_js_operation(js_operation)
    return ours


@pytest.mark.parametrize(
    "log_id",
    [0, 1, 247, 248, 255, 256, 300, 65535, 65536, 2**32, 2**63, U64_MAX, None],
    ids=lambda log_id: "random" if log_id is None else str(log_id),
)
def test_js_signed_log_decodes_to_the_same_values_and_we_re_sign_it_byte_for_byte(
    oracle: Oracle, log_id: int | None
) -> None:
    log = oracle.make_log(14, log_id=log_id)
    if log_id is not None:
        assert log["logId"] == str(log_id)
    _assert_js_log_matches_ours(oracle, log)


def test_long_js_log_with_skiplinks_is_byte_identical_to_the_same_log_built_by_us(
    oracle: Oracle,
) -> None:
    # 122 entries: seq ≥ 100, and seq 121 links back to 40 (spec §2.2).
    log = oracle.make_log(122)
    ours = _assert_js_log_matches_ours(oracle, log)
    with_skiplink = {e.seq_num for e in ours if e.skiplink is not None}
    assert {s for s in with_skiplink if s <= 40} == SKIPLINK_SEQ_NUMS_UP_TO_40
    assert ours[120].skiplink == ours[39].hash  # lipmaa(121) = 40
    assert ours[121].skiplink is None  # lipmaa(122) = 121 = its backlink


def test_js_reads_back_a_log_we_signed_with_the_values_we_put_in(oracle: Oracle) -> None:
    rng = random.Random(7)
    key_pair = KeyPair(rng.randbytes(32).hex())
    # Payloads of every varu64 width of the payload size; entries need not carry operations.
    sizes = [1, 3, 247, 248, 255, 256, 65535, 65536, 70000] + [
        rng.randrange(1, 400) for _ in range(111)
    ]
    payloads = [rng.randbytes(size) for size in sizes]
    entries = _build_log(key_pair, U64_MAX, payloads)
    answers = oracle.batch([("decodeEntry", {"entry": e.hex()}) for e in entries])
    for seq_num, (data, payload, answer) in enumerate(
        zip(entries, payloads, answers, strict=True), start=1
    ):
        js: JsEntry = answer.unwrap()
        ours = decode_entry(data)
        assert js == entry_json(ours)
        assert js["publicKey"] == key_pair.public_key()
        assert js["logId"] == str(U64_MAX)
        assert js["seqNum"] == str(seq_num)
        assert js["payloadSize"] == str(len(payload))
        assert js["payloadHash"] == generate_hash(payload)
        assert js["signature"] == data[-64:].hex()
    same_by_js = oracle.make_log(
        private_key=key_pair.private_key(), log_id=U64_MAX, operations=payloads
    )
    assert same_by_js["entries"] == [e.hex() for e in entries]


# Seq nums around powers of 3 (where lipmaa jumps) and of 2^8 (where varu64 grows).
LARGE_SEQ_NUMS = [
    247, 248, 255, 256, 364, 1093, 3280, 9841, 29524, 65535, 65536,
    3**20, (3**20 - 1) // 2, (3**20 - 1) // 2 + 1, (3**21 - 1) // 2 - 1,
    2**32 - 1, 2**32, 2**32 + 1, 2**40 + 12345, 2**63, (3**40 - 1) // 2, U64_MAX - 1, U64_MAX,
]  # fmt: skip


def test_entries_at_large_seq_nums_carry_the_links_js_demands_and_are_byte_identical(
    oracle: Oracle,
) -> None:
    rng = random.Random(8)
    private_key = rng.randbytes(32).hex()
    key_pair = KeyPair(private_key)
    backlink = generate_hash(b"backlink")
    skiplink = generate_hash(b"skiplink")
    payload = b"\x01\x02\x03"

    def call(seq_num: int, with_skiplink: bool) -> tuple[str, dict[str, Any]]:
        return (
            "signAndEncodeEntry",
            {
                "privateKey": private_key,
                "logId": str(seq_num),  # any log id; this one varies the width too
                "seqNum": str(seq_num),
                "backlink": backlink,
                "skiplink": skiplink if with_skiplink else None,
                "operation": payload.hex(),
            },
        )

    # p2panda-js refuses to sign without a skiplink exactly where one is required.
    without = oracle.batch([call(seq_num, False) for seq_num in LARGE_SEQ_NUMS])
    required = [s for s, answer in zip(LARGE_SEQ_NUMS, without, strict=True) if not answer.accepted]
    with_skip = oracle.batch([call(seq_num, True) for seq_num in required])
    js_entries = {s: a.unwrap() for s, a in zip(LARGE_SEQ_NUMS, without, strict=True) if a.accepted}
    js_entries.update({s: a.unwrap() for s, a in zip(required, with_skip, strict=True)})
    for seq_num in LARGE_SEQ_NUMS:
        needs_skiplink = seq_num in required
        assert is_skiplink_required(seq_num) is needs_skiplink, f"seq {seq_num}"
        ours = sign_and_encode_entry(
            payload,
            key_pair,
            log_id=seq_num,
            seq_num=seq_num,
            backlink=backlink,
            skiplink=skiplink if needs_skiplink else None,
        )
        assert ours.hex() == js_entries[seq_num], f"seq {seq_num}"
        decoded = decode_entry(ours)
        assert decoded.seq_num == seq_num
        assert decoded.skiplink == (skiplink if needs_skiplink else None)
    decoded_by_js = oracle.batch(
        [("decodeEntry", {"entry": js_entries[s]}) for s in LARGE_SEQ_NUMS]
    )
    for seq_num, answer in zip(LARGE_SEQ_NUMS, decoded_by_js, strict=True):
        assert answer.unwrap()["seqNum"] == str(seq_num)


def test_an_entry_with_an_empty_payload_is_byte_identical_and_decodes_alike(
    oracle: Oracle,
) -> None:
    key_pair = KeyPair("ec6e84f8255cbd7243599545364fd7364a83830774d4c873aaba9bd5d60c773e")
    js = oracle.sign_and_encode_entry(key_pair.private_key(), b"", log_id=7)
    ours = sign_and_encode_entry(b"", key_pair, log_id=7)
    assert ours == js
    assert oracle.decode_entry(ours) == entry_json(decode_entry(js))
    assert decode_entry(js).payload_size == 0
    assert decode_entry(js).payload_hash == generate_hash(b"")


def test_an_unneeded_skiplink_is_dropped_by_us_while_js_writes_an_undecodable_entry(
    oracle: Oracle,
) -> None:
    # Spec §2.1: p2panda-js 0.8.1 signs without the skiplink but still writes it.
    key_pair = KeyPair("ec6e84f8255cbd7243599545364fd7364a83830774d4c873aaba9bd5d60c773e")
    backlink = generate_hash(b"backlink")
    skiplink = generate_hash(b"skiplink")
    js_buggy = oracle.sign_and_encode_entry(
        key_pair.private_key(), b"\x11", seq_num=2, backlink=backlink, skiplink=skiplink
    )
    assert oracle.request("decodeEntry", {"entry": js_buggy.hex()}).error is not None
    js_good = oracle.sign_and_encode_entry(
        key_pair.private_key(), b"\x11", seq_num=2, backlink=backlink
    )
    ours = sign_and_encode_entry(b"\x11", key_pair, seq_num=2, backlink=backlink, skiplink=skiplink)
    assert ours == js_good
    assert oracle.decode_entry(ours)["skiplink"] is None


LINK = "0020" + "ab" * 32
OTHER_LINK = "0020" + "cd" * 32


@pytest.mark.parametrize(
    ("seq_num", "backlink", "skiplink"),
    [
        pytest.param(2, None, None, id="seq_2_without_backlink"),
        pytest.param(1, LINK, None, id="seq_1_with_backlink"),
        pytest.param(1, None, LINK, id="seq_1_with_skiplink"),
        pytest.param(4, LINK, None, id="seq_4_without_skiplink"),
        pytest.param(4, LINK, LINK, id="seq_4_skiplink_equals_backlink"),
        pytest.param(4, None, LINK, id="seq_4_without_backlink"),
        pytest.param(2, "01" + LINK[2:], None, id="backlink_hash_type_01"),
        pytest.param(4, OTHER_LINK, LINK[:-2], id="skiplink_too_short"),
        pytest.param(0, None, None, id="seq_0"),
    ],
)
def test_signing_arguments_js_refuses_are_refused_by_us(
    oracle: Oracle, seq_num: int, backlink: str | None, skiplink: str | None
) -> None:
    key_pair = KeyPair("ec6e84f8255cbd7243599545364fd7364a83830774d4c873aaba9bd5d60c773e")
    js = oracle.request(
        "signAndEncodeEntry",
        {
            "privateKey": key_pair.private_key(),
            "seqNum": str(seq_num),
            "backlink": backlink,
            "skiplink": skiplink,
            "operation": "00",
        },
    )
    assert not js.accepted, f"p2panda-js signed {js.ok}"
    with pytest.raises(PandanodeError):
        sign_and_encode_entry(
            b"\x00", key_pair, seq_num=seq_num, backlink=backlink, skiplink=skiplink
        )


@pytest.mark.parametrize("log_id", [2**64, 2**64 + 5, 2**65 + 300])
def test_a_log_id_above_u64_wraps_around_in_js_but_is_refused_by_us(
    oracle: Oracle, log_id: int
) -> None:
    # p2panda-js 0.8.1 passes the BigInt to WebAssembly as a u64, which keeps the low 64 bits:
    # it silently signs an entry for another log. We refuse the argument instead.
    key_pair = KeyPair("ec6e84f8255cbd7243599545364fd7364a83830774d4c873aaba9bd5d60c773e")
    js = oracle.sign_and_encode_entry(key_pair.private_key(), b"\x00", log_id=log_id)
    assert oracle.decode_entry(js)["logId"] == str(log_id % 2**64)
    with pytest.raises(PandanodeError):
        sign_and_encode_entry(b"\x00", key_pair, log_id=log_id)


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_spec_vector_entries_decode_alike_and_re_sign_identically_in_js(
    oracle: Oracle, spec_vectors: dict[str, Any], name: str
) -> None:
    vector = spec_vectors[name]
    data = bytes.fromhex(vector["entry"])
    ours = decode_entry(data)
    assert entry_json(ours) == oracle.decode_entry(data)
    assert ours.hash == vector["entry_hash"] == oracle.generate_hash(data)
    payload = bytes.fromhex(vector.get("operation") or vector["payload"])
    resigned_by_js = oracle.sign_and_encode_entry(
        vector["private_key"],
        payload,
        log_id=ours.log_id,
        seq_num=ours.seq_num,
        backlink=ours.backlink,
        skiplink=ours.skiplink,
    )
    assert resigned_by_js == data

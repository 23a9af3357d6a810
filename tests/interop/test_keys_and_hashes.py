"""Key pairs, signatures and YASMF hashes agree with p2panda-js 0.8.1 (spec §1.2, §1.3)."""

from __future__ import annotations

import random

import pytest

from pandanode.core import KeyPair, generate_hash, verify_signature

from .oracle_client import Oracle, OracleError

pytestmark = pytest.mark.interop

# BLAKE3 works in 64-byte blocks and 1024-byte chunks: every boundary is covered.
HASH_SIZES = (0, 1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 1023, 1024, 1025, 2047, 2048, 2049, 4096)


def test_generate_hash_equals_js_generate_hash_for_random_data_including_empty(
    oracle: Oracle,
) -> None:
    rng = random.Random(1)
    samples = [rng.randbytes(size) for size in HASH_SIZES]
    samples += [rng.randbytes(rng.randrange(0, 5000)) for _ in range(200)]
    samples += [b"\x00" * 100_000, bytes.fromhex("aabbcc")]
    answers = oracle.batch([("generateHash", {"data": data.hex()}) for data in samples])
    for data, answer in zip(samples, answers, strict=True):
        assert generate_hash(data) == answer.unwrap(), f"hash of {len(data)} bytes differs"


def test_generate_hash_of_aabbcc_is_the_spec_example(oracle: Oracle) -> None:
    expected = "0020d5f1c831db4153ae65d0bd3edf6b88eb8f5c9985e35d5192e371f5b469eeb4c4"
    assert oracle.generate_hash(bytes.fromhex("aabbcc")) == expected
    assert generate_hash(bytes.fromhex("aabbcc")) == expected


def test_public_key_from_private_key_equals_js_for_random_seeds(oracle: Oracle) -> None:
    rng = random.Random(2)
    seeds = [rng.randbytes(32).hex() for _ in range(100)] + ["00" * 32, "ff" * 32]
    answers = oracle.batch([("keyPair", {"privateKey": seed}) for seed in seeds])
    for seed, answer in zip(seeds, answers, strict=True):
        js = answer.unwrap()
        ours = KeyPair(seed)
        assert ours.public_key() == js["publicKey"], f"public key of {seed} differs"
        assert ours.private_key() == js["privateKey"] == seed


def test_key_pairs_made_by_js_load_in_python_with_the_same_public_key(oracle: Oracle) -> None:
    answers = oracle.batch([("keyPair", {}) for _ in range(50)])
    for answer in answers:
        js = answer.unwrap()
        assert KeyPair(js["privateKey"]).public_key() == js["publicKey"]


def test_key_pairs_made_by_us_load_in_js_with_the_same_public_key(oracle: Oracle) -> None:
    ours = [KeyPair() for _ in range(50)]
    answers = oracle.batch([("keyPair", {"privateKey": k.private_key()}) for k in ours])
    for key_pair, answer in zip(ours, answers, strict=True):
        assert answer.unwrap()["publicKey"] == key_pair.public_key()


def test_js_sign_and_verify_work_on_the_utf8_of_the_hex_string_not_on_its_bytes(
    oracle: Oracle,
) -> None:
    # A p2panda-js 0.8.1 quirk (its docs say "bytes encoded as hex"): KeyPair.sign('70616e6461')
    # signs the ten characters, not the five bytes of "panda". Entries are not affected: Bamboo
    # signs the raw entry bytes (checked in test_entries.py).
    key_pair = KeyPair("4c21b14046f284f87f1ea4be4b973664221ad483079a68ed35a6812553b41176")
    text = b"panda".hex()
    js_signature = oracle.sign(key_pair.private_key(), text)
    assert js_signature == key_pair.sign(text.encode()).hex()
    assert js_signature != key_pair.sign(b"panda").hex()
    assert oracle.verify_signature(key_pair.public_key(), text, key_pair.sign(text.encode()).hex())
    assert not oracle.verify_signature(key_pair.public_key(), text, key_pair.sign(b"panda").hex())


def test_signatures_are_byte_identical_to_js_because_ed25519_is_deterministic(
    oracle: Oracle,
) -> None:
    rng = random.Random(3)
    cases = [
        (rng.randbytes(32).hex(), rng.randbytes(rng.randrange(1, 600)).hex()) for _ in range(100)
    ]
    answers = oracle.batch([("sign", {"privateKey": key, "data": text}) for key, text in cases])
    for (key, text), answer in zip(cases, answers, strict=True):
        assert KeyPair(key).sign(text.encode()).hex() == answer.unwrap()


def _tamper(hex_string: str, index: int) -> str:
    raw = bytearray(bytes.fromhex(hex_string))
    raw[index % len(raw)] ^= 0x01
    return raw.hex()


def test_verify_signature_agrees_with_js_on_good_and_tampered_inputs(oracle: Oracle) -> None:
    # The signed message is the hex text itself (see the quirk above), including the empty one.
    rng = random.Random(4)
    checks: list[tuple[str, str, str, str, bool]] = []
    for i in range(60):
        key_pair = KeyPair(rng.randbytes(32).hex())
        other = KeyPair(rng.randbytes(32).hex())
        text = rng.randbytes(rng.randrange(1, 300)).hex() if i else ""
        signature = key_pair.sign(text.encode()).hex()
        public_key = key_pair.public_key()
        checks += [
            ("good", public_key, text, signature, True),
            ("signature bit", public_key, text, _tamper(signature, rng.randrange(64)), False),
            ("other key", other.public_key(), text, signature, False),
            ("other signer", public_key, text, other.sign(text.encode()).hex(), False),
            ("public key bit", _tamper(public_key, rng.randrange(32)), text, signature, False),
        ]
        if text:
            checks.append(
                ("data bit", public_key, _tamper(text, rng.randrange(64)), signature, False)
            )
            checks.append(("data extended", public_key, text + "00", signature, False))
    answers = oracle.batch(
        [
            ("verifySignature", {"publicKey": pk, "data": text, "signature": sig})
            for _, pk, text, sig, _ in checks
        ]
    )
    for (what, public_key, text, signature, expected), answer in zip(checks, answers, strict=True):
        ours = verify_signature(public_key, text.encode(), signature)
        # p2panda-js throws for a public key that is not a curve point (a flipped bit can make
        # one): a refusal too.
        js = answer.accepted and answer.ok is True
        assert ours is js is expected, f"{what}: ours {ours}, js {answer}"


def test_verify_signature_accepts_bytes_and_hex_alike() -> None:
    key_pair = KeyPair("4c21b14046f284f87f1ea4be4b973664221ad483079a68ed35a6812553b41176")
    signature = key_pair.sign(b"panda")
    assert verify_signature(key_pair.public_key_bytes(), b"panda", signature)
    assert verify_signature(key_pair.public_key(), b"panda", signature.hex())


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        pytest.param("ab" * 31, "00" * 64, id="short_public_key"),
        pytest.param("ab" * 32, "00" * 63, id="short_signature"),
        pytest.param("zz" * 32, "00" * 64, id="public_key_not_hex"),
        pytest.param("02" + "00" * 31, "00" * 64, id="public_key_not_a_curve_point"),
    ],
)
def test_malformed_keys_and_signatures_never_verify(
    oracle: Oracle, public_key: str, signature: str
) -> None:
    # p2panda-js throws on malformed input; ours answers False. Neither says "valid".
    try:
        js_valid = oracle.verify_signature(public_key, "da7a", signature)
    except OracleError:
        js_valid = False
    assert js_valid is False
    assert verify_signature(public_key, b"da7a", signature) is False

"""Batch signature checks: the C extension and its PyNaCl fallback give the same answers, the
answers libsodium gives one signature at a time, and refuse malformed items alike."""

from __future__ import annotations

import shutil
import sysconfig
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pandanode.core import KeyPair, SignatureError, decode_entry, sign_and_encode_entry, signatures
from pandanode.core.entry import verify_entries
from pandanode.core.keypair import verify_signature
from pandanode.core.lipmaa import lipmaa
from pandanode.core.signatures import SignedItem, verify_batch_pynacl

Verify = Callable[[Iterable[SignedItem]], list[bool]]

KEY = KeyPair("ec6e84f8255cbd7243599545364fd7364a83830774d4c873aaba9bd5d60c773e")
OTHER = KeyPair("799faf7a1fa47c54fac705f30d3c4d80c40efb562da19315fabefcc995a228a1")
# The order of the Ed25519 base point: S + L is the same scalar, encoded non-canonically.
L = 2**252 + 27742317777372353535851937790883648493
P = 2**255 - 19


def native() -> Verify:
    try:
        from pandanode.core._verify import verify_many
    except ImportError:
        pytest.skip("the C extension pandanode.core._verify is not built (no C compiler)")
    return verify_many


@pytest.fixture(params=["extension", "pynacl"])
def verify(request: pytest.FixtureRequest) -> Verify:
    """Each implementation in turn."""
    return native() if request.param == "extension" else verify_batch_pynacl


def both(items: list[SignedItem]) -> list[bool]:
    """The answers of both implementations, which must agree."""
    ours = native()(items)
    fallback = verify_batch_pynacl(items)
    assert ours == fallback
    return ours


def item(message: bytes, key: KeyPair = KEY) -> SignedItem:
    return key.sign(message), message, key.public_key_bytes()


def flipped(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def test_valid_signatures_verify() -> None:
    items = [item(b""), item(b"hello"), item(b"x" * 100_000), item(b"hello", OTHER)]
    assert both(items) == [True] * 4


@pytest.mark.parametrize("field", [0, 1, 2], ids=["signature", "message", "public_key"])
def test_a_flipped_bit_anywhere_fails_the_signature_and_only_it(field: int) -> None:
    signature, message, public_key = item(b"a message of some bytes")
    original = (signature, message, public_key)
    size = len(original[field]) * 8
    items: list[SignedItem] = []
    for bit in range(size):
        parts = list(original)
        parts[field] = flipped(original[field], bit)
        items.append((parts[0], parts[1], parts[2]))
    answers = both([original, *items, original])
    assert answers[0] and answers[-1]
    # A flipped sign bit of the key can still decode to a point, never to the signer's.
    assert answers[1:-1] == [False] * size


def test_a_signature_by_another_key_fails() -> None:
    signature, message, _ = item(b"hello")
    assert both([(signature, message, OTHER.public_key_bytes())]) == [False]


SMALL_ORDER_KEYS = {
    "zero (order 4)": bytes(32),
    "identity (order 1)": b"\x01" + bytes(31),
    "order 8": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order 8, other": bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
    ),
    "p - 1 (order 2)": (P - 1).to_bytes(32, "little"),
    "p, non-canonical zero": P.to_bytes(32, "little"),
    "p + 1, non-canonical identity": (P + 1).to_bytes(32, "little"),
}


@pytest.mark.parametrize("public_key", SMALL_ORDER_KEYS.values(), ids=SMALL_ORDER_KEYS.keys())
def test_small_order_and_non_canonical_keys_verify_nothing(public_key: bytes) -> None:
    # R = identity, S = 0 satisfies [S]B = R + [h]A for the identity key and any message: only
    # the refusal of small-order keys stops it.
    forged = b"\x01" + bytes(31) + bytes(32)
    items = [(forged, message, public_key) for message in (b"", b"hello", b"x" * 1000)]
    items.append((item(b"hello")[0], b"hello", public_key))
    assert both(items) == [False] * len(items)


def test_a_non_canonical_s_fails_though_it_is_the_same_scalar() -> None:
    signature, message, public_key = item(b"hello")
    s = int.from_bytes(signature[32:], "little")
    # S < L < 2^253, so S + L still fits in 32 bytes; libsodium refuses S ≥ L.
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert both([(signature, message, public_key), (malleated, message, public_key)]) == [
        True,
        False,
    ]


def test_the_empty_batch_is_empty() -> None:
    assert both([]) == []
    assert native()(()) == verify_batch_pynacl(()) == []


def test_a_large_batch_answers_each_item_as_libsodium_alone_does() -> None:
    keys = [KeyPair() for _ in range(8)]
    items: list[SignedItem] = []
    for index in range(3000):
        signature, message, public_key = item(index.to_bytes(4, "big") * 20, keys[index % 8])
        if index % 7 == 3:
            message = message + b"!"
        if index % 11 == 5:
            public_key = keys[(index + 1) % 8].public_key_bytes()
        items.append((signature, message, public_key))
    answers = both(items)
    assert answers == [verify_signature(k, m, s) for s, m, k in items]
    assert 0 < answers.count(False) < len(items)


def test_threads_checking_batches_at_once_each_get_their_own_answers() -> None:
    verify_many = native()
    batches = [[item(bytes([n, i])) for i in range(200)] for n in range(4)]
    for n, batch in enumerate(batches):
        if n % 2:
            batch[n] = (batch[n][0], b"tampered", batch[n][2])
    answers: dict[int, list[bool]] = {}

    def run(n: int) -> None:
        answers[n] = verify_many(batches[n])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for n in range(4):
        expected = [True] * 200
        if n % 2:
            expected[n] = False
        assert answers[n] == expected


GOOD = item(b"hello")

MALFORMED: dict[str, tuple[Any, type[Exception], str]] = {
    "not iterable": (42, TypeError, "items must be a list or tuple"),
    "item not a tuple": ([GOOD, [*GOOD]], TypeError, "item 1 must be a (signature, message, "),
    "tuple of two": ([GOOD[:2]], TypeError, "item 0 must be a (signature, message, public_key)"),
    "tuple of four": ([(*GOOD, b"")], TypeError, "item 0 must be a (signature, message, "),
    "str signature": (
        [(GOOD[0].hex(), GOOD[1], GOOD[2])],
        TypeError,
        "item 0: signature must be bytes, not str",
    ),
    "bytearray message": (
        [GOOD, (GOOD[0], bytearray(GOOD[1]), GOOD[2])],
        TypeError,
        "item 1: message must be bytes, not bytearray",
    ),
    "memoryview key": (
        [(GOOD[0], GOOD[1], memoryview(GOOD[2]))],
        TypeError,
        "item 0: public_key must be bytes, not memoryview",
    ),
    "None message": ([(GOOD[0], None, GOOD[2])], TypeError, "item 0: message must be bytes"),
    "signature of 63 bytes": (
        [GOOD, GOOD, (GOOD[0][:63], GOOD[1], GOOD[2])],
        ValueError,
        "item 2: a signature is 64 bytes, got 63",
    ),
    "signature of 65 bytes": (
        [(GOOD[0] + b"\x00", GOOD[1], GOOD[2])],
        ValueError,
        "item 0: a signature is 64 bytes, got 65",
    ),
    "empty signature": (
        [(b"", GOOD[1], GOOD[2])],
        ValueError,
        "item 0: a signature is 64 bytes, got 0",
    ),
    "key of 31 bytes": (
        [(GOOD[0], GOOD[1], GOOD[2][:31])],
        ValueError,
        "item 0: a public key is 32 bytes, got 31",
    ),
    "key of 33 bytes": (
        [(GOOD[0], GOOD[1], GOOD[2] + b"\x00")],
        ValueError,
        "item 0: a public key is 32 bytes, got 33",
    ),
}


@pytest.mark.parametrize(("items", "error", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_item_is_refused_with_a_clear_error(
    verify: Verify, items: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        verify(items)
    assert type(info.value) is error
    assert str(info.value).startswith(message)


def test_any_iterable_of_items_is_taken(verify: Verify) -> None:
    assert verify(iter([GOOD, GOOD])) == [True, True]
    assert verify(x for x in [GOOD]) == [True]


def test_bytes_subclasses_are_bytes(verify: Verify) -> None:
    class Raw(bytes):
        pass

    signature, message, public_key = GOOD
    assert verify([(Raw(signature), Raw(message), Raw(public_key))]) == [True]


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """verify_batch as it is without the C extension."""
    monkeypatch.setattr(signatures, "_native", None)
    yield


@pytest.fixture(params=["extension", "fallback"])
def either(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """verify_batch with the extension, then with the PyNaCl fallback forced."""
    if request.param == "extension":
        native()
    else:
        monkeypatch.setattr(signatures, "_native", None)
    return str(request.param)


def test_verify_batch_uses_the_extension_when_it_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verify_many = native()
    assert signatures.NATIVE
    calls: list[int] = []

    def counting(items: Iterable[SignedItem]) -> list[bool]:
        listed = list(items)
        calls.append(len(listed))
        return verify_many(listed)

    monkeypatch.setattr(signatures, "_native", counting)
    assert signatures.verify_batch([GOOD, GOOD]) == [True, True]
    assert calls == [2], "one call for the batch"


def test_verify_batch_falls_back_to_pynacl_with_the_same_answers(fallback: None) -> None:
    signature, message, public_key = GOOD
    items = [GOOD, (signature, message + b"!", public_key), (signature, message, bytes(32))]
    assert signatures.verify_batch(items) == [True, False, False]
    with pytest.raises(ValueError, match="item 0: a signature is 64 bytes, got 3"):
        signatures.verify_batch([(b"abc", message, public_key)])


def test_the_extension_is_built_where_a_c_compiler_and_python_headers_are() -> None:
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if shutil.which(sysconfig.get_config_var("CC").split()[0]) is None or not headers.exists():
        pytest.skip("no C compiler or no Python headers here: the fallback is expected")
    assert signatures.NATIVE, "setup.py builds pandanode.core._verify: run `make setup`"


def log(length: int) -> list[bytes]:
    entries: list[bytes] = []
    hashes: dict[int, str] = {}
    for seq_num in range(1, length + 1):
        entry = sign_and_encode_entry(
            seq_num.to_bytes(2, "big"),
            KEY,
            seq_num=seq_num,
            backlink=hashes.get(seq_num - 1),
            skiplink=hashes.get(lipmaa(seq_num)),
        )
        hashes[seq_num] = decode_entry(entry).hash
        entries.append(entry)
    return entries


def test_verify_entries_rejects_as_decode_entry_does(either: str) -> None:
    entries = log(5)
    tampered = bytearray(entries[2])
    tampered[-1] ^= 0x01
    entries[2] = bytes(tampered)
    with pytest.raises(SignatureError) as alone:
        decode_entry(entries[2])

    errors = verify_entries([decode_entry(entry, verify=False) for entry in entries])

    assert [error is None for error in errors] == [True, True, False, True, True]
    error = errors[2]
    assert isinstance(error, SignatureError)
    assert type(error) is type(alone.value)
    assert (error.message, error.reason) == (alone.value.message, alone.value.reason)
    assert verify_entries([]) == []


def test_verify_entries_gives_each_rejected_entry_its_own_error(either: str) -> None:
    entries = [decode_entry(entry, verify=False) for entry in log(2)]
    forged = [decode_entry(entry[:-1] + bytes([entry[-1] ^ 1]), verify=False) for entry in log(2)]
    first, second = verify_entries(forged)
    assert first is not None and second is not None and first is not second
    assert verify_entries(entries) == [None, None]

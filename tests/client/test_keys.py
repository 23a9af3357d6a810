"""Key pair files: aquadoggo's format, owner-only permissions, and keys that never travel."""

from __future__ import annotations

import stat
from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.client import (
    Client,
    KeyFileError,
    KeyPair,
    generate_key_pair,
    load_key_pair,
    save_key_pair,
)
from pandanode.services.node import Node


def test_saved_key_is_64_hex_characters_with_mode_0600(tmp_path: Path) -> None:
    key_pair = generate_key_pair()
    path = save_key_pair(key_pair, tmp_path / "nested" / "private-key")
    data = path.read_bytes()
    assert data == key_pair.private_key().encode("ascii")  # no trailing newline
    assert len(data) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_pair(path).public_key() == key_pair.public_key()


def test_existing_key_is_never_overwritten_by_default(tmp_path: Path) -> None:
    path = save_key_pair(KeyPair(), tmp_path / "key")
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        save_key_pair(KeyPair(), path)
    assert path.read_bytes() == before
    path.chmod(0o644)
    replacement = KeyPair()
    save_key_pair(replacement, path, overwrite=True)
    assert path.read_bytes() == replacement.private_key().encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_aquadoggo_key_files_load_with_whitespace_tolerated(tmp_path: Path) -> None:
    key_pair = KeyPair()
    path = tmp_path / "private-key"
    path.write_text(key_pair.private_key() + "\n")
    path.chmod(0o600)
    assert load_key_pair(path).public_key() == key_pair.public_key()


def test_bad_key_files_raise_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="pandanode key new"):
        load_key_pair(tmp_path / "missing")
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key")
    garbage.chmod(0o600)
    with pytest.raises(KeyFileError, match="does not hold a private key"):
        load_key_pair(garbage)


def test_a_key_file_others_can_read_loads_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KeyPair().private_key())
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        load_key_pair(path)


class _Recorder(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        self.sent.append(request.SerializeToString())
        return await continuation(details, request)


async def test_the_private_key_is_never_sent(node: Node, tmp_path: Path) -> None:
    recorder = _Recorder()
    path = save_key_pair(KeyPair(), tmp_path / "key")
    key_pair = load_key_pair(path)
    async with Client.connect(node.address, key_pair=path, interceptors=[recorder]) as client:  # type: ignore[list-item]
        schema_id = await client.create_schema("note", "A note", {"text": "str"})
        note = await client.create(schema_id, {"text": "hello"})
        await client.update(note, {"text": "hello again"})
        await client.delete(note.document_id)
    assert len(recorder.sent) >= 6
    secret = bytes.fromhex(key_pair.private_key())
    for message in recorder.sent:
        assert secret not in message
        assert key_pair.private_key().encode() not in message

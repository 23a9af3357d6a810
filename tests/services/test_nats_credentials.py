"""The embedded NATS server of a data directory takes only the user of
``<data_dir>/nats.credentials`` (random, mode 0600): another local user cannot connect to its
loopback port and publish events; every service of the node connects with it, and the password
is on no command line and in no log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nats
import pytest

from pandanode.client import Client, KeyPair
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import (
    NATS_CREDENTIALS_FILE,
    EmbeddedNats,
    load_or_create_credentials,
    read_credentials,
    reported_port,
    with_credentials,
)

from .support import NodeProcess, children_of, eventually, node_settings


async def refused(url: str) -> bool:
    """Whether NATS at ``url`` refuses a client with the URL's credentials (or none).

    Spoken in the NATS protocol itself (INFO, CONNECT, PING): the server answers PONG, or
    ``-ERR 'Authorization Violation'``.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"INFO ")
        connect: dict[str, object] = {"verbose": False, "pedantic": False}
        if parts.username:
            connect |= {"user": unquote(parts.username), "pass": unquote(parts.password or "")}
        writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), 5)
        assert answer.startswith((b"PONG", b"-ERR")), answer
        return b"Authorization Violation" in answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def accepted(url: str) -> bool:
    client = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    try:
        return bool(client.is_connected)
    finally:
        await client.close()


def test_credentials_are_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / NATS_CREDENTIALS_FILE
    first = load_or_create_credentials(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_credentials(path) == first == read_credentials(path)
    assert len(first[1]) >= 32


def test_credentials_others_could_read_are_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / NATS_CREDENTIALS_FILE
    leaked = load_or_create_credentials(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        fresh = load_or_create_credentials(path)
    assert fresh != leaked
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "other users" in caplog.text and leaked[1] not in caplog.text


async def test_a_connection_without_the_credentials_is_refused_and_the_node_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.INFO):
        async with Node(node_settings(data_dir)) as node:
            user, password = read_credentials(data_dir / NATS_CREDENTIALS_FILE)
            plain = node.nats_url.replace(f"{user}:{password}@", "")
            assert plain != node.nats_url
            assert await refused(plain)
            assert await refused(with_credentials(plain, user, "wrong"))
            assert await accepted(node.nats_url)
            async with Client.connect(node.address, key_pair=KeyPair()) as client:
                venue = await client.create_schema("venue", "A place", {"name": "str"})
                assert str((await client.get_schema(venue)).id) == venue
    assert password not in caplog.text
    assert f"{user}:***@" in caplog.text  # the log names the server, not its password


async def test_a_server_config_with_the_password_is_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    server = EmbeddedNats.for_data_dir(tmp_path / "data")
    await server.start()
    try:
        config = server.store_dir / "nats-server.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert server.pid is not None
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert server.password.encode() not in cmdline
        assert await refused(server.url)
        assert await accepted(server.client_url)
    finally:
        await server.stop()


async def test_up_s_services_connect_with_the_credentials_no_one_else_can(
    up: tuple[NodeProcess, str, Path],
) -> None:
    process, address, data_dir = up
    assert process.process is not None
    credentials = data_dir / NATS_CREDENTIALS_FILE
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    user, password = read_credentials(credentials)
    children = children_of(process.process.pid)
    url = f"nats://127.0.0.1:{reported_port(data_dir / 'nats', children['nats-server'])}"
    assert await refused(url)
    assert await accepted(with_credentials(url, user, password))
    for pid in [process.process.pid, *children.values()]:
        assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    # Every service works over the authenticated connection: a write is announced (ingest),
    # materialized (query) and read back.
    async with Client.connect(address, key_pair=KeyPair()) as client:
        venue = await client.create_schema("venue", "A place", {"name": "str"})
        hall = await client.create(venue, {"name": "Hall"})

        async def materialized() -> bool:
            try:
                document = await client.get_document(hall.document_id)
            except Exception:
                return False
            return bool(document.fields.get("name") == "Hall")

        await eventually(materialized, timeout=30, what="the document materialized")

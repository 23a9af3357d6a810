"""Per-service NATS users (:mod:`pandanode.services.runtime.nats_users`) against a real
nats-server: each service does its whole work as its own user, and a user that tries a subject
its service does not need is refused by the server (a permissions violation), so the query
service, say, cannot forge ``operations.ingested`` events."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from pandanode.client import Client, KeyPair
from pandanode.services.node import Node
from pandanode.services.runtime.bus import connect_bus
from pandanode.services.runtime.events import OPERATIONS_INGESTED, STREAM_NAME
from pandanode.services.runtime.nats_server import (
    EmbeddedNats,
    read_credentials,
    service_credentials_file,
)
from pandanode.services.runtime.nats_users import (
    ADMIN_USER,
    SERVICE_USERS,
    credentials_file_name,
    inbox_prefix,
    may_manage_stream,
    write_credentials,
)
from pandanode.services.runtime.settings import Settings
from tests.services.discovery.support import fast_settings
from tests.services.support import eventually

Permissioned = tuple[EmbeddedNats, Path]


@pytest.fixture
async def permissioned(tmp_path: Path) -> AsyncIterator[Permissioned]:
    """A nats-server with the deployment's users; the directory of their credentials files."""
    secrets = tmp_path / "nats-secrets"
    server = EmbeddedNats(store_dir=tmp_path / "nats", users=write_credentials(secrets))
    await server.start()
    try:
        yield server, secrets
    finally:
        await server.stop()


class Connection:
    """A raw NATS connection as one user, recording the errors the server sends it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.client: NatsClient | None = None

    async def open(self, server: EmbeddedNats, credentials: Path) -> NatsClient:
        user, password = read_credentials(credentials)

        async def on_error(err: Exception) -> None:
            self.errors.append(str(err))

        self.client = await nats.connect(
            server.url,
            user=user,
            password=password,
            inbox_prefix=inbox_prefix(user),
            error_cb=on_error,
            allow_reconnect=False,
        )
        return self.client

    def lower_errors(self) -> list[str]:
        return [error.lower() for error in self.errors]

    async def refused(self, subject: str) -> bool:
        """Whether the server reported a permissions violation naming ``subject``."""

        async def reported() -> bool:
            # nats-py reports the server's error in lower case.
            wanted = subject.lower()
            return any("permissions violation" in e and wanted in e for e in self.lower_errors())

        return await eventually(reported, timeout=5, what=f"a violation for {subject}")


async def test_the_query_user_cannot_publish_an_ingested_event(permissioned: Permissioned) -> None:
    server, secrets = permissioned
    # Ingest makes the stream, as in a deployment.
    ingest = await connect_bus(
        server.url, user="ingest", password=read_credentials(secrets / "ingest.credentials")[1]
    )
    try:
        before = await ingest.last_sequence()
        query = Connection()
        client = await query.open(server, secrets / credentials_file_name("query"))
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await client.jetstream().publish(
                OPERATIONS_INGESTED.subject_filter, b"forged", timeout=1
            )
        assert await query.refused(OPERATIONS_INGESTED.subject_filter)
        assert await ingest.last_sequence() == before  # nothing reached the stream
        await client.close()
    finally:
        await ingest.close()


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("discovery", OPERATIONS_INGESTED.subject_filter),
        ("ingest", "pandanode.v1.evt.peer.discovered.ab"),
        ("replication", f"$JS.API.STREAM.DELETE.{STREAM_NAME}"),
        ("query", f"$JS.API.STREAM.PURGE.{STREAM_NAME}"),
        ("query", f"$JS.API.STREAM.UPDATE.{STREAM_NAME}"),
    ],
)
async def test_a_service_user_is_refused_a_subject_its_service_does_not_need(
    permissioned: Permissioned, user: str, subject: str
) -> None:
    server, secrets = permissioned
    connection = Connection()
    client = await connection.open(server, secrets / credentials_file_name(user))
    try:
        await client.publish(subject, b"{}")
        await client.flush()
        assert await connection.refused(subject)
    finally:
        await client.close()


async def test_a_service_user_cannot_read_another_user_s_replies(
    permissioned: Permissioned,
) -> None:
    server, secrets = permissioned
    connection = Connection()
    client = await connection.open(server, secrets / credentials_file_name("query"))
    try:
        await client.subscribe("_INBOX.ingest.>")
        await client.flush()
        assert await connection.refused("_INBOX.ingest.>")
    finally:
        await client.close()


@pytest.mark.timeout(120)
async def test_each_service_does_its_whole_work_as_its_own_nats_user(
    tmp_path: Path, permissioned: Permissioned
) -> None:
    """Another node holds a document; our discovery finds it (publishes peer.discovered),
    replication hears of it and syncs the document into ingest (consumers, stream reads),
    ingest announces it (publish), query materializes it (a durable consumer)."""
    server, secrets = permissioned

    def settings(service: str, **changes: Any) -> Settings:
        return fast_settings(
            tmp_path / service,
            nats_url=server.url,
            nats_credentials_file=str(secrets / credentials_file_name(service)),
            **changes,
        )

    async with Node(fast_settings(tmp_path / "peer")) as peer:
        async with Client.connect(peer.address, key_pair=KeyPair()) as writer:
            venue = await writer.create_schema("venue", "A place", {"name": "str"})
            hall = await writer.create(venue, {"name": "Hall"})
        async with (
            Node(settings("ingest"), ("ingest",)) as ingest,
            Node(settings("query"), ("query",)) as query,
            Node(
                settings("replication", ingest_address=ingest.address),
                ("replication",),
            ),
            Node(
                settings("discovery", bootstrap_peers=peer.address),
                ("discovery",),
            ),
            Client.connect(query.address) as reader,
        ):

            async def replicated() -> bool:
                try:
                    document = await reader.get_document(hall.document_id)
                except Exception:
                    return False
                return bool(document.fields.get("name") == "Hall")

            await eventually(replicated, timeout=60, what="the peer's document replicated")
    # An operator checks the stopped ingest as admin, credentials from a file, not a URL.
    checked = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable, "-m", "pandanode.services.cli", "check",
            "--data-dir", str(tmp_path / "ingest"), "--nats-url", server.url,
            "--nats-credentials-file", str(secrets / credentials_file_name(ADMIN_USER)),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_up_gives_each_service_process_its_own_nats_user(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = EmbeddedNats.for_data_dir(data_dir)
    assert set(server.users) == set(SERVICE_USERS)
    for service in SERVICE_USERS:
        path = service_credentials_file(data_dir, service)
        assert read_credentials(path) == (service, server.users[service])
        assert path.stat().st_mode & 0o077 == 0
    await server.start()
    try:
        query = Connection()
        client = await query.open(server, service_credentials_file(data_dir, "query"))
        await client.publish(OPERATIONS_INGESTED.subject_filter, b"forged")
        await client.flush()
        assert await query.refused(OPERATIONS_INGESTED.subject_filter)
        await client.close()
        # The node's own user (tools such as `pandanode check`) may still do anything.
        bus = await connect_bus(server.client_url)
        assert await bus.last_sequence() == 0
        await bus.close()
    finally:
        await server.stop()


def test_only_ingest_admin_and_users_outside_the_table_manage_the_stream() -> None:
    assert may_manage_stream("ingest") and may_manage_stream("admin")
    assert may_manage_stream(None) and may_manage_stream("pandanode-1a2b3c4d")
    assert not any(may_manage_stream(user) for user in ("query", "discovery", "replication"))

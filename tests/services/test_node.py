"""The node as a person meets it: the ``pandanode`` command, health, reflection, crashes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pandanode.client import Client
from pandanode.client._endpoints import EndpointChannel
from pandanode.core import KeyPair
from pandanode.discovery.v1 import discovery_pb2, discovery_pb2_grpc
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.node.v1 import node_pb2, node_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port

from .ingest.helpers import rejection_of
from .support import (
    PANDANODE,
    FieldDefinitionLog,
    NodeProcess,
    announced_operation_ids,
    assert_checks_clean,
    children_of,
    eventually,
    gone,
    health_of,
    node_settings,
)


@pytest.fixture
async def node_process(tmp_path: Path) -> AsyncIterator[tuple[NodeProcess, str]]:
    address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(["up", "--data-dir", str(tmp_path / "data"), "--listen", address])
    process.start()
    try:
        await process.wait_serving(address)
        yield process, address
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill()


async def test_pandanode_up_serves_and_sigterm_drains_and_exits_cleanly(
    node_process: tuple[NodeProcess, str],
) -> None:
    process, address = node_process
    author = FieldDefinitionLog(KeyPair(), log_id=0)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        response = await stub.Publish(author.entry(1))
        assert response.next_args.seq_num == 2
    assert process.terminate() == 0
    assert "draining" in process.output()


async def test_reflection_lists_the_services_and_describes_ingest(node: Node) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask(
            request: reflection_pb2.ServerReflectionRequest,
        ) -> reflection_pb2.ServerReflectionResponse:
            call = stub.ServerReflectionInfo(iter([request]))
            async for response in call:
                return response
            raise AssertionError("no reflection response")

        listed = await ask(reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {service.name for service in listed.list_services_response.service}
        assert {"pandanode.ingest.v1.IngestService", "grpc.health.v1.Health"} <= names
        described = await ask(
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="pandanode.ingest.v1.IngestService"
            )
        )
        files = described.file_descriptor_response.file_descriptor_proto
        assert files, "reflection returned no file descriptor for IngestService"
        from google.protobuf import descriptor_pb2

        proto = descriptor_pb2.FileDescriptorProto.FromString(files[0])
        methods = {method.name for method in proto.service[0].method}
        assert {"Publish", "PublishStream", "NextArgs", "GetLogHeights", "ReadLog"} <= methods
        # The protos' comments come along (what `grpcurl describe` prints).
        comments = {location.leading_comments for location in proto.source_code_info.location}
        assert " Publishing entries and reading the logs they form.\n" in comments


async def test_health_reports_serving_for_the_node_and_ingest(node: Node) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "pandanode.ingest.v1.IngestService"):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_ingest_is_not_serving_while_it_cannot_announce_and_serving_once_it_can(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    settings = node_settings(tmp_path / "data", nats_url=nats_server.url)
    async with (
        Node(settings, services=("ingest",)) as node,
        grpc.aio.insecure_channel(node.address) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)

        async def status_is(wanted: int) -> bool:
            for service in ("", "pandanode.ingest.v1.IngestService"):
                request = health_pb2.HealthCheckRequest(service=service)
                if (await health.Check(request, timeout=2)).status != wanted:
                    return False
            return True

        await nats_server.stop()
        author = FieldDefinitionLog(KeyPair(), log_id=3)
        # Stored and acknowledged even so: the outbox keeps it until NATS is back.
        await ingest_pb2_grpc.IngestServiceStub(channel).Publish(author.entry(1), timeout=10)
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        await eventually(lambda: status_is(not_serving), what="NOT_SERVING without NATS")
        await nats_server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await eventually(lambda: status_is(serving), timeout=30, what="SERVING again")
        assert not node.failed.is_set()

        async def announced() -> list[str]:
            return await announced_operation_ids(nats_server.url)

        assert await eventually(announced, timeout=30, what="the event") == [author.hashes[1]]


async def test_serve_ingest_alone_uses_an_external_nats_server(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(
        ["serve", "ingest", "--nats", nats_server.url, "--data-dir", str(tmp_path / "ingest")],
        env={"PANDANODE_LISTEN": address},
    )
    process.start()
    try:
        await process.wait_serving(address)
        author = FieldDefinitionLog(KeyPair(), log_id=7)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            await stub.Publish(author.entry(1))

        async def announced() -> list[str]:
            return await announced_operation_ids(nats_server.url)

        assert await eventually(announced, what="the event on the external NATS") == [
            author.hashes[1]
        ]
        assert not (tmp_path / "ingest" / "nats").exists()
    finally:
        assert process.terminate() == 0


def _lost_to_a_late_write(err: grpc.aio.AioRpcError) -> bool:
    """Whether grpc.aio replaced the server's status with its own failed write (grpc#36066).

    A write of the request iterator that Core rejects because the stream already ended makes
    the aio client report INTERNAL "Internal error from Core" instead of the status the server
    sent (grpc/grpc PR #43486, not released); which one wins is a race of the client's loop.
    """
    return err.code() is grpc.StatusCode.INTERNAL and err.details() == "Internal error from Core"


async def stream_until_killed(
    address: str,
    authors: list[FieldDefinitionLog],
    kill: Callable[[], None],
    codes: tuple[grpc.StatusCode, ...],
) -> set[str]:
    """Stream the authors' logs to ``address``, ``kill`` after 1,200 OKs; the acknowledged ids.

    The stream may then end with one of ``codes``; every answer before that must be OK.
    """
    acknowledged: set[str] = set()
    killed = asyncio.Event()

    async def requests() -> AsyncIterator[pb.PublishStreamRequest]:
        for seq_num in range(1, 2001):
            yield pb.PublishStreamRequest(items=[author.entry(seq_num) for author in authors])
            if killed.is_set():
                return

    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        try:
            async for response in stub.PublishStream(requests()):
                for result in response.results:
                    assert result.HasField("ok"), result.error
                    acknowledged.add(result.ok.operation_id)
                if len(acknowledged) >= 1200 and not killed.is_set():
                    kill()
                    killed.set()
        except grpc.aio.AioRpcError as err:
            assert err.code() in codes or _lost_to_a_late_write(err), err
    assert killed.is_set(), "the stream ended before the kill"
    return acknowledged


async def test_kill_9_while_streaming_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(["up", "--data-dir", str(data_dir), "--listen", address])
    process.start()
    await process.wait_serving(address)
    authors = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(4)]
    try:
        acknowledged = await stream_until_killed(
            address, authors, process.kill, (grpc.StatusCode.UNAVAILABLE,)
        )
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill()

    # As the kill left it: what was not announced yet is in the outbox, nothing is damaged.
    await assert_checks_clean(data_dir)

    # Restart on the same data directory, in-process this time, to look inside.
    async with Node(node_settings(data_dir)) as node:
        async with grpc.aio.insecure_channel(node.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            stored: set[str] = set()
            for author in authors:
                seq_nums = []
                async for page in stub.ReadLog(
                    pb.ReadLogRequest(public_key=author.key_pair.public_key(), log_id=author.log_id)
                ):
                    for entry in page.entries:
                        seq_nums.append(entry.seq_num)
                        assert entry.entry == author.entry_bytes(entry.seq_num)
                        stored.add(author.hashes[entry.seq_num])
                assert seq_nums == list(range(1, len(seq_nums) + 1)), "the log has a hole"
        assert acknowledged <= stored, "an acknowledged entry was lost"

        async def all_announced() -> list[str] | None:
            ids = await announced_operation_ids(node.nats_url)
            return ids if len(ids) >= len(stored) else None

        ids = await eventually(all_announced, timeout=30, what="every stored entry announced")
        assert sorted(ids) == sorted(stored), "the stream must hold exactly one event per entry"

    # Stopped again: every entry, log, index, event and view of the data directory holds up.
    await assert_checks_clean(data_dir)


# -- one OS process per service (`pandanode up` supervises them) --------------------------------


async def document_of(address: str, document_id: str) -> query_pb2.GetDocumentResponse | None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        try:
            return await stub.GetDocument(
                query_pb2.GetDocumentRequest(document_id=document_id), timeout=2
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                return None
            raise


async def test_pandanode_up_runs_nats_and_each_service_in_its_own_process(
    up: tuple[NodeProcess, str, Path],
) -> None:
    process, _, _ = up
    assert process.process is not None
    children = children_of(process.process.pid)
    assert set(children) == {
        "nats-server",
        "ingest",
        "query",
        "discovery",
        "replication",
        "gateway",
    }
    assert len(set(children.values())) == 6
    assert process.process.pid not in children.values()


async def test_every_service_answers_through_the_public_address(
    up: tuple[NodeProcess, str, Path],
) -> None:
    _, address, _ = up
    author = FieldDefinitionLog(KeyPair(), log_id=0)
    async with grpc.aio.insecure_channel(address) as channel:
        reflection_stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflection_stub.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = await call.read()
        await call.done_writing()
        names = {service.name for service in listed.list_services_response.service}
        assert {
            "pandanode.ingest.v1.IngestService",
            "pandanode.query.v1.QueryService",
            "pandanode.discovery.v1.DiscoveryService",
            "pandanode.node.v1.NodeService",
            "grpc.health.v1.Health",
        } <= names
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        published = await ingest.Publish(author.entry(1), timeout=10)  # unary
        assert published.next_args.seq_num == 2
        pages = [
            page
            async for page in ingest.ReadLog(  # server streaming
                pb.ReadLogRequest(public_key=author.key_pair.public_key(), log_id=0)
            )
        ]
        assert [entry.seq_num for page in pages for entry in page.entries] == [1]
        streamed = [
            response
            async for response in ingest.PublishStream(  # bidirectional streaming
                iter([pb.PublishStreamRequest(items=[author.entry(2)])])
            )
        ]
        assert streamed[0].results[0].HasField("ok")
        # A rejection keeps its status code and its ErrorInfo reason through the hop.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingest.Publish(pb.PublishRequest(entry=b"\x00not an entry", operation=b""))
        assert rejection_of(raised.value).code == grpc.StatusCode.INVALID_ARGUMENT
        assert rejection_of(raised.value).reason
        node_info = await discovery_pb2_grpc.DiscoveryServiceStub(channel).GetNodeInfo(
            discovery_pb2.GetNodeInfoRequest()
        )
        assert node_info.address == address, "discovery advertises the public address"
        endpoints = await node_pb2_grpc.NodeServiceStub(channel).GetEndpoints(
            node_pb2.GetEndpointsRequest()
        )
        assert set(endpoints.endpoints) == {
            "pandanode.ingest.v1.IngestService",
            "pandanode.query.v1.QueryService",
            "pandanode.discovery.v1.DiscoveryService",
            "pandanode.replication.v1.ReplicationService",
        }
        assert address not in endpoints.endpoints.values()
    document = await eventually(
        lambda: document_of(address, author.hashes[1]), what="the document materialized"
    )
    assert document.document.document_id == author.hashes[1]
    for service in ("", *endpoints.endpoints):
        assert await health_of(address, service) == health_pb2.HealthCheckResponse.SERVING


async def kill_and_wait_for_restart(process: NodeProcess, name: str) -> int:
    """kill -9 the node's child ``name`` (a service or nats-server); the new child's pid."""
    assert process.process is not None
    supervisor = process.process.pid
    old = children_of(supervisor)[name]
    os.kill(old, signal.SIGKILL)

    async def restarted() -> int | None:
        pid = children_of(supervisor).get(name)
        return pid if pid is not None and pid != old else None

    pid: int = await eventually(restarted, timeout=30, what=f"a new {name} process")
    return pid


async def test_a_killed_child_is_restarted_and_the_node_serves_again(
    up: tuple[NodeProcess, str, Path],
) -> None:
    process, address, data_dir = up
    assert process.process is not None
    await kill_and_wait_for_restart(process, "ingest")
    await process.wait_serving(address)
    author = FieldDefinitionLog(KeyPair(), log_id=3)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        response = await stub.Publish(author.entry(1), timeout=10)
    assert response.next_args.seq_num == 2
    pids = list(children_of(process.process.pid).values())
    assert process.terminate() == 0
    output = process.output()
    assert "ingest exited with -9; restarting" in output
    await gone(pids)
    await assert_checks_clean(data_dir)


async def test_health_says_not_serving_while_a_child_is_down(
    up: tuple[NodeProcess, str, Path],
) -> None:
    process, address, _ = up
    assert process.process is not None
    try:
        query = children_of(process.process.pid)["query"]
        os.kill(query, signal.SIGSTOP)  # hung, not dead: the supervisor's health check sees it

        async def not_serving() -> bool:
            status = await health_of(address, "pandanode.query.v1.QueryService")
            overall = await health_of(address)
            return bool(status == overall == health_pb2.HealthCheckResponse.NOT_SERVING)

        await eventually(not_serving, timeout=30, what="NOT_SERVING for a stopped query process")
        assert await health_of(address, "pandanode.ingest.v1.IngestService") == (
            health_pb2.HealthCheckResponse.SERVING
        )
        os.kill(query, signal.SIGCONT)
        await process.wait_serving(address)
    finally:
        pids = list(children_of(process.process.pid).values())
        assert process.terminate() == 0
        await gone(pids)


async def test_a_killed_nats_server_is_restarted_and_later_publishes_are_materialized(
    up: tuple[NodeProcess, str, Path],
) -> None:
    process, address, data_dir = up
    assert process.process is not None
    await kill_and_wait_for_restart(process, "nats-server")
    await process.wait_serving(address, timeout=60)
    author = FieldDefinitionLog(KeyPair(), log_id=5)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        await stub.Publish(author.entry(1), timeout=10)
    document = await eventually(
        lambda: document_of(address, author.hashes[1]),
        timeout=30,
        what="the document published after the restart materialized",
    )
    assert document.document.document_id == author.hashes[1]
    pids = list(children_of(process.process.pid).values())
    assert process.terminate() == 0
    assert "nats-server exited; restarting" in process.output()
    await gone(pids)
    await assert_checks_clean(data_dir)


async def test_killing_the_ingest_process_while_streaming_loses_no_acknowledged_entry(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(
        ["up", "--data-dir", str(data_dir), "--listen", address, "--no-lan-discovery"]
    )
    process.start()
    assert process.process is not None
    await process.wait_serving(address)
    ingest_pid = children_of(process.process.pid)["ingest"]
    authors = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(4)]
    try:
        acknowledged = await stream_until_killed(
            address,
            authors,
            lambda: os.kill(ingest_pid, signal.SIGKILL),
            (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN),
        )
        await process.wait_serving(address)
    finally:
        pids = list(children_of(process.process.pid).values())
        assert process.terminate() == 0
        await gone(pids)
    await assert_checks_clean(data_dir)

    async with Node(node_settings(data_dir)) as node:
        async with grpc.aio.insecure_channel(node.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            stored: set[str] = set()
            for author in authors:
                seq_nums = []
                async for page in stub.ReadLog(
                    pb.ReadLogRequest(public_key=author.key_pair.public_key(), log_id=author.log_id)
                ):
                    for entry in page.entries:
                        seq_nums.append(entry.seq_num)
                        stored.add(author.hashes[entry.seq_num])
                assert seq_nums == list(range(1, len(seq_nums) + 1)), "the log has a hole"
        assert acknowledged <= stored, "an acknowledged entry was lost"

        async def all_announced() -> list[str] | None:
            ids = await announced_operation_ids(node.nats_url)
            return ids if len(set(ids)) >= len(stored) else None

        ids = await eventually(all_announced, timeout=30, what="every stored entry announced")
        assert set(ids) == stored
    await assert_checks_clean(data_dir)


async def test_the_python_client_dials_each_service_directly(
    up: tuple[NodeProcess, str, Path],
) -> None:
    _, address, _ = up
    async with Client.connect(address, key_pair=KeyPair()) as client:
        channel = client._shared.channel
        assert isinstance(channel, EndpointChannel)
        endpoints = await channel.resolve()
        assert set(endpoints) == {
            "pandanode.ingest.v1.IngestService",
            "pandanode.query.v1.QueryService",
            "pandanode.discovery.v1.DiscoveryService",
            "pandanode.replication.v1.ReplicationService",
        }
        assert address not in endpoints.values()
        assert channel.channel_for("/pandanode.ingest.v1.IngestService/Publish") is not (
            channel.channel_for("/grpc.health.v1.Health/Check")
        )
        schema_id = await client.create_schema("venue", "A place", {"name": "str"})
        assert schema_id


async def test_the_python_client_falls_back_to_one_address_without_endpoints(node: Node) -> None:
    async with Client.connect(node.address, key_pair=KeyPair()) as client:
        channel = client._shared.channel
        assert isinstance(channel, EndpointChannel)
        assert await channel.resolve() == {}
        schema_id = await client.create_schema("venue", "A place", {"name": "str"})
        assert schema_id


# -- one-line errors a new user meets ------------------------------------------------------------


def run_pandanode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PANDANODE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


async def test_a_second_up_on_a_data_directory_in_use_refuses_with_one_line(
    up: tuple[NodeProcess, str, Path],
) -> None:
    process, address, data_dir = up
    assert process.process is not None
    nats_before = children_of(process.process.pid)["nats-server"]
    result = await asyncio.to_thread(
        run_pandanode, "up", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}"
    )
    assert_one_line_error(result, "in use", str(data_dir))
    assert children_of(process.process.pid)["nats-server"] == nats_before, "NATS was touched"
    await process.wait_serving(address)


async def test_a_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await asyncio.to_thread(
            run_pandanode, "up", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}"
        )
    assert_one_line_error(result, f"127.0.0.1:{port}")


async def test_an_unknown_log_level_is_a_one_line_error(tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        run_pandanode, "up", "--data-dir", str(tmp_path), "--log-level", "verbose"
    )
    assert_one_line_error(result, "log_level", "verbose")


async def test_serving_a_service_whose_store_is_in_use_is_a_one_line_error(
    node: Node, nats_server: EmbeddedNats
) -> None:
    result = await asyncio.to_thread(
        run_pandanode,
        "serve",
        "ingest",
        "--nats",
        nats_server.url,
        "--data-dir",
        str(node.data_dir),
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "ERROR",
    )
    assert_one_line_error(result, "ingest")


async def test_a_part_that_keeps_dying_stops_the_node_with_a_non_zero_exit(
    up: tuple[NodeProcess, str, Path],
) -> None:
    process, _, _ = up
    assert process.process is not None
    killed: set[int] = set()

    async def exited() -> bool:
        assert process.process is not None
        pid = children_of(process.process.pid).get("query")
        if pid is not None and pid not in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        return process.process.poll() is not None

    await eventually(exited, timeout=120, what="the node giving up on query")
    assert process.process.returncode != 0
    assert len(killed) > 1
    assert "query exited with -9" in process.output()

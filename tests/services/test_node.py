"""The node as a person meets it: the ``pandanode`` command, health, reflection, crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pandanode.core import KeyPair
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port
from pandanode.services.runtime.settings import Settings

from .support import FieldDefinitionLog, announced_operation_ids, eventually

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]


class NodeProcess:
    """``pandanode up`` (or ``serve``) as a subprocess, as a person would run it."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*PANDANODE, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
        )

    async def wait_serving(self, address: str, timeout: float = 30.0) -> None:
        async def serving() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                raise AssertionError(f"node exited with {self.process.returncode}: {output}")
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
            except grpc.aio.AioRpcError:
                return False

        await eventually(serving, timeout=timeout, what=f"node serving on {address}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return self.process.stdout.read().decode()


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


async def test_health_reports_serving_for_the_node_and_ingest(node: Node) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "pandanode.ingest.v1.IngestService"):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING


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


async def test_kill_9_while_streaming_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(["up", "--data-dir", str(data_dir), "--listen", address])
    process.start()
    await process.wait_serving(address)
    authors = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(4)]
    acknowledged: set[str] = set()
    killed = asyncio.Event()

    async def requests() -> AsyncIterator[pb.PublishStreamRequest]:
        for seq_num in range(1, 2001):
            yield pb.PublishStreamRequest(items=[author.entry(seq_num) for author in authors])
            if killed.is_set():
                return

    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            try:
                async for response in stub.PublishStream(requests()):
                    for result in response.results:
                        assert result.HasField("ok"), result.error
                        acknowledged.add(result.ok.operation_id)
                    if len(acknowledged) >= 1200 and not killed.is_set():
                        process.kill()
                        killed.set()
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert killed.is_set(), "the stream ended before the node was killed"
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill()

    # Restart on the same data directory, in-process this time, to look inside.
    async with Node(Settings(data_dir=data_dir, listen="127.0.0.1:0")) as node:
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

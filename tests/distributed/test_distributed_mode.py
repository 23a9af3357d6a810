"""Distributed mode end to end: a NATS cluster, every service in its own process, one address.

What compose's split profile starts, on loopback without a container engine (see
:mod:`.deployment`). Everything a client does goes through the entry point's one public
address; the query replicas are also asked directly to show they agree.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2

from bench.deployment import (
    STREAM_REPLICAS,
    Deployment,
    InternalTls,
    Nginx,
    deployment,
    find_nginx,
    health_of,
    nginx_config,
)
from pandanode.client import Client, generate_key_pair
from pandanode.discovery.v1 import discovery_pb2, discovery_pb2_grpc
from pandanode.node.v1 import node_pb2, node_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.services.runtime.bus import connect_bus
from pandanode.services.runtime.events import STREAM_NAME
from pandanode.services.runtime.nats_server import free_port
from tests.services.certificates import make_certificates
from tests.services.support import assert_checks_clean, eventually

# Writers publishing at once during the load, and acknowledged creates before the crashes.
WRITERS = 4
ACKED_BEFORE_CRASH = 40
ACKED_AFTER_CRASH = 80


async def _ids_listed(address: str, schema: str) -> set[str]:
    async with Client.connect(address) as reader:
        return {document.id async for document in reader.documents(schema, page_size=100)}


async def _all_listed(address: str, schema: str, wanted: set[str]) -> set[str] | None:
    try:
        listed = await _ids_listed(address, schema)
    except Exception:
        return None
    return listed if wanted <= listed else None


async def _knows_schema(address: str, schema_id: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await query_pb2_grpc.QueryServiceStub(channel).GetSchema(
                query_pb2.GetSchemaRequest(schema_id=schema_id), timeout=5
            )
        except grpc.aio.AioRpcError as err:
            if err.code() is grpc.StatusCode.NOT_FOUND:
                return False
            raise
    return True


async def _first_steps(deployed: Deployment) -> str:
    """Publish, watch, read both replicas (directly too) and page across them, via one address."""
    entry = deployed.entry.address
    async with Client.connect(entry, key_pair=generate_key_pair()) as node:
        venue = await node.create_schema("venue", "A place", {"name": "str", "seats": "int"})
        # A watch cannot wait for a write (no consistency field): it may go to either replica,
        # so both must have built the schema first.
        for replica in deployed.queries:
            await eventually(
                lambda replica=replica: _knows_schema(replica.address, venue),  # type: ignore[misc]
                timeout=30,
                what=f"{replica.name} knowing the new schema",
            )
        async with contextlib.aclosing(node.watch(venue)) as changes:
            first = await anext(changes)
            assert first.kind == "caught_up"
            hall = await node.create(venue, {"name": "Panda Hall", "seats": 120})
            created = await asyncio.wait_for(anext(changes), 30)
            assert (created.kind, created.document and created.document.id) == (
                "created",
                hall.document_id,
            )
            bigger = await node.update(hall, {"seats": 150})
            updated = await asyncio.wait_for(anext(changes), 30)
            assert updated.kind == "updated"
            assert updated.document is not None and updated.document.fields["seats"] == 150
        through_entry = await node.get_document(hall.document_id, after=bigger)
        assert through_entry.fields == {"name": "Panda Hall", "seats": 150}
        for _ in range(3):
            await node.create(venue, {"name": "Side room", "seats": 10})
        last = await node.create(venue, {"name": "Roof", "seats": 30})
    answers = []
    for replica in deployed.queries:
        async with Client.connect(replica.address) as direct:
            document = await direct.get_document(hall.document_id, after=bigger)
            listed = [d.id async for d in direct.documents(venue, after=last)]
            answers.append((document.view_id, document.fields, listed))
    assert len(answers) == 2
    assert answers[0] == answers[1], "the two query replicas answer differently"
    assert answers[0][0] == bigger.view_id
    # Pages of 2 through the entry point: round-robin sends each page to the other replica.
    async with Client.connect(entry) as reader:
        paged = [d.id async for d in reader.documents(venue, page_size=2, after=last)]
    assert paged == answers[0][2] and len(paged) == 5
    return venue


async def _stream_replicas(nats_url: str) -> int:
    bus = await connect_bus(nats_url, name="test")  # replicas=None: leaves the stream as it is
    try:
        info = await bus.js.stream_info(STREAM_NAME)
        return int(info.config.num_replicas or 1)
    finally:
        await bus.close()


async def _write_until(
    node: Client, schema: str, acked: list[str], stop: asyncio.Event, writer: int
) -> None:
    count = 0
    while not stop.is_set():
        count += 1
        try:
            published = await node.create(schema, {"name": f"w{writer}-{count}", "seats": count})
        except Exception:
            continue  # not acknowledged: it need not be readable
        acked.append(published.document_id)


async def _read_until(address: str, document_id: str, stop: asyncio.Event) -> list[str]:
    """Read one document through ``address`` over and over (no client retries); the failures."""
    failures = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        while not stop.is_set():
            try:
                await stub.GetDocument(
                    query_pb2.GetDocumentRequest(document_id=document_id), timeout=10
                )
            except grpc.aio.AioRpcError as err:
                failures.append(f"{err.code().name}: {err.details()}")
    return failures


async def _wait_for(count: list[str], at_least: int) -> None:
    async def enough() -> bool:
        return len(count) >= at_least

    await eventually(
        enough, timeout=60, what=f"{at_least} acked publishes (writers are publishing)"
    )


@pytest.mark.timeout(240)
async def test_split_deployment_on_a_nats_cluster_loses_no_acknowledged_entry_when_a_nats_node_and_a_query_replica_are_killed_mid_load(  # noqa: E501
    tmp_path: Path,
) -> None:
    async with deployment(tmp_path / "deploy") as deployed:
        entry = deployed.entry.address
        venue = await _first_steps(deployed)
        probe = next(iter(await _ids_listed(entry, venue)))

        acked: list[str] = []
        stop = asyncio.Event()
        writers = [Client.connect(entry, key_pair=generate_key_pair()) for _ in range(WRITERS)]
        tasks = [
            asyncio.create_task(_write_until(writer, venue, acked, stop, index))
            for index, writer in enumerate(writers)
        ]
        reads = asyncio.create_task(_read_until(entry, probe, stop))
        try:
            await _wait_for(acked, ACKED_BEFORE_CRASH)
            deployed.nats[0].kill()
            deployed.queries[0].kill()
            crashed_at = len(acked)
            await _wait_for(acked, crashed_at + ACKED_AFTER_CRASH)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for writer in writers:
                await writer.aclose()
        failed_reads = await reads
        assert failed_reads == [], f"reads through the entry point failed: {failed_reads[:5]}"

        wanted = set(acked)
        survivor = deployed.queries[1]
        for address in (entry, survivor.address):
            try:
                await eventually(
                    lambda address=address: _all_listed(address, venue, wanted),  # type: ignore[misc]
                    timeout=60,
                    what=f"every acknowledged document listed at {address}",
                )
            except AssertionError as err:
                missing = wanted - await _ids_listed(address, venue)
                raise AssertionError(
                    f"{err}: {len(missing)} of {len(wanted)} missing; "
                    + "\n".join(f"{p.name}: {p.output()[-1500:]}" for p in deployed.services)
                ) from None

        # The killed NATS node and query replica come back (as compose or Kubernetes would
        # restart them) and the replica catches up from the stream.
        await deployed.nats[0].start()
        restarted = deployed.queries[0]
        restarted.start()
        await restarted.wait_serving()
        listed = await eventually(
            lambda: _all_listed(restarted.address, venue, wanted),
            timeout=60,
            what="the restarted query replica listing every acknowledged document",
        )
        assert listed == await _ids_listed(survivor.address, venue)

        # What ingest stored is all in the replicated stream; `pandanode check` agrees.
        assert deployed.ingest.terminate() == 0
        await assert_checks_clean(tmp_path / "deploy" / "ingest", nats_url=deployed.nats_url)
        assert await _stream_replicas(deployed.nats_url) == STREAM_REPLICAS


@pytest.mark.parametrize("entry_point", ["pandanode proxy", "nginx"])
async def test_the_entry_point_routes_public_services_and_answers_internal_calls_unimplemented(
    tmp_path: Path, entry_point: str
) -> None:
    binary = find_nginx()
    if entry_point == "nginx" and binary is None:
        pytest.skip("nginx is not installed (make setup installs it where apt-get can)")
    root = tmp_path / "deploy"
    async with deployment(root, query_replicas=2) as deployed:
        address = deployed.entry.address
        nginx = None
        if entry_point == "nginx":
            assert binary is not None
            address = f"127.0.0.1:{free_port()}"
            nginx = Nginx(binary, nginx_config(root, address, deployed), address)
            await nginx.start()
        try:
            await _routes_public_calls_only(address)
        finally:
            if nginx is not None:
                nginx.stop()


async def _routes_public_calls_only(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        info = await discovery_pb2_grpc.DiscoveryServiceStub(channel).GetNodeInfo(
            discovery_pb2.GetNodeInfoRequest(), timeout=10
        )
        assert len(info.node_id) == 64
        with pytest.raises(grpc.aio.AioRpcError) as internal:
            await node_pb2_grpc.NodeServiceStub(channel).GetEndpoints(
                node_pb2.GetEndpointsRequest(), timeout=10
            )
        assert internal.value.code() is grpc.StatusCode.UNIMPLEMENTED
        query = query_pb2_grpc.QueryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await query.GetDocument(query_pb2.GetDocumentRequest(document_id="00" * 34), timeout=10)
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        # Bad bytes reach the service and its reason comes back through the entry point.
        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            await channel.unary_unary("/pandanode.query.v1.QueryService/GetDocument", None, None)(
                b"\xff\xff\xff", timeout=10
            )
        assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "MALFORMED_REQUEST" in str(malformed.value.trailing_metadata())


@pytest.mark.timeout(120)
async def test_a_split_deployment_with_mutual_tls_between_its_processes_serves_through_its_entry_point(  # noqa: E501
    tmp_path: Path,
) -> None:
    certificates = make_certificates(tmp_path)
    tls = InternalTls(certificates.cert, certificates.key, certificates.ca)
    async with deployment(tmp_path / "deploy", internal_tls=tls) as deployed:
        async with Client.connect(deployed.entry.address, key_pair=generate_key_pair()) as node:
            venue = await node.create_schema("venue", "A place", {"name": "str"})
            hall = await node.create(venue, {"name": "Hall"})
            for _ in deployed.queries:  # round-robin: each replica answers once
                document = await node.get_document(hall.document_id, after=hall)
                assert document.fields == {"name": "Hall"}
        for process in deployed.services[:-1]:  # every service process, not the entry point
            assert await health_of(process.address) is None, f"{process.name} took plaintext"
            assert (
                await health_of(process.address, credentials=tls.credentials())
                == health_pb2.HealthCheckResponse.SERVING
            )

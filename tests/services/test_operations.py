"""What an operator meets: /metrics, JSON logs, the version and node id, nats-server monitoring."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from typing import IO

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from pandanode.core import KeyPair
from pandanode.core.errors import PandanodeError
from pandanode.core.version import version
from pandanode.discovery.v1 import discovery_pb2, discovery_pb2_grpc
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime import metrics
from pandanode.services.runtime.metrics import ChildrenCollector, serve_metrics
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port

from .ingest.helpers import rejection_of
from .support import FieldDefinitionLog, eventually

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str) -> Samples:
    """Every sample of ``http://address/metrics``, by name and labels."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


class UpProcess:
    """``pandanode up`` with stdout and stderr kept apart in files (stderr is the log)."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._out = data_dir.parent / f"{data_dir.name}.stdout"
        self._err = data_dir.parent / f"{data_dir.name}.stderr"
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.process = self._start(data_dir, args, out, err)

    def _start(
        self, data_dir: Path, args: tuple[str, ...], out: IO[bytes], err: IO[bytes]
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                *PANDANODE,
                "up",
                "--data-dir",
                str(data_dir),
                "--listen",
                self.address,
                "--no-lan-discovery",
                *args,
            ],
            stdout=out,
            stderr=err,
            env=os.environ.copy(),
        )

    async def wait_serving(self) -> None:
        async def serving() -> bool:
            if self.process.poll() is not None:
                err = self._err.read_text()
                raise AssertionError(f"node exited with {self.process.returncode}: {err}")
            try:
                async with grpc.aio.insecure_channel(self.address) as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
            except grpc.aio.AioRpcError:
                return False

        await eventually(serving, timeout=60, what=f"node serving on {self.address}")

    def stop(self) -> tuple[str, str]:
        """SIGTERM (drain), then what the node printed: (stdout, stderr)."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        return self._out.read_text(), self._err.read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
async def up_with_metrics(tmp_path: Path, node: Node) -> AsyncIterator[tuple[UpProcess, str]]:
    """``pandanode up`` with metrics, knowing one peer: the in-process ``node``."""
    metrics_address = f"127.0.0.1:{free_port()}"
    up = UpProcess(
        tmp_path / "up", "--metrics-listen", metrics_address, "--bootstrap-peers", node.address
    )
    try:
        await up.wait_serving()
        yield up, metrics_address
    finally:
        up.kill()


async def test_up_serves_metrics_where_ingest_counters_move_with_publishes_and_rejections_count_by_reason(  # noqa: E501
    up_with_metrics: tuple[UpProcess, str],
) -> None:
    up, metrics_address = up_with_metrics
    before = await asyncio.to_thread(scrape, metrics_address)
    for service in ("ingest", "query", "discovery"):
        assert value(before, "pandanode_service_up", service=service) == 1.0
        assert value(before, "pandanode_build_info", service=service, version=version()) == 1.0
    assert value(before, "pandanode_entries_ingested_total", service="ingest") == 0.0
    assert value(before, "pandanode_watchers", service="query") == 0.0
    assert value(before, "pandanode_peers", service="discovery") is not None
    assert value(before, "pandanode_sync_sessions", service="ingest") is None, (
        "each process serves the metrics of its own services"
    )

    author = FieldDefinitionLog(KeyPair(), log_id=1)
    async with grpc.aio.insecure_channel(up.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        for seq_num in (1, 2, 3):
            await ingest.Publish(author.entry(seq_num), timeout=10)
        reasons = []
        for bad in (
            pb.PublishRequest(entry=b"\x00", operation=author.entry(4).operation),
            author.entry(5),  # its backlink, entry 4, was never stored
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await ingest.Publish(bad, timeout=10)
            reasons.append(rejection_of(caught.value).reason)

    after: Samples = {}

    async def counted() -> bool:
        nonlocal after
        after = await asyncio.to_thread(scrape, metrics_address)
        backlog = value(after, "pandanode_stream_backlog_events", consumer="query", service="query")
        ingested = value(after, "pandanode_entries_ingested_total", service="ingest")
        return backlog == 0.0 and ingested == 3.0

    await eventually(counted, timeout=30, what="the ingest counters and the materializer")
    for reason in set(reasons):
        assert value(
            after, "pandanode_entries_rejected_total", reason=reason, service="ingest"
        ) == reasons.count(reason), reason
    assert (
        value(after, "pandanode_publish_latency_seconds_count", call="unary", service="ingest")
        == 3.0
    )
    commits = value(after, "pandanode_group_commit_entries_count", service="ingest")
    committed = value(after, "pandanode_group_commit_entries_sum", service="ingest")
    assert commits is not None and committed is not None
    assert 1 <= commits <= 4 and committed == 4.0, "3 stored and 1 rejected by the log rules"
    lag = value(after, "pandanode_materialization_lag_seconds", service="query")
    assert lag is not None and 0.0 <= lag < 60.0
    assert value(after, "pandanode_unannounced_entries", service="ingest") == 0.0
    up.stop()


async def test_up_metrics_count_open_watches_and_known_peers(
    up_with_metrics: tuple[UpProcess, str],
) -> None:
    up, metrics_address = up_with_metrics

    async def equals(name: str, service: str, expected: float) -> None:
        async def reached() -> bool:
            samples = await asyncio.to_thread(scrape, metrics_address)
            return value(samples, name, service=service) == expected

        await eventually(reached, timeout=30, what=f"{name} == {expected}")

    await equals("pandanode_peers", "discovery", 1.0)  # the in-process node it bootstraps from
    await equals("pandanode_peers_reachable", "discovery", 1.0)
    async with grpc.aio.insecure_channel(up.address) as channel:
        query = query_pb2_grpc.QueryServiceStub(channel)
        request = query_pb2.WatchDocumentsRequest(schema_id="schema_field_definition_v1")
        first, second = query.WatchDocuments(request), query.WatchDocuments(request)
        await first.read()  # CAUGHT_UP: the watch is open
        await second.read()
        await equals("pandanode_watchers", "query", 2.0)
        first.cancel()
        await equals("pandanode_watchers", "query", 1.0)
        second.cancel()
    await equals("pandanode_watchers", "query", 0.0)


async def test_json_logs_are_one_object_per_line_with_the_service_and_the_rejections_reason(
    tmp_path: Path,
) -> None:
    monitor = f"127.0.0.1:{free_port()}"
    node = UpProcess(
        tmp_path / "data",
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
        "--metrics-listen",
        "off",
        "--nats-monitor-listen",
        monitor,
    )
    try:
        await node.wait_serving()
        varz = await asyncio.to_thread(
            lambda: json.loads(urllib.request.urlopen(f"http://{monitor}/varz", timeout=5).read())
        )
        assert varz["jetstream"]["config"]["store_dir"].startswith(str(tmp_path))
        author = FieldDefinitionLog(KeyPair(), log_id=1)
        async with grpc.aio.insecure_channel(node.address) as channel:
            ingest = ingest_pb2_grpc.IngestServiceStub(channel)
            await ingest.Publish(author.entry(1), timeout=10)
            author.entry(2)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await ingest.Publish(author.entry(3), timeout=10)  # entry 2 is missing
        reason = rejection_of(caught.value).reason
        out, err = node.stop()
    finally:
        node.kill()
    assert node.process.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]  # every line is one object
    assert records
    for record in records:
        assert {"time", "level", "logger", "message", "service"} <= record.keys(), record
    assert {"node", "ingest", "query", "discovery"} <= {r["service"] for r in records}
    rejected = [r for r in records if r["message"].startswith("entry rejected")]
    assert len(rejected) == 1, rejected
    assert rejected[0]["reason"] == reason
    assert rejected[0]["public_key"] == author.key_pair.public_key()
    assert rejected[0]["service"] == "ingest"
    banner = next(line for line in out.splitlines() if line.startswith("pandanode listening"))
    assert f"pandanode {version()}" in banner
    assert f"nats monitoring on http://{monitor}" in banner


async def test_the_up_banner_tells_the_version_and_node_id(tmp_path: Path) -> None:
    node = UpProcess(tmp_path / "data", "--metrics-listen", "off")
    try:
        await node.wait_serving()
        async with grpc.aio.insecure_channel(node.address) as channel:
            info = await discovery_pb2_grpc.DiscoveryServiceStub(channel).GetNodeInfo(
                discovery_pb2.GetNodeInfoRequest(), timeout=10
            )
        out, _ = node.stop()
    finally:
        node.kill()
    banner = next(line for line in out.splitlines() if line.startswith("pandanode listening"))
    assert f"pandanode {version()}" in banner
    assert f"node id {info.node_id}" in banner
    assert info.version == version()


@pytest.mark.parametrize(
    ("flag", "bad", "setting"),
    [
        ("--log-level", "verbose", "log_level"),
        ("--log-format", "xml", "log_format"),
        ("--metrics-listen", "nine", "metrics_listen"),
        ("--nats-monitor-listen", "127.0.0.1:http", "nats_monitor_listen"),
    ],
)
async def test_a_bad_operations_setting_is_a_one_line_error(
    tmp_path: Path, flag: str, bad: str, setting: str
) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [*PANDANODE, "up", "--data-dir", str(tmp_path), flag, bad],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0] and bad in lines[0]


async def test_a_metrics_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await asyncio.to_thread(
            subprocess.run,
            [
                *PANDANODE,
                "up",
                "--data-dir",
                str(tmp_path),
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--metrics-listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"metrics on 127.0.0.1:{port}" in lines[0]


async def test_get_node_info_reports_the_installed_version(node: Node) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        info = await discovery_pb2_grpc.DiscoveryServiceStub(channel).GetNodeInfo(
            discovery_pb2.GetNodeInfoRequest(), timeout=10
        )
    assert info.version == version() == metadata.version("pandanode")
    assert node.discovery is not None and info.node_id == node.discovery.node_id


async def test_in_process_ingest_counts_stored_entries_per_commit_and_rejections_by_reason(
    node: Node,
) -> None:
    def sample(name: str, **labels: str) -> float:
        return metrics.INGEST.get_sample_value(name, labels) or 0.0

    ingested = sample("pandanode_entries_ingested_total")
    commits = sample("pandanode_group_commit_entries_count")
    assert node.ingest is not None
    author = FieldDefinitionLog(KeyPair(), log_id=1)
    items = [(author.entry(n).entry, author.entry(n).operation) for n in (1, 2, 3)]
    reason = "ENTRY_TOO_SHORT"  # one byte is no entry
    rejected = sample("pandanode_entries_rejected_total", reason=reason)
    outcomes = await node.ingest.publish_many([*items, (b"\x01", items[0][1])])
    assert isinstance(outcomes[3], PandanodeError) and outcomes[3].reason == reason
    assert sample("pandanode_entries_ingested_total") == ingested + 3
    assert sample("pandanode_group_commit_entries_count") > commits
    assert sample("pandanode_entries_rejected_total", reason=reason) == rejected + 1
    again = await node.ingest.publish_many(items)  # known entries: answered, not stored again
    assert not any(isinstance(outcome, PandanodeError) for outcome in again)
    assert sample("pandanode_entries_ingested_total") == ingested + 3


async def test_the_supervisors_collector_merges_its_childrens_metrics_labelled_by_service() -> None:
    servers = []
    targets: dict[str, str] = {}
    for service, count in (("ingest", 2.0), ("query", 5.0)):
        registry = CollectorRegistry()
        Counter("pandanode_things", "Things.", registry=registry).inc(count)
        server = serve_metrics("127.0.0.1:0", registry=registry)
        servers.append(server)
        targets[service] = server.address
    targets["discovery"] = f"127.0.0.1:{free_port()}"  # not running: reported down
    merged = CollectorRegistry()
    merged.register(ChildrenCollector(lambda: targets, timeout=2.0))
    node = serve_metrics("127.0.0.1:0", registry=merged)
    try:
        samples = await asyncio.to_thread(scrape, node.address)
    finally:
        for server in [*servers, node]:
            server.stop()
    assert value(samples, "pandanode_things_total", service="ingest") == 2.0
    assert value(samples, "pandanode_things_total", service="query") == 5.0
    assert value(samples, "pandanode_service_up", service="ingest") == 1.0
    assert value(samples, "pandanode_service_up", service="discovery") == 0.0
    with pytest.raises(urllib.error.URLError):
        scrape(node.address)  # stopped: the port is released


async def test_serve_with_metrics_listen_serves_its_own_services_metrics_only(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    process = await asyncio.create_subprocess_exec(
        *PANDANODE,
        "serve",
        "query",
        "--nats",
        nats_server.url,
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line.startswith("pandanode listening on "), line
        assert f"pandanode {version()}" in line
        address = line.rstrip().rstrip(")").rpartition("; metrics on ")[2]
        samples = await asyncio.to_thread(scrape, address)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    assert value(samples, "pandanode_watchers") == 0.0
    assert value(samples, "pandanode_stream_backlog_events", consumer="query") is not None
    assert value(samples, "pandanode_build_info", version=version()) == 1.0
    assert not any(name.startswith("pandanode_entries_") for name, _ in samples), (
        "ingest's metrics are served by the ingest process"
    )

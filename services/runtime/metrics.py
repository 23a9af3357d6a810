"""Prometheus metrics of a node, named in the protocol's words, and their HTTP endpoint.

Each service's metrics live in a registry of their own (:data:`REGISTRIES`); a service process
serves those of the services it runs, with the process-wide default registry of
``prometheus_client`` (process and Python runtime metrics, :data:`build_info`), on
``metrics_listen`` (``/metrics``). The use cases update
them per batch where they can (a commit, a fetched run of events), not per entry, so the hot
paths pay a counter increment per group commit.

``pandanode up`` runs one process per service: each child serves its own metrics on an
ephemeral loopback port, and the supervisor serves ``/metrics`` on the node's
``metrics_listen``, scraping its children at each request and merging their families, every
sample labelled with the ``service`` it came from (:class:`ChildrenCollector`). So one scrape
target per node, as for a single-process service, and no shared files between processes
(prometheus_client's multiprocess mode would need a directory and per-metric merge modes).

The replication service sets :data:`sync_sessions` (``inc()`` when a session starts, ``dec()``
when it ends).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from pandanode.core.version import version

from .addresses import split_host_port

__all__ = [
    "DISCOVERY",
    "INGEST",
    "OFF",
    "QUERY",
    "REGISTRIES",
    "REPLICATION",
    "ChildrenCollector",
    "MetricsServer",
    "build_info",
    "entries_ingested",
    "entries_rejected",
    "group_commit_entries",
    "materialization_lag_seconds",
    "metrics_enabled",
    "peers",
    "peers_reachable",
    "publish_latency_seconds",
    "serve_metrics",
    "stream_backlog_events",
    "sync_sessions",
    "unannounced_entries",
    "watchers",
]

log = logging.getLogger(__name__)

OFF = "off"
"""The ``metrics_listen`` value that turns the endpoint off (as does an empty value)."""

# `_created` series double the output and no dashboard of ours uses them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_COMMIT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

INGEST = CollectorRegistry(auto_describe=True)
QUERY = CollectorRegistry(auto_describe=True)
DISCOVERY = CollectorRegistry(auto_describe=True)
REPLICATION = CollectorRegistry(auto_describe=True)
REGISTRIES: Mapping[str, CollectorRegistry] = {
    "ingest": INGEST,
    "query": QUERY,
    "discovery": DISCOVERY,
    "replication": REPLICATION,
}
"""The metrics of each service, by service name (a process serves those of its services)."""

build_info = Info("pandanode_build", "The pandanode version this process runs.")
build_info.info({"version": version()})

entries_ingested = Counter(
    "pandanode_entries_ingested",
    "Entries ingest stored (new entries, durable; a re-published known entry is not counted).",
    registry=INGEST,
)
entries_rejected = Counter(
    "pandanode_entries_rejected",
    "Entries ingest rejected, by the ErrorInfo reason of the rejection.",
    ["reason"],
    registry=INGEST,
)
publish_latency_seconds = Histogram(
    "pandanode_publish_latency_seconds",
    "Time from receiving a Publish (call=unary) or a batch of entries (call=batch: one "
    "PublishStream message, or publish_many) to its answer, durable.",
    ["call"],
    buckets=_LATENCY_BUCKETS,
    registry=INGEST,
)
group_commit_entries = Histogram(
    "pandanode_group_commit_entries",
    "Entries the ingest writer applied in one group commit (one synced RocksDB write).",
    buckets=_COMMIT_BUCKETS,
    registry=INGEST,
)
unannounced_entries = Gauge(
    "pandanode_unannounced_entries",
    "Entries ingest stored and has not announced on the event stream yet (the outbox backlog).",
    registry=INGEST,
)
materialization_lag_seconds = Gauge(
    "pandanode_materialization_lag_seconds",
    "Age of the newest event the materializer committed, when it committed it (0 when idle).",
    registry=QUERY,
)
stream_backlog_events = Gauge(
    "pandanode_stream_backlog_events",
    "Events of the stream a consumer has not applied yet (JetStream num_pending at the last "
    "delivery, plus delivered events still queued): how far materialization is behind.",
    ["consumer"],
    registry=QUERY,
)
watchers = Gauge("pandanode_watchers", "Open WatchDocuments calls.", registry=QUERY)
peers = Gauge("pandanode_peers", "Nodes in the discovery peer table.", registry=DISCOVERY)
peers_reachable = Gauge(
    "pandanode_peers_reachable",
    "Nodes in the peer table that answered their last probe.",
    registry=DISCOVERY,
)
sync_sessions = Gauge(
    "pandanode_sync_sessions",
    "Replication sessions in progress (set by the replication service).",
    registry=REPLICATION,
)


class _Union(Collector):
    """The metrics of several registries, as one."""

    def __init__(self, registries: Iterable[Collector]) -> None:
        self._registries = tuple(registries)

    def collect(self) -> Iterable[Metric]:
        for registry in self._registries:
            yield from registry.collect()


def metrics_enabled(listen: str) -> bool:
    """Whether a ``metrics_listen`` value asks for an endpoint (not empty, not ``off``)."""
    return bool(listen.strip()) and listen.strip().lower() != OFF


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint.

    Attributes:
        address: The bound ``host:port``.
    """

    address: str
    _server: WSGIServer
    _thread: threading.Thread

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def serve_metrics(
    listen: str, services: Iterable[str] = (), registry: Collector | None = None
) -> MetricsServer:
    """Serve metrics on ``listen`` in a daemon thread.

    Args:
        listen: ``host:port``; port 0 picks a free one.
        services: The services this process runs: their metrics and the process's are served.
        registry: What to serve instead (the supervisor's merged children).

    Raises:
        OSError: the address cannot be bound (in use, not available).
        ValueError: ``listen`` is not ``host:port``.
    """
    try:
        host, port = split_host_port(listen.strip(), allow_port_zero=True)
    except ValueError as err:
        raise ValueError(f"metrics address: {err}") from None
    server, thread = prometheus_client.start_http_server(
        port,
        addr=host.strip("[]"),
        registry=registry
        if registry is not None
        else _Union(
            [prometheus_client.REGISTRY, *(REGISTRIES[s] for s in services if s in REGISTRIES)]
        ),
    )
    bound = f"{host}:{server.server_port}"
    return MetricsServer(bound, server, thread)


class ChildrenCollector(Collector):
    """Scrapes the children of ``pandanode up`` and yields their metrics, labelled by service.

    Args:
        targets: Called at each collection: service name → its metrics ``host:port`` (the
            children running now).
        timeout: Seconds one child has to answer.
    """

    def __init__(self, targets: Callable[[], Mapping[str, str]], timeout: float = 2.0) -> None:
        self._targets = targets
        self._timeout = timeout

    def collect(self) -> Iterable[Metric]:  # noqa: D102 - see Collector
        up = GaugeMetricFamily(
            "pandanode_service_up",
            "1 if the service's process answered the supervisor's scrape, else 0.",
            labels=["service"],
        )
        merged: dict[str, Metric] = {}
        for service, address in sorted(self._targets().items()):
            text = self._scrape(address)
            up.add_metric([service], 0.0 if text is None else 1.0)
            if text is not None:
                _merge(merged, service, text_string_to_metric_families(text))
        yield up
        yield from merged.values()

    def _scrape(self, address: str) -> str | None:
        try:
            with urllib.request.urlopen(
                f"http://{address}/metrics", timeout=self._timeout
            ) as response:
                return bytes(response.read()).decode()
        except (OSError, ValueError):
            log.debug("scraping the metrics of %s failed", address, exc_info=True)
            return None


def _merge(merged: dict[str, Metric], service: str, families: Iterable[Metric]) -> None:
    with contextlib.suppress(ValueError):  # a malformed scrape: keep what parsed
        for family in families:
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                target.samples.append(sample._replace(labels={"service": service, **sample.labels}))

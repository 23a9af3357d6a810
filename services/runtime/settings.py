"""Settings of every service: explicit limits with sane defaults.

Sources, highest precedence first: command-line flags, environment variables
(``PANDANODE_<NAME>``, e.g. ``PANDANODE_LISTEN``), a TOML file (``--config``), the command's
own defaults (``pandanode up`` turns LAN discovery on), the defaults below.

It stays one module, a little over 500 lines: one table of every setting, each with its
documentation, default and check, is what an operator reads; split, it would be several.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pandanode.core.errors import SchemaIdError
from pandanode.core.schema_id import parse_schema_id

from .addresses import split_host_port
from .clients import Network, parse_networks

__all__ = [
    "ENV_PREFIX",
    "IMPLICIT_SCHEMA_IDS",
    "PAGE_TOKEN_SECRET_FILE",
    "Settings",
    "SettingsError",
]

PAGE_TOKEN_SECRET_FILE: Final = "page-token.secret"
"""The page token secret's file name in the data directory, unless set elsewhere."""

ENV_PREFIX = "PANDANODE_"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")

IMPLICIT_SCHEMA_IDS: frozenset[str] = frozenset(
    {"schema_definition_v1", "schema_field_definition_v1"}
)
"""What a schema allow list accepts besides its ids: how the listed schemas are defined."""


class SettingsError(ValueError):
    """A setting that cannot be parsed or is out of range."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node or a single service can be configured with.

    Attributes:
        data_dir: Where the node keeps its data (RocksDB stores, the embedded NATS store).
        listen: ``host:port`` the gRPC server binds to.
        tls_cert_file: PEM certificate chain of the public gRPC listener; with
            ``tls_key_file`` it speaks TLS only (clients dial with ``--tls``). Empty: plaintext.
            ``pandanode up`` then binds its service processes to 127.0.0.1, plaintext, and
            advertises no direct endpoints.
        tls_key_file: PEM private key of ``tls_cert_file`` (keep it mode 0600).
        internal_tls_cert_file: PEM certificate chain a service of a split deployment presents
            to the others (mutual TLS); with ``internal_tls_key_file`` and
            ``internal_tls_ca_file``, a ``serve`` process's listener takes only clients with a
            certificate that CA signed, and its calls to the other services (``--ingest``,
            ``--query``, the routes of ``pandanode proxy``) present this one. Empty: plaintext
            between services. ``pandanode up`` does not use it (its processes talk on
            loopback).
        internal_tls_key_file: PEM private key of ``internal_tls_cert_file`` (mode 0600).
        internal_tls_ca_file: PEM certificate(s) of the CA that signs the services'
            certificates: whom a service accepts calls from and whom it calls.
        nats_url: A NATS server to use; empty to start an embedded one (all-in-one node).
        nats_credentials_file: A file with the NATS ``user:password`` (one line) to connect
            with, so the password is in no URL or command line; ``pandanode up`` points its
            services at ``<data_dir>/nats.credentials``, the embedded server's. Empty: none
            (or those of the URL).
        supported_schema_ids: The schema allow list: comma-separated schema ids whose
            operations the node accepts (from clients and peers alike); ``*``: any schema.
            With a list, the schema and field definitions (``schema_definition_v1``,
            ``schema_field_definition_v1``) are accepted too, so a listed schema can be
            learned; ``blob_v1`` and ``blob_piece_v1`` only when listed. Replication then
            replicates no schema outside the list.
        admin_allow_remote: Take admin methods (``ReplicationService.SyncWith``, which makes the
            node dial a given address) from any client; off: from loopback only (the CLI on the
            node's machine), others get PERMISSION_DENIED (``ADMIN_ONLY``). Through a
            pass-through (``pandanode up``, ``pandanode proxy`` on the same machine) the client
            behind it counts.
        max_entry_bytes: Largest accepted entry (a p2panda entry is at most 226 bytes).
        max_operation_bytes: Largest accepted operation (a blob piece holds 256 000 bytes).
        max_message_bytes: Largest gRPC message received or sent.
        max_batch_items: Most (entry, operation) pairs in one PublishStream message.
        max_stream_in_flight: Most items of one PublishStream being processed at once.
        max_concurrent_streams: Most concurrent streams (HTTP/2) per connection.
        trusted_proxies: Comma-separated IP addresses or networks (CIDR) of proxies and
            services whose calls count like those from loopback: the client they name
            (``x-pandanode-client-address``) is believed, and they are not limited per client
            themselves (admin methods still need a client on loopback). For a split
            deployment's entry point and services (``deploy/`` sets the private networks);
            empty: loopback only.
        max_concurrent_rpcs_per_client: Most calls one client address may have in flight at
            once in one service process; one more is refused (RESOURCE_EXHAUSTED,
            ``TOO_MANY_CALLS``, with RetryInfo). Clients on loopback are not limited. Through a
            pass-through the client behind it counts.
        max_streams_per_client: Most streaming calls (watchers, PublishStream, Sync, log reads)
            one client address may hold at once in one service process, likewise.
        write_batch_max: Most entries committed together in one synced RocksDB write.
        announce_linger: Seconds at least between two announcements of stored entries on the
            event stream: commits made meanwhile are announced together, in one message (the
            CPU of NATS and of every consumer goes by messages). A commit after a pause is
            announced at once, any other at most this much later.
        read_log_page: Entries per ReadLog response message.
        log_heights_page_size: Log heights per GetLogHeights page when the request names no
            page size.
        max_log_heights_page_size: Most log heights per GetLogHeights page (a page also ends
            before it would near ``max_message_bytes``).
        max_have_logs: Most distinct logs a peer's have-set (ReadMissingEntries) may name;
            past it the call is refused (INVALID_ARGUMENT, ``LIMIT_EXCEEDED``).
        missing_entries_batch_bytes: Most entry and operation bytes per ReadMissingEntries
            response (a response holds at least one entry).
        max_page_size: Largest page ListDocuments returns (default page size is 25).
        max_resolved_documents: Most documents one GetDocument or ListDocuments response
            holds, counting every resolved relation each time it appears; a read past it (or
            past ``max_message_bytes``) is refused with RESOURCE_EXHAUSTED.
        query_durable: Name of the query service's durable JetStream consumer; every query
            replica consuming one stream needs its own.
        page_token_secret_file: Path of the file of the secret that authenticates page tokens
            (made when missing); query replicas behind one address name the same file, so a
            page token one hands out is good at the next; empty: ``page-token.secret`` in the
            data directory.
        query_batch_size: Most events the query service fetches and commits at once.
        stream_replicas: Copies JetStream keeps of the event stream (1 to 5): 1 for one NATS
            server, 3 on a three-node NATS cluster so the stream survives losing a node.
        listing_change_log_bytes: Byte budget, per listed schema, of the replaced document
            views the listing keeps to bring its cached match counts up to date; past it the
            oldest are dropped and such a count is computed afresh.
        watch_queue_bytes: Most bytes of documents queued for one WatchDocuments client that
            reads more slowly than changes arrive; past it the watch ends with
            RESOURCE_EXHAUSTED (reason ``WATCH_TOO_SLOW``) and the client watches again.
        decoded_cache_bytes: Memory budget (bytes, estimated) of the decoded operations the
            query store keeps to rebuild documents without decoding them again.
        store_write_buffer_bytes: Memory budget (bytes) of each RocksDB store's write buffers
            (memtables: the one being written and one being flushed to disk), ingest's and
            query's each.
        recovery_free_bytes: Free bytes the data directory's file system must have again before
            a store that failed to write (a full disk) is reopened: the service restarts, and
            ``pandanode up`` restarts nats-server after JetStream switched itself off.
        advertise_address: The gRPC ``host:port`` other nodes should dial; empty: the bound
            address (a host of ``0.0.0.0`` tells LAN peers to use the datagram's source).
        peer_tls_ca_file: PEM certificates of the authorities to trust when dialing a peer
            over TLS (an address ``tls://host:port``: a node whose listener has TLS
            advertises itself so); empty: the system's. Peers without the scheme are dialed
            in plaintext.
        bootstrap_peers: Comma-separated ``host:port`` (``tls://host:port`` for a node with
            TLS) of nodes to probe (GetNodeInfo) and keep probing; one that answers joins the
            peer table. Our own address is ignored.
        discovery_probe_interval: Seconds between probes of the bootstrap peers and of every
            known peer (also how soon an unanswered bootstrap peer is tried again).
        discovery_probe_timeout: Deadline of one probe, seconds.
        peer_ttl: Seconds a peer stays in the table without answering or announcing itself;
            then it is lost (``peer.lost``). Must exceed both the probe and announce intervals.
        peer_exchange: Ask reachable peers for their peers (ListPeers) and probe those too.
        lan_discovery: Announce this node and listen for others by UDP multicast. Off unless
            set, except that ``pandanode up`` and ``pandanode serve discovery`` turn it on.
        lan_group: The IPv4 multicast group of LAN discovery.
        lan_port: The UDP port of LAN discovery.
        lan_interface: IPv4 address of the interface to announce and listen on; empty: the
            loopback interface when the advertised host is loopback, else the system's choice.
        lan_announce_interval: Seconds between two LAN announcements.
        node_key: Path of the node key file discovery and replication share; empty:
            ``<data_dir>/node.key``.
        ingest_address: Ingest's gRPC ``host:port``, which the replication service and the HTTP
            gateway call; empty: the process's own address (all services in one process).
        replication_schema_ids: Comma-separated schema ids to replicate; ``*``: every schema;
            empty: nothing.
        allow_peer_ids: Comma-separated node ids to replicate with; ``*``: any.
        block_peer_ids: Comma-separated node ids never to replicate with (refused both ways).
        replication_interval: Seconds between two catch-up sessions with a peer whose last
            session ended (not live).
        sync_idle_timeout: Seconds a peer may be silent before SyncDone; then the session fails.
        max_sync_sessions: Most replication sessions at once.
        replication_hold_items: Most received entries one session holds back while a
            dependency is missing; past it (or ``replication_hold_bytes``) newer ones are
            dropped and come again with a later session.
        replication_hold_bytes: Most bytes (entry + operation) of the entries one session
            holds back while a dependency is missing.
        peer_ban_after: Failed sessions within 10 minutes after which a peer is refused.
        peer_ban_seconds: How long a banned peer is refused, both ways.
        log_level: Python logging level name.
        http_listen: ``host:port`` the HTTP gateway (GraphQL, blobs) binds to.
        query_address: Query's gRPC ``host:port``, which the HTTP gateway calls; empty: the
            process's own address.
        cors_origins: Comma-separated origins browsers may call the gateway from; ``*``: any.
        graphql_cache_bytes: Memory the gateway keeps parsed and validated GraphQL queries in
            (estimated from their length; least recently used out), so a query an app repeats
            is parsed once.
        log_format: ``text`` (one readable line per record) or ``json`` (one JSON object per
            line, with the fields ``service``, ``document_id``, ``public_key``, ``reason`` where
            they apply).
        metrics_listen: ``host:port`` of the Prometheus ``/metrics`` endpoint; ``off`` turns it
            off. Empty: off for ``serve``, ``127.0.0.1:9464`` for ``pandanode up`` if that port
            is free (a port set explicitly must be free).
        nats_monitor_listen: ``host:port`` of the embedded nats-server's HTTP monitoring
            (``/varz``, ``/jsz``, …); empty or ``off``: none.
        ws_max_subscriptions: Most subscriptions one GraphQL WebSocket connection may run at
            once; one more is refused (an ``error`` message).
        ws_max_message_bytes: Largest message a GraphQL WebSocket client may send; a larger
            one closes the connection (1009).
        ws_init_timeout: Seconds a GraphQL WebSocket client has to send ``connection_init``
            (then it is closed with 4408).
    """

    data_dir: Path = Path("data")
    listen: str = "127.0.0.1:2020"
    tls_cert_file: str = ""
    tls_key_file: str = ""
    internal_tls_cert_file: str = ""
    internal_tls_key_file: str = ""
    internal_tls_ca_file: str = ""
    nats_url: str = ""
    nats_credentials_file: str = ""
    supported_schema_ids: str = "*"
    admin_allow_remote: bool = False
    max_entry_bytes: int = 1024
    max_operation_bytes: int = 256 * 1024 + 16 * 1024
    max_message_bytes: int = 16 * 1024 * 1024
    max_batch_items: int = 1000
    max_stream_in_flight: int = 4000
    max_concurrent_streams: int = 100
    trusted_proxies: str = ""
    max_concurrent_rpcs_per_client: int = 256
    max_streams_per_client: int = 64
    write_batch_max: int = 1000
    announce_linger: float = 0.005
    read_log_page: int = 200
    log_heights_page_size: int = 10_000
    max_log_heights_page_size: int = 100_000
    max_have_logs: int = 1_000_000
    missing_entries_batch_bytes: int = 4 * 1024 * 1024
    max_page_size: int = 1000
    max_resolved_documents: int = 5000
    query_durable: str = "query"
    page_token_secret_file: str = ""
    query_batch_size: int = 256
    stream_replicas: int = 1
    listing_change_log_bytes: int = 16 * 1024 * 1024
    watch_queue_bytes: int = 4 * 1024 * 1024
    decoded_cache_bytes: int = 64 * 1024 * 1024
    store_write_buffer_bytes: int = 32 * 1024 * 1024
    recovery_free_bytes: int = 16 * 1024 * 1024
    advertise_address: str = ""
    peer_tls_ca_file: str = ""
    bootstrap_peers: str = ""
    discovery_probe_interval: float = 5.0
    discovery_probe_timeout: float = 2.0
    peer_ttl: float = 30.0
    peer_exchange: bool = True
    lan_discovery: bool = False
    lan_group: str = "239.255.70.22"
    lan_port: int = 2021
    lan_interface: str = ""
    lan_announce_interval: float = 5.0
    node_key: str = ""
    ingest_address: str = ""
    replication_schema_ids: str = "*"
    allow_peer_ids: str = "*"
    block_peer_ids: str = ""
    replication_interval: float = 10.0
    sync_idle_timeout: float = 30.0
    max_sync_sessions: int = 16
    replication_hold_items: int = 10_000
    replication_hold_bytes: int = 16 * 1024 * 1024
    peer_ban_after: int = 3
    peer_ban_seconds: float = 600.0
    log_level: str = "INFO"
    http_listen: str = "127.0.0.1:2021"
    query_address: str = ""
    cors_origins: str = "*"
    graphql_cache_bytes: int = 32 * 1024 * 1024
    log_format: str = "text"
    metrics_listen: str = ""
    nats_monitor_listen: str = ""
    ws_max_subscriptions: int = 100
    ws_max_message_bytes: int = 64 * 1024
    ws_init_timeout: float = 10.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise SettingsError(f"setting {f.name} must be positive, got {value}")
        self._check_addresses()
        if self.peer_ttl <= max(self.discovery_probe_interval, self.lan_announce_interval):
            raise SettingsError(
                f"setting peer_ttl ({self.peer_ttl}) must exceed discovery_probe_interval "
                f"({self.discovery_probe_interval}) and lan_announce_interval "
                f"({self.lan_announce_interval}), or peers would be lost between two sightings"
            )
        try:
            group = ipaddress.IPv4Address(self.lan_group)
        except ValueError:
            group = None
        if group is None or not group.is_multicast:
            raise SettingsError(
                f"setting lan_group must be an IPv4 multicast address, got {self.lan_group!r}"
            )
        if self.lan_port > 65535:
            raise SettingsError(f"setting lan_port must be a UDP port, got {self.lan_port}")
        if self.lan_interface:
            try:
                ipaddress.IPv4Address(self.lan_interface)
            except ValueError:
                raise SettingsError(
                    f"setting lan_interface must be an IPv4 address, got {self.lan_interface!r}"
                ) from None
        if self.log_level.upper() not in _LOG_LEVELS:
            raise SettingsError(
                f"setting log_level must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}"
            )
        self._check_operations()
        try:
            _ = self.trusted_networks
        except ValueError as err:
            raise SettingsError(
                f"setting trusted_proxies must list IP addresses or networks: {err}"
            ) from None
        _ = self.supported_schemas  # raises on a malformed list
        if self.stream_replicas > 5:
            raise SettingsError(
                f"setting stream_replicas must be 1 to 5 (JetStream's limit), got "
                f"{self.stream_replicas}"
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.query_durable):
            raise SettingsError(
                "setting query_durable must be 1 to 64 letters, digits, '_' or '-' (a JetStream "
                f"consumer name), got {self.query_durable!r}"
            )

    def _check_addresses(self) -> None:
        if ":" not in self.listen:
            raise SettingsError(f"setting listen must be host:port, got {self.listen!r}")
        if self.http_listen:
            _check_address("http_listen", self.http_listen, allow_port_zero=True)
        for name in ("advertise_address", "ingest_address", "query_address"):
            if getattr(self, name):
                _check_address(name, getattr(self, name))
        for address in self.bootstrap_addresses:
            _check_address("bootstrap_peers", address)

    def _check_operations(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError(
                "settings tls_cert_file and tls_key_file go together: set both for TLS, or neither"
            )
        internal = (
            self.internal_tls_cert_file,
            self.internal_tls_key_file,
            self.internal_tls_ca_file,
        )
        if any(internal) and not all(internal):
            raise SettingsError(
                "settings internal_tls_cert_file, internal_tls_key_file and internal_tls_ca_file "
                "go together: set all three for mutual TLS between services, or none"
            )
        if self.log_format not in _LOG_FORMATS:
            raise SettingsError(
                f"setting log_format must be one of {', '.join(_LOG_FORMATS)}, "
                f"got {self.log_format!r}"
            )
        for name in ("metrics_listen", "nats_monitor_listen"):
            value = getattr(self, name).strip()
            if value and value.lower() != "off":
                _check_address(name, value, allow_port_zero=True)

    @property
    def node_key_path(self) -> Path:
        """The node key file: :attr:`node_key`, or ``node.key`` in the data directory."""
        return Path(self.node_key) if self.node_key else self.data_dir / "node.key"

    @property
    def page_token_secret_path(self) -> Path:
        """The page token secret: :attr:`page_token_secret_file`, or one in the data directory."""
        if self.page_token_secret_file:
            return Path(self.page_token_secret_file)
        return self.data_dir / PAGE_TOKEN_SECRET_FILE

    @property
    def supported_schemas(self) -> frozenset[str] | None:
        """The schema ids the node accepts operations of (canonical form); None: any.

        The listed ids plus the definition schemas a listed schema needs to be learned
        (:data:`IMPLICIT_SCHEMA_IDS`).

        Raises:
            SettingsError: an id does not parse, the list is empty, or ``*`` is mixed with ids.
        """
        return _supported_schemas(self.supported_schema_ids)

    @property
    def trusted_networks(self) -> tuple[Network, ...]:
        """:attr:`trusted_proxies` as networks."""
        return parse_networks(self.trusted_proxies)

    @property
    def bootstrap_addresses(self) -> tuple[str, ...]:
        """The ``host:port`` items of :attr:`bootstrap_peers`, in order, without repeats."""
        items = (item.strip() for item in self.bootstrap_peers.split(","))
        return tuple(dict.fromkeys(item for item in items if item))

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_file: Path | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge flags over environment over a TOML file over command defaults over defaults.

        Args:
            flags: Values given on the command line (None values are ignored).
            env: The environment (``os.environ`` when None).
            config_file: A TOML file with top-level keys named like the attributes.
            defaults: The command's own defaults, beaten by every other source (e.g.
                ``pandanode up`` turns ``lan_discovery`` on).

        Raises:
            SettingsError: an unknown key in the file, or a value of the wrong type.
        """
        env = os.environ if env is None else env
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {
            name: value for name, value in (defaults or {}).items() if name in known
        }
        if config_file is not None:
            try:
                data = tomllib.loads(Path(config_file).read_text())
            except (OSError, tomllib.TOMLDecodeError) as err:
                raise SettingsError(f"cannot read config file {config_file}: {err}") from err
            for key, value in data.items():
                if key not in known:
                    raise SettingsError(
                        f"unknown setting {key!r} in {config_file}; known: {', '.join(known)}"
                    )
                values[key] = value
        for name in known:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        for name, value in (flags or {}).items():
            if value is not None and name in known:
                values[name] = value
        return cls(**{name: cls._coerce(name, value) for name, value in values.items()})

    @classmethod
    def _coerce(cls, name: str, value: Any) -> Any:
        default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
        try:
            if isinstance(default, bool):
                return _bool(value)
            if isinstance(default, int):
                return int(value)
            if isinstance(default, float):
                return float(value)
            if isinstance(default, Path):
                return Path(value)
            return str(value)
        except (TypeError, ValueError) as err:
            raise SettingsError(f"setting {name}: cannot use {value!r}: {err}") from err

    def with_changes(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)


@functools.lru_cache(maxsize=16)
def _supported_schemas(text: str) -> frozenset[str] | None:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if items == ["*"]:
        return None
    if not items or "*" in items:
        raise SettingsError(
            "setting supported_schema_ids must be * (any schema) or a list of schema ids, "
            f"got {text[:200]!r}"
        )
    ids: set[str] = set()
    for item in items:
        try:
            ids.add(str(parse_schema_id(item)))
        except SchemaIdError as err:
            raise SettingsError(
                f"setting supported_schema_ids: {item[:200]!r} is not a schema id: {err.message}"
            ) from None
    return frozenset(ids | IMPLICIT_SCHEMA_IDS)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def _check_address(name: str, address: str, *, allow_port_zero: bool = False) -> None:
    try:
        split_host_port(address, allow_port_zero=allow_port_zero)
    except ValueError as err:
        raise SettingsError(f"setting {name}: {err}") from None

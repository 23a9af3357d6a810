"""``pandanode health``: ask a running service whether it serves (the gRPC health protocol).

Made for container health checks (Docker ``HEALTHCHECK``, compose ``healthcheck``): exit 0 when
the answer is SERVING, 1 for anything else (NOT_SERVING, an unknown service, no answer in
time). It dials ``127.0.0.1`` on the port of ``$PANDANODE_LISTEN`` unless ``--address`` is
given, so a container configured through the environment needs no arguments. A node with TLS
on is asked with ``--tls`` / ``--tls-ca FILE`` (``$PANDANODE_TLS``, ``$PANDANODE_TLS_CA``), and
``--tls-server-name`` when its certificate does not name 127.0.0.1. A service of a split
deployment with mutual TLS between services (``$PANDANODE_INTERNAL_TLS_CERT_FILE``,
``…_KEY_FILE``, ``…_CA_FILE``, as the service itself reads them) is asked with that
certificate, so the container's own health check needs no arguments either.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import cast

__all__ = ["SERVICE_NAMES", "default_address", "register", "run"]

# Short names accepted by --service, as `pandanode serve` names the services.
SERVICE_NAMES = {
    "ingest": "pandanode.ingest.v1.IngestService",
    "query": "pandanode.query.v1.QueryService",
    "discovery": "pandanode.discovery.v1.DiscoveryService",
    "replication": "pandanode.replication.v1.ReplicationService",
    "node": "pandanode.node.v1.NodeService",
}

# As the settings spell them (runtime.settings, not imported: the parser stays light).
_LISTEN_VARIABLE = "PANDANODE_LISTEN"
_DEFAULT_PORT = "2020"

EXIT_SERVING = 0
EXIT_NOT_SERVING = 1


def default_address(env: dict[str, str] | None = None) -> str:
    """``127.0.0.1:<port>`` of the listen setting in ``env`` (``os.environ``), else the default."""
    env = dict(os.environ) if env is None else env
    listen = env.get(_LISTEN_VARIABLE) or f"127.0.0.1:{_DEFAULT_PORT}"
    _, _, port = listen.rpartition(":")
    return f"127.0.0.1:{port}"


def _internal_tls_files(env: dict[str, str] | None = None) -> list[str] | None:
    """The internal TLS files of the settings in ``env`` (``os.environ``), if all are set."""
    env = dict(os.environ) if env is None else env
    names = ("CERT", "KEY", "CA")
    files = [env.get(f"PANDANODE_INTERNAL_TLS_{name}_FILE", "") for name in names]
    return files if all(files) else None


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``health`` to the ``pandanode`` subcommands (it sets ``args.run``)."""
    parser = commands.add_parser(
        "health",
        help="check a running service over gRPC health: exit 0 if SERVING, 1 otherwise",
        description="Ask a running node or service whether it serves (gRPC health protocol). "
        "Exit 0 if the answer is SERVING, 1 otherwise (NOT_SERVING, unknown service, "
        "unreachable).",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="the gRPC address to ask (default: 127.0.0.1 on the port of $PANDANODE_LISTEN, "
        "else 127.0.0.1:2020)",
    )
    parser.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help="a service to ask about: "
        + ", ".join(SERVICE_NAMES)
        + ", or a full gRPC service name (default: the whole process)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=os.environ.get("PANDANODE_TLS", "").strip().lower() in {"1", "true", "yes", "on"},
        help="dial over TLS, verified by the system's CAs (default: $PANDANODE_TLS)",
    )
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get("PANDANODE_TLS_CA") or None,
        metavar="FILE",
        help="dial over TLS, verified by the CA certificates in this PEM file "
        "(default: $PANDANODE_TLS_CA)",
    )
    parser.add_argument(
        "--internal-tls",
        nargs=3,
        default=_internal_tls_files(),
        metavar=("CERT", "KEY", "CA"),
        help="dial with mutual TLS: this certificate and key, servers verified by this CA "
        "(default: $PANDANODE_INTERNAL_TLS_CERT_FILE, …_KEY_FILE and …_CA_FILE when all are set)",
    )
    parser.add_argument(
        "--tls-server-name",
        default=None,
        metavar="NAME",
        help="the name the node's certificate must carry (default: the address's host)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the answer (%(default)s)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``pandanode health``; returns 0 when SERVING, 1 otherwise."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address: str = args.address or default_address()
    requested: str = args.service
    service = SERVICE_NAMES.get(requested, requested)
    label = f"{address} {service}".rstrip()
    name = args.tls_server_name
    options = [("grpc.ssl_target_name_override", name)] if name else []
    if args.internal_tls and not (args.tls or args.tls_ca):
        try:
            cert, key, ca = (Path(path).read_bytes() for path in args.internal_tls)
        except OSError as err:
            print(f"{label}: cannot read {err.filename}: {err.strerror}", file=sys.stderr)
            return EXIT_NOT_SERVING
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        channel = grpc.secure_channel(address, credentials, options=options)
    elif args.tls or args.tls_ca:
        try:
            roots = Path(args.tls_ca).read_bytes() if args.tls_ca else None
        except OSError as err:
            print(f"{label}: cannot read --tls-ca {args.tls_ca}: {err.strerror}", file=sys.stderr)
            return EXIT_NOT_SERVING
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=args.timeout
            )
        except grpc.RpcError as err:
            call = cast(grpc.Call, err)  # what a blocking stub raises is both
            print(f"{label}: {call.code().name}: {call.details()}", file=sys.stderr)
            return EXIT_NOT_SERVING
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{label}: {status}")
    return (
        EXIT_SERVING
        if answer.status == health_pb2.HealthCheckResponse.SERVING
        else EXIT_NOT_SERVING
    )

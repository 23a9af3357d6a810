"""``pandanode health``: ask a running service whether it serves (the gRPC health protocol).

Made for container health checks (Docker ``HEALTHCHECK``, compose ``healthcheck``): exit 0 when
the answer is SERVING, 1 for anything else (NOT_SERVING, an unknown service, no answer in
time). It dials ``127.0.0.1`` on the port of ``$PANDANODE_LISTEN`` unless ``--address`` is
given, so a container configured through the environment needs no arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
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
    with grpc.insecure_channel(address) as channel:
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

"""The ``pandanode`` command: ``up``, ``serve``, ``query rebuild``, ``check``, client commands.

``up`` runs the all-in-one node (a supervisor with one process per service), ``serve`` one
service, ``query rebuild`` re-materializes the query store from the event stream, ``health``
asks a running service whether it serves, ``config`` prints the effective settings. Errors a
user can fix (a port in use, a data directory in use, a bad setting) are one line on stderr
and a non-zero exit.

Client commands start fast: the node's own modules (RocksDB, NATS, the services) are imported
only when a node command runs, so a client-only install (without the ``node`` extra) works;
asyncio too (``--version`` and ``key`` need no event loop). The client commands themselves load
only what they use (see :mod:`pandanode.client.cli`).

It is a little over 500 lines because it is the composition root: the parser of every node
command and the few lines that start each one; the work lives in the modules it calls.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pandanode.client.cli import COMMANDS as CLIENT_COMMANDS
from pandanode.client.cli import (
    EPILOG,
    CliParser,
    add_global_options,
    add_version_option,
    subcommands,
)
from pandanode.client.cli import register as register_client_commands

if TYPE_CHECKING:
    import asyncio

    from .entry import Route
    from .runtime.settings import Settings

__all__ = ["console", "main"]

_NODE_EXTRA_HINT = "install the node's dependencies: pip install 'pandanode[node]'"


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with settings")
    parser.add_argument("--data-dir", dest="data_dir", help="data directory (default ./data)")
    parser.add_argument("--listen", help="gRPC address host:port (default 127.0.0.1:2020)")
    parser.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--log-format", dest="log_format", help="text (default) or json: one object per line"
    )


def _add_schemas(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--supported-schema-ids",
        dest="supported_schema_ids",
        metavar="ID,…",
        help="the schema allow list: accept operations of these schemas only (and their "
        "schema and field definitions); default *: any",
    )


def _add_metrics(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--metrics-listen",
        dest="metrics_listen",
        metavar="HOST:PORT",
        help=f"serve Prometheus metrics at http://HOST:PORT/metrics; off: none (default {default})",
    )


def _add_discovery(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-peers",
        dest="bootstrap_peers",
        metavar="HOST:PORT,…",
        help="nodes to probe and keep probing (comma-separated gRPC addresses)",
    )
    parser.add_argument(
        "--advertise-address",
        dest="advertise_address",
        metavar="HOST:PORT",
        help="the gRPC address other nodes should dial (default: the listen address)",
    )
    parser.add_argument(
        "--lan-discovery",
        dest="lan_discovery",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="announce this node and find others by UDP multicast (default: on)",
    )


def _add_http(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http-listen",
        dest="http_listen",
        metavar="HOST:PORT",
        help="the HTTP gateway's (GraphQL) address (default 127.0.0.1:2021)",
    )


def _add_replication(parser: argparse.ArgumentParser, *, serve: bool) -> None:
    parser.add_argument(
        "--node-key",
        dest="node_key",
        metavar="PATH",
        help="the node key file discovery and replication share (default <data-dir>/node.key)",
    )
    parser.add_argument(
        "--replication-schema-ids",
        dest="replication_schema_ids",
        metavar="ID,…",
        help="schema ids to replicate (default *: every schema; empty: nothing)",
    )
    parser.add_argument(
        "--allow-peer-ids",
        dest="allow_peer_ids",
        metavar="NODE_ID,…",
        help="node ids to replicate with (default *: any)",
    )
    parser.add_argument(
        "--block-peer-ids",
        dest="block_peer_ids",
        metavar="NODE_ID,…",
        help="node ids never to replicate with (refused both ways)",
    )
    if serve:
        parser.add_argument(
            "--ingest",
            dest="ingest_address",
            metavar="HOST:PORT",
            help="ingest's gRPC address (serve replication, serve gateway; default: this process)",
        )


# What `up` and `serve discovery` default to, beaten by flags, environment and config file.
_NODE_DEFAULTS = {"lan_discovery": True}


def _add_node_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from . import check  # the node's modules: only for node commands
    from .node import SERVICES
    from .supervisor import DEFAULT_METRICS_LISTEN

    up = commands.add_parser(
        "up",
        help="run the all-in-one node: embedded NATS and one process per service, on one address",
    )
    _add_common(up)
    _add_schemas(up)
    _add_discovery(up)
    _add_nats_url(up, "use this NATS server, not an embedded one")
    _add_http(up)
    _add_metrics(up, f"{DEFAULT_METRICS_LISTEN} if free")
    up.add_argument(
        "--nats-monitor-listen",
        dest="nats_monitor_listen",
        metavar="HOST:PORT",
        help="serve the embedded nats-server's HTTP monitoring here (default: off)",
    )
    _add_replication(up, serve=False)
    serve = commands.add_parser("serve", help="run one service (distributed deployment)")
    serve.add_argument("service", choices=SERVICES)
    _add_common(serve)
    _add_schemas(serve)
    _add_discovery(serve)
    _add_nats_url(serve, "NATS server URL (all but the gateway)")
    _add_http(serve)
    _add_replication(serve, serve=True)
    serve.add_argument(
        "--query", dest="query_address", metavar="HOST:PORT", help="gateway: query's address"
    )
    _add_metrics(serve, "off")
    serve.add_argument(
        "--stream-replicas",
        dest="stream_replicas",
        type=int,
        help="copies of the event stream JetStream keeps (3 on a 3-node NATS cluster; default 1)",
    )
    serve.add_argument(
        "--query-durable",
        dest="query_durable",
        help="the query replica's JetStream consumer name; each replica needs its own",
    )
    serve.add_argument(
        "--page-token-secret-file",
        dest="page_token_secret_file",
        metavar="PATH",
        help="the page token secret (made when missing); query replicas behind one address "
        "share one (default <data-dir>/page-token.secret)",
    )
    proxy = commands.add_parser(
        "proxy",
        help="the one public gRPC address of a split deployment: route each service's calls "
        "to its processes",
    )
    _add_common(proxy)
    proxy.add_argument(
        "--route",
        dest="routes",
        action="append",
        required=True,
        metavar="SERVICE=HOST:PORT[,HOST:PORT…]",
        help="where a service's calls go (repeat per service; several addresses: round-robin)",
    )
    query = commands.add_parser("query", help="maintain the query service's store")
    query_commands = query.add_subparsers(dest="query_command", required=True)
    rebuild_parser = query_commands.add_parser(
        "rebuild",
        help="wipe the query store and re-materialize everything from the event stream "
        "(stop the query service first)",
    )
    _add_common(rebuild_parser)
    _add_nats_url(
        rebuild_parser,
        "NATS server URL (default: the all-in-one node's embedded NATS in the data dir)",
    )
    check.register(commands)


def _add_nats_url(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--nats-url", dest="nats_url", metavar="URL", help=help_text)
    parser.add_argument("--nats", dest="nats_url", help=argparse.SUPPRESS)  # the old spelling


NODE_COMMANDS = frozenset({"up", "serve", "query", "check", "proxy"})
"""The commands that run (or inspect) a node: they need the ``node`` extra."""


def _first_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option or an option's value."""
    valued = {"--node", "--key-file", "--timeout", "--tls-ca"}
    words = iter(argv)
    for word in words:
        if word in valued:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _node_command_wanted(argv: Sequence[str]) -> bool:
    """Whether ``argv`` may name a node command (or none, as ``--help`` does)."""
    if "--version" in argv and _first_command(argv) is None:
        return False
    return _first_command(argv) not in CLIENT_COMMANDS


def build_parser(*, node_commands: bool = True, only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``pandanode`` command.

    Args:
        node_commands: Add ``up``, ``serve``, ``query`` and ``check`` (importing the node's
            modules); without them, the parser knows only the client commands. Also left
            out when the node's dependencies are not installed.
        only: A client command: the parser knows just that one (what ``pandanode status …``
            needs; building every command's parser costs start-up time); "": none (what
            ``pandanode --version`` needs).
    """
    parser = CliParser(prog="pandanode", description="A p2panda node.", epilog=EPILOG)
    add_version_option(parser)
    add_global_options(parser)
    commands = subcommands(parser)
    if only is not None:
        register_client_commands(commands, only=only)
        return parser
    if node_commands:
        try:
            _add_node_commands(commands)
        except ImportError:
            parser.epilog = f"{EPILOG}. Node commands (up, serve, …): {_NODE_EXTRA_HINT}"
    register_client_commands(commands)
    # Both need only the settings and gRPC health: they work in a client-only install too.
    from . import health

    health.register(commands)
    _add_config(commands)
    parser.set_defaults(completion_root=parser)
    return parser


def _add_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser("config", help="show the effective settings, or a sample file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = config_commands.add_parser(
        "show",
        help="print the settings `up`/`serve` would run with (flags over environment over "
        "--config file over defaults), as TOML",
    )
    _add_common(show)
    _add_schemas(show)
    _add_discovery(show)
    _add_nats_url(show, "NATS server URL")
    _add_http(show)
    _add_metrics(show, "off")
    show.add_argument(
        "--ingest", dest="ingest_address", metavar="HOST:PORT", help=argparse.SUPPRESS
    )
    show.add_argument("--query", dest="query_address", metavar="HOST:PORT", help=argparse.SUPPRESS)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(run=_config_show)
    sample = config_commands.add_parser(
        "sample", help="print a commented TOML file of every setting and its default"
    )
    sample.set_defaults(run=_config_sample)
    credentials = config_commands.add_parser(
        "nats-credentials",
        help="write a split deployment's NATS secrets: <user>.credentials per service user "
        "(and admin) and nats-passwords.conf for the NATS servers (deploy/README.md)",
    )
    credentials.add_argument("directory", type=Path, help="where to write them (made if missing)")
    credentials.set_defaults(run=_config_nats_credentials)
    users = config_commands.add_parser(
        "nats-users-conf",
        help="print the NATS users.conf of a split deployment: each service's user and the "
        "subjects it may use",
    )
    users.set_defaults(run=_config_nats_users_conf)


def _config_nats_credentials(args: argparse.Namespace) -> int:
    from .runtime.nats_users import PASSWORDS_FILE, USERS, credentials_file_name, write_credentials

    try:
        write_credentials(args.directory)
    except OSError as err:
        print(
            f"pandanode: cannot write to {args.directory}: {err.strerror or err}", file=sys.stderr
        )
        return 1
    names = ", ".join([*(credentials_file_name(user) for user in USERS), PASSWORDS_FILE])
    print(f"pandanode: wrote {names} to {args.directory} (mode 0600)")
    return 0


def _config_nats_users_conf(_args: argparse.Namespace) -> int:
    from .runtime.nats_users import users_conf

    print(users_conf(), end="")
    return 0


def _config_sample(_args: argparse.Namespace) -> int:
    from .runtime.config_file import sample_toml

    print(sample_toml(), end="")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import json

    from .runtime.config_file import effective_toml, settings_as_dict
    from .runtime.settings import Settings, SettingsError

    try:
        settings = Settings.load(_flags(args), config_file=args.config, defaults=_NODE_DEFAULTS)
    except SettingsError as err:
        print(f"pandanode: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(settings_as_dict(settings), indent=2))
    else:
        print(effective_toml(settings), end="")
    return 0


async def _rebuild(settings: Settings) -> int:
    from .supervisor import lock_data_dir

    # Fails while a node uses the data directory, before an embedded NATS would replace its own.
    lock = lock_data_dir(settings.data_dir)
    try:
        return await _rebuild_locked(settings)
    finally:
        os.close(lock)


async def _rebuild_locked(settings: Settings) -> int:
    from .query.materializer import rebuild
    from .query.store import QueryStore
    from .runtime.bus import connect_bus
    from .runtime.nats_server import EmbeddedNats

    QueryStore(settings.data_dir / "query").close()
    nats: EmbeddedNats | None = None
    url = settings.nats_url
    if not url:
        nats = EmbeddedNats.for_data_dir(settings.data_dir)
        await nats.start()
        url = nats.client_url
    try:
        bus = await connect_bus(url, name="pandanode-query-rebuild")
        try:
            return await rebuild(
                settings.data_dir / "query", bus, batch_size=settings.query_batch_size
            )
        finally:
            await bus.close()
    finally:
        if nats is not None:
            await nats.stop()


def _stop_on_signals() -> asyncio.Event:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _up(settings: Settings) -> int:
    from .supervisor import Supervisor

    return await Supervisor(settings).run(_stop_on_signals())


async def _proxy(settings: Settings, routes: list[Route]) -> int:
    """The entry point until SIGINT/SIGTERM; "pandanode listening on ADDRESS" tells it is up."""
    from .entry import EntryPoint

    stop = _stop_on_signals()
    entry = EntryPoint(settings, routes)
    address = await entry.start()
    print(
        f"pandanode listening on {address} (routing "
        + "; ".join(f"{r.service} to {','.join(r.upstreams)}" for r in entry.routes)
        + ")",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        print("pandanode: draining…", flush=True)
        await entry.stop()
    return 0


async def _serve(settings: Settings, service: str) -> int:
    """One service in this process; the line "pandanode listening on ADDRESS" tells it is up.

    With metrics on, the line says where: "…; metrics on HOST:PORT)" (the supervisor of
    ``pandanode up`` reads it to scrape its children).
    """
    import asyncio

    from pandanode.client._endpoints import EndpointChannel
    from pandanode.core.version import version

    from .node import Node
    from .runtime.collector import settle_collector
    from .runtime.metrics import MetricsServer, metrics_enabled, serve_metrics
    from .runtime.service import EXIT_RESTART
    from .supervisor import SupervisorError

    stop = _stop_on_signals()
    metrics: MetricsServer | None = None
    if metrics_enabled(settings.metrics_listen):
        try:
            metrics = serve_metrics(settings.metrics_listen, (service,))
        except OSError as err:
            raise SupervisorError(
                f"cannot serve metrics on {settings.metrics_listen}: {err.strerror or err}"
            ) from None
    # The composition root hands the gateway the client's endpoint channel: behind `pandanode
    # up` it then calls each service's process directly instead of through the public address.
    node = Node(settings, (service,), dial=EndpointChannel)
    try:
        await node.start()
    except BaseException:
        if metrics is not None:
            metrics.stop()
        raise
    settle_collector()
    http = f"; http on {node.http_address}" if node.http_address else ""
    where = f"; metrics on {metrics.address}" if metrics is not None else ""
    print(
        f"pandanode listening on {node.address} (pandanode {version()}, {service}, "
        f"data in {settings.data_dir}{http}{where})",
        flush=True,
    )
    try:
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(node.failed.wait())
        restart = asyncio.create_task(node.restart.wait())
        await asyncio.wait([stopped, failed, restart], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
        restart.cancel()
    finally:
        print("pandanode: draining…", flush=True)
        await node.stop()
        if metrics is not None:
            metrics.stop()
    if node.failed.is_set():
        return 1
    return EXIT_RESTART if node.restart.is_set() and not stop.is_set() else 0


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pandanode`` command; returns the exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    command = _first_command(words)
    if command in NODE_COMMANDS and (missing := _missing_node_dependency()) is not None:
        print(f"pandanode {command}: needs {missing}; {_NODE_EXTRA_HINT}", file=sys.stderr)
        return 2
    only = command if command in CLIENT_COMMANDS else None
    if command is None and "--version" in words and not {"-h", "--help"} & set(words):
        only = ""  # --version exits while parsing: no command's parser is needed
    parser = build_parser(node_commands=_node_command_wanted(words), only=only)
    args = parser.parse_args(words)
    if hasattr(args, "run"):  # a client command (pandanode.client.cli), `check`, `health`, `config`
        code: int = args.run(args)
        return code
    try:
        return _run_node_command(args)
    except ImportError as err:  # a client-only install (the parser knew the command, though)
        print(
            f"pandanode {args.command}: needs {err.name or err}; {_NODE_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 2


def console() -> NoReturn:
    """The ``pandanode`` console script: :func:`main` with ``sys.argv``, then exit.

    A client command ends the process at once, as it would end anyway: exit handlers run and
    what it wrote is flushed, but the interpreter does not tear down every module (gRPC's C
    core among them), which costs a command that asked a node about 30 ms of CPU.
    """
    words = sys.argv[1:]
    code = main(words)
    if _first_command(words) in CLIENT_COMMANDS:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a reader gone, a closed stream
                stream.flush()
        os._exit(code)
    sys.exit(code)


def _missing_node_dependency() -> str | None:
    """The first of the node's own dependencies that is not installed (a client-only install)."""
    from importlib.util import find_spec

    for module in (
        "rocksdict",
        "nats",
        "grpc_reflection",
        "uvicorn",
        "graphql",
        "prometheus_client",
    ):
        if find_spec(module) is None:
            return module
    return None


def _flags(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line (None: not given)."""
    return {
        "data_dir": args.data_dir,
        "listen": args.listen,
        "nats_url": getattr(args, "nats_url", None),
        "supported_schema_ids": getattr(args, "supported_schema_ids", None),
        "log_level": args.log_level,
        "log_format": args.log_format,
        "metrics_listen": getattr(args, "metrics_listen", None),
        "nats_monitor_listen": getattr(args, "nats_monitor_listen", None),
        "bootstrap_peers": getattr(args, "bootstrap_peers", None),
        "advertise_address": getattr(args, "advertise_address", None),
        "lan_discovery": getattr(args, "lan_discovery", None),
        "http_listen": getattr(args, "http_listen", None),
        "query_address": getattr(args, "query_address", None),
        "node_key": getattr(args, "node_key", None),
        "replication_schema_ids": getattr(args, "replication_schema_ids", None),
        "allow_peer_ids": getattr(args, "allow_peer_ids", None),
        "block_peer_ids": getattr(args, "block_peer_ids", None),
        # One --ingest flag: the address of ingest for the service that calls it.
        "ingest_address": getattr(args, "ingest_address", None),
        "stream_replicas": getattr(args, "stream_replicas", None),
        "query_durable": getattr(args, "query_durable", None),
        "page_token_secret_file": getattr(args, "page_token_secret_file", None),
    }


def _run_node_command(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from .runtime.logs import configure_logging
    from .runtime.settings import Settings, SettingsError
    from .supervisor import SupervisorError

    flags = _flags(args)
    if args.command == "serve" and args.service != "gateway" and not args.nats_url:
        print(
            f"pandanode serve {args.service}: --nats-url URL is required (the NATS server)",
            file=sys.stderr,
        )
        return 2
    defaults = _NODE_DEFAULTS if args.command in ("up", "serve") else None
    from .entry import routes_of

    try:
        settings = Settings.load(flags, config_file=args.config, defaults=defaults)
        routes = routes_of(args.routes) if args.command == "proxy" else []
    except SettingsError as err:
        print(f"pandanode: {err}", file=sys.stderr)
        return 2
    service = {"up": "node", "serve": getattr(args, "service", "")}.get(args.command, args.command)
    configure_logging(settings.log_level, settings.log_format, service)
    if args.command == "query":
        try:
            count = asyncio.run(_rebuild(settings))
        except Exception as err:
            print(f"pandanode: rebuild failed: {err}", file=sys.stderr)
            return 1
        print(f"pandanode: query store rebuilt from {count} events", flush=True)
        return 0
    try:
        if args.command == "up":
            return asyncio.run(_up(settings))
        if args.command == "proxy":
            return asyncio.run(_proxy(settings, routes))
        return asyncio.run(_serve(settings, args.service))
    except (SupervisorError, SettingsError) as err:
        print(f"pandanode: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a start-up failure the user must see in one line
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)
        print(f"pandanode: cannot start {args.command}: {_one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

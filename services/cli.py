"""The ``pandanode`` command: ``up``, ``serve``, ``query rebuild``, ``check``, client commands.

``up`` runs the all-in-one node (a supervisor with one process per service), ``serve`` one
service, ``query rebuild`` re-materializes the query store from the event stream, ``health``
asks a running service whether it serves, ``config`` prints the effective settings. Errors a
user can fix (a port in use, a data directory in use, a bad setting) are one line on stderr
and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pandanode.client.cli import register as register_client_commands

from . import check, health
from .node import SERVICES, Node
from .query.materializer import rebuild
from .query.store import QueryStore
from .runtime.bus import connect_bus
from .runtime.config_file import effective_toml, sample_toml, settings_as_dict
from .runtime.nats_server import EmbeddedNats
from .runtime.settings import Settings, SettingsError
from .supervisor import Supervisor, SupervisorError, lock_data_dir

__all__ = ["main"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with settings")
    parser.add_argument("--data-dir", dest="data_dir", help="data directory (default ./data)")
    parser.add_argument("--listen", help="gRPC address host:port (default 127.0.0.1:2020)")
    parser.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR")


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


# What `up` and `serve discovery` default to, beaten by flags, environment and config file.
_NODE_DEFAULTS = {"lan_discovery": True}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pandanode`` command."""
    parser = argparse.ArgumentParser(prog="pandanode", description="A p2panda node.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up",
        help="run the all-in-one node: embedded NATS and one process per service, on one address",
    )
    _add_common(up)
    _add_discovery(up)
    up.add_argument("--nats-url", dest="nats_url", help="use this NATS server, not an embedded one")
    serve = commands.add_parser("serve", help="run one service (distributed deployment)")
    serve.add_argument("service", choices=SERVICES)
    _add_common(serve)
    _add_discovery(serve)
    serve.add_argument("--nats", dest="nats_url", required=True, help="NATS server URL")
    query = commands.add_parser("query", help="maintain the query service's store")
    query_commands = query.add_subparsers(dest="query_command", required=True)
    rebuild_parser = query_commands.add_parser(
        "rebuild",
        help="wipe the query store and re-materialize everything from the event stream "
        "(stop the query service first)",
    )
    _add_common(rebuild_parser)
    rebuild_parser.add_argument(
        "--nats",
        dest="nats_url",
        help="NATS server URL (default: the all-in-one node's embedded NATS in the data dir)",
    )
    register_client_commands(commands)
    check.register(commands)
    health.register(commands)
    _add_config(commands)
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
    _add_discovery(show)
    show.add_argument("--nats-url", "--nats", dest="nats_url", help="NATS server URL")
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    config_commands.add_parser(
        "sample", help="print a commented TOML file of every setting and its default"
    )


async def _rebuild(settings: Settings) -> int:
    # Fails while a node uses the data directory, before an embedded NATS would replace its own.
    lock = lock_data_dir(settings.data_dir)
    try:
        return await _rebuild_locked(settings)
    finally:
        os.close(lock)


async def _rebuild_locked(settings: Settings) -> int:
    QueryStore(settings.data_dir / "query").close()
    nats: EmbeddedNats | None = None
    url = settings.nats_url
    if not url:
        nats = EmbeddedNats(store_dir=settings.data_dir / "nats")
        await nats.start()
        url = nats.url
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _up(settings: Settings) -> int:
    return await Supervisor(settings).run(_stop_on_signals())


async def _serve(settings: Settings, service: str) -> int:
    """One service in this process; the line "pandanode listening on ADDRESS" tells it is up."""
    stop = _stop_on_signals()
    node = Node(settings, (service,))
    await node.start()
    print(f"pandanode listening on {node.address} (data in {settings.data_dir})", flush=True)
    try:
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(node.failed.wait())
        await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
    finally:
        print("pandanode: draining…", flush=True)
        await node.stop()
    return 1 if node.failed.is_set() else 0


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pandanode`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "run"):  # a client command (pandanode.client.cli), `check` or `health`
        code: int = args.run(args)
        return code
    if args.command == "config" and args.config_command == "sample":
        print(sample_toml(), end="")
        return 0
    flags = {
        "data_dir": args.data_dir,
        "listen": args.listen,
        "nats_url": args.nats_url,
        "log_level": args.log_level,
        "bootstrap_peers": getattr(args, "bootstrap_peers", None),
        "advertise_address": getattr(args, "advertise_address", None),
        "lan_discovery": getattr(args, "lan_discovery", None),
    }
    defaults = _NODE_DEFAULTS if args.command in ("up", "serve", "config") else None
    try:
        settings = Settings.load(flags, config_file=args.config, defaults=defaults)
    except SettingsError as err:
        print(f"pandanode: {err}", file=sys.stderr)
        return 2
    if args.command == "config":
        if args.json:
            print(json.dumps(settings_as_dict(settings), indent=2))
        else:
            print(effective_toml(settings), end="")
        return 0
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
        return asyncio.run(_serve(settings, args.service))
    except SupervisorError as err:
        print(f"pandanode: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a start-up failure the user must see in one line
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)
        print(f"pandanode: cannot start {args.command}: {_one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

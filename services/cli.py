"""The ``pandanode`` command: run the node (``up``) or one service (``serve``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .node import SERVICES, Node
from .runtime.settings import Settings, SettingsError

__all__ = ["main"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with settings")
    parser.add_argument("--data-dir", dest="data_dir", help="data directory (default ./data)")
    parser.add_argument("--listen", help="gRPC address host:port (default 127.0.0.1:2020)")
    parser.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pandanode`` command."""
    parser = argparse.ArgumentParser(prog="pandanode", description="A p2panda node.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="run the all-in-one node: embedded NATS and every service on one address"
    )
    _add_common(up)
    up.add_argument("--nats-url", dest="nats_url", help="use this NATS server, not an embedded one")
    serve = commands.add_parser("serve", help="run one service (distributed deployment)")
    serve.add_argument("service", choices=SERVICES)
    _add_common(serve)
    serve.add_argument("--nats", dest="nats_url", required=True, help="NATS server URL")
    return parser


async def _run(settings: Settings, services: tuple[str, ...]) -> None:
    node = Node(settings, services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await node.start()
    print(f"pandanode listening on {node.address} (data in {settings.data_dir})", flush=True)
    try:
        await stop.wait()
    finally:
        print("pandanode: draining…", flush=True)
        await node.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pandanode`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    flags = {
        "data_dir": args.data_dir,
        "listen": args.listen,
        "nats_url": args.nats_url,
        "log_level": args.log_level,
    }
    try:
        settings = Settings.load(flags, config_file=args.config)
    except SettingsError as err:
        print(f"pandanode: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    services = SERVICES if args.command == "up" else (args.service,)
    try:
        asyncio.run(_run(settings, services))
    except OSError as err:
        print(f"pandanode: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The commands on replication: ``sync HOST:PORT`` and ``sessions``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from rich.table import Table

from ._cli_output import EXIT_OK, EXIT_REJECTED, Output, connect, escape, short
from ._errors import NotServedError

__all__ = ["sessions", "sync"]

_HINT = (
    "`pandanode up` runs replication; in a distributed deployment, `pandanode serve "
    "replication` behind the same address"
)
# What a session's failure reason means, where the reason alone leaves a person guessing.
_EXPLAINED = {"PEER_UNREACHABLE": "the node could not connect to {address}"}


async def sync(args: argparse.Namespace, output: Output) -> int:
    try:
        async with connect(args) as node:
            session = await node.sync_with(args.address)
    except NotServedError as err:
        output.error(err.message, _HINT)
        return EXIT_REJECTED
    if output.json:
        output.emit(session.to_dict())
    elif session.error_reason:
        explained = _EXPLAINED.get(session.error_reason, "").format(address=args.address)
        output.console.print(
            f"[red]sync with {escape(args.address)} failed:[/] {escape(session.error_reason)}"
            + (f" ({escape(explained)})" if explained else "")
        )
    else:
        output.console.print(
            f"synced with {short(session.node_id, output.console.is_terminal)} at "
            f"{escape(args.address)}: {session.entries_received} entries received, "
            f"{session.entries_sent} sent"
        )
    return EXIT_REJECTED if session.error_reason else EXIT_OK


async def sessions(args: argparse.Namespace, output: Output) -> int:
    try:
        async with connect(args) as node:
            listed, peers = await node.sessions()
    except NotServedError as err:
        output.error(err.message, _HINT)
        return EXIT_REJECTED
    if output.json:
        output.emit(
            {"sessions": [s.to_dict() for s in listed], "peers": [p.to_dict() for p in peers]}
        )
        return EXIT_OK
    terminal = output.console.is_terminal
    if not listed:
        output.console.print(f"node {args.node} has no replication sessions (yet)")
    else:
        table = Table(show_header=True)
        columns = ("node id", "address", "state", "dialed", "sent", "received", "held", "error")
        for column in columns:
            table.add_column(column)
        for session in listed:
            table.add_row(
                short(session.node_id, terminal),
                escape(session.address),
                session.state,
                "yes" if session.initiator else "no",
                str(session.entries_sent),
                str(session.entries_received),
                f"{session.held_peak} peak, {session.held_dropped} dropped",
                escape(session.error_reason),
            )
        output.console.print(table)
    now = datetime.now(UTC)
    for peer in peers:
        if peer.blocked:
            why = "blocked"
        elif peer.banned_until and peer.banned_until > now:
            why = f"banned until {peer.banned_until.astimezone():%H:%M:%S}"
        else:
            when = f"{peer.retry_after.astimezone():%H:%M:%S}" if peer.retry_after else "?"
            why = f"backing off until {when}"
        output.console.print(
            f"peer {short(peer.node_id, terminal)}: {why} "
            f"({peer.failures} failures; {escape(peer.last_error_reason)})"
        )
    return EXIT_OK

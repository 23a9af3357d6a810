"""The commands on bulk import and export, and the node's status and peers."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._cli_output import (
    EXIT_OK,
    EXIT_REJECTED,
    Output,
    UsageError,
    connect,
    escape,
    short,
)

__all__ = ["export", "import_lines", "peers", "status"]


def _read_lines(source: str) -> list[dict[str, Any]]:
    handle = sys.stdin if source == "-" else Path(source).open(encoding="utf-8")  # noqa: SIM115
    rows: list[dict[str, Any]] = []
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"{source}:{number}: not JSON: {err}") from None
            if not isinstance(row, dict):
                raise UsageError(f"{source}:{number}: expected a JSON object")
            rows.append(row)
    return rows


async def import_lines(args: argparse.Namespace, output: Output) -> int:
    from ._cli_values import json_value
    from ._models import Create

    rows = _read_lines(args.file)
    raw = [row for row in rows if "entry" in row]
    if raw and len(raw) != len(rows):
        raise UsageError(
            "a file holds either signed entries ({entry, operation}) or documents to create "
            "({schema_id, fields}), not both"
        )
    async with connect(args, sign=not raw) as node:
        with output.progress("importing", len(rows)) as update:

            def progress(done: int, _total: int | None) -> None:
                update(done)

            if raw:
                try:
                    pairs = [
                        (bytes.fromhex(row["entry"]), bytes.fromhex(row["operation"]))
                        for row in raw
                    ]
                except (KeyError, ValueError, TypeError) as err:
                    raise UsageError(
                        f"an entry line needs hex `entry` and `operation`: {err}"
                    ) from None
                result = await node.bulk_import(
                    pairs, batch_size=args.batch_size, progress=progress
                )
            else:
                operations = []
                for number, row in enumerate(rows, start=1):
                    if not isinstance(row.get("schema_id"), str) or not isinstance(
                        row.get("fields"), dict
                    ):
                        raise UsageError(
                            f'{args.file}:{number}: expected {{"schema_id": …, "fields": {{…}}}}'
                        )
                    schema = await node.get_schema(row["schema_id"])
                    fields = {
                        name: json_value(value, schema.fields[name])
                        if name in schema.fields
                        else value
                        for name, value in row["fields"].items()
                    }
                    operations.append(Create(schema, fields))
                result = await node.publish_many(
                    operations, batch_size=args.batch_size, progress=progress
                )
    errors = result.errors
    summary = {
        "items": len(result),
        "published": len(result) - len(errors),
        "rejected": len(errors),
        "seconds": round(result.elapsed, 3),
        "rate": round(result.rate, 1),
        "errors": [
            {"line": index + 1, "reason": error.reason.value, "message": error.message}
            for index, error in errors[:100]
        ],
    }
    if output.json:
        output.emit(summary)
    else:
        output.console.print(
            f"[green]✓[/] {summary['published']} of {len(result)} published in "
            f"{result.elapsed:.2f} s ({result.rate:.0f}/s)"
        )
        for index, error in errors[:10]:
            output.error(f"line {index + 1}: {error.message} [{error.reason.value}]")
        if len(errors) > 10:
            output.error(f"… and {len(errors) - 10} more rejected lines")
    # Lines the node (or the client's own checks) rejected: the file was read fine, but not
    # all of it is in; 2 stays for a file that could not be used at all.
    return EXIT_REJECTED if errors else EXIT_OK


async def export(args: argparse.Namespace, output: Output) -> int:
    target = sys.stdout if args.output is None else Path(args.output).open("w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        async with connect(args) as node:
            with output.progress("exporting", None) as update:
                async for entry, operation in node.export(
                    schema_ids=args.schema, public_key=args.author, definitions=True
                ):
                    target.write(
                        json.dumps({"entry": entry.hex(), "operation": operation.hex()}) + "\n"
                    )
                    count += 1
                    update(count)
    finally:
        if target is not sys.stdout:
            target.close()
    if args.output is not None:
        if output.json:
            output.emit({"entries": count, "file": str(args.output)})
        else:
            output.console.print(f"[green]✓[/] exported {count} entries to {args.output}")
    return EXIT_OK


async def status(args: argparse.Namespace, output: Output) -> int:
    async with connect(args) as node:
        status = await node.status()
    if output.json:
        output.emit(status.to_dict())
        return EXIT_OK if status.serving else EXIT_REJECTED
    from rich.table import Table

    state = "[green]serving[/]" if status.serving else "[red]not serving[/]"
    output.console.print(f"node {status.address}: {state} ({status.latency_ms:.1f} ms)")
    if status.node_id is not None:
        output.console.print(f"node id {status.node_id}, pandanode {status.version or '?'}")
    table = Table(show_header=True)
    table.add_column("service")
    table.add_column("health")
    for name, health in status.services.items():
        colour = "green" if health == "SERVING" else "red"
        table.add_row(name, f"[{colour}]{health}[/]")
    output.console.print(table)
    if status.logs is not None:
        output.console.print(f"{status.logs} logs, {status.entries} entries")
    return EXIT_OK if status.serving else EXIT_REJECTED


async def peers(args: argparse.Namespace, output: Output) -> int:
    from ._errors import NotServedError

    try:
        async with connect(args) as node:
            peers = await node.peers()
    except NotServedError as err:
        output.error(
            err.message,
            "`pandanode up` runs discovery; in a distributed deployment, `pandanode serve "
            "discovery` behind the same address",
        )
        return EXIT_REJECTED
    if output.json:
        output.emit([peer.to_dict() for peer in peers])
        return EXIT_OK
    if not peers:
        output.console.print(f"node {args.node} knows no peers (yet)")
        return EXIT_OK
    from rich.table import Table

    terminal = output.console.is_terminal
    now = datetime.now(UTC)
    table = Table(show_header=True)
    for column in ("node id", "addresses", "source", "reachable", "first seen", "last seen"):
        table.add_column(column)
    for peer in peers:
        table.add_row(
            short(peer.node_id, terminal),
            escape(", ".join(peer.addresses)),
            peer.source,
            "[green]yes[/]" if peer.reachable else "[red]no[/]",
            _ago(peer.first_seen, now),
            _ago(peer.last_seen, now),
        )
    output.console.print(table)
    output.console.print(f"{len(peers)} {'peer' if len(peers) == 1 else 'peers'}")
    return EXIT_OK


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, round((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")

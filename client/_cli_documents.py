"""The commands on schemas, documents, watches and blobs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Final

from rich.table import Table

from pandanode.core.schema import Schema

from ._cli_output import (
    EXIT_OK,
    Output,
    UsageError,
    connect,
    escape,
    print_document,
    print_published,
    render_value,
    schema_dict,
    schema_table,
    short,
)
from ._cli_values import field_values, parse_filters
from ._models import Change, Document

# The node's largest page (QueryService max_page_size).
MAX_PAGE_SIZE: Final = 1000

__all__ = [
    "blob_get",
    "blob_put",
    "document_create",
    "document_delete",
    "document_get",
    "document_update",
    "documents_list",
    "schema_create",
    "schema_list",
    "schema_show",
    "watch",
]


def _read_description_file(path: Path) -> dict[str, Any]:
    import tomllib

    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"cannot read schema file {path}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise UsageError(
            f"schema file {path} needs `name`, `description` and a `fields` table "
            "(field name = type)"
        )
    return data


async def schema_create(args: argparse.Namespace, output: Output) -> int:
    name: str | None = args.name
    description: str = args.description
    fields: dict[str, str] = {}
    if args.file is not None:
        data = _read_description_file(args.file)
        name = name or str(data.get("name", ""))
        description = description or str(data.get("description", ""))
        fields.update({str(k): str(v) for k, v in data["fields"].items()})
    for item in args.field:
        field_name, colon, field_type = item.partition(":")
        if not colon:
            raise UsageError(f"--field {item!r}: expected NAME:TYPE, e.g. title:str")
        fields[field_name.strip()] = field_type.strip()
    if not name:
        raise UsageError("give the schema a name (or --file with a `name`)")
    if not fields:
        raise UsageError("a schema needs fields: --field NAME:TYPE (or --file)")
    async with connect(args, sign=True) as node:
        schema_id = await node.create_schema(name, description, fields)
    if output.json:
        output.emit({"schema_id": schema_id})
    else:
        output.console.print(f"[green]✓[/] schema created: [bold]{schema_id}[/]")
    return EXIT_OK


async def schema_list(args: argparse.Namespace, output: Output) -> int:
    async with connect(args) as node:
        schemas = await node.list_schemas()
    if output.json:
        output.emit([schema_dict(schema) for schema in schemas])
        return EXIT_OK
    table = Table(title="schemas", title_justify="left")
    # Ids stay whole (to copy them); descriptions and fields wrap instead.
    widest = max((len(str(schema.id)) for schema in schemas), default=9)
    table.add_column("schema id", no_wrap=True, min_width=widest)
    table.add_column("description", ratio=1)
    table.add_column("fields", ratio=1)
    for schema in schemas:
        table.add_row(str(schema.id), schema.description, schema.describe_fields())
    output.console.print(table)
    return EXIT_OK


async def schema_show(args: argparse.Namespace, output: Output) -> int:
    async with connect(args) as node:
        schema = await node.get_schema(args.schema_id)
    if output.json:
        output.emit(schema_dict(schema))
    else:
        output.console.print(schema_table(schema))
        output.console.print(f"[dim]{schema.id}[/]")
    return EXIT_OK


async def document_create(args: argparse.Namespace, output: Output) -> int:
    async with connect(args, sign=True) as node:
        schema = await node.get_schema(args.schema_id)
        published = await node.create(schema, field_values(args, schema))
    print_published(output, published, "created")
    return EXIT_OK


async def document_update(args: argparse.Namespace, output: Output) -> int:
    async with connect(args, sign=True) as node:
        target = await node._target(args.document_id)
        schema = await node.get_schema(target.schema_id)
        document = Document(target.document_id, target.view_id, target.schema_id, "", False, False)
        published = await node.update(document, field_values(args, schema))
    print_published(output, published, "updated")
    return EXIT_OK


async def document_delete(args: argparse.Namespace, output: Output) -> int:
    async with connect(args, sign=True) as node:
        published = await node.delete(args.document_id)
    print_published(output, published, "deleted")
    return EXIT_OK


async def document_get(args: argparse.Namespace, output: Output) -> int:
    if not args.document_id and not args.view_id:
        raise UsageError("give a document id (or --view-id)")
    async with connect(args) as node:
        document = await node.get_document(
            args.document_id, view_id=args.view_id, resolve_depth=args.resolve, after=args.after
        )
    print_document(output, document)
    return EXIT_OK


def _order(args: argparse.Namespace) -> str | None:
    order_by: str | None = args.order_by
    if not args.desc:
        return order_by
    if order_by is None:
        return "-@document_id"
    return order_by if order_by.startswith("-") else f"-{order_by}"


async def documents_list(args: argparse.Namespace, output: Output) -> int:
    shown: list[Document] = []
    total = 0
    next_page_token = ""
    async with connect(args) as node:
        schema = await node.get_schema(args.schema_id)
        conditions = parse_filters(args.filter, schema)
        async for page in node.pages(
            schema,
            filter=conditions,
            order_by=_order(args),
            page_size=min(args.limit or (MAX_PAGE_SIZE if args.all else 25), MAX_PAGE_SIZE),
            page_token=args.page_token,
            after=args.after,
        ):
            shown.extend(page.documents)
            total, next_page_token = page.total_size, page.next_page_token
            if not args.all:
                break
    if output.json or args.output == "json":
        output.emit([document.to_dict() for document in shown])
        return EXIT_OK
    if args.output == "wide":
        _print_wide(output, schema, shown, total)
    else:
        terminal = output.console.is_terminal
        table = Table(title=f"{schema.name}: {len(shown)} of {total}", title_justify="left")
        table.add_column("document", overflow="fold")
        for name in schema.fields:
            table.add_column(name, overflow="fold")
        for document in shown:
            table.add_row(
                short(document.id, terminal),
                *(render_value(document.fields.get(name, ""), terminal) for name in schema.fields),
            )
        output.console.print(table)
    if next_page_token and not args.all:
        output.console.print(
            f"[dim]{total - len(shown)} more: --page-token {next_page_token} (or --all)[/]",
            soft_wrap=True,
        )
    return EXIT_OK


def _print_wide(output: Output, schema: Schema, documents: list[Document], total: int) -> None:
    """One line per document, ids and values in full, columns aligned: to read and to copy."""
    header = ["DOCUMENT", *(name.upper() for name in schema.fields)]
    rows = [
        [
            document.id,
            *(render_value(document.fields.get(name, ""), False) for name in schema.fields),
        ]
        for document in documents
    ]
    rows = [[" ".join(cell.split()) for cell in row] for row in rows]  # a value stays on one line
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        output.stdout.write(line.rstrip() + "\n")
    output.stdout.write(f"{schema.name}: {len(documents)} of {total}\n")
    output.stdout.flush()


async def watch(args: argparse.Namespace, output: Output) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be more than 0 seconds")
    async with connect(args) as node:
        schema = await node.get_schema(args.schema_id)
        conditions = parse_filters(args.filter, schema)
        changes = node.watch(schema, filter=conditions, after=args.after)
        try:
            async with asyncio.timeout(args.duration) as scope:
                await _follow(changes, output, args.limit)
        except TimeoutError:
            if not scope.expired():
                raise  # a deadline of the node, not --duration
        finally:
            await changes.aclose()
    return EXIT_OK


async def _follow(changes: AsyncGenerator[Change, None], output: Output, limit: int | None) -> None:
    colours = {"created": "green", "updated": "yellow", "deleted": "red", "left": "magenta"}
    shown = 0
    async for change in changes:
        document = change.document
        if output.json:
            output.emit(
                {"kind": change.kind, "document": None if document is None else document.to_dict()}
            )
        elif document is None:
            output.console.print("[dim]— caught up; watching for changes (Ctrl-C stops)[/]")
        else:
            values = ", ".join(
                f"{name}={render_value(value, True)}" for name, value in document.fields.items()
            )
            colour = colours.get(change.kind, "white")
            output.console.print(
                f"[{colour}]{change.kind:>8}[/] {short(document.id, True)} {escape(values)}"
            )
        if document is not None:
            shown += 1
            if limit is not None and shown >= limit:
                return


async def blob_put(args: argparse.Namespace, output: Output) -> int:
    import mimetypes

    data = Path(args.file).read_bytes()
    mime_type = args.mime_type or mimetypes.guess_type(str(args.file))[0]
    if not mime_type:
        raise UsageError(f"cannot guess the MIME type of {args.file}; pass --mime-type")
    async with connect(args, sign=True) as node:
        pieces = max(1, -(-len(data) // 256_000))
        with output.progress("uploading", pieces) as update:
            published = await node.put_blob(data, mime_type, progress=lambda d, _t: update(d))
    if output.json:
        output.emit({**published.to_dict(), "length": len(data), "mime_type": mime_type})
    else:
        output.console.print(
            f"[green]✓[/] blob {published.document_id} ({len(data)} bytes, {mime_type}, "
            f"{pieces} piece{'s' if pieces > 1 else ''})"
        )
    return EXIT_OK


async def blob_get(args: argparse.Namespace, output: Output) -> int:
    async with connect(args) as node:
        blob = await node.get_blob(args.document_id, after=args.after)
    if args.output is None:
        sys.stdout.buffer.write(blob.data)
        sys.stdout.buffer.flush()
        return EXIT_OK
    Path(args.output).write_bytes(blob.data)
    if output.json:
        output.emit(
            {"file": str(args.output), "length": len(blob.data), "mime_type": blob.mime_type}
        )
    else:
        output.console.print(
            f"[green]✓[/] wrote {len(blob.data)} bytes ({blob.mime_type}) to {args.output}"
        )
    return EXIT_OK

"""The client commands of ``pandanode``: keys, schemas, documents, blobs, bulk import/export.

:func:`register` adds them to the ``pandanode`` argument parser; each parsed command carries
``args.run`` (:func:`run`), which runs it and returns the exit code. ``python -m
pandanode.client.cli …`` runs them on their own (:func:`main`).

Exit codes, for scripts:

====  =========================================================================
0     success
1     the node rejected the request (e.g. an entry, an unknown document)
2     usage or input error, found before anything was sent (bad flags, files,
      key file, a field that does not fit the schema)
3     the node is unreachable, or did not answer in time
====  =========================================================================

Human output uses rich tables and colours on a terminal; ``--json`` prints JSON for scripts
(JSON lines for ``watch`` and ``export``). Errors go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import os
import re
import sys
import tomllib
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, TypeAlias

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pandanode.core.errors import PandanodeError
from pandanode.core.schema import FieldType, Schema

from ._client import DEFAULT_ADDRESS, Client
from ._errors import (
    DeadlineExceededError,
    KeyFileError,
    NodeUnavailableError,
    NotServedError,
    status_code_of,
)
from ._keys import default_key_file, generate_key_pair, load_key_pair, save_key_pair
from ._models import Change, Create, Document, Published

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
    "register",
    "run",
]

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3

Handler: TypeAlias = Callable[[argparse.Namespace, "Output"], Coroutine[Any, Any, int]]


class UsageError(Exception):
    """Bad input found by the CLI itself (exit code 2)."""


# -- output -----------------------------------------------------------------------------------


class Output:
    """Where a command writes: JSON for scripts, rich text for people, errors to stderr."""

    def __init__(self, as_json: bool, stdout: IO[str] | None = None) -> None:
        self.json = as_json
        self.console = Console(file=stdout or sys.stdout, highlight=False, soft_wrap=True)
        self.errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)

    def emit(self, value: object) -> None:
        """Print one JSON value (a line)."""
        self.console.file.write(json.dumps(value, ensure_ascii=False) + "\n")
        self.console.file.flush()

    def error(self, message: str, hint: str | None = None) -> None:
        """Print an error (and a hint) to stderr."""
        self.errors.print(f"[bold red]error:[/] {_escape(message)}")
        if hint:
            self.errors.print(f"[dim]hint: {_escape(hint)}[/]")

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar on stderr (only on a terminal); yields ``update(done)``."""
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.errors,
            transient=True,
            disable=not self.errors.is_terminal,
        )
        with bar:
            task = bar.add_task(description, total=total)
            yield lambda done: bar.update(task, completed=done)


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def _short(identifier: str, terminal: bool) -> str:
    return (
        f"{identifier[:10]}…{identifier[-6:]}" if terminal and len(identifier) > 24 else identifier
    )


# -- parser -----------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--node",
        default=os.environ.get("PANDANODE_NODE", DEFAULT_ADDRESS),
        help="the node's gRPC address (default: $PANDANODE_NODE or %(default)s)",
    )
    common.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help=f"private key file (default: $PANDANODE_KEY_FILE or {default_key_file()})",
    )
    common.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    common.add_argument(
        "--timeout", type=float, default=10.0, help="deadline of each call, seconds (%(default)s)"
    )
    return common


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to the ``pandanode`` parser's subcommands.

    Every command sets ``args.run``; call ``args.run(args)`` to run it (the exit code).
    """
    common = _common()

    def leaf(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        help_text: str,
    ) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.set_defaults(run=run, client_handler=handler)
        return parser

    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

    key = group("key", "manage your key pair")
    new = leaf(key, "new", _key_new, "create a key pair and save it (mode 0600)")
    new.add_argument("--force", action="store_true", help="overwrite an existing key file")
    leaf(key, "show", _key_show, "print your public key")

    schema = group("schema", "create and inspect schemas")
    create = leaf(schema, "create", _schema_create, "publish a new schema; prints its id")
    create.add_argument("name", nargs="?", help="schema name (or give --file)")
    create.add_argument("-d", "--description", default="", help="what the schema is for")
    create.add_argument(
        "-f",
        "--field",
        action="append",
        default=[],
        metavar="NAME:TYPE",
        help="a field, e.g. title:str or venue:relation(<schema id>) (repeat)",
    )
    create.add_argument(
        "--file", type=Path, help="TOML or JSON file with name, description and [fields]"
    )
    leaf(schema, "list", _schema_list, "list the schemas the node knows")
    show = leaf(schema, "show", _schema_show, "show a schema's fields")
    show.add_argument("schema_id")

    document = group("document", "create, update, delete and read one document")
    create = leaf(document, "create", _document_create, "create a document")
    create.add_argument("schema_id")
    _value_options(create)
    update = leaf(document, "update", _document_update, "update fields of a document")
    update.add_argument("document_id")
    _value_options(update)
    delete = leaf(document, "delete", _document_delete, "delete a document")
    delete.add_argument("document_id")
    get = leaf(document, "get", _document_get, "show a document")
    get.add_argument("document_id", nargs="?")
    get.add_argument("--view-id", help="a document view id instead of the current view")
    get.add_argument("--resolve", type=int, default=0, help="levels of relations to resolve")
    _after_option(get)

    documents = group("documents", "list documents")
    listing = leaf(documents, "list", _documents_list, "list documents of a schema")
    listing.add_argument("schema_id")
    _filter_option(listing)
    listing.add_argument(
        "--order-by",
        metavar="FIELD",
        help="a field (or @document_id, @view_id); descending: --desc, or --order-by=-FIELD "
        "(with '=': argparse reads a lone -FIELD as an option)",
    )
    listing.add_argument("--desc", "--descending", action="store_true", help="order descending")
    listing.add_argument("--limit", type=int, default=25, help="at most this many (%(default)s)")
    _after_option(listing)

    watch = leaf(subparsers, "watch", _watch, "print documents of a schema as they change")
    watch.add_argument("schema_id")
    _filter_option(watch)
    watch.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="stop after N documents (existing ones and changes; default: run until Ctrl-C)",
    )
    watch.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )

    blob = group("blob", "upload and download files")
    put = leaf(blob, "put", _blob_put, "upload a file as a blob; prints its document id")
    put.add_argument("file", type=Path)
    put.add_argument("--mime-type", help="MIME type (default: guessed from the file name)")
    get = leaf(blob, "get", _blob_get, "download a blob")
    get.add_argument("document_id")
    get.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    _after_option(get)

    bulk = leaf(subparsers, "import", _import, "publish a JSON Lines file in bulk")
    bulk.add_argument(
        "file",
        help='JSON Lines: {"entry": hex, "operation": hex} (from export) or '
        '{"schema_id": …, "fields": {…}} (documents to create); - for stdin',
    )
    bulk.add_argument("--batch-size", type=int, default=500, help="items per message")
    export = leaf(subparsers, "export", _export, "write every entry as JSON Lines")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    export.add_argument(
        "--schema", action="append", default=[], help="only documents of this schema (repeat)"
    )
    export.add_argument("--author", help="only this public key's logs")

    leaf(subparsers, "status", _status, "show whether the node is up and what it serves")
    leaf(subparsers, "peers", _peers, "list the other nodes the node has found")


def _value_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--field",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a field value (repeat); bytes as hex or @file, lists comma-separated",
    )
    parser.add_argument("--fields-json", help="field values as a JSON object")


def _after_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--after",
        metavar="OPERATION_ID",
        help="first wait (up to --timeout) until this operation is materialized, e.g. the "
        "operation_id a write printed: read your own writes",
    )


def _filter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="EXPR",
        help="e.g. 'seats>=100', 'name~Hall', 'city__in=Berlin,Hamburg', '@owner=<key>' (repeat)",
    )


def build_parser() -> argparse.ArgumentParser:
    """A parser holding just the client commands (for ``python -m pandanode.client.cli``)."""
    parser = argparse.ArgumentParser(
        prog="pandanode",
        description="Talk to a pandanode node.",
        epilog="exit codes: 0 ok, 1 rejected by the node, 2 usage or input error, "
        "3 node unreachable",
    )
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one client command; returns the exit code."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the parsed client command ``args`` and return its exit code."""
    output = Output(bool(args.json))
    handler: Handler = args.client_handler
    try:
        return asyncio.run(handler(args, output))
    except KeyboardInterrupt:
        return EXIT_OK
    except UsageError as err:
        output.error(str(err))
        return EXIT_USAGE
    except (NodeUnavailableError, DeadlineExceededError) as err:
        output.error(
            f"node {args.node} unreachable: {err.message}",
            "is it running? start one with `pandanode up` (or `make run`), or pass --node",
        )
        return EXIT_UNREACHABLE
    except NotServedError as err:
        output.error(err.message, "this command needs a node that serves QueryService")
        return EXIT_REJECTED
    except KeyFileError as err:
        output.error(err.message, "create a key pair with `pandanode key new`")
        return EXIT_USAGE
    except PandanodeError as err:
        if status_code_of(err) is None:
            output.error(f"{err.message} [{err.reason.value}]", "nothing was sent to the node")
            return EXIT_USAGE
        output.error(f"the node rejected this: {err.message} [{err.reason.value}]")
        return EXIT_REJECTED
    except OSError as err:
        output.error(f"{err.strerror or err}: {err.filename or ''}".rstrip(": "))
        return EXIT_USAGE
    except ValueError as err:  # an argument the client refused before sending anything
        output.error(str(err), "nothing was sent to the node")
        return EXIT_USAGE


# -- helpers ------------------------------------------------------------------------------------


def _key_file(args: argparse.Namespace) -> Path:
    return Path(args.key_file).expanduser() if args.key_file else default_key_file()


def _connect(args: argparse.Namespace, *, sign: bool = False) -> Client:
    key_pair = load_key_pair(_key_file(args)) if sign else None
    return Client.connect(args.node, key_pair=key_pair, timeout=args.timeout, retries=2)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "1", "on"}:
        return True
    if lowered in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _parse_bytes(text: str) -> bytes:
    if text.startswith("@"):
        return Path(text[1:]).expanduser().read_bytes()
    return bytes.fromhex(text)


def parse_value(text: str, field_type: FieldType) -> object:
    """Turn a command-line string into the Python value a field of ``field_type`` takes."""
    kind = field_type.kind
    if kind == "bool":
        return _parse_bool(text)
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bytes":
        return _parse_bytes(text)
    if kind in ("relation_list", "pinned_relation_list"):
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def json_value(value: object, field_type: FieldType) -> object:
    """Turn a JSON value into the Python value a field of ``field_type`` takes (bytes: hex)."""
    if field_type.kind == "bytes" and isinstance(value, str):
        return _parse_bytes(value)
    return value


def _field_values(args: argparse.Namespace, schema: Schema) -> dict[str, object]:
    values: dict[str, object] = {}
    if args.fields_json:
        try:
            loaded = json.loads(args.fields_json)
        except json.JSONDecodeError as err:
            raise UsageError(f"--fields-json is not JSON: {err}") from None
        if not isinstance(loaded, dict):
            raise UsageError("--fields-json must be a JSON object")
        for name, value in loaded.items():
            field_type = schema.fields.get(name)
            values[name] = value if field_type is None else json_value(value, field_type)
    for item in args.field:
        name, equals, text = item.partition("=")
        if not equals:
            raise UsageError(f"--field {item!r}: expected NAME=VALUE")
        field_type = schema.fields.get(name)
        if field_type is None:
            values[name] = text  # the client names the schema's fields in its error
            continue
        try:
            values[name] = parse_value(text, field_type)
        except ValueError as err:
            raise UsageError(
                f"--field {name}: {err}; the field is {field_type} "
                f"(schema {schema.name}: {schema.describe_fields()})"
            ) from None
    return values


_FILTER_SYMBOLS: Final = (
    (">=", "gte"),
    ("<=", "lte"),
    ("!=", "not_eq"),
    ("!~", "not_contains"),
    ("=", "eq"),
    (">", "gt"),
    ("<", "lt"),
    ("~", "contains"),
)
_FILTER_LOOKUP: Final = re.compile(r"^(@?[A-Za-z][A-Za-z0-9_]*?)__([a-z_]+)=(.*)$", re.DOTALL)
_META_TYPES: Final = {"edited": FieldType("bool"), "deleted": FieldType("bool")}


def _split_filter(expression: str) -> tuple[str, str, str] | None:
    # The first operator in the expression wins (the longer one at the same place), so a
    # value may hold operator characters: 'title=a>b', 'name~x=y'.
    found: tuple[int, int, str] | None = None
    for symbol, operator in _FILTER_SYMBOLS:
        at = expression.find(symbol)
        if at >= 0 and (found is None or (at, -len(symbol)) < (found[0], -found[1])):
            found = (at, len(symbol), operator)
    if found is None:
        return None
    at, length, operator = found
    return expression[:at], operator, expression[at + length :]


def parse_filters(expressions: Sequence[str], schema: Schema) -> dict[str, object]:
    """Turn ``--filter`` expressions into the ``filter`` mapping of :meth:`Client.documents`."""
    conditions: dict[str, object] = {}
    for expression in expressions:
        lookup = _FILTER_LOOKUP.match(expression)
        if lookup is not None:
            target, operator, text = lookup.groups()
        else:
            split = _split_filter(expression)
            if split is None:
                raise UsageError(
                    f"--filter {expression!r}: expected FIELD OP VALUE with OP one of "
                    "= != > >= < <= ~ !~ (or FIELD__in=a,b)"
                )
            target, operator, text = split
        target = target.strip()
        if target.startswith("@"):
            field_type = _META_TYPES.get(target[1:], FieldType("str"))
        else:
            known = schema.fields.get(target)
            if known is None:
                raise UsageError(
                    f"--filter {expression!r}: schema {schema.name} has no field {target!r}; "
                    f"its fields: {schema.describe_fields()} (and @owner, @document_id, "
                    "@view_id, @edited, @deleted)"
                )
            field_type = known
        try:
            if operator in ("in", "not_in"):
                scalar = field_type if not field_type.is_relation else FieldType("str")
                conditions[f"{target}__{operator}"] = [
                    parse_value(item.strip(), scalar) for item in text.split(",")
                ]
            else:
                scalar = field_type if not field_type.is_relation else FieldType("str")
                conditions[f"{target}__{operator}"] = parse_value(text.strip(), scalar)
        except ValueError as err:
            raise UsageError(f"--filter {expression!r}: {err}") from None
    return conditions


def _render_value(value: object, terminal: bool) -> str:
    if isinstance(value, bytes):
        shown = value.hex()
        return f"{shown[:32]}… ({len(value)} bytes)" if terminal and len(value) > 16 else shown
    if isinstance(value, Document):
        return f"→ {_short(value.id, terminal)}"
    if isinstance(value, list):
        return ", ".join(_render_value(item, terminal) for item in value) or "[]"
    if isinstance(value, str) and len(value) == 68 and value.startswith("0020"):
        return _short(value, terminal)
    return str(value)


def _print_published(output: Output, published: Published, what: str) -> None:
    if output.json:
        output.emit(published.to_dict())
        return
    output.console.print(f"[green]✓[/] {what} [bold]{published.document_id}[/]")
    output.console.print(
        f"  [dim]view {published.view_id} · log {published.log_id} seq {published.seq_num}[/]"
    )


def _print_document(output: Output, document: Document) -> None:
    if output.json:
        output.emit(document.to_dict())
        return
    terminal = output.console.is_terminal
    table = Table(title=f"document {document.id}", show_header=True, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in document.fields.items():
        table.add_row(name, _render_value(value, terminal))
    output.console.print(table)
    state = "deleted" if document.deleted else ("edited" if document.edited else "unchanged")
    output.console.print(
        f"[dim]schema {document.schema_id}\nview {document.view_id}\nowner {document.owner} · "
        f"{state}[/]"
    )


def _schema_table(schema: Schema) -> Table:
    table = Table(title=f"{schema.name} — {schema.description}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("type")
    for name, field_type in schema.fields.items():
        table.add_row(name, str(field_type))
    return table


def _schema_dict(schema: Schema) -> dict[str, object]:
    return {
        "schema_id": str(schema.id),
        "name": schema.name,
        "description": schema.description,
        "fields": {name: str(field_type) for name, field_type in schema.fields.items()},
        "system": schema.id.is_system,
    }


# -- commands ---------------------------------------------------------------------------------


async def _key_new(args: argparse.Namespace, output: Output) -> int:
    key_pair = generate_key_pair()
    path = save_key_pair(key_pair, _key_file(args), overwrite=args.force)
    if output.json:
        output.emit({"public_key": key_pair.public_key(), "key_file": str(path)})
    else:
        output.console.print(f"[green]✓[/] new key pair saved to {path} (mode 0600)")
        output.console.print(f"public key [bold]{key_pair.public_key()}[/]")
    return EXIT_OK


async def _key_show(args: argparse.Namespace, output: Output) -> int:
    path = _key_file(args)
    key_pair = load_key_pair(path)
    if output.json:
        output.emit({"public_key": key_pair.public_key(), "key_file": str(path)})
    else:
        output.console.print(key_pair.public_key())
    return EXIT_OK


def _read_description_file(path: Path) -> dict[str, Any]:
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


async def _schema_create(args: argparse.Namespace, output: Output) -> int:
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
    async with _connect(args, sign=True) as node:
        schema_id = await node.create_schema(name, description, fields)
    if output.json:
        output.emit({"schema_id": schema_id})
    else:
        output.console.print(f"[green]✓[/] schema created: [bold]{schema_id}[/]")
    return EXIT_OK


async def _schema_list(args: argparse.Namespace, output: Output) -> int:
    async with _connect(args) as node:
        schemas = await node.list_schemas()
    if output.json:
        output.emit([_schema_dict(schema) for schema in schemas])
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


async def _schema_show(args: argparse.Namespace, output: Output) -> int:
    async with _connect(args) as node:
        schema = await node.get_schema(args.schema_id)
    if output.json:
        output.emit(_schema_dict(schema))
    else:
        output.console.print(_schema_table(schema))
        output.console.print(f"[dim]{schema.id}[/]")
    return EXIT_OK


async def _document_create(args: argparse.Namespace, output: Output) -> int:
    async with _connect(args, sign=True) as node:
        schema = await node.get_schema(args.schema_id)
        published = await node.create(schema, _field_values(args, schema))
    _print_published(output, published, "created")
    return EXIT_OK


async def _document_update(args: argparse.Namespace, output: Output) -> int:
    async with _connect(args, sign=True) as node:
        target = await node._target(args.document_id)
        schema = await node.get_schema(target.schema_id)
        document = Document(target.document_id, target.view_id, target.schema_id, "", False, False)
        published = await node.update(document, _field_values(args, schema))
    _print_published(output, published, "updated")
    return EXIT_OK


async def _document_delete(args: argparse.Namespace, output: Output) -> int:
    async with _connect(args, sign=True) as node:
        published = await node.delete(args.document_id)
    _print_published(output, published, "deleted")
    return EXIT_OK


async def _document_get(args: argparse.Namespace, output: Output) -> int:
    if not args.document_id and not args.view_id:
        raise UsageError("give a document id (or --view-id)")
    async with _connect(args) as node:
        document = await node.get_document(
            args.document_id, view_id=args.view_id, resolve_depth=args.resolve, after=args.after
        )
    _print_document(output, document)
    return EXIT_OK


def _order(args: argparse.Namespace) -> str | None:
    order_by: str | None = args.order_by
    if not args.desc:
        return order_by
    if order_by is None:
        return "-@document_id"
    return order_by if order_by.startswith("-") else f"-{order_by}"


async def _documents_list(args: argparse.Namespace, output: Output) -> int:
    async with _connect(args) as node:
        schema = await node.get_schema(args.schema_id)
        conditions = parse_filters(args.filter, schema)
        found = [
            document
            async for document in node.documents(
                schema,
                filter=conditions,
                order_by=_order(args),
                limit=args.limit,
                after=args.after,
            )
        ]
    if output.json:
        output.emit([document.to_dict() for document in found])
        return EXIT_OK
    terminal = output.console.is_terminal
    table = Table(title=f"{schema.name} ({len(found)} shown)", title_justify="left")
    table.add_column("document", overflow="fold")
    for name in schema.fields:
        table.add_column(name, overflow="fold")
    for document in found:
        table.add_row(
            _short(document.id, terminal),
            *(_render_value(document.fields.get(name, ""), terminal) for name in schema.fields),
        )
    output.console.print(table)
    return EXIT_OK


async def _watch(args: argparse.Namespace, output: Output) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be more than 0 seconds")
    async with _connect(args) as node:
        schema = await node.get_schema(args.schema_id)
        conditions = parse_filters(args.filter, schema)
        changes = node.watch(schema, filter=conditions)
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
                f"{name}={_render_value(value, True)}" for name, value in document.fields.items()
            )
            colour = colours.get(change.kind, "white")
            output.console.print(
                f"[{colour}]{change.kind:>8}[/] {_short(document.id, True)} {_escape(values)}"
            )
        if document is not None:
            shown += 1
            if limit is not None and shown >= limit:
                return


async def _blob_put(args: argparse.Namespace, output: Output) -> int:
    data = Path(args.file).read_bytes()
    mime_type = args.mime_type or mimetypes.guess_type(str(args.file))[0]
    if not mime_type:
        raise UsageError(f"cannot guess the MIME type of {args.file}; pass --mime-type")
    async with _connect(args, sign=True) as node:
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


async def _blob_get(args: argparse.Namespace, output: Output) -> int:
    async with _connect(args) as node:
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


async def _import(args: argparse.Namespace, output: Output) -> int:
    rows = _read_lines(args.file)
    raw = [row for row in rows if "entry" in row]
    if raw and len(raw) != len(rows):
        raise UsageError(
            "a file holds either signed entries ({entry, operation}) or documents to create "
            "({schema_id, fields}), not both"
        )
    async with _connect(args, sign=not raw) as node:
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
    if not errors:
        return EXIT_OK
    local = all(status_code_of(error) is None for _, error in errors)
    return EXIT_USAGE if local else EXIT_REJECTED


async def _export(args: argparse.Namespace, output: Output) -> int:
    target = sys.stdout if args.output is None else Path(args.output).open("w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        async with _connect(args) as node:
            with output.progress("exporting", None) as update:
                async for entry, operation in node.export(
                    schema_ids=args.schema, public_key=args.author
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


async def _status(args: argparse.Namespace, output: Output) -> int:
    async with _connect(args) as node:
        status = await node.status()
    if output.json:
        output.emit(status.to_dict())
        return EXIT_OK if status.serving else EXIT_REJECTED
    state = "[green]serving[/]" if status.serving else "[red]not serving[/]"
    output.console.print(f"node {status.address}: {state} ({status.latency_ms:.1f} ms)")
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


async def _peers(args: argparse.Namespace, output: Output) -> int:
    try:
        async with _connect(args) as node:
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
    terminal = output.console.is_terminal
    now = datetime.now(UTC)
    table = Table(show_header=True)
    for column in ("node id", "addresses", "source", "reachable", "first seen", "last seen"):
        table.add_column(column)
    for peer in peers:
        table.add_row(
            _short(peer.node_id, terminal),
            _escape(", ".join(peer.addresses)),
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


if __name__ == "__main__":
    sys.exit(main())

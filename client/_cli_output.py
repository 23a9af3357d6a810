"""What the client commands share: exit codes, usage errors, output, connecting."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ._cli_exits import EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE, EXIT_USAGE, UsageError

# rich, the schemas and the models load when a command first prints a table or a document:
# `key show` and `--json` output start without them.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from pandanode.core.schema import Schema

    from ._client import Client
    from ._models import Document, Published

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Output",
    "UsageError",
    "connect",
    "escape",
    "key_file",
    "print_document",
    "print_published",
    "render_value",
    "schema_dict",
    "schema_table",
    "short",
]


class Output:
    """Where a command writes: JSON for scripts, rich text for people, errors to stderr."""

    def __init__(self, as_json: bool, stdout: IO[str] | None = None) -> None:
        self.json = as_json
        self.stdout = stdout or sys.stdout

    @cached_property
    def console(self) -> Console:
        """Rich text on stdout."""
        return _console(self.stdout)

    @cached_property
    def errors(self) -> Console:
        """Rich text on stderr."""
        return _console(sys.stderr)

    def emit(self, value: object) -> None:
        """Print one JSON value (a line)."""
        self.line(json.dumps(value, ensure_ascii=False))

    def line(self, text: str) -> None:
        """Print one line of plain text (no markup), as it is."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def error(self, message: str, hint: str | None = None) -> None:
        """Print an error (and a hint) to stderr."""
        self.errors.print(f"[bold red]error:[/] {escape(message)}")
        if hint:
            self.errors.print(f"[dim]hint: {escape(hint)}[/]")

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar on stderr (only on a terminal); yields ``update(done)``."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

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


def _console(file: IO[str]) -> Console:
    from rich.console import Console

    return Console(file=file, highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    return text.replace("[", r"\[")


def short(identifier: str, terminal: bool) -> str:
    return (
        f"{identifier[:10]}…{identifier[-6:]}" if terminal and len(identifier) > 24 else identifier
    )


def key_file(args: argparse.Namespace) -> Path:
    from ._keys import default_key_file

    return Path(args.key_file).expanduser() if args.key_file else default_key_file()


def connect(args: argparse.Namespace, *, sign: bool = False) -> Client:
    from ._client import Client  # gRPC and the protos: only for commands that talk to a node

    key_pair = key_file(args) if sign else None
    return Client.connect(
        args.node,
        key_pair=key_pair,
        timeout=args.timeout,
        retries=2,
        tls=args.tls,
        tls_ca=args.tls_ca,
    )


def render_value(value: object, terminal: bool) -> str:
    from ._models import Document

    if isinstance(value, bytes):
        shown = value.hex()
        return f"{shown[:32]}… ({len(value)} bytes)" if terminal and len(value) > 16 else shown
    if isinstance(value, Document):
        return f"→ {short(value.id, terminal)}"
    if isinstance(value, list):
        return ", ".join(render_value(item, terminal) for item in value) or "[]"
    if isinstance(value, str) and len(value) == 68 and value.startswith("0020"):
        return short(value, terminal)
    return str(value)


def print_published(output: Output, published: Published, what: str) -> None:
    if output.json:
        output.emit(published.to_dict())
        return
    output.console.print(f"[green]✓[/] {what} [bold]{published.document_id}[/]")
    output.console.print(
        f"  [dim]view {published.view_id} · log {published.log_id} seq {published.seq_num}[/]"
    )


def print_document(output: Output, document: Document) -> None:
    from rich.table import Table

    if output.json:
        output.emit(document.to_dict())
        return
    terminal = output.console.is_terminal
    table = Table(title=f"document {document.id}", show_header=True, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in document.fields.items():
        table.add_row(name, render_value(value, terminal))
    output.console.print(table)
    state = "deleted" if document.deleted else ("edited" if document.edited else "unchanged")
    output.console.print(
        f"[dim]schema {document.schema_id}\nview {document.view_id}\nowner {document.owner} · "
        f"{state}[/]"
    )


def schema_table(schema: Schema) -> Table:
    from rich.table import Table

    table = Table(title=f"{schema.name} — {schema.description}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("type")
    for name, field_type in schema.fields.items():
        table.add_row(name, str(field_type))
    return table


def schema_dict(schema: Schema) -> dict[str, object]:
    return {
        "schema_id": str(schema.id),
        "name": schema.name,
        "description": schema.description,
        "fields": {name: str(field_type) for name, field_type in schema.fields.items()},
        "system": schema.id.is_system,
    }

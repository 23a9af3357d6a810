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
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from pandanode.core.errors import PandanodeError

from . import _cli_documents, _cli_node, _cli_replication
from ._cli_output import EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE, EXIT_USAGE, Output, UsageError
from ._cli_values import json_value, parse_filters, parse_value
from ._client import DEFAULT_ADDRESS
from ._errors import (
    DeadlineExceededError,
    KeyFileError,
    NodeUnavailableError,
    NotServedError,
    status_code_of,
)
from ._keys import default_key_file

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "json_value",
    "main",
    "parse_filters",
    "parse_value",
    "register",
    "run",
]

Handler: TypeAlias = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]


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
    new = leaf(key, "new", _cli_node.key_new, "create a key pair and save it (mode 0600)")
    new.add_argument("--force", action="store_true", help="overwrite an existing key file")
    leaf(key, "show", _cli_node.key_show, "print your public key")

    schema = group("schema", "create and inspect schemas")
    create = leaf(
        schema, "create", _cli_documents.schema_create, "publish a new schema; prints its id"
    )
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
    leaf(schema, "list", _cli_documents.schema_list, "list the schemas the node knows")
    show = leaf(schema, "show", _cli_documents.schema_show, "show a schema's fields")
    show.add_argument("schema_id")

    document = group("document", "create, update, delete and read one document")
    create = leaf(document, "create", _cli_documents.document_create, "create a document")
    create.add_argument("schema_id")
    _value_options(create)
    update = leaf(document, "update", _cli_documents.document_update, "update fields of a document")
    update.add_argument("document_id")
    _value_options(update)
    delete = leaf(document, "delete", _cli_documents.document_delete, "delete a document")
    delete.add_argument("document_id")
    get = leaf(document, "get", _cli_documents.document_get, "show a document")
    get.add_argument("document_id", nargs="?")
    get.add_argument("--view-id", help="a document view id instead of the current view")
    get.add_argument("--resolve", type=int, default=0, help="levels of relations to resolve")
    _after_option(get)

    documents = group("documents", "list documents")
    listing = leaf(documents, "list", _cli_documents.documents_list, "list documents of a schema")
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

    watch = leaf(
        subparsers, "watch", _cli_documents.watch, "print documents of a schema as they change"
    )
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
    put = leaf(
        blob, "put", _cli_documents.blob_put, "upload a file as a blob; prints its document id"
    )
    put.add_argument("file", type=Path)
    put.add_argument("--mime-type", help="MIME type (default: guessed from the file name)")
    get = leaf(blob, "get", _cli_documents.blob_get, "download a blob")
    get.add_argument("document_id")
    get.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    _after_option(get)

    bulk = leaf(subparsers, "import", _cli_node.import_lines, "publish a JSON Lines file in bulk")
    bulk.add_argument(
        "file",
        help='JSON Lines: {"entry": hex, "operation": hex} (from export) or '
        '{"schema_id": …, "fields": {…}} (documents to create); - for stdin',
    )
    bulk.add_argument("--batch-size", type=int, default=500, help="items per message")
    export = leaf(subparsers, "export", _cli_node.export, "write every entry as JSON Lines")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    export.add_argument(
        "--schema", action="append", default=[], help="only documents of this schema (repeat)"
    )
    export.add_argument("--author", help="only this public key's logs")

    leaf(subparsers, "status", _cli_node.status, "show whether the node is up and what it serves")
    leaf(subparsers, "peers", _cli_node.peers, "list the other nodes the node has found")
    sync = leaf(
        subparsers, "sync", _cli_replication.sync, "have the node catch up with another node now"
    )
    sync.add_argument("address", metavar="HOST:PORT", help="the other node's gRPC address")
    leaf(
        subparsers,
        "sessions",
        _cli_replication.sessions,
        "list the node's replication sessions and the peers it does not sync with",
    )


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


if __name__ == "__main__":
    sys.exit(main())

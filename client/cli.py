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

It is a little over 500 lines because it holds the parser of every client command (one
:func:`register`, so ``--help`` reads as one table); the commands themselves live in the
``_cli_*`` modules.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeAlias

from ._cli_exits import EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE, EXIT_USAGE, UsageError
from ._defaults import DEFAULT_ADDRESS
from ._version import version

if TYPE_CHECKING:
    from ._cli_output import Output

__all__ = [
    "COMMANDS",
    "EPILOG",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliParser",
    "UsageError",
    "add_global_options",
    "add_version_option",
    "build_parser",
    "main",
    "positive_float",
    "positive_int",
    "register",
    "run",
    "subcommands",
]

# A command that talks to a node is a coroutine (run in an event loop); one that does not
# returns its exit code at once, so it need not load asyncio.
Handler: TypeAlias = Callable[[argparse.Namespace, "Output"], int | Coroutine[Any, Any, int]]


# -- parser -----------------------------------------------------------------------------------


COMMANDS: Final = frozenset(
    {"key", "schema", "document", "documents", "watch", "blob", "import", "export", "status"}
    | {"peers", "sync", "sessions"}
)
"""The names of the client commands: they never import the node's own modules.

``completion`` is not among them: its script lists the node commands too.
"""


class CliParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and a hint), never a usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line and exit with code 2 (usage)."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _positive(int)
positive_float = _positive(float)


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    # The same options on the top-level parser (with defaults) and on every client command
    # (without: a value given after the command replaces the one given before it).
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--node",
        default=default(os.environ.get("PANDANODE_NODE", DEFAULT_ADDRESS)),
        help=f"the node's gRPC address (default: $PANDANODE_NODE or {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=default(None),
        help="private key file (default: $PANDANODE_KEY_FILE or "
        "$XDG_CONFIG_HOME/pandanode/private-key, with ~/.config for $XDG_CONFIG_HOME)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(_env_flag("PANDANODE_TLS")),
        help="dial the node over TLS, verified by the system's CAs (default: $PANDANODE_TLS)",
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=default(os.environ.get("PANDANODE_TLS_CA") or None),
        metavar="FILE",
        help="dial over TLS, verified by the CA certificates in this PEM file (default: "
        "$PANDANODE_TLS_CA)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON (for scripts)"
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=default(10.0),
        metavar="SECONDS",
        help="deadline of each call (default: 10)",
    )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--node``, ``--key-file``, ``--tls``, ``--tls-ca``, ``--json`` and ``--timeout``.

    Client commands accept them too, so they may come before or after the command.
    """
    _global_options(parser, defaults=True)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    return common


class _Commands:
    """Adds client commands to the ``pandanode`` parser's subcommands (see :func:`register`)."""

    def __init__(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self.subparsers = subparsers
        self._common = _common()

    def leaf(
        self,
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: str,
        help_text: str,
    ) -> argparse.ArgumentParser:
        """A command that runs ``handler`` (``module.function`` in this package)."""
        parser = parent.add_parser(
            name, parents=[self._common], help=help_text, description=help_text
        )
        parser.set_defaults(run=run, client_handler=handler)
        return parser

    def group(
        self, name: str, help_text: str
    ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        """A command of subcommands (``key new``, ``key show``)."""
        parser = self.subparsers.add_parser(name, help=help_text, description=help_text)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], only: str | None = None
) -> None:
    """Add the client commands to the ``pandanode`` parser's subcommands.

    Every command sets ``args.run``; call ``args.run(args)`` to run it (the exit code).

    Args:
        subparsers: The subcommands of the ``pandanode`` parser.
        only: Add just this command, the one the command line names (building every
            command's parser is a good part of a client command's start-up); None: all.
    """
    commands = _Commands(subparsers)
    for name, add in _ADDERS.items():
        if only is None or only == name:
            add(commands)


def _add_key(commands: _Commands) -> None:
    key = commands.group("key", "manage your key pair")
    new = commands.leaf(
        key, "new", "_cli_keys.key_new", "create a key pair and save it (mode 0600)"
    )
    new.add_argument(
        "--overwrite",
        "--force",
        dest="overwrite",
        action="store_true",
        help="replace an existing key file (its key is lost)",
    )
    commands.leaf(key, "show", "_cli_keys.key_show", "print your public key")


def _add_schema(commands: _Commands) -> None:
    schema = commands.group("schema", "create and inspect schemas")
    create = commands.leaf(
        schema, "create", "_cli_documents.schema_create", "publish a new schema; prints its id"
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
    commands.leaf(schema, "list", "_cli_documents.schema_list", "list the schemas the node knows")
    show = commands.leaf(schema, "show", "_cli_documents.schema_show", "show a schema's fields")
    show.add_argument("schema_id")


def _add_document(commands: _Commands) -> None:
    document = commands.group("document", "create, update, delete and read one document")
    create = commands.leaf(
        document, "create", "_cli_documents.document_create", "create a document"
    )
    create.add_argument("schema_id")
    _value_options(create)
    update = commands.leaf(
        document, "update", "_cli_documents.document_update", "update fields of a document"
    )
    update.add_argument("document_id")
    _value_options(update)
    delete = commands.leaf(
        document, "delete", "_cli_documents.document_delete", "delete a document"
    )
    delete.add_argument("document_id")
    get = commands.leaf(document, "get", "_cli_documents.document_get", "show a document")
    get.add_argument("document_id", nargs="?")
    get.add_argument("--view-id", help="a document view id instead of the current view")
    get.add_argument(
        "--resolve",
        type=_depth,
        default=0,
        help="levels of relations to resolve (the node caps it)",
    )
    _after_option(get)


def _add_documents(commands: _Commands) -> None:
    documents = commands.group("documents", "list documents")
    listing = commands.leaf(
        documents, "list", "_cli_documents.documents_list", "list documents of a schema"
    )
    listing.add_argument("schema_id")
    _filter_option(listing)
    listing.add_argument(
        "--order-by",
        metavar="FIELD",
        help="a field (or @document_id, @view_id); descending: --desc, or --order-by=-FIELD "
        "(with '=': argparse reads a lone -FIELD as an option)",
    )
    listing.add_argument("--desc", "--descending", action="store_true", help="order descending")
    listing.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="documents per page, at most 1000 (default: 25; with --all: 1000)",
    )
    listing.add_argument(
        "--page-token", default="", metavar="TOKEN", help="the page after an earlier listing's"
    )
    listing.add_argument("--all", action="store_true", help="every page, not just the first")
    listing.add_argument(
        "-o",
        "--output",
        choices=("table", "wide", "json"),
        default="table",
        help="table (ids shortened on a terminal), wide (full ids and values, one line per "
        "document, to copy), json (as --json)",
    )
    _after_option(listing)


def _add_watch(commands: _Commands) -> None:
    watch = commands.leaf(
        commands.subparsers,
        "watch",
        "_cli_documents.watch",
        "print documents of a schema as they change",
    )
    watch.add_argument("schema_id")
    _filter_option(watch)
    watch.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop after N documents (existing ones and changes; default: run until Ctrl-C)",
    )
    watch.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    _after_option(watch)


def _add_blob(commands: _Commands) -> None:
    blob = commands.group("blob", "upload and download files")
    put = commands.leaf(
        blob, "put", "_cli_documents.blob_put", "upload a file as a blob; prints its document id"
    )
    put.add_argument("file", type=Path)
    put.add_argument("--mime-type", help="MIME type (default: guessed from the file name)")
    get = commands.leaf(blob, "get", "_cli_documents.blob_get", "download a blob")
    get.add_argument("document_id")
    get.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    _after_option(get)


def _add_import(commands: _Commands) -> None:
    bulk = commands.leaf(
        commands.subparsers, "import", "_cli_node.import_lines", "publish a JSON Lines file in bulk"
    )
    bulk.add_argument(
        "file",
        help='JSON Lines: {"entry": hex, "operation": hex} (from export) or '
        '{"schema_id": …, "fields": {…}} (documents to create); - for stdin',
    )
    bulk.add_argument(
        "--batch-size", type=positive_int, default=500, help="items per message (%(default)s)"
    )


def _add_export(commands: _Commands) -> None:
    export = commands.leaf(
        commands.subparsers, "export", "_cli_node.export", "write every entry as JSON Lines"
    )
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    export.add_argument(
        "--schema",
        action="append",
        default=[],
        help="only documents of this schema, after the definitions of it and of the schemas "
        "its relations point to, so a fresh node can import the file (repeat)",
    )
    export.add_argument("--author", help="only this public key's logs")


def _add_status(commands: _Commands) -> None:
    commands.leaf(
        commands.subparsers,
        "status",
        "_cli_node.status",
        "show whether the node is up and what it serves",
    )


def _add_peers(commands: _Commands) -> None:
    commands.leaf(
        commands.subparsers, "peers", "_cli_node.peers", "list the other nodes the node has found"
    )


def _add_sync(commands: _Commands) -> None:
    sync = commands.leaf(
        commands.subparsers,
        "sync",
        "_cli_replication.sync",
        "have the node catch up with another node now",
    )
    sync.add_argument(
        "address",
        metavar="HOST:PORT",
        help="the other node's gRPC address (tls://HOST:PORT for a node with TLS)",
    )


def _add_sessions(commands: _Commands) -> None:
    commands.leaf(
        commands.subparsers,
        "sessions",
        "_cli_replication.sessions",
        "list the node's replication sessions and the peers it does not sync with",
    )


def _add_completion(commands: _Commands) -> None:
    completion = commands.subparsers.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for bash, zsh or fish. bash: "
        'eval "$(pandanode completion bash)" in ~/.bashrc; zsh: the same in ~/.zshrc; fish: '
        "pandanode completion fish > ~/.config/fish/completions/pandanode.fish",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    completion.set_defaults(run=_completion)


_ADDERS: Final[dict[str, Callable[[_Commands], None]]] = {
    "key": _add_key,
    "schema": _add_schema,
    "document": _add_document,
    "documents": _add_documents,
    "watch": _add_watch,
    "blob": _add_blob,
    "import": _add_import,
    "export": _add_export,
    "status": _add_status,
    "peers": _add_peers,
    "sync": _add_sync,
    "sessions": _add_sessions,
    "completion": _add_completion,
}


def _depth(text: str) -> int:
    try:
        depth = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if depth < 0:
        raise argparse.ArgumentTypeError(f"{depth}: must be 0 or more")
    return depth


def _completion(args: argparse.Namespace) -> int:
    from ._cli_completion import script  # only this command needs it

    root = args.completion_root
    sys.stdout.write(script(root, args.shell))
    return EXIT_OK


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
    parser = CliParser(
        prog="pandanode",
        description="Talk to a pandanode node.",
        epilog=EPILOG,
    )
    add_version_option(parser)
    add_global_options(parser)
    register(subcommands(parser))
    parser.set_defaults(completion_root=parser)
    return parser


EPILOG: Final = (
    "exit codes: 0 ok, 1 rejected by the node, 2 usage or input error, 3 node unreachable"
)


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        sys.stdout.write(f"pandanode {version()}\n")
        parser.exit(EXIT_OK)


def subcommands(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The (required) subcommands of ``parser``; they parse as ``parser`` does (one-line errors)."""
    return parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--version`` (it prints ``pandanode <version>`` and exits 0)."""
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one client command; returns the exit code."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the parsed client command ``args`` and return its exit code."""
    # The handler's module (and with it gRPC, protobuf, rich) loads only now: `--help`, usage
    # errors and `completion` stay fast.
    from ._cli_output import Output

    module, _, name = str(args.client_handler).partition(".")
    handler: Handler = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    output = Output(bool(args.json))
    try:
        code = handler(args, output)
        if isinstance(code, int):
            return code
        import asyncio

        return asyncio.run(code)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        return _reader_went_away()
    except UsageError as err:
        output.error(str(err))
        return EXIT_USAGE
    except Exception as err:
        return _report(err, args, output)


def _report(err: Exception, args: argparse.Namespace, output: Output) -> int:
    """Explain ``err`` on stderr; the exit code it stands for (re-raised when unexpected)."""
    from pandanode.core.errors import PandanodeError

    from ._errors import (  # gRPC: loaded here, once a node was asked (or an error came)
        DeadlineExceededError,
        KeyFileError,
        NodeUnavailableError,
        NotServedError,
        status_code_of,
    )

    if isinstance(err, NodeUnavailableError | DeadlineExceededError):
        output.error(
            f"node {args.node} unreachable: {err.message}",
            "is it running? start one with `pandanode up` (or `make run`), or pass --node",
        )
        return EXIT_UNREACHABLE
    if isinstance(err, NotServedError):
        output.error(err.message, "this command needs a node that serves QueryService")
        return EXIT_REJECTED
    if isinstance(err, KeyFileError):
        hint = "create a key pair with `pandanode key new`"
        output.error(err.message, None if "pandanode key new" in err.message else hint)
        return EXIT_USAGE
    if isinstance(err, PandanodeError):
        if status_code_of(err) is None:
            output.error(f"{err.message} [{err.reason.value}]", "nothing was sent to the node")
            return EXIT_USAGE
        output.error(f"the node rejected this: {err.message} [{err.reason.value}]")
        return EXIT_REJECTED
    if isinstance(err, OSError):
        output.error(f"{err.strerror or err}: {err.filename or ''}".rstrip(": "))
        return EXIT_USAGE
    if isinstance(err, ValueError):  # an argument the client refused before sending anything
        output.error(str(err), "nothing was sent to the node")
        return EXIT_USAGE
    raise err


def _reader_went_away() -> int:
    # `pandanode export | head`: the reader has what it wanted. Point stdout at /dev/null so
    # the interpreter's final flush does not complain about the closed pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

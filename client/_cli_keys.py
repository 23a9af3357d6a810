"""The commands on your key pair: ``key new``, ``key show``.

They run without an event loop, gRPC or protobuf: nothing here talks to a node.
"""

from __future__ import annotations

import argparse

from pandanode.core.errors import KeyFileError

from ._cli_output import EXIT_OK, Output, UsageError, key_file
from ._keys import generate_key_pair, load_key_pair, save_key_pair

__all__ = ["key_new", "key_show"]


def key_new(args: argparse.Namespace, output: Output) -> int:
    key_pair = generate_key_pair()
    path = key_file(args)
    refusal = (
        f"{path} already exists and holds a private key; pass --overwrite to replace it "
        "(its key is lost for good), or --key-file to save the new key elsewhere"
    )
    if path.exists() and not args.overwrite:
        raise UsageError(refusal)
    try:
        path = save_key_pair(key_pair, path, overwrite=args.overwrite)
    except KeyFileError:
        if path.exists() and not args.overwrite:  # created since the check above
            raise UsageError(refusal) from None
        raise
    if output.json:
        output.emit({"public_key": key_pair.public_key(), "key_file": str(path)})
    else:
        output.console.print(f"[green]✓[/] new key pair saved to {path} (mode 0600)")
        output.console.print(f"public key [bold]{key_pair.public_key()}[/]")
    return EXIT_OK


def key_show(args: argparse.Namespace, output: Output) -> int:
    path = key_file(args)
    key_pair = load_key_pair(path)
    if output.json:
        output.emit({"public_key": key_pair.public_key(), "key_file": str(path)})
    else:
        output.line(key_pair.public_key())
    return EXIT_OK

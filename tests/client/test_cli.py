"""The CLI as a person (or a script) runs it: a subprocess against a real node."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from pandanode.core.version import version
from pandanode.services.node import Node
from tests.client.conftest import Cli


async def test_key_schema_document_round_trip(cli: Cli, tmp_path: Path) -> None:
    new = await cli("key", "new", "--json")
    assert new.code == 0, new.stderr
    key_file = tmp_path / "keys" / "private-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public_key = new.json()["public_key"]
    shown = await cli("key", "show")
    assert shown.code == 0 and shown.stdout.strip() == public_key
    assert key_file.read_text() not in shown.stdout + new.stdout  # the private key stays put
    again = await cli("key", "new")
    assert again.code == 2 and "already exists" in again.stderr

    schema_file = tmp_path / "venue.toml"
    schema_file.write_text(
        'name = "venue"\ndescription = "A place"\n[fields]\nname = "str"\nseats = "int"\n'
        'open = "bool"\n'
    )
    created = await cli("schema", "create", "--file", str(schema_file), "--json")
    assert created.code == 0, created.stderr
    schema_id = created.json()["schema_id"]
    assert schema_id.startswith("venue_0020")

    shown = await cli("schema", "show", schema_id, "--json")
    assert shown.json()["fields"] == {"name": "str", "open": "bool", "seats": "int"}

    document = await cli(
        "document", "create", schema_id, "-f", "name=Panda Hall", "-f", "seats=120",
        "-f", "open=yes", "--json",
    )  # fmt: skip
    assert document.code == 0, document.stderr
    receipt = document.json()
    assert receipt["action"] == "create"
    assert receipt["public_key"] == public_key

    updated = await cli(
        "document",
        "update",
        receipt["document_id"],
        "-f",
        "seats=150",
        "--json",
    )
    assert updated.code == 0, updated.stderr
    assert updated.json()["seq_num"] == 2

    # Flags and human output: a two-field schema from flags, a table to read.
    flagged = await cli("schema", "create", "note", "-d", "Notes", "-f", "text:str")
    assert flagged.code == 0 and "schema created" in flagged.stdout

    deleted = await cli("document", "delete", receipt["document_id"], "--json")
    assert deleted.code == 0 and deleted.json()["action"] == "delete"
    rejected = await cli("document", "update", receipt["document_id"], "-f", "seats=1")
    assert rejected.code == 1
    assert "DOCUMENT_DELETED" in rejected.stderr


async def test_exit_codes_and_helpful_errors(cli: Cli, tmp_path: Path) -> None:
    assert (await cli("key", "new")).code == 0
    created = await cli("schema", "create", "venue", "-f", "name:str", "-f", "seats:int", "--json")
    schema_id = created.json()["schema_id"]

    typo, mistyped, unknown, usage, unreachable, no_key = await asyncio.gather(
        cli("document", "create", schema_id, "-f", "nmae=x", "-f", "seats=1"),
        cli("document", "create", schema_id, "-f", "name=x", "-f", "seats=many"),
        cli("document", "create", "ghost_0020" + "ab" * 32, "-f", "a=b"),
        cli("document", "create"),
        cli("status", "--node", "127.0.0.1:1", "--timeout", "2"),
        cli("document", "create", schema_id, "--key-file", str(tmp_path / "none")),
    )
    assert typo.code == 2
    assert "did you mean 'name'" in typo.stderr and "seats: int" in typo.stderr
    assert mistyped.code == 2 and "the field is int" in mistyped.stderr
    assert unknown.code == 2 and "SCHEMA_NOT_FOUND" in unknown.stderr
    assert usage.code == 2 and "required: schema_id" in usage.stderr
    assert unreachable.code == 3 and "unreachable" in unreachable.stderr
    assert no_key.code == 2 and "pandanode key new" in no_key.stderr

    status = await cli("status", "--json")
    assert status.code == 0
    assert status.json()["serving"] is True


async def test_import_and_export_jsonl(cli: Cli, tmp_path: Path) -> None:
    assert (await cli("key", "new")).code == 0
    created = await cli("schema", "create", "row", "-f", "n:int", "-f", "data:bytes", "--json")
    schema_id = created.json()["schema_id"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps({"schema_id": schema_id, "fields": {"n": n, "data": f"{n:02x}"}})
            for n in range(50)
        )
    )
    imported = await cli("import", str(rows), "--json")
    assert imported.code == 0, imported.stderr
    assert imported.json()["published"] == 50

    exported = await cli("export", "--schema", schema_id)
    assert exported.code == 0
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    # Two field definitions and the schema definition come first, then the 50 documents.
    assert len(lines) == 53 and set(lines[0]) == {"entry", "operation"}

    again = await cli("import", "-", "--json", stdin=exported.stdout.encode())
    assert again.code == 0 and again.json()["rejected"] == 0


async def test_status_tells_the_nodes_id_and_version(cli: Cli, node: Node) -> None:
    as_json, as_text = await asyncio.gather(cli("status", "--json"), cli("status"))
    assert node.discovery is not None
    assert as_json.code == 0
    assert as_json.json()["node_id"] == node.discovery.node_id
    assert as_json.json()["version"] == version()
    assert as_text.code == 0
    assert node.discovery.node_id in as_text.stdout and version() in as_text.stdout

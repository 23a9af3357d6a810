"""The CLI's read commands as a person or a script runs them: the ``pandanode`` console script
as a subprocess against a real node. Data is written with the library (through the same key
file), then read with the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pandanode.client import Client, KeyPair, Published, load_key_pair, relation
from pandanode.services.node import Node
from tests.client.conftest import CLI_DEADLINE, PANDANODE, Cli
from tests.services.support import eventually


@pytest.fixture
async def author(pandanode: Cli, node: Node, cli_env: dict[str, str]) -> AsyncIterator[Client]:
    """A client signing with the key file the CLI uses."""
    made = await pandanode("key", "new", "--json")
    assert made.code == 0, made.stderr
    key_pair = load_key_pair(cli_env["PANDANODE_KEY_FILE"])
    async with Client.connect(node.address, key_pair=key_pair) as client:
        yield client


async def venues(author: Client) -> tuple[str, list[Published]]:
    schema_id = await author.create_schema(
        "venue", "A place", {"name": "str", "seats": "int", "open": "bool", "logo": "bytes"}
    )
    made = []
    for i in range(12):
        made.append(
            await author.create(
                schema_id,
                {
                    "name": f"{'Hall' if i % 3 == 0 else 'Club'} {i:02d}",
                    "seats": i * 10,
                    "open": i % 2 == 0,
                    "logo": bytes([i]),
                },
            )
        )
    await author.get_document(made[-1].document_id, after=made[-1])
    return schema_id, made


async def test_document_get_prints_a_document_as_json_or_as_a_table(
    pandanode: Cli, author: Client
) -> None:
    schema_id, made = await venues(author)
    event_schema = await author.create_schema(
        "event", "At a venue", {"title": "str", "venue": relation(schema_id)}
    )
    event = await author.create(event_schema, {"title": "Launch", "venue": made[0]})
    renamed = await author.update(made[0], {"name": "Panda Hall"})

    # --after: wait for a write (e.g. one printed by `document create --json`) first.
    got = await pandanode(
        "document", "get", made[0].document_id, "--json", "--after", renamed.operation_id
    )
    assert got.code == 0, got.stderr
    document = got.json()
    assert document["document_id"] == made[0].document_id
    assert document["document_view_id"] == renamed.view_id
    assert document["schema_id"] == schema_id
    assert document["owner"] == author.public_key
    assert (document["edited"], document["deleted"]) == (True, False)
    assert document["fields"] == {"name": "Panda Hall", "seats": 0, "open": True, "logo": "00"}

    old = await pandanode("document", "get", "--view-id", made[0].view_id, "--json")
    assert old.code == 0 and old.json()["fields"]["name"] == "Hall 00"

    resolved = await pandanode(
        "document", "get", event.document_id, "--resolve", "1", "--json", "--after",
        event.operation_id,
    )  # fmt: skip
    assert resolved.code == 0, resolved.stderr
    assert resolved.json()["fields"]["venue"]["fields"]["name"] == "Panda Hall"

    table = await pandanode("document", "get", made[0].document_id)
    assert table.code == 0
    for text in ("name", "Panda Hall", "seats", schema_id, renamed.view_id, "edited"):
        assert text in table.stdout

    missing, malformed, nothing, negative = await asyncio.gather(
        pandanode("document", "get", "0020" + "ab" * 32),
        pandanode("document", "get", "nope"),
        pandanode("document", "get"),
        pandanode("document", "get", made[0].document_id, "--resolve", "-1"),
    )
    assert missing.code == 1 and "not found" in missing.stderr
    assert malformed.code == 1 and "68-hex" in malformed.stderr
    assert nothing.code == 2 and "document id" in nothing.stderr
    assert negative.code == 2 and "--resolve: -1: must be 0 or more" in negative.stderr


async def test_document_updates_in_a_row_build_a_linear_history(
    pandanode: Cli, author: Client
) -> None:
    schema_id = await author.create_schema("doc", "Docs", {"a": "int", "b": "int"})
    made = await pandanode("document", "create", schema_id, "-f", "a=0", "-f", "b=0", "--json")
    document_id = made.json()["document_id"]
    receipts = []
    for value in range(1, 5):
        name = "a" if value % 2 else "b"
        updated = await pandanode(
            "document", "update", document_id, "-f", f"{name}={value}", "--json"
        )
        assert updated.code == 0, updated.stderr
        receipts.append(updated.json())
    assert [r["seq_num"] for r in receipts] == [2, 3, 4, 5]
    got = await pandanode(
        "document", "get", document_id, "--json", "--after", receipts[-1]["operation_id"]
    )
    assert got.json()["document_view_id"] == receipts[-1]["document_view_id"]  # one tip
    assert got.json()["fields"] == {"a": 3, "b": 4}


async def test_documents_list_filters_orders_and_limits(pandanode: Cli, author: Client) -> None:
    schema_id, made = await venues(author)
    friend = author.with_key_pair(KeyPair())
    await friend.update(made[5].document_id, {"seats": 500})
    gone = await author.delete(made[6].document_id)

    listed = await pandanode(
        "documents", "list", schema_id, "--filter", "seats>=30", "--filter", "name~Club",
        "--order-by=-seats", "--limit", "4", "--json", "--after", gone.operation_id,
    )  # fmt: skip
    assert listed.code == 0, listed.stderr
    rows = listed.json()
    # Clubs with >= 30 seats: 4, 5 (500 now), 7, 8, 10, 11 (6 is deleted); top four by seats.
    assert [row["fields"]["name"] for row in rows] == ["Club 05", "Club 11", "Club 10", "Club 08"]
    assert rows[0]["fields"]["seats"] == 500 and rows[0]["edited"]
    flagged = await pandanode(
        "documents", "list", schema_id, "--filter", "seats>=30", "--filter", "name~Club",
        "--order-by", "seats", "--desc", "--limit", "4", "--json",
    )  # fmt: skip
    assert flagged.json() == rows
    by_id = await pandanode("documents", "list", schema_id, "--desc", "--limit", "3", "--json")
    ids = sorted((p.document_id for i, p in enumerate(made) if i != 6), reverse=True)
    assert [row["document_id"] for row in by_id.json()] == ids[:3]

    chosen = await pandanode(
        "documents", "list", schema_id, "--filter", "seats__in=0,20,40,60,70", "--filter",
        "open=true", "--order-by", "name", "--json",
    )  # fmt: skip
    # 0, 20, 40, 60 are open (even), 60 is deleted, 70 is closed.
    assert [row["fields"]["name"] for row in chosen.json()] == ["Club 02", "Club 04", "Hall 00"]

    deleted = await pandanode("documents", "list", schema_id, "--filter", "@deleted=true", "--json")
    assert [row["document_id"] for row in deleted.json()] == [made[6].document_id]

    mine = await pandanode(
        "documents", "list", schema_id, "--filter", f"@owner={friend.public_key}", "--json"
    )
    assert mine.json() == []  # the friend only edited; the owner is who created
    everything = await pandanode("documents", "list", schema_id, "--limit", "100", "--json")
    assert len(everything.json()) == 11

    table = await pandanode("documents", "list", schema_id, "--filter", "name=Hall 03")
    assert table.code == 0, table.stderr
    assert "venue: 1 of 1" in table.stdout and "Hall 03" in table.stdout and "30" in table.stdout

    typo, bad_operator, not_a_number, bad_order, unknown = await asyncio.gather(
        pandanode("documents", "list", schema_id, "--filter", "seat>1"),
        pandanode("documents", "list", schema_id, "--filter", "seats__like=1"),
        pandanode("documents", "list", schema_id, "--filter", "seats>many"),
        pandanode("documents", "list", schema_id, "--order-by", "size"),
        pandanode("documents", "list", "ghost_0020" + "cd" * 32),
    )
    assert typo.code == 2 and "seats: int" in typo.stderr
    assert bad_operator.code == 2 and "unknown filter operator" in bad_operator.stderr
    assert not_a_number.code == 2 and "seats>many" in not_a_number.stderr
    assert bad_order.code == 2 and "seats" in bad_order.stderr
    assert unknown.code == 2 and "SCHEMA_NOT_FOUND" in unknown.stderr


async def test_schema_list_shows_system_and_application_schemas(
    pandanode: Cli, author: Client
) -> None:
    schema_id, _ = await venues(author)
    listed = await pandanode("schema", "list", "--json")
    assert listed.code == 0, listed.stderr
    by_id = {item["schema_id"]: item for item in listed.json()}
    assert {"blob_v1", "blob_piece_v1", "schema_definition_v1", schema_id} <= set(by_id)
    assert by_id[schema_id] == {
        "schema_id": schema_id,
        "name": "venue",
        "description": "A place",
        "fields": {"name": "str", "seats": "int", "open": "bool", "logo": "bytes"},
        "system": False,
    }
    assert by_id["blob_v1"]["system"] is True
    table = await pandanode("schema", "list")
    assert table.code == 0 and schema_id in table.stdout and "A place" in table.stdout


async def test_blob_put_and_get_round_trip_a_file_of_several_pieces(
    pandanode: Cli, author: Client, tmp_path: Path
) -> None:
    data = os.urandom(256_000 * 2 + 4_321)
    photo = tmp_path / "photo.png"
    photo.write_bytes(data)
    put = await pandanode("blob", "put", str(photo), "--json")
    assert put.code == 0, put.stderr
    receipt = put.json()
    assert receipt["schema_id"] == "blob_v1"
    assert (receipt["length"], receipt["mime_type"]) == (len(data), "image/png")

    out = tmp_path / "copy.png"
    got = await pandanode(
        "blob", "get", receipt["document_id"], "-o", str(out), "--json",
        "--after", receipt["operation_id"],
    )  # fmt: skip
    assert got.code == 0, got.stderr
    assert got.json() == {"file": str(out), "length": len(data), "mime_type": "image/png"}
    assert out.read_bytes() == data

    to_stdout = await pandanode("blob", "get", receipt["document_id"])
    assert to_stdout.code == 0 and to_stdout.raw == data

    unknown_type = tmp_path / "data.unknownext"
    unknown_type.write_bytes(b"x")
    refused = await pandanode("blob", "put", str(unknown_type))
    assert refused.code == 2 and "--mime-type" in refused.stderr
    typed = await pandanode("blob", "put", str(unknown_type), "--mime-type", "text/plain")
    assert typed.code == 0 and "1 bytes, text/plain" in typed.stdout
    missing = await pandanode("blob", "get", "0020" + "ef" * 32)
    assert missing.code == 1 and "not found" in missing.stderr


class Watching:
    """A ``pandanode watch`` subprocess whose JSON lines are read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), CLI_DEADLINE)
        assert raw, "the watch ended early"
        parsed: dict[str, Any] = json.loads(raw)
        return parsed

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.process.wait(), CLI_DEADLINE)


async def watch(env: dict[str, str], *args: str) -> Watching:
    process = await asyncio.create_subprocess_exec(
        PANDANODE,
        "watch",
        *args,
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Watching(process)


async def test_watch_prints_existing_documents_then_changes_and_stops_at_its_limit(
    author: Client, node: Node, cli_env: dict[str, str]
) -> None:
    schema_id = await author.create_schema("post", "Posts", {"title": "str", "likes": "int"})
    first = await author.create(schema_id, {"title": "first", "likes": 0})
    await author.get_document(first.document_id, after=first)
    assert node.query is not None
    listeners = node.query.listener_count

    watching = await watch(cli_env, schema_id, "--filter", "likes<10", "--limit", "3")
    try:
        existing = await watching.line()
        assert existing["kind"] == "existing"
        assert existing["document"]["document_id"] == first.document_id
        assert await watching.line() == {"kind": "caught_up", "document": None}
        await author.create(schema_id, {"title": "popular", "likes": 50})  # filtered out
        second = await author.create(schema_id, {"title": "second", "likes": 1})
        created = await watching.line()
        assert (created["kind"], created["document"]["document_view_id"]) == (
            "created",
            second.view_id,
        )
        liked = await author.update(first, {"likes": 2})
        updated = await watching.line()
        assert (updated["kind"], updated["document"]["fields"]) == (
            "updated",
            {"title": "first", "likes": 2},
        )
        assert updated["document"]["document_view_id"] == liked.view_id
        assert await watching.exit_code() == 0  # three documents: --limit reached
    finally:
        if watching.process.returncode is None:
            watching.process.kill()
            await watching.process.wait()

    query = node.query

    async def dropped() -> bool:
        return query.listener_count == listeners

    await eventually(
        dropped, timeout=CLI_DEADLINE, what="the node to drop the watch of an ended CLI"
    )


async def test_watch_after_an_operation_starts_once_it_is_materialized(
    author: Client, cli_env: dict[str, str], pandanode: Cli
) -> None:
    schema_id = await author.create_schema("flyer", "Flyers", {"title": "str"})
    made = await author.create(schema_id, {"title": "gig"})
    watching = await watch(cli_env, schema_id, "--after", made.operation_id, "--limit", "1")
    existing = await watching.line()
    assert (existing["kind"], existing["document"]["document_id"]) == ("existing", made.document_id)
    assert await watching.exit_code() == 0

    never = "0020" + "ef" * 32
    waited = await pandanode("watch", schema_id, "--after", never, "--timeout", "0.5")
    assert waited.code == 3, waited.stderr  # unavailable, as a read after it
    assert "not materialized" in waited.stderr and "Traceback" not in waited.stderr


async def test_watch_stops_after_its_duration(
    author: Client, node: Node, cli_env: dict[str, str], pandanode: Cli
) -> None:
    schema_id = await author.create_schema("quiet", "Nothing happens", {"n": "int"})
    made = await author.create(schema_id, {"n": 1})
    await author.get_document(made.document_id, after=made)
    started = time.monotonic()
    watching = await watch(cli_env, schema_id, "--duration", "1")
    assert (await watching.line())["kind"] == "existing"
    assert await watching.line() == {"kind": "caught_up", "document": None}
    assert await watching.exit_code() == 0
    assert 1.0 <= time.monotonic() - started < CLI_DEADLINE

    human = await pandanode("watch", schema_id, "--duration", "0.5")
    assert human.code == 0, human.stderr
    assert "existing" in human.stdout and "caught up" in human.stdout
    bad = await pandanode("watch", schema_id, "--limit", "0")
    assert bad.code == 2 and "--limit" in bad.stderr

"""``pandanode documents list`` pages as a person reads them: "N of TOTAL", the next page's
token, every page with ``--all``, and ``-o wide`` with ids whole, to copy. The console script
runs as a subprocess against a real node."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from pandanode.client import Client, Create, load_key_pair
from pandanode.services.node import Node
from tests.client.conftest import PANDANODE, Cli, runner


@pytest.fixture
async def author(pandanode: Cli, node: Node, cli_env: dict[str, str]) -> AsyncIterator[Client]:
    """A client signing with the key file the CLI uses."""
    made = await pandanode("key", "new")
    assert made.code == 0, made.stderr
    key_pair = load_key_pair(cli_env["PANDANODE_KEY_FILE"])
    async with Client.connect(node.address, key_pair=key_pair) as client:
        yield client


async def notes(author: Client, count: int) -> tuple[str, list[str]]:
    """A schema with ``count`` documents (read back once all are materialized); their ids."""
    schema = await author.create_schema("note", "A note", {"text": "str"})
    result = await author.publish_many(
        [Create(schema, {"text": f"note {n:03d}"}) for n in range(count)]
    )
    assert not result.errors
    published = [item for item in result.published if item is not None]
    await author.get_document(published[-1].document_id, after=published[-1])
    return schema, sorted(item.document_id for item in published)


async def test_documents_list_shows_n_of_total_and_the_next_pages_token(
    pandanode: Cli, author: Client
) -> None:
    schema_id, ids = await notes(author, 30)
    first = await pandanode("documents", "list", schema_id, "--limit", "12")
    assert first.code == 0, first.stderr
    assert "note: 12 of 30" in first.stdout
    token = re.search(r"18 more: --page-token (\S+) \(or --all\)", first.stdout)
    assert token is not None, first.stdout

    second = await pandanode(
        "documents", "list", schema_id, "--limit", "12", "--page-token", token.group(1), "--json"
    )
    assert second.code == 0, second.stderr
    assert [row["document_id"] for row in second.json()] == ids[12:24]

    everything = await pandanode("documents", "list", schema_id, "--limit", "7", "--all", "--json")
    assert [row["document_id"] for row in everything.json()] == ids
    in_big_pages = await pandanode("documents", "list", schema_id, "--all", "--json")
    assert [row["document_id"] for row in in_big_pages.json()] == ids
    table = await pandanode("documents", "list", schema_id, "--limit", "7", "--all")
    assert "note: 30 of 30" in table.stdout and "more: --page-token" not in table.stdout

    bad = await pandanode("documents", "list", schema_id, "--page-token", "not-a-token")
    assert bad.code == 1 and "Traceback" not in bad.stderr
    assert "INVALID_PAGE_TOKEN" in bad.stderr


async def test_documents_list_wide_prints_whole_ids_on_a_terminal(
    author: Client, cli_env: dict[str, str]
) -> None:
    schema_id, ids = await notes(author, 3)
    # A terminal (rich's TTY_COMPATIBLE), narrow: the table shortens ids, wide keeps them.
    terminal = runner([PANDANODE], {**cli_env, "TTY_COMPATIBLE": "1", "NO_COLOR": "1"})
    table = await terminal("documents", "list", schema_id)
    assert table.code == 0, table.stderr
    assert ids[0] not in table.stdout and f"{ids[0][:10]}…" in table.stdout

    wide = await terminal("documents", "list", schema_id, "-o", "wide")
    assert wide.code == 0, wide.stderr
    lines = wide.stdout.splitlines()
    assert lines[0].split() == ["DOCUMENT", "TEXT"]
    # One line per document: its id whole (copy the first word), then its values.
    rows = dict(line.split(maxsplit=1) for line in lines[1:4])
    assert sorted(rows) == ids
    for document_id, text in rows.items():
        document = await author.get_document(document_id)
        assert text.strip() == document.fields["text"]
    assert lines[4] == "note: 3 of 3"

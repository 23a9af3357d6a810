"""The page token secret in the data directory (or a file replicas share): made once, kept,
never half-written."""

from __future__ import annotations

import stat
from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.query.token_secret import (
    PAGE_TOKEN_SECRET_FILE,
    TokenSecretError,
    load_or_create_token_secret,
)
from tests.services.support import node_settings


def test_the_secret_is_made_on_first_use_private_and_the_same_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "data" / PAGE_TOKEN_SECRET_FILE
    secret = load_or_create_token_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token_secret(path) == secret
    assert [p.name for p in path.parent.iterdir()] == [PAGE_TOKEN_SECRET_FILE]


def test_another_data_directory_gets_another_secret(tmp_path: Path) -> None:
    first = load_or_create_token_secret(tmp_path / "a" / PAGE_TOKEN_SECRET_FILE)
    second = load_or_create_token_secret(tmp_path / "b" / PAGE_TOKEN_SECRET_FILE)
    assert first != second


@pytest.mark.parametrize("content", ["", "not hex\n", "ab" * 16 + "\n", "ab" * 33])
def test_a_damaged_secret_file_is_an_error_that_says_what_to_do(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / PAGE_TOKEN_SECRET_FILE
    path.write_text(content)
    with pytest.raises(TokenSecretError, match="delete it to make a new one"):
        load_or_create_token_secret(path)


async def test_query_nodes_that_name_one_secret_file_accept_each_others_page_tokens(
    tmp_path: Path,
) -> None:
    shared = str(tmp_path / "shared" / PAGE_TOKEN_SECRET_FILE)
    first_page = qpb.ListSchemasRequest(page_size=1)
    async with (
        Node(node_settings(tmp_path / "a", page_token_secret_file=shared)) as a,
        Node(node_settings(tmp_path / "b", page_token_secret_file=shared)) as b,
        Node(node_settings(tmp_path / "c")) as alone,
        grpc.aio.insecure_channel(a.address) as to_a,
        grpc.aio.insecure_channel(b.address) as to_b,
        grpc.aio.insecure_channel(alone.address) as to_alone,
    ):
        page = await query_pb2_grpc.QueryServiceStub(to_a).ListSchemas(first_page)
        assert page.next_page_token
        after = qpb.ListSchemasRequest(page_size=1, page_token=page.next_page_token)
        following = await query_pb2_grpc.QueryServiceStub(to_b).ListSchemas(after)
        assert following.schemas[0].schema_id > page.schemas[0].schema_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await query_pb2_grpc.QueryServiceStub(to_alone).ListSchemas(after)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (tmp_path / "shared" / PAGE_TOKEN_SECRET_FILE).exists()
    assert not (tmp_path / "a" / PAGE_TOKEN_SECRET_FILE).exists()

"""Next arguments (spec §4.2), from the NextArgs RPC and from Publish: log id, seq num, backlink,
and a skiplink exactly when lipmaa requires one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from pandanode.core import is_skiplink_required, lipmaa
from pandanode.ingest.v1 import ingest_pb2 as pb

from .helpers import (
    FIELD_DEFINITION,
    Author,
    expected_next_args,
    publish,
    rejection,
    update_operation,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

UNKNOWN_ID = "0020" + "ab" * 32


async def next_args(
    ingest: IngestServiceAsyncStub, author: Author | str, view_id: str = ""
) -> pb.NextArguments:
    public_key = author if isinstance(author, str) else author.public_key
    request = pb.NextArgsRequest(public_key=public_key, document_view_id=view_id)
    return (await ingest.NextArgs(request)).next_args


def rename(previous: str, name: str) -> bytes:
    return update_operation(FIELD_DEFINITION, [previous], {"name": name})


async def test_a_new_author_starts_with_log_0_at_seq_num_1(
    ingest: IngestServiceAsyncStub,
) -> None:
    assert await next_args(ingest, Author()) == pb.NextArguments(log_id=0, seq_num=1)


async def test_a_new_document_gets_the_authors_highest_log_id_plus_one(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    first = author.create(FIELD_DEFINITION, {"name": "first", "type": "str"})
    await publish(ingest, first)
    assert await next_args(ingest, author) == pb.NextArguments(log_id=1, seq_num=1)
    # Any unused log id is accepted for a new log; next args then continue after the highest.
    far = author.sign_at(
        author.create(FIELD_DEFINITION, {"name": "far", "type": "str"}).operation,
        log_id=7,
        seq_num=1,
    )
    await publish(ingest, far)
    assert await next_args(ingest, author) == pb.NextArguments(log_id=8, seq_num=1)
    # Other authors' logs do not count.
    assert await next_args(ingest, Author()) == pb.NextArguments(log_id=0, seq_num=1)


async def test_next_args_follow_lipmaa_along_a_long_log(ingest: IngestServiceAsyncStub) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "long", "type": "str"})
    response = await publish(ingest, created)
    document_id = created.hash
    hashes = [created.hash]
    seen_skiplinks = []
    for seq_num in range(2, 42):
        expected = expected_next_args(0, hashes)
        assert response.next_args == expected, f"Publish answer before seq {seq_num}"
        assert await next_args(ingest, author, hashes[-1]) == expected
        assert await next_args(ingest, author, document_id) == expected, "an older view id"
        assert expected.seq_num == seq_num
        assert expected.backlink == hashes[seq_num - 2]
        if is_skiplink_required(seq_num):
            assert expected.skiplink == hashes[lipmaa(seq_num) - 1]
            seen_skiplinks.append(seq_num)
        else:
            assert expected.skiplink == ""
        signed = author.update(FIELD_DEFINITION, document_id, [hashes[-1]], {"name": f"n{seq_num}"})
        response = await publish(ingest, signed)
        hashes.append(signed.hash)
    assert seen_skiplinks == [4, 8, 12, 13, 17, 21, 25, 26, 30, 34, 38, 39, 40]
    assert response.next_args == expected_next_args(0, hashes)


async def test_next_args_for_an_authors_first_operation_on_a_document_start_a_new_log(
    ingest: IngestServiceAsyncStub,
) -> None:
    alice, bob = Author(), Author()
    created = alice.create(FIELD_DEFINITION, {"name": "shared", "type": "str"})
    await publish(ingest, created)
    own = bob.create(FIELD_DEFINITION, {"name": "own", "type": "str"})
    await publish(ingest, own)
    assert await next_args(ingest, bob, created.hash) == pb.NextArguments(log_id=1, seq_num=1)
    bob_update = bob.update(FIELD_DEFINITION, created.hash, [created.hash], {"name": "bobs"})
    response = await publish(ingest, bob_update)
    expected = pb.NextArguments(log_id=1, seq_num=2, backlink=bob_update.hash)
    assert response.next_args == expected
    assert await next_args(ingest, bob, bob_update.hash) == expected
    # Alice's own log for the document is unaffected by Bob's.
    assert await next_args(ingest, alice, bob_update.hash) == pb.NextArguments(
        log_id=0, seq_num=2, backlink=created.hash
    )


async def test_next_args_accept_a_view_id_of_several_tips(ingest: IngestServiceAsyncStub) -> None:
    alice, bob = Author(), Author()
    created = alice.create(FIELD_DEFINITION, {"name": "shared", "type": "str"})
    await publish(ingest, created)
    left = alice.update(FIELD_DEFINITION, created.hash, [created.hash], {"name": "left"})
    right = bob.update(FIELD_DEFINITION, created.hash, [created.hash], {"name": "right"})
    await publish(ingest, left)
    await publish(ingest, right)
    view_id = "_".join(sorted([left.hash, right.hash]))
    assert await next_args(ingest, alice, view_id) == pb.NextArguments(
        log_id=0, seq_num=3, backlink=left.hash
    )
    assert await next_args(ingest, bob, view_id) == pb.NextArguments(
        log_id=0, seq_num=2, backlink=right.hash
    )


async def test_next_args_reject_an_unknown_view_id(ingest: IngestServiceAsyncStub) -> None:
    rejected = await rejection(
        ingest.NextArgs(
            pb.NextArgsRequest(public_key=Author().public_key, document_view_id=UNKNOWN_ID)
        )
    )
    assert (rejected.code, rejected.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PREVIOUS_NOT_FOUND",
    )
    assert UNKNOWN_ID in rejected.message


async def test_next_args_reject_a_view_id_with_one_unknown_operation(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "known", "type": "str"})
    await publish(ingest, created)
    view_id = "_".join(sorted([created.hash, UNKNOWN_ID]))
    rejected = await rejection(
        ingest.NextArgs(pb.NextArgsRequest(public_key=author.public_key, document_view_id=view_id))
    )
    assert (rejected.code, rejected.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PREVIOUS_NOT_FOUND",
    )


async def test_next_args_reject_a_view_id_spanning_two_documents(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    one = author.create(FIELD_DEFINITION, {"name": "one", "type": "str"})
    two = author.create(FIELD_DEFINITION, {"name": "two", "type": "str"})
    await publish(ingest, one)
    await publish(ingest, two)
    view_id = "_".join(sorted([one.hash, two.hash]))
    rejected = await rejection(
        ingest.NextArgs(pb.NextArgsRequest(public_key=author.public_key, document_view_id=view_id))
    )
    assert (rejected.code, rejected.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MULTIPLE_DOCUMENTS",
    )


async def test_next_args_reject_a_deleted_document(ingest: IngestServiceAsyncStub) -> None:
    alice, bob = Author(), Author()
    created = alice.create(FIELD_DEFINITION, {"name": "doomed", "type": "str"})
    await publish(ingest, created)
    deleted = alice.delete(FIELD_DEFINITION, created.hash, [created.hash])
    await publish(ingest, deleted)
    for author in (alice, bob):
        for view_id in (created.hash, deleted.hash):
            rejected = await rejection(
                ingest.NextArgs(
                    pb.NextArgsRequest(public_key=author.public_key, document_view_id=view_id)
                )
            )
            assert (rejected.code, rejected.reason) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "DOCUMENT_DELETED",
            )


async def test_next_args_reject_malformed_arguments(ingest: IngestServiceAsyncStub) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "x", "type": "str"})
    await publish(ingest, created)
    cases = [
        ("", ""),
        ("abc", ""),
        ("zz" * 32, ""),
        (author.public_key, "not-a-view-id"),
        (author.public_key, created.hash[:-2]),
        # Unsorted and duplicate ids are not a view id.
        (author.public_key, f"{created.hash}_{created.hash}"),
        (author.public_key, "_".join(sorted([created.hash, UNKNOWN_ID], reverse=True))),
    ]
    for public_key, view_id in cases:
        rejected = await rejection(
            ingest.NextArgs(pb.NextArgsRequest(public_key=public_key, document_view_id=view_id))
        )
        assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT, (public_key, view_id)

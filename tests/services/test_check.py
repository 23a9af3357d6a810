"""``pandanode check``: a healthy stopped node checks clean, and each kind of damage is found.

A node runs a workload (a schema, documents, updates from two authors, a delete, a blob), is
stopped, and its data directory is copied for each test; a test damages its copy by writing to
the stores directly (RocksDB, JetStream) and runs the checker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import grpc.aio
import nats
import pytest
from rocksdict import Options, Rdict

from pandanode.core import PinnedRelationList
from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceStub
from pandanode.services.check import (
    CheckReport,
    check_data_dir,
    check_entry,
    compare_stores,
    log_gap,
    outbox_problems,
)
from pandanode.services.ingest.store import OutboxRecord, StoredEntry
from pandanode.services.node import Node
from pandanode.services.query.store import decode_view, encode_view
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    STREAM_NAME,
    OperationsIngested,
    parse_operations_ingested,
)
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port
from tests.services.support import node_settings

from .ingest.helpers import Author, Signed, publish, publish_schema
from .support import NodeProcess

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]
_U64 = struct.Struct(">Q")


# -- a workload, run once, copied per test ----------------------------------------------------


async def run_workload(data_dir: Path) -> None:
    """A schema, notes edited by two authors (long enough logs for skiplinks), a delete, a blob."""
    alice, bob, carol = Author(), Author(), Author()
    async with (
        Node(node_settings(data_dir)) as node,
        grpc.aio.insecure_channel(node.address) as channel,
    ):
        ingest = IngestServiceStub(channel)
        schema_id = await publish_schema(ingest, alice, "note", {"title": "str", "n": "int"})
        notes = [alice.create(schema_id, {"title": f"note {i}", "n": i}) for i in range(3)]
        for note in notes:
            await publish(ingest, note)
        tip = notes[0].hash
        for n in range(1, 11):
            update = alice.update(schema_id, notes[0].hash, [tip], {"n": n})
            await publish(ingest, update)
            tip = update.hash
        for n in range(2):
            update = bob.update(schema_id, notes[0].hash, [tip], {"title": f"bob {n}"})
            await publish(ingest, update)
            tip = update.hash
        await publish(ingest, alice.delete(schema_id, notes[1].hash, [notes[1].hash]))
        pieces = [carol.create("blob_piece_v1", {"data": bytes([i]) * 700}) for i in range(2)]
        for piece in pieces:
            await publish(ingest, piece)
        blob: Signed = carol.create(
            "blob_v1",
            {
                "length": 1400,
                "mime_type": "application/octet-stream",
                "pieces": PinnedRelationList([[piece.hash] for piece in pieces]),
            },
        )
        await publish(ingest, blob)
        assert node.query is not None
        for last in (tip, blob.hash):
            assert await node.query.wait_for_operation(last, timeout=30)


@pytest.fixture(scope="module")
def workload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of a stopped node after :func:`run_workload` (do not modify)."""
    data_dir = tmp_path_factory.mktemp("workload") / "data"
    asyncio.run(run_workload(data_dir))
    return data_dir


@pytest.fixture
def data_dir(workload_dir: Path, tmp_path: Path) -> Path:
    """A copy of the workload's data directory for this test to damage."""
    copy = tmp_path / "data"
    shutil.copytree(workload_dir, copy)
    return copy


def edit_rocks(path: Path, edit: Callable[[Rdict], None]) -> None:
    """Open a (closed) RocksDB store in raw mode and change it."""
    db = Rdict(str(path), options=Options(raw_mode=True))
    try:
        edit(db)
    finally:
        db.close()


def keys(db: Rdict, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    for key, value in db.items(from_key=prefix):
        assert isinstance(key, bytes) and isinstance(value, bytes)
        if not key.startswith(prefix):
            return
        yield key, value


def longest_log(db: Rdict) -> list[tuple[bytes, bytes]]:
    """The entries (key, value) of the longest log of an ingest store."""
    logs: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for key, value in keys(db, b"E"):
        logs.setdefault(key[:41], []).append((key, value))
    return max(logs.values(), key=len)


def kinds(report: CheckReport) -> set[str]:
    return {violation.kind for violation in report.violations}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PANDANODE, "check", *args], capture_output=True, text=True, timeout=120, check=False
    )


# -- a healthy node ---------------------------------------------------------------------------


async def test_a_stopped_node_after_a_workload_checks_clean(data_dir: Path) -> None:
    report = await check_data_dir(data_dir)
    assert report.violations == () and report.ok
    assert report.counts["entries"] == 3 + 3 + 10 + 2 + 1 + 3  # schema, notes, edits, blob
    assert report.counts["events"] == report.counts["entries"]
    assert report.counts["query documents"] >= 7
    assert report.counts["operations rebuilt"] == report.counts["entries"]
    assert report.skipped == ()


def test_pandanode_check_exits_0_and_prints_a_summary_on_a_healthy_node(data_dir: Path) -> None:
    result = run_cli("--data-dir", str(data_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: no violations" in result.stdout
    assert "22 entries" in result.stdout


def test_pandanode_check_json_reports_counts_and_violations(data_dir: Path) -> None:
    edit_rocks(data_dir / "ingest", lambda db: db.delete(longest_log(db)[4][0]))
    result = run_cli("--data-dir", str(data_dir), "--json", "--max-shown", "2")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["counts"]["entries"] == 21
    assert report["total_violations"] >= len(report["violations"]) == 2
    assert {"kind", "where", "detail"} == set(report["violations"][0])


async def test_pandanode_check_refuses_a_data_directory_in_use_with_one_line(
    data_dir: Path,
) -> None:
    async with Node(node_settings(data_dir)):
        result = await asyncio.to_thread(run_cli, "--data-dir", str(data_dir))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "in use" in result.stderr and "stop the node first" in result.stderr


async def test_pandanode_check_refuses_a_data_directory_pandanode_up_runs_on(
    data_dir: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(
        ["up", "--data-dir", str(data_dir), "--listen", address, "--no-lan-discovery"]
    )
    process.start()
    try:
        await process.wait_serving(address)
        result = await asyncio.to_thread(run_cli, "--data-dir", str(data_dir))
    finally:
        assert process.terminate() == 0
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "in use" in result.stderr and "stop the node first" in result.stderr


def test_pandanode_check_refuses_a_directory_that_is_not_a_node_s(tmp_path: Path) -> None:
    result = run_cli("--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "not a pandanode data directory" in result.stderr


# -- damage in the log store ------------------------------------------------------------------


async def test_a_flipped_byte_in_a_stored_entry_is_found(data_dir: Path) -> None:
    def flip(db: Rdict) -> None:
        key, value = longest_log(db)[5]
        (length,) = struct.unpack_from(">H", value, 34)
        start = 44 if length & 0x8000 else 36  # after the store sequence, where one is kept
        damaged = bytearray(value)
        damaged[start + (length & 0x7FFF) - 10] ^= 0x01  # in the signature
        db[key] = bytes(damaged)

    edit_rocks(data_dir / "ingest", flip)
    report = await check_data_dir(data_dir)
    assert not report.ok
    entry = [v for v in report.violations if v.kind == "entry"]
    assert entry and "/6" in entry[0].where and "signature" in entry[0].detail.lower()


async def test_a_changed_operation_is_found_by_its_payload_hash(data_dir: Path) -> None:
    def change(db: Rdict) -> None:
        key, value = longest_log(db)[3]
        db[key] = value[:-1] + bytes([value[-1] ^ 0x01])

    edit_rocks(data_dir / "ingest", change)
    report = await check_data_dir(data_dir)
    assert any(v.kind == "payload" and "payload hash" in v.detail for v in report.violations)


async def test_a_missing_entry_in_the_middle_of_a_log_is_found(data_dir: Path) -> None:
    edit_rocks(data_dir / "ingest", lambda db: db.delete(longest_log(db)[6][0]))
    report = await check_data_dir(data_dir)
    gaps = [v for v in report.violations if v.kind == "log"]
    assert gaps and "seq num 7 is missing" in gaps[0].detail


async def test_an_entry_whose_backlink_is_not_the_stored_entry_before_it_is_found(
    data_dir: Path,
) -> None:
    # Swap two entries' places: both verify, but their links no longer fit their neighbours.
    def swap(db: Rdict) -> None:
        log = longest_log(db)
        (key_a, value_a), (key_b, value_b) = log[7], log[8]
        db[key_a], db[key_b] = value_b, value_a

    edit_rocks(data_dir / "ingest", swap)
    report = await check_data_dir(data_dir, max_shown=100)
    assert any(v.kind == "link" and "backlink" in v.detail for v in report.violations)
    moved = [v for v in report.violations if v.kind == "entry"]
    assert any("stored at this position" in v.detail for v in moved)


def _put_u64_tail(prefix: bytes, offset: int, delta: int) -> Callable[[Rdict], None]:
    def edit(db: Rdict) -> None:
        key, value = next(keys(db, prefix))
        number = _U64.unpack_from(value, offset)[0]
        db[key] = value[:offset] + _U64.pack(number + delta) + value[offset + 8 :]

    return edit


def _flip_deleted(db: Rdict) -> None:
    key, value = next(keys(db, b"D"))
    db[key] = bytes([value[0] ^ 1]) + value[1:]


def _drop_first(prefix: bytes) -> Callable[[Rdict], None]:
    return lambda db: db.delete(next(keys(db, prefix))[0])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(_put_u64_tail(b"H", 40, 1), "H:", id="H-wrong-seq-num"),
        pytest.param(_put_u64_tail(b"G", 34, 1), "G: height", id="G-wrong-height"),
        pytest.param(_put_u64_tail(b"A", 0, 5), "A:", id="A-wrong-log"),
        pytest.param(_put_u64_tail(b"M", 0, 1), "M: highest log id", id="M-wrong-max"),
        pytest.param(_flip_deleted, "D: deleted flag", id="D-wrong-deleted-flag"),
        pytest.param(_drop_first(b"O"), "O: not listed", id="O-missing"),
    ],
)
async def test_a_wrong_index_value_is_found(
    data_dir: Path, edit: Callable[[Rdict], None], expected: str
) -> None:
    edit_rocks(data_dir / "ingest", edit)
    report = await check_data_dir(data_dir)
    assert any(expected in v.detail for v in report.violations), report.violations


# -- the event stream and the outbox ----------------------------------------------------------


async def _last_message(data_dir: Path) -> tuple[int, str, list[str]]:
    """Delete the stream's last ``operations.ingested`` message; return (seq, id, op ids)."""
    server = EmbeddedNats(store_dir=data_dir / "nats")
    await server.start()
    try:
        client = await nats.connect(server.url)
        try:
            js = client.jetstream()
            message = await js.get_last_msg(STREAM_NAME, "pandanode.v1.evt.operations.ingested")
            assert message.headers is not None and message.data is not None
            assert message.seq is not None
            ids = [op.operation_id for op in parse_operations_ingested(message.data).operations]
            await js.delete_msg(STREAM_NAME, message.seq)
            return int(message.seq), message.headers["Nats-Msg-Id"], ids
        finally:
            await client.close()
    finally:
        await server.stop()


async def test_a_stored_entry_whose_event_is_missing_from_the_stream_is_found(
    data_dir: Path,
) -> None:
    _, _, ids = await _last_message(data_dir)
    report = await check_data_dir(data_dir, max_shown=100)
    missing = [v for v in report.violations if v.kind == "event"]
    # The message may carry several commits (those announced together): each of its
    # operations is reported.
    reported = " ".join(v.detail for v in missing)
    assert missing and all(op_id in reported for op_id in ids)
    assert all("neither in the stream nor in the outbox" in v.detail for v in missing)
    # The query store applied it, a rebuild from the stream cannot: the views differ too.
    assert "query" in kinds(report)


async def test_an_entry_still_in_the_outbox_counts_as_announced_and_a_dropped_record_does_not(
    data_dir: Path,
) -> None:
    # The state after a crash between storing commits and announcing them: no event in the
    # stream, the cursor before the commits' outbox records (kept as the store-order index).
    _, message_id, ids = await _last_message(data_dir)
    _, first, _, _ = message_id.split(".")

    def unannounce(db: Rdict) -> None:
        assert db.get(b"Q" + _U64.pack(int(first))) is not None
        db[b"C"] = _U64.pack(int(first) - 1)

    edit_rocks(data_dir / "ingest", unannounce)
    shutil.rmtree(data_dir / "query")  # its views include the event taken from the stream
    report = await check_data_dir(data_dir)
    assert report.ok, report.violations
    assert report.counts["events only in the outbox"] == len(ids)
    assert report.skipped

    edit_rocks(data_dir / "ingest", lambda db: db.delete(b"Q" + _U64.pack(int(first))))
    report = await check_data_dir(data_dir)
    assert {"event", "outbox"} <= kinds(report)


async def test_an_event_whose_operation_differs_from_the_stored_one_is_found(
    data_dir: Path,
) -> None:
    server = EmbeddedNats(store_dir=data_dir / "nats")
    await server.start()
    try:
        client = await nats.connect(server.url)
        try:
            js = client.jetstream()
            message = await js.get_last_msg(STREAM_NAME, OPERATIONS_INGESTED.subject_filter)
            assert message.data is not None
            event = parse_operations_ingested(message.data).operations[0]
            event.operation = event.operation + b"\x00"
            forged = OperationsIngested(operations=[event]).SerializeToString()
            await js.publish(OPERATIONS_INGESTED.subject_filter, forged)
        finally:
            await client.close()
    finally:
        await server.stop()
    report = await check_data_dir(data_dir)
    assert [v.kind for v in report.violations] == ["event"]
    assert "differs from the stored entry in operation" in report.violations[0].detail
    assert report.counts["duplicate events"] == 1


# -- the query store --------------------------------------------------------------------------


async def test_a_query_view_that_differs_from_a_rebuild_is_found(data_dir: Path) -> None:
    def tamper(db: Rdict) -> None:
        for key, value in keys(db, b"D"):
            view = decode_view(value)
            if "title" in view.fields:
                fields = {**view.fields, "title": "tampered"}
                db[key] = encode_view(dataclasses.replace(view, fields=fields))
                return
        raise AssertionError("no document with a title")

    edit_rocks(data_dir / "query", tamper)
    report = await check_data_dir(data_dir)
    assert [v.kind for v in report.violations] == ["query"]
    assert "document view" in report.violations[0].where
    assert "fields title" in report.violations[0].detail


async def test_a_missing_materialized_record_is_found(data_dir: Path) -> None:
    edit_rocks(data_dir / "query", _drop_first(b"F"))
    report = await check_data_dir(data_dir)
    assert [v.kind for v in report.violations] == ["query"]
    assert "missing from the query store" in report.violations[0].detail


# -- the pure checks --------------------------------------------------------------------------


def test_log_gap_names_the_missing_seq_nums() -> None:
    assert log_gap(3, 3) is None
    assert log_gap(3, 4) == "seq num 3 is missing"
    assert log_gap(3, 7) == "seq nums 3..6 are missing"


def test_outbox_problems_want_every_sequence_after_the_cursor_in_exactly_one_record() -> None:
    a = "aa" * 34
    assert outbox_problems(4, 7, [OutboxRecord(5, 6, (a, a))]) == []
    assert outbox_problems(6, 7, []) == []
    assert [p[1] for p in outbox_problems(4, 7, [OutboxRecord(6, 6, (a,))])] == [
        "store sequences 5..5 are in no record"
    ]
    assert "never announced" in outbox_problems(4, 8, [OutboxRecord(5, 6, (a, a))])[0][1]
    assert "announced but not dropped" in outbox_problems(6, 7, [OutboxRecord(5, 6, (a, a))])[0][1]
    assert "beyond" in outbox_problems(9, 7, [])[0][1]


def test_check_entry_reports_an_operation_that_is_not_the_entry_s_payload() -> None:
    author = Author()
    signed = author.create("schema_field_definition_v1", {"name": "a", "type": "str"})
    other = author.create("schema_field_definition_v1", {"name": "b", "type": "str"})
    stored = StoredEntry(author.public_key, 0, 1, signed.hash, signed.entry, signed.operation)
    assert check_entry(stored, backlink_target=None, skiplink_target=None).problems == ()
    wrong = dataclasses.replace(stored, operation=other.operation)
    problems = check_entry(wrong, backlink_target=None, skiplink_target=None).problems
    assert [kind for kind, _ in problems] == ["payload"]


def test_compare_stores_reports_missing_extra_and_different_keys() -> None:
    live = [(b"Ca", b"1"), (b"Eb", b"x"), (b"Sc", b"y")]
    rebuilt = [(b"Ca", b"2"), (b"Eb", b"x"), (b"Fd", b"")]
    found = list(compare_stores(live, rebuilt))
    assert [detail.split(" ")[0] for _, detail in found] == ["differs", "missing", "in"]
    assert found[0][0].startswith("checkpoint") and found[1][0].startswith("folded flag")

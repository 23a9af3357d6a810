"""The fault suite's harness: ``pandanode up`` as a process, a writer that keeps its own record
of every OK, and the verdict on a stopped node (``pandanode check`` and acknowledged ⊆ stored).

Randomness is seeded (``PANDANODE_FAULT_SEED``, default 1) and the number of rounds of each
case comes from ``PANDANODE_FAULT_ROUNDS`` (default 1 in ``make test``; ``make soak`` sets more).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2

from pandanode.core import KeyPair
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.services.ingest.store import LogStore
from pandanode.services.runtime.nats_server import free_port
from pandanode.services.runtime.rocks import free_bytes
from tests.services.support import (
    FieldDefinitionLog,
    children_of,
    eventually,
    gone,
    health_of,
)

__all__ = [
    "ROUNDS",
    "SEED",
    "TIMEOUT",
    "Tally",
    "Up",
    "Writer",
    "children_of",
    "fill",
    "health_of",
    "rng",
    "running",
    "tmpfs",
    "verdict",
]

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]
SERVING = health_pb2.HealthCheckResponse.SERVING
ROUNDS = max(1, int(os.environ.get("PANDANODE_FAULT_ROUNDS", "1")))
SEED = int(os.environ.get("PANDANODE_FAULT_SEED", "1"))
TIMEOUT = 300 + 150 * ROUNDS
"""Seconds one case may take (pytest-timeout), growing with the rounds of a soak."""
# What a client may be answered while faults are injected; it sends the entry again later.
_RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,  # the pass-through's stream to a child cut by a kill
)


def rng(case: str) -> random.Random:
    """The seeded random source of one case (the same faults at the same points each run)."""
    return random.Random(f"{SEED}:{case}")


@dataclass
class Up:
    """``pandanode up`` on ``data_dir`` as a subprocess; its output goes to a file.

    A file, not a pipe: a node that logs a lot under faults must never block on a full pipe.
    """

    data_dir: Path
    log_path: Path
    address: str = ""
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        """Start the node (on the same address as before, if it ran before)."""
        self.address = self.address or f"127.0.0.1:{free_port()}"
        with self.log_path.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    *PANDANODE,
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    "--listen",
                    self.address,
                    "--no-lan-discovery",
                    "--metrics-listen",
                    "off",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )

    @property
    def pid(self) -> int:
        """The supervisor's process id."""
        assert self.process is not None
        return self.process.pid

    def children(self) -> dict[str, int]:
        """The node's child processes by role."""
        return children_of(self.pid)

    async def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until the node says SERVING (fails if it exits)."""

        async def serving() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"node exited with {self.process.returncode}: {self.output()[-3000:]}"
                )
            return bool(await health_of(self.address) == SERVING)

        await eventually(serving, timeout=timeout, what=f"node serving on {self.address}")

    async def kill(self) -> None:
        """SIGKILL the node; wait until its children (killed with it) are gone too."""
        assert self.process is not None
        pids = list(self.children().values())
        self.process.kill()
        self.process.wait()
        await gone(pids)

    async def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM the node and wait for it and its children; its exit code."""
        assert self.process is not None
        if self.process.poll() is not None:
            return self.process.returncode
        pids = list(self.children().values())
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.process.wait, timeout)
        await gone(pids)
        return code

    def output(self) -> str:
        """Everything the node printed so far."""
        return self.log_path.read_text(errors="replace")


# The name of a test's user property that carries its Tally (as a dict) in its report.
TALLY_PROPERTY = "fault_tally"


@dataclass
class Tally:
    """What a case did and found: printed at the end, asserted to have lost nothing."""

    case: str
    faults: int = 0
    acknowledged: int = 0
    lost: int = 0
    invalid: int = 0

    def line(self) -> str:
        """One line for the test's output."""
        return (
            f"faults {self.case}: {self.faults} faults injected, {self.acknowledged} entries "
            f"acknowledged, {self.lost} lost, {self.invalid} invalid stored (seed {SEED})"
        )


class Writer:
    """Publishes to the node under load and records every OK: the client's own ledger.

    Each author has one log of field-definition operations; an entry that was not answered OK
    is sent again (the same bytes) until it is, so every log stays contiguous from the client's
    side.

    Args:
        address: The node's public address.
        authors: How many logs to write to in parallel.
        batch: Entries per PublishStream request (1: unary Publish).
        rate: Entries per second at most: load, yet little enough that every case's
            materialization and check stay quick.
    """

    def __init__(
        self, address: str, *, authors: int = 4, batch: int = 20, rate: float = 400.0
    ) -> None:
        self.address = address
        self._interval = authors * batch / rate
        self.logs = [FieldDefinitionLog(KeyPair(), log_id=index) for index in range(authors)]
        self.acked: dict[int, int] = dict.fromkeys(range(authors), 0)  # author → last OK seq
        self.errors: dict[str, int] = {}
        self.oks_after_failure = 0
        self._batch = batch
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.progress = asyncio.Event()

    @property
    def acknowledged(self) -> int:
        """Entries answered OK so far."""
        return sum(self.acked.values())

    def acknowledged_ids(self) -> set[str]:
        """The operation ids answered OK."""
        return {
            log.hashes[seq]
            for index, log in enumerate(self.logs)
            for seq in range(1, self.acked[index] + 1)
        }

    def start(self) -> None:
        """Start writing in the background."""
        self._stop.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop writing (the call in flight is abandoned: its OK, if any, is not counted)."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` more entries were acknowledged than now."""
        target = self.acknowledged + count

        async def reached() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()  # raise what ended it
            return self.acknowledged >= target

        await eventually(reached, timeout=timeout, what=f"{count} more entries acknowledged")

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                async with grpc.aio.insecure_channel(self.address) as channel:
                    stub: ingest_pb2_grpc.IngestServiceAsyncStub
                    stub = ingest_pb2_grpc.IngestServiceStub(channel)
                    while not self._stop.is_set():
                        started = time.monotonic()
                        await self._round(stub)
                        pause = self._interval - (time.monotonic() - started)
                        if pause > 0:
                            await asyncio.sleep(pause)  # pace: the rate, not a wait for a state
            except grpc.aio.AioRpcError as err:
                self._failed(err)
                await asyncio.sleep(0.05)  # poll: the node is restarting

    async def _round(self, stub: ingest_pb2_grpc.IngestServiceAsyncStub) -> None:
        """One request per author: its next ``batch`` entries."""
        for index, log in enumerate(self.logs):
            first = self.acked[index] + 1
            items = [log.entry(seq) for seq in range(first, first + self._batch)]
            if self._batch == 1:
                await stub.Publish(items[0], timeout=10)
                self._ok(index, 1)
                continue
            request = pb.PublishStreamRequest(items=items)
            async for response in stub.PublishStream(iter([request]), timeout=10):
                oks = 0
                for result in response.results:
                    if result.HasField("ok"):
                        oks += 1
                        continue
                    code = grpc.StatusCode.UNKNOWN
                    for candidate in grpc.StatusCode:
                        if candidate.value[0] == result.error.code:
                            code = candidate
                    if code not in _RETRYABLE:
                        raise AssertionError(f"a valid entry was rejected: {result.error}")
                    self.errors[code.name] = self.errors.get(code.name, 0) + 1
                    break  # the rest of the batch follows it: sent again next round
                self._ok(index, oks)

    def _ok(self, index: int, count: int) -> None:
        self.acked[index] += count
        self.progress.set()

    def _failed(self, err: grpc.aio.AioRpcError) -> None:
        code = err.code()
        # grpcio's own client fails a stream whose request it still sends after the server
        # side vanished (a killed process): "Internal error from Core", not the node's answer.
        client_side = (
            code == grpc.StatusCode.INTERNAL and err.details() == "Internal error from Core"
        )
        if code not in _RETRYABLE and not client_side:
            raise AssertionError(f"unexpected answer under faults: {code} {err.details()}")
        self.errors[code.name] = self.errors.get(code.name, 0) + 1

    async def materialized(self, timeout: float = 60.0) -> None:
        """Wait until the query service shows each log's last acknowledged operation (or later).

        "Later" counts entries written while this waits too: a writer still running moves the
        view on, and a catch-up may apply many of its entries at once (checked against the
        entries known when the wait began, such a view was never seen and the wait timed out).
        """
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            for index, log in enumerate(self.logs):
                last = self.acked[index]
                if last == 0:
                    continue

                async def shown(log: FieldDefinitionLog = log, last: int = last) -> bool:
                    try:
                        response = await stub.GetDocument(
                            query_pb2.GetDocumentRequest(document_id=log.hashes[1]), timeout=5
                        )
                    except grpc.aio.AioRpcError:
                        return False
                    view = response.document.document_view_id
                    return any(
                        log.hashes.get(seq) == view for seq in range(last, max(log.hashes) + 1)
                    )

                await eventually(
                    shown, timeout=timeout, what=f"log {index} materialized through seq {last}"
                )


async def verdict(data_dir: Path, writer: Writer, tally: Tally) -> None:
    """Judge a stopped node: ``pandanode check`` passes and acknowledged ⊆ stored, exactly.

    Fills in the tally's acknowledged, lost and invalid counts, prints it, and fails on any
    violation.
    """
    checked = await asyncio.to_thread(
        subprocess.run,
        [*PANDANODE, "check", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    store = LogStore(data_dir / "ingest", migrate=False)
    lost = invalid = 0
    try:
        for index, log in enumerate(writer.logs):
            stored = list(store.read_log(log.key_pair.public_key(), log.log_id))
            seq_nums = [entry.seq_num for entry in stored]
            assert seq_nums == list(range(1, len(seq_nums) + 1)), f"log {index} has a hole"
            for entry in stored:
                built = log.built.get(entry.seq_num)
                if built is None or built.entry != entry.entry:
                    invalid += 1
            lost += max(0, writer.acked[index] - len(stored))
    finally:
        store.close()
    # One writer may be judged after several runs of a case: its ledger is cumulative.
    tally.acknowledged = max(tally.acknowledged, writer.acknowledged)
    tally.lost = max(tally.lost, lost)
    tally.invalid = max(tally.invalid, invalid)
    print(tally.line())
    assert checked.returncode == 0, f"pandanode check failed:\n{checked.stdout}{checked.stderr}"
    assert lost == 0, f"{lost} acknowledged entries were lost"
    assert invalid == 0, f"{invalid} stored entries are not what the client signed"


@contextlib.asynccontextmanager
async def running(up: Up) -> AsyncIterator[Up]:
    """Start ``up`` and make sure it (and its children) are gone afterwards, whatever happens."""
    up.start()
    try:
        await up.wait_serving()
        yield up
    finally:
        if up.process is not None and up.process.poll() is None:
            await up.kill()


def deadline(seconds: float) -> float:
    """``seconds`` from now, monotonic."""
    return time.monotonic() + seconds


@contextlib.contextmanager
def tmpfs(path: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` MiB mounted at ``path`` for the block (unmounted after).

    Skips the test, saying why, where the mount is refused (not root, no CAP_SYS_ADMIN).
    """
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()[:200]}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path, leave: int) -> Path:
    """Fill the file system of ``directory`` with one file until ``leave`` bytes are free."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as out:
        while (free := free_bytes(directory)) > leave:
            try:
                out.write(chunk[: min(len(chunk), free - leave)])
                out.flush()
            except OSError:
                break
    return filler

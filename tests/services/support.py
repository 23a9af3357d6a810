"""Helpers for service tests: polling with a deadline, building valid logs, reading the stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc
import grpc.aio
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js.api import DeliverPolicy

from pandanode.core import (
    KeyPair,
    decode_entry,
    encode_operation,
    is_skiplink_required,
    lipmaa,
    sign_and_encode_entry,
)
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.services.check import check_data_dir, format_report
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    STREAM_NAME,
    parse_operations_ingested,
)
from pandanode.services.runtime.settings import Settings

T = TypeVar("T")

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]
"""The ``pandanode`` command of this environment, as a subprocess runs it."""


def node_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings of an in-process test node: data in ``data_dir``, gRPC on a free loopback port.

    The one place test nodes get their base settings; ``changes`` are other settings by name
    (``listen`` among them, for a node that must come back on the same address).
    """
    return Settings(
        **{"data_dir": data_dir, "listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0", **changes}
    )


async def assert_checks_clean(data_dir: Path, *, nats_url: str | None = None) -> None:
    """Run ``pandanode check``'s checks on a stopped node's data directory; fail on a violation."""
    report = await check_data_dir(data_dir, nats_url=nats_url)
    assert report.ok, format_report(report, data_dir)
    assert report.counts.get("entries", 0) > 0


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 15.0,
    what: str = "condition",
    interval: float = 0.02,
) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds.

    The one way tests wait for something eventual: against a deadline, never a fixed sleep.

    Args:
        check: Asked again every ``interval`` seconds; its first truthy answer is returned.
        timeout: Seconds until the wait fails.
        what: What is awaited, for the failure message.
        interval: Seconds between two polls.

    Returns:
        The first truthy answer of ``check``.

    Raises:
        AssertionError: ``check`` gave no truthy answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)  # poll


async def health_of(address: str, service: str = "") -> int:
    """The health status ``address`` reports for ``service`` ("": the whole process); -1 when
    it does not answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.aio.AioRpcError:
            return -1
        return int(response.status)


async def wait_process_serving(
    process: subprocess.Popen[bytes],
    address: str,
    *,
    timeout: float = 30.0,
    output: Callable[[], str] | None = None,
) -> None:
    """Wait until a node or service ``process`` answers SERVING on ``address``.

    Fails at once, with what the process printed (``output``, else its piped stdout), if it
    exits first; fails after ``timeout`` seconds otherwise.
    """

    async def serving() -> bool:
        if process.poll() is not None:
            printed = output() if output is not None else ""
            if output is None and process.stdout is not None:
                printed = process.stdout.read().decode(errors="replace")
            raise AssertionError(f"process exited with {process.returncode}: {printed}")
        return bool(await health_of(address) == health_pb2.HealthCheckResponse.SERVING)

    await eventually(serving, timeout=timeout, what=f"a process serving on {address}")


@dataclass
class FieldDefinitionLog:
    """One author's log of ``schema_field_definition_v1`` operations: CREATE then UPDATEs.

    System schemas need no set-up, so these make convenient valid entries for any log.
    """

    key_pair: KeyPair
    log_id: int
    hashes: dict[int, str] = field(default_factory=dict)
    built: dict[int, pb.PublishRequest] = field(default_factory=dict)

    def entry_bytes(self, seq_num: int) -> bytes:
        """The bytes of an entry built before."""
        return self.built[seq_num].entry

    def entry(self, seq_num: int) -> pb.PublishRequest:
        """Build the entry at ``seq_num`` (all earlier ones must have been built first)."""
        if seq_num in self.built:
            return self.built[seq_num]
        if seq_num == 1:
            operation = encode_operation(
                schema_id="schema_field_definition_v1",
                fields={"name": f"field{self.log_id}", "type": "str"},
            )
        else:
            operation = encode_operation(
                action="update",
                schema_id="schema_field_definition_v1",
                previous=[self.hashes[seq_num - 1]],
                fields={"name": f"f{self.log_id}_{seq_num}"},
            )
        entry = sign_and_encode_entry(
            operation,
            self.key_pair,
            log_id=self.log_id,
            seq_num=seq_num,
            backlink=self.hashes.get(seq_num - 1),
            skiplink=self.hashes[lipmaa(seq_num)] if is_skiplink_required(seq_num) else None,
        )
        self.hashes[seq_num] = decode_entry(entry, verify=False).hash
        self.built[seq_num] = pb.PublishRequest(entry=entry, operation=operation)
        return self.built[seq_num]


async def announced_operation_ids(nats_url: str) -> list[str]:
    """The operation id of every operation announced in the event stream, in stream order."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        info = await js.stream_info(STREAM_NAME)
        count = info.state.messages
        if count == 0:
            return []
        subscription = await js.subscribe(
            "pandanode.v1.evt.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        ids: list[str] = []
        for _ in range(count):
            message = await subscription.next_msg(timeout=10)
            if message.subject == OPERATIONS_INGESTED.subject_filter:
                operations = parse_operations_ingested(message.data).operations
                ids.extend(operation.operation_id for operation in operations)
        await subscription.unsubscribe()
        return ids
    finally:
        await client.close()


def children_of(pid: int) -> dict[str, int]:
    """The child processes of ``pid`` by role: ingest, query, …, nats-server (from /proc)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        if any(part.endswith(b"nats-server") for part in cmdline):
            found["nats-server"] = int(entry.name)
        elif b"serve" in cmdline:
            found[cmdline[cmdline.index(b"serve") + 1].decode()] = int(entry.name)
    return found


async def gone(pids: Sequence[int]) -> None:
    """Wait until none of ``pids`` runs any more."""

    async def all_gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in pids)

    await eventually(all_gone, timeout=30, what=f"processes {list(pids)} gone")


class NodeProcess:
    """``pandanode up`` (or ``serve``) as a subprocess, as a person would run it.

    What it prints is read as it comes by a thread of its own, which closes the pipe when the
    output ends: the node never stalls on a full pipe, and no pipe is left open after it exited
    (killed, restarted, or never closed by its test).
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._printed = bytearray()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start the node (again, after a kill: :meth:`output` is then the new run's)."""
        self.process = subprocess.Popen(
            [*PANDANODE, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
        )
        assert self.process.stdout is not None
        self._printed = bytearray()
        self._reader = threading.Thread(
            target=_drain, args=(self.process.stdout, self._printed), daemon=True
        )
        self._reader.start()

    async def wait_serving(self, address: str, timeout: float = 30.0) -> None:
        assert self.process is not None
        await wait_process_serving(self.process, address, timeout=timeout, output=self.output)

    def kill(self) -> None:
        """SIGKILL the node; wait until its child processes (killed with it) are gone too."""
        assert self.process is not None
        children = list(children_of(self.process.pid).values())
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in children):
            assert time.monotonic() < deadline, f"children {children} outlived the node"
            time.sleep(0.01)  # poll: the kernel delivers their parent-death signal

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def output(self, timeout: float = 30.0) -> str:
        """All the node printed: waits until its output ends (it and its children exited)."""
        assert self._reader is not None
        self._reader.join(timeout)
        assert not self._reader.is_alive(), f"the node still prints after {timeout} s"
        return self._printed.decode(errors="replace")

    def close(self) -> None:
        """The end of a test: kill the node (and its children) if it runs."""
        if self.process is not None and self.process.poll() is None:
            self.kill()


def _drain(pipe: IO[bytes], into: bytearray) -> None:
    """Append what ``pipe`` gives to ``into`` until it ends; then close it."""
    with pipe:
        for chunk in iter(lambda: pipe.read1(65536), b""):  # type: ignore[attr-defined]
            into.extend(chunk)

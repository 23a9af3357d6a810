"""CPU time of the ingest process's main thread (its event loop), read from ``/proc``.

The main thread of a Linux process is the task whose id is the process id, so its CPU time is
``/proc/<pid>/task/<pid>/stat``; that holds however the process names its threads (CPython 3.11
does not name them for the kernel). The ingest process is whichever of the node's processes
holds the lock of the ingest store (``<data dir>/ingest/LOCK``, kept open by RocksDB while the
store is open): the node itself when every service runs in one process, or the child that
serves ingest when the node runs one process per service. Whatever the node's process layout,
the figure is the CPU time of the one thread that runs ingest's event loop — the writer, the
gRPC handlers and the hand-over to the announcer — which the verification and commit threads
do not count towards.
"""

from __future__ import annotations

import os
from pathlib import Path

from .procs import MIN_CPU_SECONDS, children_of

__all__ = ["IngestMainThread", "main_thread_cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process's main thread so far; 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _holds(pid: int, target: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if Path(os.readlink(f"/proc/{pid}/fd/{fd}")) == target:
                return True
        except OSError:
            continue
    return False


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        children = children_of(pending.pop())
        found.extend(children)
        pending.extend(children)
    return found


class IngestMainThread:
    """The main thread of a node's ingest process, found by the store lock it holds.

    Args:
        node_pid: The node's process id (``pandanode up`` or ``pandanode serve ingest``).
        data_dir: The node's data directory.
    """

    def __init__(self, node_pid: int, data_dir: Path) -> None:
        self._node_pid = node_pid
        self._lock = (data_dir / "ingest" / "LOCK").resolve()

    def pid(self) -> int:
        """The ingest process's id (the node's when no descendant holds the store)."""
        for pid in [self._node_pid, *_descendants(self._node_pid)]:
            if _holds(pid, self._lock):
                return pid
        return self._node_pid

    def cpu(self) -> tuple[int, float]:
        """The ingest process's id and its main thread's CPU seconds so far."""
        pid = self.pid()
        return pid, main_thread_cpu_seconds(pid)

    @staticmethod
    def per_entry_us(
        before: tuple[int, float], after: tuple[int, float], entries: int
    ) -> float | None:
        """Main-thread CPU µs per entry between two readings; None if not measurable.

        Not measurable: the ingest process changed in between (it was restarted), or the time
        is below what ``/proc``'s clock ticks resolve.
        """
        if before[0] != after[0] or entries <= 0:
            return None
        used = after[1] - before[1]
        if used < MIN_CPU_SECONDS:
            return None
        return used / entries * 1e6

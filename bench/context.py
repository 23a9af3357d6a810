"""What a scenario gets: its sizes, fresh nodes, shared workloads and the run's capabilities."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from .procs import MIN_CPU_SECONDS, ROOT, CpuTimes, NodeProcess, dir_bytes
from .registry import REQUIREMENTS, ScenarioResult

__all__ = ["INTEROP_DIR", "QUERY_SERVICE", "Context", "find_py_spy"]

T = TypeVar("T")

QUERY_SERVICE = "pandanode.query.v1.QueryService"
INTEROP_DIR = ROOT / "tests" / "interop"
P2PANDA_JS_VERSION = "0.8.1"
_MIB = 1024 * 1024


def find_py_spy() -> str | None:
    """The ``py-spy`` binary: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


class Context:
    """Shared by every scenario of one run.

    Args:
        args: The parsed command line, every size flag resolved.
        work_dir: A scratch directory for data directories and logs (removed after the run).
        results: Results of the scenarios run so far, by name (for baselines).

    Attributes:
        args: As given.
        work_dir: As given.
        results: As given.
    """

    def __init__(
        self, args: argparse.Namespace, work_dir: Path, results: dict[str, ScenarioResult]
    ) -> None:
        self.args = args
        self.work_dir = work_dir
        self.results = results
        self._cache: dict[str, Any] = {}
        self._capabilities: dict[str, str | None] = {}
        self._nodes = 0

    # -- shared values ------------------------------------------------------------------------

    def cached(self, key: str, make: Callable[[], T]) -> T:
        """``make()``, computed once per run (e.g. a pre-signed workload shared by scenarios)."""
        if key not in self._cache:
            self._cache[key] = make()
        value: T = self._cache[key]
        return value

    def baseline(self, ref: str) -> float | None:
        """The value of ``<scenario>/<row>/<column>`` if that scenario ran and recorded it."""
        name, _, key = ref.partition("/")
        result = self.results.get(name)
        metric = None if result is None else result.get(key)
        return None if metric is None else metric.value

    # -- capabilities -------------------------------------------------------------------------

    async def missing(self, requirement: str) -> str | None:
        """Why ``requirement`` cannot be met in this run; None when it can."""
        if requirement not in self._capabilities:
            self._capabilities[requirement] = await self._check(requirement)
        return self._capabilities[requirement]

    async def _check(self, requirement: str) -> str | None:
        if requirement == "query":
            node = NodeProcess(
                self.work_dir / "probe", self.work_dir / "probe.log", self.args.node_mode
            )
            try:
                await node.start()
                services = await node.services()
            finally:
                await node.stop()
                shutil.rmtree(self.work_dir / "probe", ignore_errors=True)
            if QUERY_SERVICE in services:
                return None
            return f"the node does not serve {QUERY_SERVICE} yet (it serves {', '.join(services)})"
        if requirement == "p2panda-js":
            if shutil.which("node") is None:
                return "Node.js is not installed (`node` is not on PATH)"
            package = INTEROP_DIR / "node_modules" / "p2panda-js" / "package.json"
            if not package.is_file():
                return f"p2panda-js is not installed ({package} is missing; run `make setup`)"
            version = json.loads(package.read_text()).get("version")
            if version != P2PANDA_JS_VERSION:
                return f"p2panda-js {version} is installed, not {P2PANDA_JS_VERSION}"
            return None
        if requirement == "py-spy":
            return None if find_py_spy() else "py-spy is not installed (it is in the dev extras)"
        if requirement in REQUIREMENTS:
            return await REQUIREMENTS[requirement](self)
        return f"unknown requirement {requirement!r}"

    # -- nodes --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def node(self, out: ScenarioResult) -> AsyncIterator[NodeProcess]:
        """A fresh node for one scenario; its resources are recorded into ``out`` at the end.

        Peak RSS of the node and of its nats-server is read just before the node stops; the
        size of its data directory per entry (``node.published`` entries) once it has stopped.
        """
        self._nodes += 1
        data_dir = self.work_dir / f"node-{self._nodes}"
        node = NodeProcess(data_dir, self.work_dir / f"node-{self._nodes}.log", self.args.node_mode)
        await node.start()
        stopped = False
        try:
            yield node
            node_rss, nats_rss = node.peak_rss()
            code = await node.stop()
            stopped = True
            if code != 0:
                raise RuntimeError(f"the node exited with {code}:\n{node.log_tail()}")
            out.metric("resources", "node peak RSS MiB", node_rss / _MIB, "MiB", "resource")
            out.metric("resources", "nats peak RSS MiB", nats_rss / _MIB, "MiB", "resource")
            if node.published:
                store = dir_bytes(data_dir / "ingest")
                nats = dir_bytes(data_dir / "nats")
                out.metric("resources", "store B/entry", store / node.published, "B", "resource")
                out.metric("resources", "nats B/entry", nats / node.published, "B", "resource")
                query = dir_bytes(data_dir / "query")
                if query:
                    out.metric(
                        "resources", "query B/entry", query / node.published, "B", "resource"
                    )
                out.notes["entries_stored"] = node.published
        finally:
            if not stopped:
                await node.stop()
            shutil.rmtree(data_dir, ignore_errors=True)

    @staticmethod
    def cpu_per_entry(out: ScenarioResult, row: str, used: CpuTimes, entries: int) -> None:
        """Record the node's CPU time per entry (node + nats-server) in ``row``.

        The nats-server's share goes into the notes. A run too short for ``/proc``'s clock
        ticks (under :data:`MIN_CPU_SECONDS`) is noted, not reported as a figure.
        """
        if used.total < MIN_CPU_SECONDS:
            out.notes.setdefault("cpu_too_short_to_measure", []).append(row)
            return
        out.metric(row, "CPU µs/entry", used.total / entries * 1e6, "µs", "cost")
        out.notes.setdefault("nats_cpu_us_per_entry", {})[row] = used.nats / entries * 1e6
        # Where the node's share went, by process (ingest, query, …, nats-server).
        by_process = {name: round(s / entries * 1e6, 1) for name, s in used.parts.items()}
        by_process["nats-server"] = round(used.nats / entries * 1e6, 1)
        out.notes.setdefault("cpu_us_per_entry_by_process", {})[row] = by_process

"""The ``pandanode`` command's start-up: how long a client command takes from exec to exit.

Each command is a fresh process (the console script of this environment), timed from outside;
the node is a fresh one of this run. ``python -c pass`` is the floor: the interpreter alone.
Client commands import neither RocksDB nor NATS nor the services (``pandanode.services.cli``
loads them only for node commands), and each loads only what it uses (``--version`` and ``key
show`` no event loop, gRPC or rich; ``status`` only the protos of the services it asks), so
their time is the interpreter, what the command uses and its round trips.

The commands run with compiled bytecode, as an installed package does (pip compiles it): in a
cache of this run's work directory, filled by the warm-up run, even when the environment says
``PYTHONDONTWRITEBYTECODE`` (as a developer's shell or CI may). Without it every run would
compile pandanode's own modules again, which no user pays.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from ..context import Context
from ..registry import Option, ScenarioResult, scenario

__all__: list[str] = []

PANDANODE = str(Path(sys.executable).with_name("pandanode"))


async def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from exec to exit, and the CPU seconds (user + system) the process used."""
    used = _children_cpu()
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {err.decode()}")
    return elapsed, _children_cpu() - used


def _children_cpu() -> float:
    # The node is a child too, but counts only once it has exited (and been waited for).
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@scenario(
    "cli.startup",
    title="pandanode client commands, exec to exit (a fresh process each; python -c pass: floor)",
    requires=("query",),
    options=(Option("--cli-runs", int, 30, "runs of each command", smoke=3),),
)
async def startup(ctx: Context, out: ScenarioResult) -> None:
    """Time ``--version``, ``key show``, ``status`` and ``schema list`` as a person runs them."""
    runs: int = ctx.args.cli_runs
    env = {
        **os.environ,
        "PANDANODE_KEY_FILE": str(ctx.work_dir / "cli-key"),
        "PYTHONPYCACHEPREFIX": str(ctx.work_dir / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    floor = "python -c pass (floor)"
    async with ctx.node(out) as node:
        await _timed([PANDANODE, "key", "new", "--overwrite"], env)
        commands = {
            floor: [sys.executable, "-c", "pass"],
            "pandanode --version": [PANDANODE, "--version"],
            "pandanode key show": [PANDANODE, "key", "show"],
            "pandanode status": [PANDANODE, "--node", node.address, "status"],
            "pandanode schema list": [PANDANODE, "--node", node.address, "schema", "list"],
        }
        samples: dict[str, list[float]] = {row: [] for row in commands}
        cpu: dict[str, list[float]] = {row: [] for row in commands}
        for command in commands.values():  # warm the page cache and the bytecode cache once
            await _timed(command, env)
        for _ in range(runs):  # interleaved, so a noisy moment hits every command alike
            for row, command in commands.items():
                wall, used = await _timed(command, env)
                samples[row].append(wall)
                cpu[row].append(used)
    for row, seconds in samples.items():
        baseline = None if row == floor else f"{out.name}/{floor}/p50 ms"
        out.latency(row, seconds, series=f"cli {row}", baseline=baseline)
        # What the command itself costs: less at the mercy of a loaded machine than wall time.
        cpu_baseline = None if row == floor else f"{out.name}/{floor}/CPU p50 ms"
        cpu_ms = statistics.median(cpu[row]) * 1e3
        out.metric(row, "CPU p50 ms", cpu_ms, "ms", "cost", baseline=cpu_baseline)
    out.notes["runs"] = runs
    out.notes["bytecode"] = "compiled (a cache in the work directory, filled by the warm-up run)"

"""Profiling: py-spy on the node while it ingests, by PublishStream and by unary Publish.

A separate run from the measured ones (sampling slows the node down). py-spy attaches to the
running node (``record --pid``) and records collapsed stacks (``--format raw``) while the node
ingests many short logs; it is stopped with SIGINT once every entry was announced. Three
recordings, each of its own entries:

- ``stream``: one PublishStream, every thread (verification runs on threads without the GIL);
- ``stream, GIL``: the same, only the thread holding the GIL (``--gil``): the Python work that
  one core has to do, which is what caps a GIL-bound node;
- ``unary c=16``: unary Publish at 16 in flight, every thread.

On a busy machine a thread that is runnable but waits for a core is sampled as busy too, so
the all-thread shares are of "wanted to run", not of CPU; the GIL view does not have that skew.
The top costs of each go into the results and the report; ``--keep-profile DIR`` keeps the raw
files.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio

from ..client import (
    CHANNEL_OPTIONS,
    publish_setup,
    publish_stream,
    publish_unary,
    wait_announced,
)
from ..context import Context, find_py_spy
from ..profile import Profile, read_raw
from ..registry import Option, ScenarioResult, scenario
from ..workload import flatten
from .ingest import short_log_entries

__all__: list[str] = []


@scenario(
    "profile.ingest",
    title="py-spy (raw) on the node: PublishStream (all threads; GIL holder), unary Publish c=16",
    requires=("py-spy",),
    options=(
        Option("--profile-entries", int, 40_000, "entries streamed under py-spy", smoke=3000),
        Option(
            "--profile-unary-entries", int, 3000, "entries published unary under py-spy", smoke=300
        ),
        Option("--profile-rate", int, 200, "py-spy samples per second", smoke=200),
        Option("--profile-top", int, 12, "lines of each top list", smoke=12),
    ),
)
async def ingest(ctx: Context, out: ScenarioResult) -> None:
    """Profile the node during stream ingest, then during unary ingest; record the top costs."""
    length = ctx.args.short_log_length
    entries = ctx.args.profile_entries
    if entries <= ctx.args.stream_entries:  # the stream scenario's entries, signed once
        logs = math.ceil(ctx.args.stream_entries / length)
        requests = flatten(short_log_entries(ctx, "stream-short-logs", logs))[:entries]
    else:
        requests = flatten(short_log_entries(ctx, "profile-stream", math.ceil(entries / length)))
    unary_logs = short_log_entries(
        ctx, "profile-unary", math.ceil(ctx.args.profile_unary_entries / length)
    )
    top = ctx.args.profile_top
    profiles: dict[str, Profile] = {}
    raws: list[Path] = []
    async with (
        ctx.node(out) as node,
        grpc.aio.insecure_channel(node.ingest_address, options=CHANNEL_OPTIONS) as channel,
    ):
        await publish_setup(channel, node)
        ingest_pid = node.service_pids.get("ingest", node.pid)  # `up`: the ingest process
        half = len(requests) // 2
        for name, part, gil in (
            ("stream", requests[:half], False),
            ("stream, GIL", requests[half:], True),
        ):
            raw = ctx.work_dir / f"py-spy-{name.replace(', ', '-')}.txt"
            async with _py_spy(ingest_pid, raw, ctx.args.profile_rate, gil=gil):
                run = await publish_stream(channel, part, ctx.args.stream_batch)
                node.published += run.count
                announced = await wait_announced(node.nats_url, node.published)
            out.rate(f"{name}, under py-spy", run.count, announced - run.started)
            profiles[name] = read_raw(raw)
            raws.append(raw)

        raw_unary = ctx.work_dir / "py-spy-unary.txt"
        async with _py_spy(ingest_pid, raw_unary, ctx.args.profile_rate, gil=False):
            unary = await publish_unary(channel, unary_logs, 16)
            node.published += unary.count
            await wait_announced(node.nats_url, node.published)
        out.rate("unary c=16, under py-spy", unary.count, unary.seconds)
        profiles["unary c=16"] = read_raw(raw_unary)
        raws.append(raw_unary)
        if ctx.args.keep_profile is not None:
            ctx.args.keep_profile.mkdir(parents=True, exist_ok=True)
            for kept in raws:
                shutil.copy(kept, ctx.args.keep_profile / kept.name)
    for name, profile in profiles.items():
        if profile.busy == 0:
            raise RuntimeError(f"py-spy recorded no samples ({name})")
        out.metric(f"{name}: busy samples", "count", profile.busy, "", "count")
        for cost in profile.top("threads", top):
            out.metric(f"{name}: thread {cost.name}", "% of samples", cost.share * 100, "%", "cost")
        for cost in profile.top("areas", top):
            out.metric(f"{name}: {cost.name}", "% of samples", cost.share * 100, "%", "cost")
    out.notes["profiles"] = {name: p.as_json(top) for name, p in profiles.items()}


@contextlib.asynccontextmanager
async def _py_spy(pid: int, output: Path, rate: int, *, gil: bool) -> AsyncIterator[None]:
    """Record ``pid`` with py-spy into ``output`` for the duration of the block.

    With ``gil`` only the thread holding the GIL is sampled.

    Raises:
        RuntimeError: py-spy did not start sampling, or failed to write its output.
    """
    py_spy = find_py_spy()
    assert py_spy is not None
    spy = await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--output",
        str(output),
        "--rate",
        str(rate),
        "--threads",
        "--function",
        "--full-filenames",
        *(["--gil"] if gil else []),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    said = bytearray()
    sampling = asyncio.Event()
    reader = asyncio.create_task(_read_output(spy, said, sampling))
    try:
        waiter = asyncio.create_task(sampling.wait())
        await asyncio.wait({waiter, reader}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not sampling.is_set():
            text = said.decode(errors="replace")[-2000:]
            raise RuntimeError(f"py-spy did not start sampling: {text}")
        yield
    finally:
        if spy.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                spy.send_signal(signal.SIGINT)
        await asyncio.wait_for(spy.wait(), timeout=60)
        await reader
    if spy.returncode != 0 or not output.is_file():
        text = said.decode(errors="replace")[-2000:]
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {text}")


async def _read_output(
    spy: asyncio.subprocess.Process, into: bytearray, sampling: asyncio.Event
) -> None:
    """Collect py-spy's output; set ``sampling`` once it says ``Sampling process …``."""
    assert spy.stdout is not None
    while line := await spy.stdout.readline():
        into += line
        if b"Sampling process" in into:
            sampling.set()

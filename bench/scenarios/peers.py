"""Peer baselines: another relay on the same workload, measured in the same run.

``baseline.nostr_relay`` runs nostr-relay 1.14 (Python, SQLite; PyPI ``nostr-relay``) as its
users run it (``nostr-relay serve``: gunicorn with one uvicorn worker) on 127.0.0.1, with its
SQLite database in the run's scratch directory and nothing that reaches out (NIP-05
verification off, no notifier, no FOAF or dynamic lists). It lives in a venv of its own that the
bench makes once and keeps (``.venv-bench/``, never inside the project's ``.venv``): a full run
installs it when it is missing; ``--smoke`` does not (it would need the network and minutes),
so there the scenario is skipped with that reason until a full run has installed it.

The workload has the shape of unary Publish at c=1 (``ingest.unary.short_logs``): one client,
one connection, N kind-1 events signed before the clock starts (Schnorr over secp256k1, by
the relay venv's own ``aionostr``/``coincurve``, 50 authors in turn), each sent only after the
relay answered the previous one with ``["OK", id, true, …]``. The client (``bench/nostr_peer.py``)
runs in the relay's venv, in its own process, as the gRPC client is in its own process from
the node. The relay's CPU time is its gunicorn master and worker together, from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from ..context import Context
from ..procs import MIN_CPU_SECONDS, ROOT, children_of, cpu_seconds, free_port, peak_rss_bytes
from ..registry import Option, ScenarioResult, requirement, scenario

__all__ = [
    "NOSTR_RELAY_VERSION",
    "NOSTR_VENV",
    "PANDANODE_UNARY_C1",
    "NostrRelay",
    "nostr_relay",
]

NOSTR_RELAY_VERSION = "1.14"
NOSTR_VENV = ROOT / ".venv-bench" / f"nostr-relay-{NOSTR_RELAY_VERSION}"
"""Where the bench keeps nostr-relay's own venv between runs (ignored by git)."""
PANDANODE_UNARY_C1 = "ingest.unary.short_logs/c=1"
"""The row of unary Publish at c=1 that the nostr figures are compared with."""

_PEER_SCRIPT = ROOT / "bench" / "nostr_peer.py"
_MARKER = ".installed"
_INSTALL_TIMEOUT = 900.0
_MIB = 1024 * 1024
# The client's result is one line: every latency, ~20 bytes each.
_RESULT_LIMIT = 64 * _MIB
_ROW = "nostr-relay c=1"


def _installed(venv: Path) -> bool:
    marker = venv / _MARKER
    return marker.is_file() and marker.read_text().strip() == NOSTR_RELAY_VERSION


async def _run(*command: str | Path, timeout: float) -> tuple[int, str]:
    """Run ``command``; its exit code (-1 on timeout) and its output, stderr included."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"timed out after {timeout:.0f} s"
    return process.returncode or 0, output.decode(errors="replace")


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


async def install(venv: Path = NOSTR_VENV) -> str | None:
    """Make ``venv`` with nostr-relay installed, unless it is there; why not, or None.

    A venv's scripts name its path, so it is made in place; the marker file that
    :func:`_installed` reads is written last, so an interrupted install is made anew next time.
    """
    if _installed(venv):
        return None
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    code, output = await _run(sys.executable, "-m", "venv", venv, timeout=120)
    if code != 0:
        shutil.rmtree(venv, ignore_errors=True)
        return f"could not create a venv for nostr-relay: {_last_line(output)}"
    print(f"bench: installing nostr-relay=={NOSTR_RELAY_VERSION} into {venv}", file=sys.stderr)
    code, output = await _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"nostr-relay=={NOSTR_RELAY_VERSION}",
        timeout=_INSTALL_TIMEOUT,
    )
    if code != 0:
        shutil.rmtree(venv, ignore_errors=True)
        return f"pip could not install nostr-relay=={NOSTR_RELAY_VERSION}: {_last_line(output)}"
    (venv / _MARKER).write_text(NOSTR_RELAY_VERSION + "\n")
    return None


@requirement("nostr-relay")
async def _nostr_relay_available(ctx: Context) -> str | None:
    if _installed(NOSTR_VENV):
        return None
    if ctx.args.smoke:
        return (
            f"nostr-relay {NOSTR_RELAY_VERSION} is not installed in {NOSTR_VENV} (--smoke does "
            "not install it: it needs the network; a full `make bench` installs it once)"
        )
    return await install(NOSTR_VENV)


def _config(data_dir: Path, port: int) -> str:
    """nostr-relay's configuration: loopback, SQLite in ``data_dir``, nothing reaching out.

    Every key not given keeps nostr-relay's default (its ``config.py``): no NIP-05
    verification, no authentication, no notifier (one worker), no FOAF or dynamic lists.
    """
    config = {
        "DEBUG": False,
        "storage": {
            "sqlalchemy.url": f"sqlite+aiosqlite:///{data_dir / 'nostr.sqlite3'}",
            "num_concurrent_reqs": 10,
            "num_concurrent_adds": 2,
            "validators": [
                "nostr_relay.validators.is_not_too_large",
                "nostr_relay.validators.is_signed",
                "nostr_relay.validators.is_recent",
                "nostr_relay.validators.is_not_hellthread",
            ],
        },
        "verification": {"nip05_verification": "disabled"},
        "authentication": {"enabled": False},
        "gunicorn": {
            "bind": f"127.0.0.1:{port}",
            "workers": 1,
            "loglevel": "warning",
            "graceful_timeout": 1,
        },
        "logging": {
            "version": 1,
            "handlers": {"console": {"class": "logging.StreamHandler"}},
            "root": {"level": "WARNING", "handlers": ["console"]},
        },
    }
    return json.dumps(config, indent=1)  # JSON is YAML


class NostrRelay:
    """``nostr-relay serve`` from its venv, on a free loopback port, data in ``data_dir``.

    Args:
        venv: The venv nostr-relay is installed in.
        data_dir: Its SQLite database and configuration (created).
        log_file: Where its output goes.

    Attributes:
        url: The relay's websocket URL.
    """

    def __init__(self, venv: Path, data_dir: Path, log_file: Path) -> None:
        self.venv = venv
        self.data_dir = data_dir
        self.log_file = log_file
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._pids: list[int] = []

    async def start(self, timeout: float = 60.0) -> None:
        """Start the relay and wait until it answers its NIP-11 document.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "config.yaml"
        config.write_text(_config(self.data_dir, self.port))
        self._log = self.log_file.open("wb")
        self._process = await asyncio.create_subprocess_exec(
            self.venv / "bin" / "nostr-relay",
            "-c",
            config,
            "serve",
            cwd=self.data_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: the worker goes down with it
        )
        deadline = time.monotonic() + timeout
        while not await self._answers():
            if self._process.returncode is not None:
                raise RuntimeError(f"nostr-relay exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nostr-relay did not answer in {timeout} s:\n{self.log_tail()}")
            await asyncio.sleep(0.1)  # poll: the relay is starting
        self._pids = [self._process.pid, *children_of(self._process.pid)]

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 1
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET / HTTP/1.0\r\nAccept: application/nostr+json\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 2)
            return status.split(b" ")[1:2] == [b"200"]
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def cpu(self) -> float:
        """CPU seconds used so far by the relay (gunicorn master and its worker)."""
        return sum(cpu_seconds(pid) for pid in self._pids)

    def peak_rss(self) -> int:
        """Peak RSS in bytes of the relay's processes, summed."""
        return sum(peak_rss_bytes(pid) for pid in self._pids)

    def log_tail(self) -> str:
        """The end of the relay's output, for error messages."""
        try:
            return self.log_file.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    async def stop(self, timeout: float = 1.0) -> None:
        """Stop the relay: SIGTERM, then SIGKILL to its process group after ``timeout`` seconds.

        Its gunicorn waits out ``graceful_timeout`` for the uvicorn worker; the figures are
        taken by then, so the wait is kept short.
        """
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


async def _sign(venv: Path, count: int) -> list[str]:
    code, output = await _run(
        venv / "bin" / "python", _PEER_SCRIPT, "sign", str(count), timeout=600
    )
    lines = output.splitlines()
    if code != 0 or len(lines) != count:
        raise RuntimeError(f"signing nostr events failed ({code}): {output[-2000:]}")
    return lines


async def _publish(
    venv: Path, relay: NostrRelay, events: list[str]
) -> tuple[dict[str, Any], float]:
    """Publish ``events`` (the first one as warm-up); the client's timings and relay CPU used."""
    client = await asyncio.create_subprocess_exec(
        venv / "bin" / "python",
        _PEER_SCRIPT,
        "publish",
        relay.url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=_RESULT_LIMIT,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        client.stdin.write("".join(line + "\n" for line in events).encode() + b"\n")
        await client.stdin.drain()
        ready = await asyncio.wait_for(client.stdout.readline(), 60)
        if ready.strip() != b"ready":
            raise RuntimeError(f"the nostr client did not get ready: {ready[:300]!r}")
        cpu = relay.cpu()
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        line = await asyncio.wait_for(client.stdout.readline(), 600)
        used = relay.cpu() - cpu
        if await client.wait() != 0 or not line.strip():
            raise RuntimeError(f"the nostr client failed:\n{relay.log_tail()}")
        timings: dict[str, Any] = json.loads(line)
        return timings, used
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()


def _compare_with_pandanode(ctx: Context, out: ScenarioResult) -> None:
    """Record pandanode's unary c=1 Publish ÷ nostr-relay, when both ran in this run."""
    pairs = (
        ("events/s", "entries/s"),
        ("p50 ms", "p50 ms"),
        ("p99 ms", "p99 ms"),
        ("CPU µs/event", "CPU µs/entry"),
    )
    row = "pandanode Publish c=1 ÷ nostr-relay"
    for column, theirs in pairs:
        ours = ctx.baseline(f"{PANDANODE_UNARY_C1}/{theirs}")
        nostr = out.get(f"{_ROW}/{column}")
        if ours is not None and nostr is not None and nostr.value > 0:
            out.metric(row, column, ours / nostr.value, "×", "ratio")
    name = PANDANODE_UNARY_C1.partition("/")[0]
    if out.get(f"{row}/events/s") is None:
        out.notes["pandanode_comparison"] = (
            f"{name} did not run before this scenario in this run: compare its c=1 row with "
            "this one by hand (e.g. run both with --only)"
        )
    elif ctx.results[name].status != "ok":
        # Its c=1 row was measured in full before it stopped; say that the rest was not.
        other = ctx.results[name]
        reason = " ".join((other.reason or "").split())[:300]
        out.notes["pandanode_comparison"] = f"{name} recorded c=1, then {other.status}: {reason}"


@scenario(
    "baseline.nostr_relay",
    title=f"Peer: nostr-relay {NOSTR_RELAY_VERSION} (Python, SQLite, own venv), one connection, "
    "one event at a time (c=1), waiting for each OK",
    requires=("nostr-relay",),
    options=(Option("--nostr-events", int, 3000, "events published one at a time", smoke=30),),
)
async def nostr_relay(ctx: Context, out: ScenarioResult) -> None:
    """Publish pre-signed kind-1 events to a fresh nostr-relay, each after the previous OK."""
    count = ctx.args.nostr_events
    events = await _sign(NOSTR_VENV, count + 1)
    data_dir = ctx.work_dir / "nostr-relay"
    relay = NostrRelay(NOSTR_VENV, data_dir, ctx.work_dir / "nostr-relay.log")
    try:
        await relay.start()
        timings, used = await _publish(NOSTR_VENV, relay, events)
        rss = relay.peak_rss()
    finally:
        await relay.stop()
    published = int(timings["count"])
    out.rate(_ROW, published, float(timings["seconds"]), column="events/s")
    out.latency(_ROW, [float(t) for t in timings["latencies"]], series="nostr-relay c=1")
    if used >= MIN_CPU_SECONDS:
        out.metric(_ROW, "CPU µs/event", used / published * 1e6, "µs", "cost")
    else:
        out.notes.setdefault("cpu_too_short_to_measure", []).append(_ROW)
    out.metric("resources", "node peak RSS MiB", rss / _MIB, "MiB", "resource")
    shutil.rmtree(data_dir, ignore_errors=True)
    _compare_with_pandanode(ctx, out)
    out.notes["nostr_relay"] = {
        "version": NOSTR_RELAY_VERSION,
        "venv": str(NOSTR_VENV),
        "server": "nostr-relay serve: gunicorn, 1 uvicorn worker",
        "storage": "SQLite (aiosqlite), WAL, synchronous=normal: no fsync per event",
        "events": published,
    }

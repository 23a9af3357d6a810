"""The whole benchmark harness at smoke sizes: every scenario runs and reports positive figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import scenarios
from bench.context import QUERY_SERVICE, find_py_spy
from bench.procs import ROOT
from bench.registry import REGISTRY
from bench.report import from_json, render_tables

# The replication scenarios start seven nodes between them: the smoke run has 400 s.
pytestmark = pytest.mark.timeout(420)

assert scenarios.__all__  # importing them registers them


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """Run ``python -m bench --smoke`` once; its results file, its stdout and its out dir."""
    out_dir = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out-dir", str(out_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, f"bench failed:\n{done.stdout}\n{done.stderr[-5000:]}"
    [results] = out_dir.glob("*.json")
    return json.loads(results.read_text()), done.stdout, out_dir


def _by_name(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in results["scenarios"]}


def test_every_scenario_is_reported(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, stdout, _ = smoke
    scenarios = _by_name(results)
    assert list(scenarios) == list(REGISTRY)
    for name in REGISTRY:
        assert f"**{name}**" in stdout


def test_scenarios_ran_or_lack_only_what_they_require(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    results, _, _ = smoke
    available = {"p2panda-js": (ROOT / "tests/interop/node_modules/p2panda-js").is_dir()}
    available["py-spy"] = find_py_spy() is not None
    for name, scenario in _by_name(results).items():
        requires = REGISTRY[name].requires
        if scenario["status"] == "skipped":
            assert requires, f"{name} needs nothing, yet was skipped: {scenario['reason']}"
            assert not all(available.get(r, False) for r in requires), (
                f"{name} was skipped although {sorted(requires)} are there: {scenario['reason']}"
            )
            if "query" in requires:
                assert QUERY_SERVICE in scenario["reason"]
        else:
            assert scenario["status"] == "ok", f"{name}: {scenario['reason']}"


def test_figures_are_positive(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = smoke
    for name, scenario in _by_name(results).items():
        if scenario["status"] != "ok":
            continue
        assert scenario["metrics"], f"{name} recorded nothing"
        for metric in scenario["metrics"]:
            value = metric["value"]
            # A latency from "Publish OK" may be negative (see below), and so may a hop's cost
            # (the difference of two medians of 100 calls in a smoke run: noise can reverse
            # it on a loaded machine); every other figure is > 0.
            positive = (
                metric["kind"] != "latency" or not metric["row"].startswith("Publish OK")
            ) and metric["column"] != "hop µs/call"
            assert math.isfinite(value) and (value > 0 or not positive), f"{name} {metric}"
            if metric["baseline"] is not None:
                assert metric["ratio"] is not None and metric["ratio"] > 0, f"{name} {metric}"
        for series, stats in scenario["latencies_ms"].items():
            # Not > 0: a watcher can see an early entry of a batch before the batch's answer
            # reaches the publisher, so "Publish OK → seen" may be negative.
            assert stats["count"] > 0 and math.isfinite(stats["p50"]), f"{name} {series}"
            assert stats["p50"] <= stats["p99"] <= stats["max"], f"{name} {series}"


def test_ingest_reports_against_baselines_and_resources(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    scenarios = _by_name(smoke[0])
    stream = {
        m["row"] + "/" + m["column"]: m for m in scenarios["ingest.stream.short_logs"]["metrics"]
    }
    assert stream["durable + announced/entries/s"]["baseline"] == (
        "baseline.verify/1 core/verifications/s"
    )
    unary = {
        m["row"] + "/" + m["column"]: m for m in scenarios["ingest.unary.short_logs"]["metrics"]
    }
    for level in (1, 16, 64):
        assert unary[f"c={level}/entries/s"]["baseline"] == (
            f"baseline.grpc_echo/unary c={level}/calls/s"
        )
        assert unary[f"c={level}/p99 ms"]["value"] > 0
    for name in ("ingest.unary.short_logs", "ingest.stream.short_logs", "ingest.stream.long_log"):
        columns = {m["column"] for m in scenarios[name]["metrics"] if m["kind"] == "resource"}
        assert columns >= {
            "node peak RSS MiB",
            "nats peak RSS MiB",
            "store B/entry",
            "nats B/entry",
        }
    long_log = {
        m["row"] + "/" + m["column"] for m in scenarios["ingest.stream.long_log"]["metrics"]
    }
    assert {"first 10%/wall µs/entry", "last 10%/wall µs/entry"} <= long_log


def test_profile_lists_top_costs(smoke: tuple[dict[str, Any], str, Path]) -> None:
    profile = _by_name(smoke[0])["profile.ingest"]
    # py-spy is a dev dependency: a profile that could not be taken is a failure, not a skip.
    assert profile["status"] == "ok", profile["reason"]
    profiles = profile["notes"]["profiles"]
    assert set(profiles) == {"stream", "stream, GIL", "unary c=16"}
    for top in profiles.values():
        assert top["samples"] > 0
        assert top["self"] and top["inclusive"] and top["areas"] and top["threads"]
    assert "Top costs on the node, stream" in smoke[1]


def test_charts_are_written(smoke: tuple[dict[str, Any], str, Path]) -> None:
    out_dir = smoke[2]
    names = sorted(p.name.split("-", 3)[-1] for p in out_dir.glob("*.png"))
    assert names == ["latency.png", "long-log.png", "throughput.png"]


def test_a_results_file_renders_the_printed_tables(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, stdout, _ = smoke
    assert render_tables(*from_json(results)) in stdout


def test_nostr_relay_is_compared_with_unary_publish_or_skipped_with_how_to_install(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    nostr = _by_name(smoke[0])["baseline.nostr_relay"]
    if nostr["status"] == "skipped":
        assert ".venv-bench" in nostr["reason"] and "make bench" in nostr["reason"]
        return
    keys = {m["row"] + "/" + m["column"] for m in nostr["metrics"]}
    assert {"nostr-relay c=1/events/s", "nostr-relay c=1/p99 ms"} <= keys
    # ingest.unary.short_logs runs before it in the same run.
    assert "pandanode Publish c=1 ÷ nostr-relay/events/s" in keys


def test_replication_reports_sync_wire_bytes_live_latency_and_convergence(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    scenarios = _by_name(smoke[0])

    def keys(name: str) -> dict[str, dict[str, Any]]:
        assert scenarios[name]["status"] == "ok", scenarios[name]["reason"]
        return {m["row"] + "/" + m["column"]: m for m in scenarios[name]["metrics"]}

    two = keys("replication.two_nodes")
    sync = two["initial sync/entries/s"]
    assert sync["baseline"] == "replication.two_nodes/PublishStream into A, 100/message/entries/s"
    assert sync["ratio"] == pytest.approx(two["initial sync/÷ PublishStream"]["value"])
    assert two["initial sync/wire B/entry"]["value"] > 0
    assert two["initial sync/entry + operation B/entry"]["value"] > 0
    (in_sync,) = [m for k, m in two.items() if k.startswith("in sync, ")]
    # Announce, HaveDigest and SyncDone both ways: a few hundred bytes, whatever the log count.
    assert in_sync["column"] == "session B" and in_sync["value"] < 1000
    assert two["1 % / 1 % / 98 % split/entries exchanged"]["value"] > 0
    live = keys("replication.live_latency")
    assert {"idle/p50 ms", "idle/p99 ms"} <= set(live)
    assert any(k.startswith("under load") and k.endswith("/p99 ms") for k in live)
    three = keys("replication.three_nodes")
    assert any(k.endswith("/converged s") for k in three)

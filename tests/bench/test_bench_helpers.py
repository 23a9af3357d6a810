"""The harness' pure helpers: percentiles, py-spy aggregation, the registry, the table."""

from __future__ import annotations

import pytest

from bench.profile import area_of, parse_raw, short_path
from bench.registry import ScenarioResult
from bench.report import fmt
from bench.stats import percentile, percentiles

RAW = [
    "thread (1): MainThread;<module> (/x/lib/python3.11/asyncio/runners.py:1);"
    "Ingest._apply (/repo/services/ingest/ingest.py:10);"
    "LogStore.commit (/repo/services/ingest/store.py:20) 6",
    "thread (2): verify_0;Thread._bootstrap (/x/lib/python3.11/threading.py:1);"
    "Ingest._prepare (/repo/services/ingest/ingest.py:30);"
    "crypto_sign_open (/v/lib/python3.11/site-packages/nacl/bindings/crypto_sign.py:40) 3",
    "thread (3): verify_1;crypto_sign_open "
    "(/v/lib/python3.11/site-packages/nacl/bindings/crypto_sign.py:40) 1",
    "thread (4): ThreadPoolExecutor-0_0;Thread._bootstrap (/x/lib/python3.11/threading.py:1);"
    "_worker (/x/lib/python3.11/concurrent/futures/thread.py:69) 5",
    "not a stack line",
]


def test_percentiles_are_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile([7.0], 99) == 7
    stats = percentiles(list(reversed(samples)))
    assert (stats.count, stats.p50, stats.p90, stats.p99, stats.max) == (100, 50, 90, 99, 100)
    with pytest.raises(ValueError):
        percentiles([])


def test_py_spy_raw_is_aggregated_by_self_inclusive_thread_and_area() -> None:
    profile = parse_raw(RAW)
    assert (profile.samples, profile.waiting, profile.busy) == (15, 5, 10)
    assert profile.threads == {"MainThread (event loop)": 6, "verify": 4}
    [top] = profile.top("self", 1)
    assert top.samples == 6 and top.share == pytest.approx(0.6)
    assert "LogStore.commit" in top.name
    verify = next(c for c in profile.top("self", 5) if "crypto_sign_open" in c.name)
    assert verify.samples == 4
    assert profile.areas["PyNaCl (Ed25519)"] == 4
    # Runner frames are left out of the inclusive view; each frame counts once per sample.
    assert not any(name.startswith("Thread._bootstrap") for name in profile.inclusive)
    assert sum(n for name, n in profile.inclusive.items() if "Ingest._prepare" in name) == 3


def test_file_names_and_areas() -> None:
    assert short_path("/v/lib/python3.11/site-packages/grpc/aio/_call.py") == "grpc/aio/_call.py"
    assert short_path("/r/lib/python3.11/asyncio/events.py") == "stdlib/asyncio/events.py"
    assert area_of("core/entry.py") == "pandanode.core.entry"
    assert area_of("services/ingest/store.py") == "pandanode.services.ingest.store"
    assert area_of("stdlib/asyncio/events.py") == "asyncio"
    assert area_of("rocksdict/__init__.py") == "rocksdict (RocksDB)"


def test_a_metric_is_recorded_once_and_finite() -> None:
    result = ScenarioResult("x.y", "title")
    result.rate("c=1", 100, 0.5)
    assert result.get("c=1/entries/s") is not None
    with pytest.raises(ValueError):
        result.rate("c=1", 100, 0.5)
    with pytest.raises(ValueError):
        result.metric("c=2", "ms", float("nan"), "ms", "latency")


def test_numbers_are_formatted_for_reading() -> None:
    assert [fmt(v) for v in (19512.4, 851.2, 42.13, 3.071, 0.41234, 0)] == [
        "19,512",
        "851",
        "42.1",
        "3.07",
        "0.412",
        "0",
    ]


def test_the_lag_scenario_runs_after_the_peak_it_offers_half_of() -> None:
    import bench.scenarios  # noqa: F401  (registers the scenarios, in run order)
    from bench.registry import REGISTRY
    from bench.scenarios.query import PEAK

    order = list(REGISTRY)
    peak_scenario = PEAK.split("/")[0]
    assert order.index(peak_scenario) < order.index("query.materialization_lag")

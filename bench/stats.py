"""Small statistics: nearest-rank percentiles of latency samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["Percentiles", "percentile", "percentiles"]


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of already sorted samples.

    Raises:
        ValueError: no samples.
    """
    if not sorted_samples:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100 * len(sorted_samples)))
    return sorted_samples[min(rank, len(sorted_samples)) - 1]


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Percentiles of one series, in the unit of the samples (seconds for latencies)."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def as_ms(self) -> dict[str, float]:
        """The figures in milliseconds (``count`` unchanged), for JSON."""
        values = asdict(self)
        return {k: (v if k == "count" else v * 1e3) for k, v in values.items()}


def percentiles(samples: Sequence[float]) -> Percentiles:
    """p50, p90, p99, max and mean of ``samples``.

    Raises:
        ValueError: no samples.
    """
    ordered = sorted(samples)
    return Percentiles(
        count=len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        mean=sum(ordered) / len(ordered),
    )

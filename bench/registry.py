"""The scenario registry: what a scenario is, what it records, and how it is declared.

A scenario is an async function decorated with :func:`scenario`. It gets a :class:`Context`
(sizes, helpers to start nodes, shared workloads) and a :class:`ScenarioResult` to record into,
and declares its size flags as :class:`Option` values and what it needs as ``requires``
(e.g. ``"query"``: the node serves ``pandanode.query.v1.QueryService``). A scenario whose
requirement is missing is reported as skipped, with the reason, instead of failing the run, so
new scenarios can be registered before the service they measure exists.

Adding a scenario is one function::

    @scenario(
        "query.get_document",
        title="GetDocument latency",
        requires=("query",),
        options=(Option("--get-documents", int, 10_000, "documents to load", smoke=50),),
    )
    async def get_document(ctx: Context, out: ScenarioResult) -> None:
        async with ctx.node(out) as node:
            ...
            out.latency("GetDocument", samples_s)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .stats import Percentiles, percentiles

if TYPE_CHECKING:
    from .context import Context

__all__ = [
    "REGISTRY",
    "REQUIREMENTS",
    "Kind",
    "LatencySeries",
    "Metric",
    "Option",
    "Scenario",
    "ScenarioResult",
    "requirement",
    "scenario",
]

Kind = Literal["throughput", "latency", "cost", "resource", "ratio", "count"]
"""What a metric measures; decides where it is charted and how it is summarized."""


@dataclass(frozen=True, slots=True)
class Option:
    """One size flag of a scenario.

    Attributes:
        flag: The command-line flag, e.g. ``--long-log-entries``.
        type: ``int``, ``float`` or ``str``.
        default: The value of a full run (all defaults together finish in < 10 min on 2 cores).
        help: What the size means.
        smoke: The value of a ``--smoke`` run (the whole harness in seconds).
    """

    flag: str
    type: type
    default: Any
    help: str
    smoke: Any

    @property
    def dest(self) -> str:
        """The attribute name on the parsed arguments."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class Metric:
    """One figure, shown as one cell of its scenario's table.

    Attributes:
        row: The table row, e.g. ``c=16`` or ``first 10%``.
        column: The table column, e.g. ``entries/s`` or ``p99 ms``.
        value: The figure.
        unit: Its unit (``/s``, ``ms``, ``µs``, ``MiB``, ``B``, ``×``).
        kind: What it measures (see :data:`Kind`).
        baseline: ``"<scenario>/<row>/<column>"`` of the baseline this figure is compared with.
        ratio: ``value / baseline``, filled in when the run ends.
    """

    row: str
    column: str
    value: float
    unit: str
    kind: Kind
    baseline: str | None = None
    ratio: float | None = None

    @property
    def key(self) -> str:
        """``<row>/<column>``: unique within its scenario."""
        return f"{self.row}/{self.column}"


@dataclass(frozen=True, slots=True)
class LatencySeries:
    """Latency percentiles of one series of timed operations (for the latency chart)."""

    name: str
    percentiles: Percentiles


@dataclass
class ScenarioResult:
    """What one scenario recorded, and how it ended.

    Attributes:
        name: The scenario's registered name.
        title: A one-line description.
        status: ``ok``, ``skipped`` or ``failed``.
        reason: Why it was skipped or how it failed.
        seconds: Wall time of the scenario, set-up included.
        metrics: Every figure, in recording order.
        latencies: Percentiles of each latency series.
        series: Named lists of numbers for charts (e.g. throughput by position in a log).
        notes: Free-form facts worth keeping with the figures (sizes, versions, top costs).
    """

    name: str
    title: str
    status: str = "ok"
    reason: str | None = None
    seconds: float = 0.0
    metrics: list[Metric] = field(default_factory=list)
    latencies: list[LatencySeries] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def metric(
        self,
        row: str,
        column: str,
        value: float,
        unit: str,
        kind: Kind,
        *,
        baseline: str | None = None,
    ) -> Metric:
        """Record one figure (see :class:`Metric`); returns it.

        Raises:
            ValueError: the figure is not finite or the cell was already recorded.
        """
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: {row}/{column} is not a finite number: {value}")
        recorded = Metric(row, column, float(value), unit, kind, baseline)
        if any(m.key == recorded.key for m in self.metrics):
            raise ValueError(f"{self.name}: {recorded.key} recorded twice")
        self.metrics.append(recorded)
        return recorded

    def rate(
        self,
        row: str,
        count: int,
        seconds: float,
        *,
        column: str = "entries/s",
        baseline: str | None = None,
    ) -> float:
        """Record ``count / seconds`` as a throughput; returns it."""
        value = count / seconds
        self.metric(row, column, value, "/s", "throughput", baseline=baseline)
        return value

    def latency(
        self,
        row: str,
        samples_s: Sequence[float],
        *,
        series: str | None = None,
        baseline: str | None = None,
    ) -> None:
        """Record p50 and p99 (ms) of ``samples_s`` (seconds) in ``row``, and the whole series.

        ``baseline`` (``"<scenario>/<row>/<column>"``) is what the p50 is compared with.
        """
        stats = percentiles(samples_s)
        self.metric(row, "p50 ms", stats.p50 * 1e3, "ms", "latency", baseline=baseline)
        self.metric(row, "p99 ms", stats.p99 * 1e3, "ms", "latency")
        self.latencies.append(LatencySeries(series or f"{self.name} {row}", stats))

    def get(self, key: str) -> Metric | None:
        """The metric ``<row>/<column>``, if recorded."""
        return next((m for m in self.metrics if m.key == key), None)


RunFn = Callable[["Context", ScenarioResult], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A registered scenario (see :func:`scenario`)."""

    name: str
    title: str
    run: RunFn
    requires: frozenset[str]
    options: tuple[Option, ...]


REGISTRY: dict[str, Scenario] = {}
"""Every scenario, in registration (= run) order."""


def scenario(
    name: str,
    *,
    title: str,
    requires: Iterable[str] = (),
    options: Iterable[Option] = (),
) -> Callable[[RunFn], RunFn]:
    """Register an async scenario function under ``name``.

    Args:
        name: Unique, dotted: ``<group>.<what>``, e.g. ``ingest.stream.long_log``.
        title: One line for the report.
        requires: Capabilities the run must have (``query``, ``p2panda-js``, ``py-spy``);
            without them the scenario is skipped with the reason.
        options: Its size flags.

    Raises:
        ValueError: the name or a flag is already registered.
    """

    def register(run: RunFn) -> RunFn:
        if name in REGISTRY:
            raise ValueError(f"scenario {name} is registered twice")
        taken = {o.flag for s in REGISTRY.values() for o in s.options}
        for option in options:
            if option.flag in taken:
                raise ValueError(f"flag {option.flag} is registered twice")
        REGISTRY[name] = Scenario(name, title, run, frozenset(requires), tuple(options))
        return run

    return register


RequirementCheck = Callable[["Context"], Awaitable[str | None]]

REQUIREMENTS: dict[str, RequirementCheck] = {}
"""Checks of requirements that scenario modules define themselves, by name (see requirement)."""


def requirement(name: str) -> Callable[[RequirementCheck], RequirementCheck]:
    """Register an async check of the requirement ``name``: it returns why it is not met, or None.

    The run calls it once, before the first scenario that ``requires`` it (it may set things
    up, e.g. install a peer into its own venv); a reason makes those scenarios skipped.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def register(check: RequirementCheck) -> RequirementCheck:
        if name in REQUIREMENTS:
            raise ValueError(f"requirement {name} is registered twice")
        REQUIREMENTS[name] = check
        return check

    return register


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add every registered scenario's size flags to ``parser`` (default None: see resolve)."""
    for registered in REGISTRY.values():
        group = parser.add_argument_group(f"{registered.name}: {registered.title}")
        for option in registered.options:
            group.add_argument(
                option.flag,
                type=option.type,
                default=None,
                help=f"{option.help} (default {option.default}; --smoke: {option.smoke})",
            )


def resolve_options(args: argparse.Namespace, *, smoke: bool) -> dict[str, Any]:
    """Fill every size flag not given with its default (or its smoke value); return them all."""
    sizes: dict[str, Any] = {}
    for registered in REGISTRY.values():
        for option in registered.options:
            value = getattr(args, option.dest, None)
            if value is None:
                value = option.smoke if smoke else option.default
                setattr(args, option.dest, value)
            sizes[option.dest] = value
    return sizes

"""The outputs of a run: the results file (JSON), a Markdown table, and PNG charts."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .registry import LatencySeries, Metric, ScenarioResult
from .stats import Percentiles

__all__ = ["fmt", "from_json", "render_tables", "to_json", "write_charts", "write_json"]

_RESOURCE_COLUMNS = (
    "node peak RSS MiB",
    "nats peak RSS MiB",
    "store B/entry",
    "nats B/entry",
    "query B/entry",
)


def to_json(meta: dict[str, Any], results: Sequence[ScenarioResult]) -> dict[str, Any]:
    """The results file's content: run metadata and every scenario's figures."""
    scenarios = []
    for result in results:
        scenarios.append(
            {
                "name": result.name,
                "title": result.title,
                "status": result.status,
                "reason": result.reason,
                "seconds": round(result.seconds, 3),
                "metrics": [dataclasses.asdict(m) for m in result.metrics],
                "latencies_ms": {s.name: s.percentiles.as_ms() for s in result.latencies},
                "series": result.series,
                "notes": result.notes,
            }
        )
    return {"format": 1, **meta, "scenarios": scenarios}


def from_json(content: dict[str, Any]) -> tuple[dict[str, Any], list[ScenarioResult]]:
    """A results file back as the run's metadata and its scenario results (see :func:`to_json`)."""
    meta = {k: v for k, v in content.items() if k not in ("format", "scenarios")}
    results = []
    for item in content["scenarios"]:
        result = ScenarioResult(item["name"], item["title"], item["status"], item["reason"])
        result.seconds = item["seconds"]
        result.metrics = [Metric(**m) for m in item["metrics"]]
        result.latencies = [
            LatencySeries(
                name,
                Percentiles(
                    count=int(ms["count"]),
                    **{k: v / 1e3 for k, v in ms.items() if k != "count"},
                ),
            )
            for name, ms in item["latencies_ms"].items()
        ]
        result.series = item["series"]
        result.notes = item["notes"]
        results.append(result)
    return meta, results


def fmt(value: float) -> str:
    """A figure with as many digits as it deserves: 19,512 · 851 · 42.1 · 3.07 · 0.412."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _baseline_labels(results: Sequence[ScenarioResult]) -> dict[str, str]:
    """A short name for every metric a ratio can refer to: e.g. ``verify 1 core``."""
    labels = {}
    for result in results:
        short = result.name
        if short.startswith("baseline."):
            short = short.removeprefix("baseline.").replace("_", " ")
        for metric in result.metrics:
            labels[f"{result.name}/{metric.key}"] = f"{short} {metric.row}"
    return labels


def _cell(metric: Metric, labels: dict[str, str], scenario: str) -> str:
    text = fmt(metric.value) + ("×" if metric.unit == "×" else "")
    if metric.baseline and metric.ratio is not None:
        label = labels.get(metric.baseline, metric.baseline)
        if metric.baseline.startswith(scenario + "/"):
            label = metric.baseline[len(scenario) + 1 :].rsplit("/", 2)[0]
        text += f" ({fmt(metric.ratio)}× {label})"
    return text


def _scenario_table(result: ScenarioResult, labels: dict[str, str]) -> list[str]:
    """One Markdown table: a row per ``row``, a column per ``column``; ratios in the cells."""
    metrics = [m for m in result.metrics if m.kind != "resource"]
    if not metrics:
        return []
    rows: list[str] = []
    columns: list[str] = []
    for metric in metrics:
        if metric.row not in rows:
            rows.append(metric.row)
        if metric.column not in columns:
            columns.append(metric.column)
    lines = [
        "| | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    cells = {(m.row, m.column): m for m in metrics}
    for row in rows:
        values = [
            _cell(cells[(row, c)], labels, result.name) if (row, c) in cells else ""
            for c in columns
        ]
        lines.append(f"| {row} | " + " | ".join(values) + " |")
    return lines


def _resources_table(results: Sequence[ScenarioResult]) -> list[str]:
    rows = [
        (result.name, {m.column: m for m in result.metrics if m.kind == "resource"})
        for result in results
    ]
    rows = [(name, cells) for name, cells in rows if cells]
    columns = [c for c in _RESOURCE_COLUMNS if any(c in cells for _, cells in rows)]
    if not rows:
        return []
    lines = ["| scenario | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, cells in rows:
        values = [fmt(cells[c].value) if c in cells else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return lines


def _profile_lines(name: str, profile: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Top costs on the node, {name}: % of {profile['busy']:,} busy py-spy samples "
        f"(of {profile['samples']:,}); self = the innermost Python frame, native calls "
        "included:",
        "",
        "| self % | function | | inclusive % | function |",
        "|---:|---|---|---:|---|",
    ]
    own, inclusive = profile["self"], profile["inclusive"]
    for index in range(max(len(own), len(inclusive))):
        left = own[index] if index < len(own) else None
        right = inclusive[index] if index < len(inclusive) else None
        lines.append(
            "| "
            + (f"{left['share'] * 100:.1f} | `{left['name']}`" if left else " | ")
            + " | | "
            + (f"{right['share'] * 100:.1f} | `{right['name']}`" if right else " | ")
            + " |"
        )
    return lines


def render_tables(meta: dict[str, Any], results: Sequence[ScenarioResult]) -> str:
    """The whole report as Markdown: one table per scenario, then resources."""
    machine = meta["machine"]
    git = meta["git"]
    lines = [
        f"pandanode benchmarks, {meta['started_at']} — {machine['cpu']}, {machine['cores']} "
        f"cores, Python {machine['python']}, commit {git['commit'][:10]}"
        + (" (uncommitted changes)" if git["dirty"] else "")
        + f", node: `pandanode {'up' if meta['node_mode'] == 'up' else 'serve ingest'}`"
        + f", {meta['seconds']:.0f} s, load average {meta['load_average']}",
    ]
    labels = _baseline_labels(results)
    for result in results:
        lines += ["", f"**{result.name}** — {result.title}"]
        if result.status != "ok":
            lines += ["", f"*{result.status}*: {result.reason}"]
            continue
        lines += ["", *_scenario_table(result, labels)]
        for name, profile in result.notes.get("profiles", {}).items():
            lines += _profile_lines(name, profile)
    resources = _resources_table(results)
    if resources:
        lines += [
            "",
            "**Resources** — peak RSS (VmHWM) at the end of each scenario's node; data "
            "directory size per stored entry",
            "",
            *resources,
        ]
    return "\n".join(lines) + "\n"


# -- charts -------------------------------------------------------------------------------------


_COLORS = {
    "baseline": "#9e9e9e",
    "ingest": "#1f77b4",
    "client": "#2ca02c",
    "query": "#ff7f0e",
    "profile": "#9467bd",
}


def write_charts(results: Sequence[ScenarioResult], prefix: Path, title: str) -> list[Path]:
    """Throughput, latency-percentile and long-log charts as PNGs named ``<prefix>-*.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    ok = [r for r in results if r.status == "ok"]

    bars = [
        (f"{r.name} · {m.row} · {m.column}", m.value, r.name.split(".", 1)[0])
        for r in ok
        for m in r.metrics
        if m.kind == "throughput"
    ]
    if bars:
        fig, ax = plt.subplots(figsize=(11, 0.32 * len(bars) + 1.5))
        labels = [b[0] for b in bars][::-1]
        values = [b[1] for b in bars][::-1]
        colors = [_COLORS.get(b[2], "#333333") for b in bars][::-1]
        ax.barh(labels, values, color=colors)
        ax.set_xscale("log")
        ax.set_xlabel("per second (log scale)")
        ax.set_title(f"Throughput — {title}", fontsize=10)
        for y, value in enumerate(values):
            ax.text(value, y, f" {fmt(value)}", va="center", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        path = prefix.with_name(prefix.name + "-throughput.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    series = [s for r in ok for s in r.latencies]
    if series:
        fig, ax = plt.subplots(figsize=(11, 0.5 * len(series) + 1.5))
        height = 0.25
        names = [s.name for s in series][::-1]
        for offset, label in enumerate(("p50", "p90", "p99")):
            values = [getattr(s.percentiles, label) * 1e3 for s in series][::-1]
            ax.barh(
                [i + (offset - 1) * height for i in range(len(series))],
                values,
                height=height,
                label=label,
            )
        ax.set_yticks(range(len(series)), names, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_title(f"Latency percentiles — {title}", fontsize=10)
        ax.legend()
        fig.tight_layout()
        path = prefix.with_name(prefix.name + "-latency.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    panels = [
        (r.name, {n: v for n, v in r.series.items() if "by tenth of the log" in n and v})
        for r in ok
    ]
    panels = [(name, series) for name, series in panels if series]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
        for ax, (name, by_tenth) in zip(axes[0], panels, strict=True):
            for label, values in by_tenth.items():
                xs = [10 * (i + 1) for i in range(len(values))]
                ax.plot(xs, values, marker="o", label=label.replace(" by tenth of the log", ""))
            top = max(max(v) for v in by_tenth.values())
            ax.set_ylim(0, top * 1.15 if math.isfinite(top) and top > 0 else None)
            ax.set_xlabel("position in the log (% of its entries; a point per tenth)")
            ax.set_ylabel("µs per entry")
            ax.set_title(name, fontsize=9)
            ax.legend(fontsize=8)
        fig.suptitle(f"Cost per entry along one long log — {title}", fontsize=10)
        fig.tight_layout()
        path = prefix.with_name(prefix.name + "-long-log.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write the results file (pretty, stable key order)."""
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")

"""Charts and the results page from ``bench/results/*.json``: ``python bench/report.py``.

Reads every result file the benches left in ``bench/results/`` (``core``, ``sse``, ``llm``,
``s3``, ``upstream``, ``resume``), draws one bar chart per bench into ``docs/benchmarks/*.png``
(ratios to each scenario's anchor, with the issue's target as a dashed line) and rewrites the
generated blocks of ``docs/benchmarks.md``: everything between ``<!-- report:NAME -->`` and
``<!-- /report:NAME -->``. The prose around the blocks is written by hand.

The machine and package versions come from the result files where a bench recorded them, and
from this environment at report time otherwise (the page says which). ``nox -s bench`` runs
the benches and then this script in the same environment, so both agree.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # the backend is chosen first
from matplotlib.ticker import FuncFormatter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
CHARTS = ROOT / "docs" / "benchmarks"
BENCHES = ("core", "sse", "llm", "s3", "upstream", "resume")
PACKAGES = (
    "faststream-kit", "starlette", "fastapi", "uvicorn", "anyio", "h11", "httptools", "uvloop",
    "sse-starlette", "openai", "httpx", "aiohttp", "aiobotocore", "boto3", "redis",
    "fastapi-proxy-lib",
)  # fmt: skip
MiB = 1 << 20

COLOURS = {"ours": "#3f51b5", "anchor": "#9e9e9e", "other": "#ffb74d"}
SERIES_COLOURS = ("#3f51b5", "#9fa8da", "#ffb74d")
TARGET_COLOUR = "#d32f2f"


# --- what a bench contributes ---------------------------------------------------------------


@dataclass
class Panel:
    """One bar chart: a bar per label, one or more series, an optional target line."""

    title: str
    axis: str
    labels: list[str]
    series: dict[str, list[float]]
    kinds: list[str] = field(default_factory=list)  # "ours" | "anchor" | "other", per label
    value_format: str = "{:.2f}×"
    target: float | None = None
    target_label: str = ""
    log: bool | None = None  # None: log scale when the bars span more than 30×


@dataclass
class Headline:
    measure: str
    result: str
    target: str = ""
    verdict: str = ""


@dataclass
class Section:
    name: str
    panels: list[Panel]
    headlines: list[Headline]
    details: list[str]  # markdown lines under the chart
    mode: str  # "full" | "quick"
    date: str
    load: str
    python: str = ""
    cpus: int | None = None
    server: str = ""
    versions: dict[str, str] = field(default_factory=dict)


def environment_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The ``Section`` fields that bench/core.py and bench/llm.py record under ``environment``."""
    environment = data.get("environment", {})
    return {
        "load": load_text(environment.get("loadavg_before"), environment.get("loadavg_after")),
        "python": environment.get("python", ""),
        "cpus": environment.get("cpus"),
        "server": environment.get("server", ""),
        "versions": environment.get("versions", {}),
    }


def kind(name: str, anchor: str, ours_prefix: str) -> str:
    """How a bar is coloured: the anchor grey, ours blue, everyone else orange."""
    if name == anchor:
        return "anchor"
    return "ours" if name.startswith(ours_prefix) else "other"


def verdict(value: float, target: float, at_most: bool = True) -> str:
    return "ok" if (value <= target if at_most else value >= target) else "**missed**"


def ratio_text(value: float, target: float | None = None) -> str:
    """Two decimals, or three when two would round a miss onto its target."""
    close = target is not None and f"{value:.2f}" == f"{target:.2f}" and value != target
    return f"{value:.3f}×" if close else f"{value:.2f}×"


def file_date(path: Path) -> str:
    stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def load_text(before: Any, after: Any) -> str:
    if not before:
        return "not recorded"
    text = f"{before[0]:.1f}"
    return f"{text} → {after[0]:.1f}" if after else text


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# --- core.py ----------------------------------------------------------------------------------

CORE_NAMES = {
    "ours_async": "stream_response, async gen",
    "ours_sync": "stream_response, sync gen",
    "starlette_async": "StreamingResponse, async gen",
    "starlette_sync": "StreamingResponse, sync gen",
    "ours": "stream_response",
    "raw_asgi": "raw ASGI send loop",
    "starlette": "StreamingResponse",
}


def core_section(data: dict[str, Any], path: Path) -> Section:
    panels, headlines, details = [], [], []
    for scenario in data["scenarios"]:
        targeted = next(r for r in scenario["ratios"] if r["target"] is not None)
        anchor = targeted["denominator"]
        names = list(scenario["medians"])
        names.sort(key=lambda name: name != anchor)
        runs, medians = scenario["runs"], scenario["medians"]
        # The same "paired" ratio core.py judges by: the median of the per-round ratios.
        wall = [
            statistics.median(
                a["wall"] / b["wall"] for a, b in zip(runs[name], runs[anchor], strict=True)
            )
            for name in names
        ]
        cpu = [medians[name]["server_cpu"] / medians[anchor]["server_cpu"] for name in names]
        sign = "≤" if targeted["at_most"] else "≥"
        target = targeted["target"]
        panels.append(
            Panel(
                title=f"{scenario['name']}: {scenario['title']} ({scenario['rounds']} rounds)",
                axis=f"× {CORE_NAMES.get(anchor, anchor)} (lower is faster)",
                labels=[CORE_NAMES.get(name, name) for name in names],
                series={"wall time (paired)": wall, "server CPU": cpu},
                kinds=[kind(n, anchor, "ours") for n in names],
                target=target,
                target_label=f"target: {targeted['label']} {sign} {target:g}×",
            )
        )
        paired = targeted["paired_wall_ratio"]
        headlines.append(
            Headline(
                f"`{scenario['name']}`: {targeted['label']}",
                ratio_text(paired, target),
                f"{sign} {target:g}×",
                verdict(paired, target, targeted["at_most"]),
            )
        )
        if "in_process" in scenario:
            found = scenario["in_process"]
            costs = found["microseconds_per_chunk"]
            headlines.append(
                Headline(
                    f"`{scenario['name']}`: {targeted['label']}, from the in-process cost per"
                    f" chunk ({costs['ours']:.2f} vs {costs['raw_asgi']:.2f} µs, no socket)",
                    ratio_text(found["projected_ratio"], target),
                    f"{sign} {target:g}×",
                    verdict(found["projected_ratio"], target, targeted["at_most"]),
                )
            )
        size = scenario.get("expected_bytes", 0)
        rows = []
        for name, w, c in zip(names, wall, cpu, strict=True):
            median = medians[name]
            rate = f"{size / MiB / median['wall']:,.1f}" if size else ""
            rows.append(
                [
                    f"`{name}`",
                    f"{median['wall']:.3f}",
                    rate,
                    f"{median['server_cpu']:.3f}",
                    ratio_text(w),
                    ratio_text(c),
                ]
            )
        details += [f"**{scenario['name']}**: {scenario['title']}", ""]
        details += table(
            [
                "implementation",
                "median s",
                "MiB/s",
                "server CPU s",
                "wall × anchor",
                "CPU × anchor",
            ],
            rows,
        )
        details.append("")
    return Section(
        name="core",
        panels=panels,
        headlines=headlines,
        details=details,
        mode="quick" if data.get("quick") else "full",
        date=file_date(path),
        **environment_fields(data),
    )


# --- sse.py -----------------------------------------------------------------------------------

SSE_NAMES = {
    "ours_dict": "sse_response, dict items",
    "ours_event": "sse_response, ServerSentEvent",
    "fastapi": "FastAPI EventSourceResponse",
    "ours_class": "EventSourceResponse, yield route",
    "sse_starlette": "sse-starlette",
    "handwritten": "StreamingResponse, f-string",
    "preformatted": "StreamingResponse, ready-made",
    "ours": "sse_response · FastAPI",
    "starlette": "floor: StreamingResponse · FastAPI",
    "ours_plain": "sse_response · Starlette",
    "sse_starlette_plain": "sse-starlette · Starlette",
    "starlette_plain": "floor: StreamingResponse · Starlette",
}
SSE_MEMORY_NAMES = {**SSE_NAMES, "sse_starlette": "sse-starlette · FastAPI"}


def sse_section(data: dict[str, Any], path: Path) -> Section:
    panels, headlines, details = [], [], []
    events = data["params"]["events"]
    throughput = data.get("throughput")
    if throughput:
        names = list(throughput)
        anchor = data["params"].get("anchor", "preformatted")
        names.sort(key=lambda name: name != anchor)
        target = next((row["cpu_target"] for row in throughput.values() if "cpu_target" in row), 0)
        panels.append(
            Panel(
                title=f"{events:,} small JSON events, server CPU "
                f"({data['params']['rounds']} rounds)",
                axis="× ready-made frames (lower is cheaper)",
                labels=[SSE_NAMES.get(name, throughput[name]["label"]) for name in names],
                series={"server CPU": [throughput[name]["cpu_ratio_to_anchor"] for name in names]},
                kinds=[kind(n, anchor, "ours") for n in names],
                target=target or None,
                target_label=f"target for sse_response: ≤ {target:g}×",
            )
        )
        rows = []
        for name in names:
            row = throughput[name]
            rows.append(
                [
                    row["label"].replace("|", "\\|"),
                    f"{row['cpu_seconds_median'] / events * 1e6:.1f}",
                    ratio_text(row["cpu_ratio_to_anchor"]),
                    ratio_text(row["cpu_ratio_per_round_median"]),
                    ratio_text(row["wall_ratio_to_anchor"]),
                ]
            )
            if "cpu_target" in row:
                ratio = row["cpu_ratio_to_anchor"]
                per_event = row["cpu_seconds_median"] / events * 1e6
                headlines.append(
                    Headline(
                        f"{row['label']}, CPU × ready-made frames",
                        f"{ratio_text(ratio, row['cpu_target'])} ({per_event:.1f} µs/event)",
                        f"≤ {row['cpu_target']:g}×",
                        verdict(ratio, row["cpu_target"]),
                    )
                )
            if "fastapi_cpu_target" in row:
                ratio = row["cpu_ratio_to_fastapi_per_round_median"]
                fastapi_per_event = throughput["fastapi"]["cpu_seconds_median"] / events * 1e6
                per_event = row["cpu_seconds_median"] / events * 1e6
                headlines.append(
                    Headline(
                        f"{row['label']}, CPU × FastAPI's native SSE",
                        f"{ratio_text(ratio, row['fastapi_cpu_target'])} ({per_event:.1f} vs "
                        f"{fastapi_per_event:.1f} µs/event)",
                        f"≤ {row['fastapi_cpu_target']:g}×",
                        verdict(ratio, row["fastapi_cpu_target"]),
                    )
                )
        details += [f"**Throughput**: {events:,} events per request, medians", ""]
        details += table(
            ["implementation", "CPU µs/event", "CPU × anchor", "per-round", "wall × anchor"], rows
        )
        details.append("")
    memory = data.get("idle_memory")
    if memory:
        connections = data["params"]["connections"]
        names = list(memory)
        target = next((row["target_kib"] for row in memory.values() if "target_kib" in row), 0)
        panels.append(
            Panel(
                title=f"{connections:,} idle SSE connections, pings on "
                f"({data['params']['memory_rounds']} rounds)",
                axis="server RSS per connection, KiB (lower is leaner)",
                labels=[SSE_MEMORY_NAMES.get(name, memory[name]["label"]) for name in names],
                series={
                    "KiB / connection": [memory[n]["kib_per_connection_median"] for n in names]
                },
                kinds=[kind(n.removesuffix("_plain"), "starlette", "ours") for n in names],
                value_format="{:.1f} KiB",
                target=target or None,
                target_label=f"target for sse_response: ≤ {target:g} KiB",
                log=False,
            )
        )
        rows = [
            [
                memory[name]["label"],
                f"{memory[name]['kib_per_connection_median']:.1f}",
                " ".join(f"{s['kib_per_connection']:.1f}" for s in memory[name]["samples"]),
            ]
            for name in names
        ]
        details += [f"**Idle memory**: {connections:,} open streams, server RSS", ""]
        details += table(["implementation", "KiB / connection", "each round"], rows)
        for name in names:
            row = memory[name]
            if "target_kib" in row:
                headlines.append(
                    Headline(
                        f"{row['label']}, idle RSS per connection",
                        f"{row['kib_per_connection_median']:.1f} KiB",
                        f"≤ {row['target_kib']:g} KiB",
                        verdict(row["kib_per_connection_median"], row["target_kib"]),
                    )
                )
    return Section(
        name="sse",
        panels=panels,
        headlines=headlines,
        details=details,
        mode="quick" if data.get("quick") else "full",
        date=file_date(path),
        load=load_text(data.get("loadavg_at_start"), data.get("loadavg_at_end")),
        python=data.get("python", ""),
        cpus=data.get("cpus"),
        versions=data.get("versions", {}),
    )


# --- llm.py -----------------------------------------------------------------------------------

LLM_NAMES = {
    "ours_text": "llm_stream, text",
    "hand_text": "hand-written loop, text",
    "ours_sse": "llm_stream, sse",
    "hand_sse": "hand-written loop, sse",
    "ours_ui": "llm_stream, ui",
    "hand_ui": "hand-written loop, ui",
    "ours_ag_ui": "llm_stream, ag-ui",
    "hand_ag_ui": "hand-written loop, ag-ui",
    "sdk_only": "SDK only (the floor)",
}


def llm_section(data: dict[str, Any], path: Path) -> Section:
    summary = data["summary"]
    medians = summary["medians"]
    labels = data.get("implementations", {})
    names = [
        n for n in ("ours_text", "hand_text", "ours_sse", "hand_sse", "sdk_only") if n in medians
    ]
    names += [name for name in medians if name not in names]
    targeted = [r for r in summary["ratios"] if r["target"] is not None]
    panels = [
        Panel(
            title=f"{summary['tokens']:,} tokens from the openai SDK ({summary['rounds']} rounds)",
            axis="server CPU µs per token (lower is cheaper)",
            labels=[LLM_NAMES.get(name, name) for name in names],
            series={"µs/token": [medians[name]["cpu_us_per_token"] for name in names]},
            kinds=[kind(n, "sdk_only", "ours") for n in names],
            value_format="{:.0f} µs",
            log=False,
        ),
        Panel(
            title="llm_stream against the hand-written loop, same SDK stream",
            axis="server CPU × hand-written StreamingResponse (paired)",
            labels=[r["label"] for r in targeted],
            series={"server CPU": [r["paired_cpu_ratio"] for r in targeted]},
            kinds=["ours"] * len(targeted),
            target=targeted[0]["target"] if targeted else None,
            target_label=f"target: ≤ {targeted[0]['target']:g}×" if targeted else "",
            log=False,
        ),
    ]
    headlines = [
        Headline(
            f"{r['label']}, CPU per token",
            f"{ratio_text(r['paired_cpu_ratio'], r['target'])} "
            f"({medians[r['numerator']]['cpu_us_per_token']:.0f} vs "
            f"{medians[r['denominator']]['cpu_us_per_token']:.0f} µs/token)",
            f"≤ {r['target']:g}×",
            verdict(r["paired_cpu_ratio"], r["target"]),
        )
        for r in targeted
    ]
    rows = [
        [
            f"`{name}`",
            labels.get(name, "").replace("|", "\\|"),
            f"{medians[name]['cpu_us_per_token']:.1f}",
            f"{medians[name]['above_floor_us_per_token']:.1f}",
            f"{medians[name]['wall']:.2f}",
        ]
        for name in names
    ]
    details = table(["route", "what it is", "CPU µs/token", "above floor", "wall s"], rows)
    return Section(
        name="llm",
        panels=panels,
        headlines=headlines,
        details=details,
        mode="quick" if data.get("quick") else "full",
        date=file_date(path),
        **environment_fields(data),
    )


# --- s3.py ------------------------------------------------------------------------------------

S3_NAMES = {
    "direct": "direct boto3 download",
    "kit_async": "s3_stream, aiobotocore",
    "kit_sync": "s3_stream, boto3",
    "kit_async_fast": "s3_stream, aiobotocore + pyreqwest (fast path)",
    "kit_sync_fast": "s3_stream, boto3 + pyreqwest (fast path)",
    "starlette_async": "StreamingResponse(Body), aiobotocore",
    "starlette_sync": "StreamingResponse(Body), boto3",
    "splice": "reference: socket splice",
    "loop_async": "floor: shortest loop, aiobotocore",
    "loop_sync": "floor: shortest loop, boto3",
}


def s3_section(data: dict[str, Any], path: Path) -> Section:
    size = data["size_bytes"]
    medians, target = data["medians"], data["target"]
    # Paired ratios (issue 17) where the results have them; older results have medians only.
    ratios = data.get("paired_ratios_to_direct") or data["ratios_to_direct"]
    names = list(ratios)
    panel = Panel(
        title=f"{size // MiB} MiB object from SeaweedFS through the app (response checksums "
        f"{data.get('response_checksum_validation', 'when_supported')})",
        axis="download time × direct boto3 download (lower is faster)",
        labels=[S3_NAMES.get(name, name) for name in names],
        series={"wall time (median)": [ratios[name] for name in names]},
        kinds=[kind(n, "direct", "kit") for n in names],
        target=target,
        target_label=f"target for s3_stream: ≤ {target:g}×",
    )
    headlines = [
        Headline(
            f"{S3_NAMES.get(name, name)}, time × direct boto3 (paired)",
            ratio_text(ratios[name], target),
            f"≤ {target:g}×",
            verdict(ratios[name], target),
        )
        for name in names
        if name.startswith("kit")
    ]
    headlines += [
        Headline(f"{S3_NAMES[name]} (the anchor)", ratio_text(ratios[name]))
        for name in names
        if name.startswith("starlette")
    ]
    headlines += [
        Headline(f"{S3_NAMES[name]}, time × direct boto3", ratio_text(ratios[name]))
        for name in names
        if name == "splice" or name.startswith("loop")
    ]
    cpu = data.get("cpu_medians", {})

    def seconds(role: str, name: str) -> str:
        value = cpu.get(role, {}).get(name)
        return "" if value is None or (role == "app" and name == "direct") else f"{value:.2f}"

    rows = [
        [
            f"`{name}`",
            str(len(data["runs"][name])),
            f"{medians[name]:.3f}",
            f"{size / MiB / medians[name]:,.0f}",
            ratio_text(ratios[name]),
            seconds("app", name),
            seconds("store", name),
        ]
        for name in names
    ]
    columns = ["implementation", "runs", "median s", "MiB/s", "× direct", "app CPU s", "S3 CPU s"]
    return Section(
        name="s3",
        panels=[panel],
        headlines=headlines,
        details=table(columns, rows),
        mode="full" if size >= 100 * MiB else "quick",
        date=file_date(path),
        load=load_text(data.get("load_before"), data.get("load_after")),
    )


# --- upstream.py ------------------------------------------------------------------------------

UPSTREAM_NAMES = {
    "direct": "direct from the upstream",
    "ours_pyreqwest": "upstream_stream, pyreqwest",
    "ours_httpx": "upstream_stream, httpx",
    "ours_aiohttp": "upstream_stream, aiohttp",
    "fastapi_proxy": "fastapi-proxy-lib",
    "splice": "reference: socket splice",
    "nginx": "reference: nginx",
    "loop_pyreqwest": "floor: shortest streaming loop, pyreqwest",
    "loop_pyreqwest_64k": "shortest loop, pyreqwest with its 64 KiB buffer (holds streams)",
    "loop_httpx": "floor: shortest loop, httpx",
    "loop_aiohttp": "floor: shortest loop, aiohttp",
    "read_pyreqwest": "floor: pyreqwest reading alone",
    "read_httpx": "floor: httpx reading alone",
    "read_aiohttp": "floor: aiohttp reading alone",
    "read_rnet": "rnet reading alone (compared)",
    "read_curl_cffi": "curl_cffi reading alone (compared)",
}
UPSTREAM_TARGETS = {"ours_pyreqwest": 1.3, "ours_aiohttp": 1.6}
"""Issue 17's targets (older results carry one ``target`` for every row)."""


def upstream_section(data: dict[str, Any], path: Path) -> Section:
    parsed = data  # bench/upstream.py's JSON
    rows = parsed["rows"]
    if not rows:
        raise ValueError("no result table in the upstream output")
    targets = parsed.get("targets") or {
        name: parsed.get("target", 1.2) for name in rows if name.startswith("ours")
    }
    names = list(rows)
    names.sort(key=lambda name: name != "direct")

    def paired(name: str) -> float:
        return float(rows[name].get("paired_ratio", rows[name]["ratio"]))

    tuning = "".join(f", {key}={value}" for key, value in parsed.get("proxy_env", {}).items())
    framing = f", {parsed['framing']}" if "framing" in parsed else ""
    fast_target = targets.get("ours_pyreqwest") or max(
        (t for t in targets.values() if t is not None), default=None
    )
    panel = Panel(
        title=f"{parsed['mib']} MiB through the proxy ({parsed['rounds']} rounds, "
        f"{parsed['client']}{framing}{tuning})",
        axis="download time × direct from the upstream, paired (lower is faster)",
        labels=[UPSTREAM_NAMES.get(name, name) for name in names],
        series={"wall time (paired median)": [paired(name) for name in names]},
        kinds=[kind(n, "direct", "ours") for n in names],
        target=fast_target,
        target_label=f"target for the fast client: ≤ {fast_target:g}×" if fast_target else "",
    )
    headlines = []
    for name in names:
        if not name.startswith("ours"):
            continue
        target = targets.get(name)
        label = f"{UPSTREAM_NAMES.get(name, name)}, time × direct (paired)"
        if target is None:
            headlines.append(Headline(label, ratio_text(paired(name))))
        else:
            headlines.append(
                Headline(
                    label,
                    ratio_text(paired(name), target),
                    f"≤ {target:g}×",
                    verdict(paired(name), target),
                )
            )
    headlines += [
        Headline(f"{UPSTREAM_NAMES.get(name, name)}, time × direct", ratio_text(paired(name)))
        for name in names
        if name.startswith(("read_", "loop_"))
    ]
    headlines += [
        Headline(
            f"{UPSTREAM_NAMES.get(name, name)} / {UPSTREAM_NAMES.get(other, other)}",
            ratio_text(r),
        )
        for other, ratios in parsed.get("versus", {}).items()
        for name, r in ratios.items()
    ]
    table_rows = [
        [
            f"`{name}`",
            f"{rows[name]['seconds']:.3f}",
            f"{rows[name]['mib_s']:,}",
            ratio_text(rows[name]["ratio"]),
            ratio_text(paired(name)),
            f"{rows[name]['proxy_cpu']:.2f}" if "proxy_cpu" in rows[name] else "",
        ]
        for name in names
    ]
    columns = ["implementation", "median s", "MiB/s", "× direct", "paired", "proxy CPU s"]
    return Section(
        name="upstream",
        panels=[panel],
        headlines=headlines,
        details=table(columns, table_rows),
        mode="full" if parsed.get("mib", 0) >= 256 else "quick",
        date=file_date(path),
        load=load_text(parsed.get("load_before"), parsed.get("load_after")),
        cpus=parsed.get("cpus"),
        server=parsed.get("server", ""),
    )


# --- resume.py --------------------------------------------------------------------------------


def resume_section(data: dict[str, Any], path: Path) -> Section:
    rates = data["throughput_events_per_second"]
    latency = data["latency"]
    rate_names = [n for n in ("direct", "resumable", "replay") if n in rates]
    rate_labels = {
        "direct": "sse_response (direct)",
        "resumable": "ResumableStreams, live",
        "replay": "ResumableStreams, replay",
    }
    paths = list(latency)
    panels = [
        Panel(
            title=f"{data['events']:,} small events per request "
            f"(median of {data['rounds']} rounds)",
            axis="events per second (higher is faster)",
            labels=[rate_labels[name] for name in rate_names],
            series={"events/s": [rates[name] for name in rate_names]},
            kinds=["anchor" if n == "direct" else "ours" for n in rate_names],
            value_format="{:,.0f}",
        ),
        Panel(
            title=f"produce → receive latency, {data['paced_events']:,} events every "
            f"{data['interval_seconds'] * 1000:g} ms",
            axis="milliseconds (lower is sooner)",
            labels=[rate_labels[name] for name in paths],
            series={
                "median": [latency[name]["median_ms"] for name in paths],
                "p99": [latency[name]["p99_ms"] for name in paths],
            },
            kinds=["anchor" if n == "direct" else "ours" for n in paths],
            value_format="{:.2f} ms",
            log=False,
        ),
    ]
    extra = data["extra_latency_ms"]
    headlines = [
        Headline(
            "live resumable events/s × direct",
            f"{ratio_text(data['resumable_over_direct_throughput'])} "
            f"({rates['resumable']:,.0f} vs {rates['direct']:,.0f} events/s)",
        ),
        Headline(
            "extra latency per event, median / p99",
            f"{extra['median_ms']:.2f} ms / {extra['p99_ms']:.2f} ms",
        ),
    ]
    if "replay" in rates:
        headlines.append(Headline("replay from Redis", f"{rates['replay']:,.0f} events/s"))
    rows = [
        [rate_labels[name], f"{rates[name]:,.0f}", ratio_text(rates[name] / rates["direct"])]
        for name in rate_names
    ]
    details = ["**Throughput**", "", *table(["path", "events/s", "× direct"], rows), ""]
    details += ["**Latency**, produce → receive", ""]
    details += table(
        ["path", "median ms", "p99 ms"],
        [
            [rate_labels[n], f"{latency[n]['median_ms']:.2f}", f"{latency[n]['p99_ms']:.2f}"]
            for n in paths
        ],
    )
    load = data.get("load_average", {})
    return Section(
        name="resume",
        panels=panels,
        headlines=headlines,
        details=details,
        mode="full" if data["events"] >= 20_000 else "quick",
        date=file_date(path),
        load=load_text(load.get("before"), load.get("after")),
        python=data.get("python", ""),
    )


READERS: dict[str, Callable[[dict[str, Any], Path], Section]] = {
    "core": core_section,
    "sse": sse_section,
    "llm": llm_section,
    "s3": s3_section,
    "upstream": upstream_section,
    "resume": resume_section,
}


# --- charts -----------------------------------------------------------------------------------


def draw(section: Section, directory: Path) -> Path:
    heights = [0.42 * len(p.labels) * max(1, len(p.series) * 0.7) + 1.3 for p in section.panels]
    figure, axes = plt.subplots(
        len(section.panels),
        1,
        figsize=(7.5, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    several = [tuple(p.series) for p in section.panels if len(p.series) > 1]
    shared = len(several) > 1 and len(set(several)) == 1  # one legend for the whole figure
    for axis, panel in zip(axes[:, 0], section.panels, strict=True):
        draw_panel(axis, panel, legend=not shared)
    if shared:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="upper right", ncol=len(labels), fontsize=9)
        figure.tight_layout(h_pad=1.5, rect=(0, 0, 1, 1 - 0.35 / sum(heights)))
    else:
        figure.tight_layout(h_pad=1.5)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{section.name}.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def tick_text(value: float, _position: Any = None) -> str:
    """1, 10, 0.5 and 100,000 rather than 10^0 or 1e+05."""
    return f"{value:,.0f}" if value >= 1 and value == int(value) else f"{value:g}"


def draw_panel(axis: Any, panel: Panel, legend: bool) -> None:
    count, width = len(panel.series), 0.8 / len(panel.series)
    values = [v for series in panel.series.values() for v in series if v and v > 0]
    log = panel.log if panel.log is not None else max(values) / min(values) > 30
    positions = list(range(len(panel.labels)))
    for index, (name, series) in enumerate(panel.series.items()):
        offsets = [p + (index - (count - 1) / 2) * width for p in positions]
        if count == 1:
            colours = [COLOURS[kind] for kind in panel.kinds] or COLOURS["ours"]
        else:
            colours = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        bars = axis.barh(offsets, series, height=width * 0.9, color=colours, label=name)
        for bar, value in zip(bars, series, strict=True):
            axis.annotate(
                panel.value_format.format(value),
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
            )
    axis.set_yticks(positions, panel.labels, fontsize=10)
    for tick, kind in zip(axis.get_yticklabels(), panel.kinds, strict=False):
        if kind == "ours":
            tick.set_fontweight("bold")
    # First label on top, and an empty band above it for the target's label.
    axis.set_ylim(len(panel.labels) - 0.5, -1.0 if panel.target else -0.5)
    top = max([*values, panel.target or 0])
    if log:
        axis.set_xscale("log")
        low, high = min(values) / 1.5, top * 4
    else:
        low, high = 0, top * 1.2
    axis.xaxis.set_major_formatter(FuncFormatter(tick_text))
    axis.set_xlim(low, high)
    if panel.target:
        axis.axvline(panel.target, color=TARGET_COLOUR, linestyle="--", linewidth=1.2)
        to_axis = math.log if log else float
        where = (to_axis(panel.target) - to_axis(low)) / (to_axis(high) - to_axis(low))
        on_left = where > 0.55  # the label goes right of the line unless it would run off
        axis.annotate(
            panel.target_label,
            (panel.target, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-3 if on_left else 3, -3),
            textcoords="offset points",
            ha="right" if on_left else "left",
            va="top",
            fontsize=9,
            color=TARGET_COLOUR,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )
    # From the figure's left edge, not the axes', so a long title has the whole width.
    axis.annotate(
        panel.title,
        (0.01, 1.0),
        xycoords=("figure fraction", "axes fraction"),
        xytext=(0, 8),
        textcoords="offset points",
        va="bottom",
        fontsize=11,
    )
    axis.set_xlabel(panel.axis + (", log scale" if log else ""), fontsize=10)
    axis.tick_params(axis="x", labelsize=9)
    axis.grid(axis="x", alpha=0.3)
    axis.set_axisbelow(True)
    if count > 1 and legend:  # above the chart, right of the title, clear of the bars
        axis.legend(
            fontsize=9, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=count, frameon=False
        )


# --- the page ---------------------------------------------------------------------------------


def report_time_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match[1].strip() if match else platform.machine()


def source_revision() -> str:
    """The commit the benched code came from, and whether ``src/`` differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown (no git)"
    if not commit:
        return "unknown (not a git checkout)"
    return f"`{commit}`" + (", with uncommitted changes in `src/`" if changed else "")


def machine_block(sections: list[Section]) -> list[str]:
    now = report_time_versions()
    lines = ["| | value | from |", "| --- | --- | --- |"]

    def recorded(values: dict[str, str]) -> str:
        """One value per distinct reading, with the benches that recorded it."""
        if not values:
            return ""
        by_value: dict[str, list[str]] = {}
        for bench, value in values.items():
            by_value.setdefault(value, []).append(bench)
        if len(by_value) == 1:
            return next(iter(by_value))
        return "; ".join(f"{value} ({', '.join(b)})" for value, b in by_value.items())

    cpus = {s.name: str(s.cpus) for s in sections if s.cpus}
    source = f"{', '.join(cpus)} results" if cpus else "report time"
    lines.append(f"| CPUs | {recorded(cpus) or os.cpu_count()} | {source} |")
    lines.append(f"| CPU model | {cpu_model()} | `/proc/cpuinfo` at report time |")
    pythons = {s.name: s.python for s in sections if s.python}
    lines.append(
        f"| Python | {recorded(pythons) or platform.python_version()} | "
        f"{', '.join(pythons) + ' results' if pythons else 'report time'} |"
    )
    lines.append(f"| OS | {platform.platform(terse=True)} | report time |")
    lines.append(f"| faststream-kit source | {source_revision()} | git, at report time |")
    # The uvicorn version has its own row; what matters here is the protocol and loop flags.
    servers = {
        s.name: re.sub(r"^uvicorn [\d.]+ ", "uvicorn ", s.server) for s in sections if s.server
    }
    if servers:
        lines.append(f"| server | {recorded(servers)} | {', '.join(servers)} results |")
    for package in PACKAGES:
        seen = {s.name: s.versions[package] for s in sections if package in s.versions}
        if seen:
            lines.append(f"| {package} | {recorded(seen)} | {', '.join(seen)} results |")
        else:
            lines.append(f"| {package} | {now[package]} | report time |")
    return lines


def summary_block(sections: list[Section], missing: list[str]) -> list[str]:
    lines = ["| bench | measure | result | target | verdict |", "| --- | --- | --- | --- | --- |"]
    for section in sections:
        for h in section.headlines:
            lines.append(
                f"| {section.name} | {h.measure} | {h.result} | {h.target} | {h.verdict} |"
            )
    lines += ["", "| bench | run | finished | load average (1 min, before → after) |"]
    lines.append("| --- | --- | --- | --- |")
    for section in sections:
        lines.append(f"| {section.name} | {section.mode} | {section.date} | {section.load} |")
    for name in missing:
        lines.append(f"| {name} | not run | | |")
    lines += ["", "The machine and the versions these results came from:", ""]
    lines += machine_block(sections)
    return lines


def section_block(section: Section, chart: Path) -> list[str]:
    relative = chart.relative_to(PAGE.parent).as_posix()
    lines = [
        f"![{section.name} benchmark chart]({relative})",
        "",
        f"*{section.mode} run, finished {section.date}, load average {section.load}.*",
        "",
    ]
    return lines + section.details


def missing_block(name: str) -> list[str]:
    return [f"*No results yet: run `nox -s bench -- {name}` (or `--full {name}`) to fill this in.*"]


def replace_block(page: str, name: str, lines: list[str]) -> str:
    start, end = f"<!-- report:{name} -->", f"<!-- /report:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{PAGE.relative_to(ROOT)} has no {start} ... {end} block")
    while lines and not lines[-1]:
        lines = lines[:-1]
    body = "\n".join([start, "", *lines, "", end])
    return pattern.sub(lambda _: body, page, count=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON files are")
    args = parser.parse_args()
    sections, missing = [], []
    for name in BENCHES:
        path = args.results / f"{name}.json"
        if not path.exists():
            missing.append(name)
            continue
        try:
            sections.append(READERS[name](json.loads(path.read_text()), path))
        except (KeyError, ValueError, TypeError, StopIteration) as error:
            print(f"{path}: cannot read ({type(error).__name__}: {error}); left out")
            missing.append(name)
    page = PAGE.read_text()
    page = replace_block(page, "summary", summary_block(sections, missing))
    for section in sections:
        chart = draw(section, CHARTS)
        print(f"wrote {chart.relative_to(ROOT)}")
        page = replace_block(page, section.name, section_block(section, chart))
    for name in missing:
        page = replace_block(page, name, missing_block(name))
    PAGE.write_text(page)
    print(f"wrote {PAGE.relative_to(ROOT)} ({len(sections)} benches, missing: {missing or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-token server cost of ``llm_stream`` against the hand-written loop over the same SDK stream.

    python bench/llm.py             # full run: 5,000 tokens, up to 12 rounds, under 3 minutes
    python bench/llm.py --quick     # 2 rounds, under 40 s
    python bench/llm.py --diagnose  # also llm_stream with idle_timeout/send_timeout None
    python bench/llm.py --profile   # then cProfile each route inside the app process
    python bench/llm.py --syscalls  # then count each route's system calls (strace -c)
    python bench/llm.py --provider anthropic  # one provider only (openai, gemini, langchain too)
    python bench/llm.py --provider langchain --langchain-chunk-timeout default  # 120 s only

Three kinds of process, as in ``bench/core.py``: the upstream (``bench/_openai_upstream.py``, a
raw ASGI app in its own uvicorn, streaming 5,000 pre-encoded ``chat.completion.chunk`` events
as fast as it can), the app server (``bench/_llm_apps.py`` in another uvicorn, one
``AsyncOpenAI(max_retries=0)`` talking to the upstream) and, per request, a fresh client
(``bench/_client.py``). Each round requests every route once, in an order rotated by one every
round; every response must have status 200 and exactly the expected number of body bytes. The
app server's CPU time for each request is read from its ``/cpu`` endpoint
(``time.process_time()``) before and after.

The table gives medians, CPU microseconds per token, the same above ``sdk_only`` (what
iterating the SDK's chunk models and sending nothing costs: the floor of every loop over the
stream, the hand-written ones included; ``llm_stream`` reads the SDK's events without building
those models, so it runs below it), and the ratios; the targets
(issue 4, "Must show 9"; issue 15, <= 1.0 for the ``ui`` and ``ag-ui`` formats against the loop
that writes those parts by hand) are on the server CPU ratio of the same round's pair. Results go to
``bench/results/llm.json``; ``bench/README.md`` explains them.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _llm_apps import (
    HAND_AG_UI_END,
    HAND_AG_UI_START,
    HAND_UI_END,
    HAND_UI_START,
    hand_ag_ui_delta,
    hand_ui_delta,
    sse_data,
)
from _openai_upstream import tokens, usage
from core import ROOT, Server, environment, fetch, server_flavour
from faststream_kit._llm._events import Finish, TextDelta
from faststream_kit._llm._formats import FORMATS
from faststream_kit._llm._formats.ag_ui import AGUIEncoder
from faststream_kit._llm._formats.sse import SSEEncoder
from faststream_kit._llm._formats.ui import UIEncoder

RESULTS = ROOT / "bench" / "results" / "llm.json"
TOKENS = 5_000
BUDGET_SECONDS = {False: 165.0, True: 34.0}
"""A run stops adding rounds rather than end past this (full / quick), from its start."""
PROFILE_REQUESTS = 3
PROFILE_TOP = 25
PROFILE_PRINT = 14

IMPLEMENTATIONS = {
    "ours_text": 'llm_stream(create(...), format="text")',
    "ours_sse": 'llm_stream(create(...), format="sse")',
    "hand_text": "StreamingResponse of delta.content (text/plain)",
    "hand_sse": "StreamingResponse of f\"data: {json.dumps({'text': t})}\\n\\n\"",
    "ours_ui": 'llm_stream(create(...), format="ui")',
    "hand_ui": "StreamingResponse of AI SDK parts, a json.dumps'd text-delta per token",
    "ours_ag_ui": 'llm_stream(create(...), format="ag-ui")',
    "hand_ag_ui": "StreamingResponse of AG-UI events, a json.dumps'd content event per token",
    "sdk_only": "iterate the SDK stream, send only the count (any loop's floor)",
}
DIAGNOSTIC_IMPLEMENTATIONS = {
    "ours_text_untimed": "ours_text with idle_timeout=None, send_timeout=None",
    "ours_sse_untimed": "ours_sse with idle_timeout=None, send_timeout=None",
}
"""With ``--diagnose``: what the per-token timeout scopes cost."""


@dataclass(frozen=True)
class Ratio:
    label: str
    numerator: str
    denominator: str
    target: float | None = None


RATIOS = (
    Ratio("ours text / hand text", "ours_text", "hand_text", 1.2),
    Ratio("ours sse / hand sse", "ours_sse", "hand_sse", 1.2),
    Ratio("ours ui / hand ui", "ours_ui", "hand_ui", 1.0),
    Ratio("ours ag-ui / hand ag-ui", "ours_ag_ui", "hand_ag_ui", 1.0),
    Ratio("ours sse / hand text", "ours_sse", "hand_text"),
    Ratio("hand sse / hand text", "hand_sse", "hand_text"),
)
DIAGNOSTIC_RATIOS = (
    Ratio("untimed text / hand text", "ours_text_untimed", "hand_text"),
    Ratio("untimed sse / hand sse", "ours_sse_untimed", "hand_sse"),
)


class AppServer(Server):
    """``core.Server`` for another app, plus control requests."""

    def __init__(self, app: str, http: str, loop: str, env: dict[str, str] | None = None) -> None:
        super().__init__(http, loop, app=app, env=env)

    def get(self, path: str) -> bytes:
        """A small control request (``/profile/...``) on a connection of its own."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status} {body!r}")
            return body
        finally:
            conn.close()


def expected_bytes(count: int) -> dict[str, int]:
    """Each route's exact body size for ``count`` tokens, so a lost token fails the run."""
    pieces = [token for token in tokens(count) if token]
    text = sum(len(token.encode()) for token in pieces)
    encoder = SSEEncoder()
    ours_sse = sum(len(encoder.encode(TextDelta(token))) for token in pieces)
    ours_sse += len(encoder.encode(Finish("stop", usage(count))))
    hand_sse = sum(len(f"data: {json.dumps({'text': token})}\n\n".encode()) for token in pieces)
    ours = {"ours_ui": UIEncoder(), "ours_ag_ui": AGUIEncoder(None)}
    sizes = {
        name: len(encoder.preamble())
        + sum(len(encoder.encode(TextDelta(token))) for token in pieces)
        + len(encoder.encode(Finish("stop", usage(count))))
        for name, encoder in ours.items()
    }
    hand_ui = sum(len(sse_data(part).encode()) for part in HAND_UI_START + HAND_UI_END)
    hand_ui += sum(len(hand_ui_delta(token).encode()) for token in pieces) + len(
        b"data: [DONE]\n\n"
    )
    hand_ag_ui = sum(len(sse_data(part).encode()) for part in HAND_AG_UI_START + HAND_AG_UI_END)
    hand_ag_ui += sum(len(hand_ag_ui_delta(token).encode()) for token in pieces)
    return {
        **sizes,
        "hand_ui": hand_ui,
        "hand_ag_ui": hand_ag_ui,
        "ours_text": text,
        "ours_sse": ours_sse,
        "ours_text_untimed": text,
        "ours_sse_untimed": ours_sse,
        "hand_text": text,
        "hand_sse": hand_sse,
        "sdk_only": len(str(len(pieces))),
    }


def measure(
    app: AppServer, upstream: AppServer, name: str, count: int, size: int
) -> dict[str, float]:
    upstream_before = upstream.cpu_seconds()
    run = fetch(app, f"/llm/{name}?tokens={count}", size, "python")
    run["upstream_cpu"] = upstream.cpu_seconds() - upstream_before
    return run


def run_rounds(
    app: AppServer,
    upstream: AppServer,
    names: list[str],
    count: int,
    rounds: int,
    deadline: float,
    sizes_for: Callable[[int], dict[str, int]] = expected_bytes,
) -> dict[str, list[dict[str, float]]]:
    """Warm up, then ``rounds`` rounds, fewer if the next one would end past ``deadline``."""
    warm_count = max(1, count // 8)
    warm_sizes = sizes_for(warm_count)
    for _repeat in range(2):  # imports, pydantic caches, the upstream connection: uncounted
        for name in names:
            measure(app, upstream, name, warm_count, warm_sizes[name])
    sizes = sizes_for(count)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_index in range(rounds):
        round_started = time.monotonic()
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(measure(app, upstream, name, count, sizes[name]))
        print(".", end="", flush=True)
        now = time.monotonic()
        if round_index + 1 < rounds and now + (now - round_started) > deadline:
            print(f" (time budget: stopped after {round_index + 1} rounds)", end="")
            break
    print()
    return runs


def summarize(
    runs: dict[str, list[dict[str, float]]],
    count: int,
    ratios: tuple[Ratio, ...],
    floor_name: str = "sdk_only",
) -> dict[str, Any]:
    per_token = 1e6 / count
    medians = {
        name: {
            "wall": statistics.median(run["wall"] for run in items),
            "server_cpu": statistics.median(run["server_cpu"] for run in items),
            "server_cpu_min": min(run["server_cpu"] for run in items),
            "upstream_cpu": statistics.median(run["upstream_cpu"] for run in items),
        }
        for name, items in runs.items()
    }
    floor = medians[floor_name]["server_cpu"]
    for median in medians.values():
        median["cpu_us_per_token"] = median["server_cpu"] * per_token
        median["above_floor_us_per_token"] = (median["server_cpu"] - floor) * per_token
    rows = []
    for ratio in ratios:
        top, bottom = runs[ratio.numerator], runs[ratio.denominator]
        paired_cpu = statistics.median(
            a["server_cpu"] / b["server_cpu"] for a, b in zip(top, bottom, strict=True)
        )
        paired_wall = statistics.median(
            a["wall"] / b["wall"] for a, b in zip(top, bottom, strict=True)
        )
        above_top = medians[ratio.numerator]["server_cpu"] - floor
        above_bottom = medians[ratio.denominator]["server_cpu"] - floor
        verdict = ""
        if ratio.target is not None:
            ok = paired_cpu <= ratio.target
            verdict = f"{'ok  ' if ok else 'MISS'} (target <= {ratio.target})"
        rows.append(
            {
                "label": ratio.label,
                "numerator": ratio.numerator,
                "denominator": ratio.denominator,
                "target": ratio.target,
                "cpu_ratio": medians[ratio.numerator]["server_cpu"]
                / medians[ratio.denominator]["server_cpu"],
                "paired_cpu_ratio": paired_cpu,
                "paired_wall_ratio": paired_wall,
                "above_floor_ratio": above_top / above_bottom if above_bottom > 0 else None,
                "verdict": verdict,
            }
        )
    rounds = len(runs[floor_name])
    return {"tokens": count, "rounds": rounds, "medians": medians, "ratios": rows}


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\n{summary['tokens']:,} tokens per request  ({summary['rounds']} rounds, medians)")
    print(
        f"  {'route':<17} {'wall s':>7} {'server CPU s':>13} {'µs/token':>9}"
        f" {'above floor':>12} {'upstream CPU s':>15}"
    )
    for name, median in summary["medians"].items():
        print(
            f"  {name:<17} {median['wall']:>7.3f} {median['server_cpu']:>13.3f}"
            f" {median['cpu_us_per_token']:>9.1f} {median['above_floor_us_per_token']:>12.1f}"
            f" {median['upstream_cpu']:>15.3f}"
        )
    print(f"  {'ratio':<26} {'CPU':>6} {'paired':>7} {'wall':>6} {'above floor':>12}")
    for ratio in summary["ratios"]:
        above = ratio["above_floor_ratio"]
        above_text = f"{above:>12.2f}" if above is not None else f"{'-':>12}"
        print(
            f"  {ratio['label']:<26} {ratio['cpu_ratio']:>6.2f} {ratio['paired_cpu_ratio']:>7.2f}"
            f" {ratio['paired_wall_ratio']:>6.2f} {above_text}  {ratio['verdict']}"
        )


def profile_routes(
    app: AppServer,
    upstream: AppServer,
    names: list[str],
    count: int,
    directory: Path,
    sizes_for: Callable[[int], dict[str, int]] = expected_bytes,
) -> dict[str, Any]:
    """cProfile ``PROFILE_REQUESTS`` requests of each route inside the app process."""
    sizes = sizes_for(count)
    report: dict[str, Any] = {}
    for name in names:
        path = directory / f"{name}.pstats"
        app.get("/profile/start")
        for _request in range(PROFILE_REQUESTS):
            measure(app, upstream, name, count, sizes[name])
        app.get(f"/profile/stop?file={path}")
        report[name] = profile_summary(path, count * PROFILE_REQUESTS)
    return report


def profile_summary(path: Path, tokens_seen: int) -> dict[str, Any]:
    """Per-token CPU microseconds: the total, the costliest functions, faststream_kit's own."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    scale = 1e6 / tokens_seen
    rows = [
        {
            "function": f"{_short(filename)}:{line}({function})",
            "calls_per_token": calls / tokens_seen,
            "own_us": own * scale,
            "cumulative_us": cumulative * scale,
        }
        for (filename, line, function), (
            _primitive,
            calls,
            own,
            cumulative,
            _callers,
        ) in raw.items()
    ]
    rows.sort(key=lambda row: row["own_us"], reverse=True)
    ours = [row for row in rows if row["function"].startswith("faststream_kit/")]
    return {
        "file": str(path),
        "total_us_per_token": sum(row["own_us"] for row in rows),
        "faststream_kit_own_us_per_token": sum(row["own_us"] for row in ours),
        "top": rows[:PROFILE_TOP],
        "faststream_kit": ours[:PROFILE_TOP],
    }


def _short(filename: str) -> str:
    """``.../site-packages/anyio/_core/_tasks.py`` -> ``anyio/_core/_tasks.py``."""
    parts = Path(filename).parts
    for marker in ("site-packages", "src", "lib"):
        if marker in parts:
            index = len(parts) - 1 - parts[::-1].index(marker)
            if index + 1 < len(parts) and not parts[index + 1].startswith("python"):
                return "/".join(parts[index + 1 :])
    return filename


def print_profile(report: dict[str, Any]) -> None:
    print("\ncProfile of the event loop thread's CPU time, µs per token (profiler overhead in):")
    for name, summary in report.items():
        print(
            f"  {name}: total {summary['total_us_per_token']:.1f},"
            f" faststream_kit own {summary['faststream_kit_own_us_per_token']:.1f}"
            f"  ({summary['file']})"
        )
        print(f"    {'own':>6} {'cum':>7} {'calls/token':>11}  function (costliest own time)")
        for row in summary["top"][:PROFILE_PRINT]:
            print(
                f"    {row['own_us']:>6.2f} {row['cumulative_us']:>7.1f}"
                f" {row['calls_per_token']:>11.2f}  {row['function']}"
            )


SYSCALL_KINDS = {
    "writes": ("write", "writev", "sendto", "sendmsg"),
    "loop turns": ("epoll_wait", "epoll_pwait", "epoll_pwait2"),
}
"""What ``--syscalls`` counts: the socket writes, and the event loop's polls (one per turn)."""


def syscall_routes(
    app: AppServer,
    upstream: AppServer,
    names: list[str],
    count: int,
    sizes_for: Callable[[int], dict[str, int]] = expected_bytes,
) -> dict[str, dict[str, float]]:
    """System calls per token of one request of each route, in the app process (all its
    threads), from ``strace -c``: counts, so unlike CPU time no noise from other work."""
    assert app.process is not None
    sizes = sizes_for(count)
    report: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="llm-strace-") as directory:
        for name in names:
            path = Path(directory) / f"{name}.txt"
            command = ["strace", "-c", "-f", "-o", str(path), "-p", str(app.process.pid)]
            tracer = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            assert tracer.stderr is not None
            tracer.stderr.readline()  # "strace: Process N attached": counting from here
            measure(app, upstream, name, count, sizes[name])
            tracer.send_signal(signal.SIGINT)
            tracer.communicate(timeout=30)
            calls = strace_counts(path.read_text())
            row = {
                kind: sum(calls.get(c, 0) for c in names_) / count
                for kind, names_ in SYSCALL_KINDS.items()
            }
            row["all"] = sum(calls.values()) / count
            report[name] = row
    return report


def strace_counts(summary: str) -> dict[str, int]:
    """``strace -c``'s table as {system call: calls}."""
    calls: dict[str, int] = {}
    for line in summary.splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall; not the header or the total
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    return calls


def print_syscalls(report: dict[str, dict[str, float]]) -> None:
    print("\nsystem calls per token in the app process (strace -c, one request each):")
    print(f"  {'route':<18}" + "".join(f"{kind:>12}" for kind in [*SYSCALL_KINDS, "all"]))
    for name, row in report.items():
        print(f"  {name:<18}" + "".join(f"{value:>12.2f}" for value in row.values()))


# --- LangChain: ChatOpenAI.astream(...) (bench/_langchain_apps.py) ----------------------------


LANGCHAIN_CHUNK_TIMEOUTS = {"none": None, "default": 120.0}
"""``--langchain-chunk-timeout``'s variants: ``ChatOpenAI(stream_chunk_timeout=...)``. ``none``
is what docs/llm.md advises with ``llm_stream``; ``default`` is ChatOpenAI's own (120 s), which
wraps each chunk's read in ``asyncio.wait_for`` (a task per chunk on Python 3.11)."""


sys.path.insert(0, str(ROOT))  # bench._langchain_apps, as the app server imports it


def langchain_implementations() -> dict[str, str]:
    """``llm_stream`` in every format, the loop people write for each, and the floor."""
    from bench._langchain_apps import HAND_LOOPS, route_name

    rows = {
        f"lc_ours_{route_name(fmt)}": f'llm_stream(chat.astream(...), format="{fmt}")'
        for fmt in FORMATS
    }
    rows["lc_hand_text"] = "StreamingResponse of chunk.content for chunk in chat.astream(...)"
    for fmt in HAND_LOOPS:
        rows[f"lc_hand_{route_name(fmt)}"] = (
            f"StreamingResponse of the {fmt} frame of each chunk.content of chat.astream(...)"
        )
    rows["lc_sdk_only"] = "iterate chat.astream(...), send only the count (any loop's floor)"
    return rows


def langchain_ratios() -> tuple[Ratio, ...]:
    """Every format against the loop that writes it by hand over the same ``chat.astream``, and
    against the hand-written text loop, the cheapest there is (issue 15, "Must show 4")."""
    from bench._langchain_apps import route_name

    own = tuple(
        Ratio(
            f"lc {fmt} / hand {fmt}",
            f"lc_ours_{route_name(fmt)}",
            f"lc_hand_{route_name(fmt)}",
            1.0,
        )
        for fmt in FORMATS
    )
    text = tuple(
        Ratio(f"lc {fmt} / hand text", f"lc_ours_{route_name(fmt)}", "lc_hand_text", 1.0)
        for fmt in FORMATS
        if fmt != "text"
    )
    return own + text


def langchain_expected_bytes(count: int) -> dict[str, int]:
    """Each LangChain route's exact body size: the same events through each format's encoder,
    and the hand loops' frames."""
    from bench._langchain_apps import HAND_LOOPS, route_name

    pieces = [token for token in tokens(count) if token]
    sizes = {
        "lc_hand_text": sum(len(token.encode()) for token in pieces),
        "lc_sdk_only": len(str(len(pieces))),
    }
    for fmt, (_media_type, start, frame, end) in HAND_LOOPS.items():
        size = sum(len(part.encode()) for part in (*start, *end))
        sizes[f"lc_hand_{route_name(fmt)}"] = size + sum(len(frame(t).encode()) for t in pieces)
    for fmt, spec in FORMATS.items():
        encoder = spec.make_encoder(None)
        size = len(encoder.preamble())
        size += sum(len(encoder.encode(TextDelta(token))) for token in pieces)
        size += len(encoder.encode(Finish("stop", usage(count))))
        sizes[f"lc_ours_{route_name(fmt)}"] = size
    return sizes


def run_langchain(
    args: argparse.Namespace, http: str, loop: str, env: dict[str, Any]
) -> dict[str, Any]:
    """The LangChain rows, once per ``--langchain-chunk-timeout`` variant: the OpenAI upstream,
    the app server with the LangChain routes and that ``stream_chunk_timeout``."""
    for package in ("langchain-core", "langchain-openai"):
        env["versions"][package] = importlib.metadata.version(package)
    variants = (
        list(LANGCHAIN_CHUNK_TIMEOUTS)
        if args.langchain_chunk_timeout == "both"
        else [args.langchain_chunk_timeout]
    )
    return {
        variant: run_langchain_variant(args, http, loop, LANGCHAIN_CHUNK_TIMEOUTS[variant])
        for variant in variants
    }


def run_langchain_variant(
    args: argparse.Namespace, http: str, loop: str, chunk_timeout: float | None
) -> dict[str, Any]:
    implementations = langchain_implementations()
    names = list(implementations)
    rounds = args.rounds or (2 if args.quick else 12)
    label = (
        f"stream_chunk_timeout={chunk_timeout:g}" if chunk_timeout else "stream_chunk_timeout=None"
    )
    with AppServer("bench._openai_upstream:app", http, loop) as upstream:
        upstream_url = f"http://127.0.0.1:{upstream.port}/v1"
        app_env = {
            "FSK_BENCH_UPSTREAM": upstream_url,
            "FSK_BENCH_LANGCHAIN": "1",
            "FSK_BENCH_LANGCHAIN_CHUNK_TIMEOUT": str(chunk_timeout or 0),
        }
        with AppServer("bench._llm_apps:app", http, loop, app_env) as app:
            print(f"running langchain ({label}) ", end="", flush=True)
            deadline = time.monotonic() + BUDGET_SECONDS[args.quick]
            sizes_for = langchain_expected_bytes
            runs = run_rounds(app, upstream, names, args.tokens, rounds, deadline, sizes_for)
            summary = summarize(runs, args.tokens, langchain_ratios(), "lc_sdk_only")
            profile = None
            if args.profile:
                directory = Path(tempfile.mkdtemp(prefix="llm-langchain-profile-"))
                profile = profile_routes(app, upstream, names, args.tokens, directory, sizes_for)
            syscalls = None
            if args.syscalls:
                syscalls = syscall_routes(app, upstream, names, args.tokens, sizes_for)
    print(f"\nLangChain (langchain-openai, ChatOpenAI({label}).astream):", end="")
    print_summary(summary)
    if profile is not None:
        print_profile(profile)
    if syscalls is not None:
        print_syscalls(syscalls)
    return {
        "stream_chunk_timeout": chunk_timeout,
        "implementations": implementations,
        "summary": summary,
        "profile": profile,
        "syscalls": syscalls,
        "runs": runs,
    }


# --- the Gemini row: google-genai's client.aio.models.generate_content_stream -----------------

GEMINI_FORMATS = ("text", "sse", "ndjson", "openai", "ui", "ag-ui")
GEMINI_IMPLEMENTATIONS = {
    **{
        f"ours_{fmt}": f'llm_stream(generate_content_stream(...), format="{fmt}")'
        for fmt in GEMINI_FORMATS
    },
    "hand_text": "StreamingResponse of chunk.text (text/plain)",
    "hand_sse": "StreamingResponse of f\"data: {json.dumps({'text': chunk.text})}\\n\\n\"",
    "sdk_only": "iterate the SDK stream, send only the count (any loop's floor)",
}
GEMINI_RATIOS = (
    *(Ratio(f"ours {fmt} / hand text", f"ours_{fmt}", "hand_text", 1.0) for fmt in GEMINI_FORMATS),
    Ratio("ours sse / hand sse", "ours_sse", "hand_sse", 1.0),
)
"""Every format against the cheapest hand-written loop (issue 15, "Must show 4": <= 1.0x)."""


def gemini_expected_bytes(count: int) -> dict[str, int]:
    """Each Gemini route's exact body size for ``count`` tokens, from our own encoders."""
    pieces = [token for token in tokens(count) if token]
    sizes = {"hand_text": sum(len(token.encode()) for token in pieces)}
    sizes["hand_sse"] = sum(
        len(f"data: {json.dumps({'text': token})}\n\n".encode()) for token in pieces
    )
    sizes["sdk_only"] = len(str(len(pieces)))
    for fmt in GEMINI_FORMATS:
        encoder = FORMATS[fmt].make_encoder(None)
        size = len(encoder.preamble())
        size += sum(len(encoder.encode(TextDelta(token))) for token in pieces)
        size += len(encoder.encode(Finish("stop", usage(count))))
        sizes[f"ours_{fmt}"] = size
    return sizes


def run_gemini(
    args: argparse.Namespace, http: str, loop: str, env: dict[str, Any]
) -> dict[str, Any]:
    """The Gemini row: its own upstream and app server, the same rounds, its own ratios."""
    env["versions"]["google-genai"] = importlib.metadata.version("google-genai")
    implementations = dict(GEMINI_IMPLEMENTATIONS)
    names = list(implementations)
    rounds = args.rounds or (2 if args.quick else 12)
    with AppServer("bench._gemini_upstream:app", http, loop) as upstream:
        upstream_url = f"http://127.0.0.1:{upstream.port}"
        app_env = {"FSK_BENCH_GEMINI_UPSTREAM": upstream_url}
        with AppServer("bench._gemini_apps:app", http, loop, app_env) as app:
            print("running gemini ", end="", flush=True)
            deadline = time.monotonic() + BUDGET_SECONDS[args.quick]
            runs = run_rounds(
                app, upstream, names, args.tokens, rounds, deadline, gemini_expected_bytes
            )
            summary = summarize(runs, args.tokens, GEMINI_RATIOS)
            profile = None
            if args.profile:
                directory = Path(tempfile.mkdtemp(prefix="llm-gemini-profile-"))
                profile = profile_routes(
                    app, upstream, names, args.tokens, directory, gemini_expected_bytes
                )
    print("\nGemini (google-genai, client.aio.models.generate_content_stream):", end="")
    print_summary(summary)
    if profile is not None:
        print_profile(profile)
    return {
        "implementations": implementations,
        "summary": summary,
        "profile": profile,
        "runs": runs,
    }


# --- the Anthropic rows: anthropic's AsyncAnthropic().messages.create(..., stream=True) --------


def anthropic_rows() -> tuple[dict[str, str], tuple[Ratio, ...], Callable[[int], dict[str, int]]]:
    """Every format beside the loop people write over the same ``AsyncAnthropic`` stream,
    yielding that format's frame for each token (``bench/_anthropic_apps.py``)."""
    from _anthropic_apps import FORMATS as FORMAT_NAMES
    from _anthropic_apps import HAND_FRAMES, route_name

    implementations = {
        **{
            f"ours_{route_name(fmt)}": f'llm_stream(create(...), format="{fmt}")'
            for fmt in FORMAT_NAMES
        },
        **{
            f"hand_{route_name(fmt)}": f"async for event in stream: yield the {fmt} frame of "
            "each text delta"
            for fmt in FORMAT_NAMES
        },
        "sdk_only": "iterate the SDK stream, send only the count (any loop's floor)",
    }
    ratios = tuple(
        Ratio(f"ours {fmt} / hand {fmt}", f"ours_{route_name(fmt)}", f"hand_{route_name(fmt)}", 1.0)
        for fmt in FORMAT_NAMES
    )

    def expected(count: int) -> dict[str, int]:
        pieces = [token for token in tokens(count) if token]
        sizes = {"sdk_only": len(str(len(pieces)))}
        for fmt in FORMAT_NAMES:
            encoder = FORMATS[fmt].make_encoder(None)
            size = len(encoder.preamble())
            size += sum(len(encoder.encode(TextDelta(token))) for token in pieces)
            name = route_name(fmt)
            sizes[f"ours_{name}"] = size + len(encoder.encode(Finish("stop", usage(count))))
            _media_type, frame, end = HAND_FRAMES[fmt]
            sizes[f"hand_{name}"] = sum(len(frame(t).encode()) for t in pieces) + len(end.encode())
        return sizes

    return implementations, ratios, expected


def run_anthropic(
    args: argparse.Namespace, http: str, loop: str, env: dict[str, Any]
) -> dict[str, Any]:
    """The Anthropic rows: their own upstream and app server, the same rounds, their ratios."""
    env["versions"]["anthropic"] = importlib.metadata.version("anthropic")
    implementations, ratios, expected = anthropic_rows()
    names = list(implementations)
    rounds = args.rounds or (2 if args.quick else 12)
    with AppServer("bench._anthropic_upstream:app", http, loop) as upstream:
        upstream_url = f"http://127.0.0.1:{upstream.port}"
        app_env = {"FSK_BENCH_ANTHROPIC_UPSTREAM": upstream_url}
        with AppServer("bench._anthropic_apps:app", http, loop, app_env) as app:
            print("running anthropic ", end="", flush=True)
            deadline = time.monotonic() + BUDGET_SECONDS[args.quick]
            runs = run_rounds(app, upstream, names, args.tokens, rounds, deadline, expected)
            summary = summarize(runs, args.tokens, ratios)
            profile = None
            if args.profile:
                directory = Path(tempfile.mkdtemp(prefix="llm-anthropic-profile-"))
                profile = profile_routes(app, upstream, names, args.tokens, directory, expected)
    print("\nAnthropic (anthropic, AsyncAnthropic().messages.create(..., stream=True)):", end="")
    print_summary(summary)
    if profile is not None:
        print_profile(profile)
    return {
        "implementations": implementations,
        "summary": summary,
        "profile": profile,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds (< 40 s)")
    parser.add_argument("--rounds", type=int, help="rounds (default 12, quick 2)")
    parser.add_argument("--tokens", type=int, default=TOKENS, help="tokens per request")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument(
        "--profile", action="store_true", help="then cProfile each route in the app process"
    )
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="then count each route's system calls per token (strace -c; LangChain rows)",
    )
    parser.add_argument(
        "--provider",
        choices=("all", "openai", "anthropic", "gemini", "langchain"),
        default="all",
        help="which provider's rows to run (default: all)",
    )
    parser.add_argument(
        "--langchain-chunk-timeout",
        choices=("none", "default", "both"),
        default="both",
        help="ChatOpenAI's stream_chunk_timeout in the LangChain rows: None, its default "
        "(120 s: asyncio.wait_for per chunk), or both, one after the other (default)",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also run llm_stream with idle_timeout=None, send_timeout=None",
    )
    args = parser.parse_args(argv)
    if args.syscalls and shutil.which("strace") is None:
        parser.error("--syscalls needs strace")
    rounds = args.rounds or (2 if args.quick else 12)
    if not 1 <= rounds <= 50:
        parser.error("--rounds must be between 1 and 50")
    if not 1 <= args.tokens <= 100_000:
        parser.error("--tokens must be between 1 and 100000")
    # Turn a polite kill into SystemExit, so the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    implementations = dict(IMPLEMENTATIONS)
    ratios: tuple[Ratio, ...] = RATIOS
    if args.diagnose:
        implementations.update(DIAGNOSTIC_IMPLEMENTATIONS)
        ratios += DIAGNOSTIC_RATIOS
    http, loop = server_flavour(args.http, args.loop)
    env = environment(http, loop, "python")
    env["versions"]["openai"] = importlib.metadata.version("openai")
    print(f"servers: {env['server']} (upstream and app, subprocesses); client: {env['client']}")
    print(
        f"cpus: {env['cpus']}, load average: {' '.join(f'{x:.2f}' for x in env['loadavg_before'])}"
    )
    started = time.monotonic()
    runs: dict[str, list[dict[str, float]]] = {}
    summary: dict[str, Any] | None = None
    profile = None
    if args.provider in ("all", "openai"):
        with AppServer("bench._openai_upstream:app", http, loop) as upstream:
            upstream_url = f"http://127.0.0.1:{upstream.port}/v1"
            with AppServer(
                "bench._llm_apps:app", http, loop, {"FSK_BENCH_UPSTREAM": upstream_url}
            ) as app:
                print("running ", end="", flush=True)
                deadline = started + BUDGET_SECONDS[args.quick]
                names = list(implementations)
                runs = run_rounds(app, upstream, names, args.tokens, rounds, deadline)
                summary = summarize(runs, args.tokens, ratios)
                if args.profile:
                    directory = Path(tempfile.mkdtemp(prefix="llm-profile-"))
                    profile = profile_routes(app, upstream, names, args.tokens, directory)
        print_summary(summary)
        if profile is not None:
            print_profile(profile)
    anthropic = None
    if args.provider in ("all", "anthropic"):
        anthropic = run_anthropic(args, http, loop, env)
    gemini = None
    if args.provider in ("all", "gemini"):
        gemini = run_gemini(args, http, loop, env)
    langchain = None
    if args.provider in ("all", "langchain"):
        langchain = run_langchain(args, http, loop, env)
    elapsed = time.monotonic() - started
    env["loadavg_after"] = os.getloadavg()
    print(f"\ntotal {elapsed:.1f} s; load average after: {env['loadavg_after'][0]:.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "quick": args.quick,
        "seconds": elapsed,
        "environment": env,
        "implementations": implementations,
        "summary": summary,
        "profile": profile,
        "runs": runs,
        "anthropic": anthropic,
        "gemini": gemini,
        "langchain": langchain,
    }
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

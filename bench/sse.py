"""Side-by-side benchmark of ``sse_response`` against FastAPI's and sse-starlette's SSE, in one run.

    python bench/sse.py            # full run, about three minutes
    python bench/sse.py --quick    # fewer rounds, under a minute

Two measurements, each server a uvicorn (``bench/_sse_apps.py``) in its own process on
127.0.0.1, the client (this file with ``--client``) in another:

1. **Throughput**: one request of 20,000 small JSON events per implementation per round, in
   an order that rotates from round to round, each implementation on its own server. The
   server's CPU time is read from ``/proc/<pid>/stat`` (utime + stime) just before and after
   the request; the wall time is the client's, from connect to the last byte. Medians, and
   each one's ratio to the anchor: a Starlette ``StreamingResponse`` of ready-made frames.
2. **Idle memory**: a fresh server per implementation and round; after a warm-up, its RSS
   (``VmRSS``) is read, then 1,000 connections are opened and each receives its first event,
   then RSS is read again (pings on at 15 s, so none fires meanwhile). The difference divided
   by the number of connections is the memory one idle SSE stream holds. Each is measured
   as a FastAPI path operation and, where it can be one, as a plain Starlette route.

Ratios are what to compare across machines and runs; the absolute numbers move with the
machine's load. Results go to ``bench/results/sse.json``; ``bench/SSE.md`` explains them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from core import free_port, process_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "sse.json"

SERVER_START_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 60.0
HOLD_TIMEOUT_SECONDS = 60.0
OPEN_FILES = 8192
"""File descriptors each process may hold: 1,000 sockets plus slack, on both sides."""
SETTLE_SECONDS = 1.0
"""Pause before reading RSS, so freed memory and in-flight work settle."""
KiB = 1024


@dataclass(frozen=True)
class Variant:
    name: str
    path: str
    label: str
    app: str = "app"  # the ASGI app in bench/_sse_apps.py: FastAPI, or plain Starlette


STREAM_VARIANTS = [
    Variant("ours_dict", "/stream/ours_dict", "sse_response, dict items (keepalive=15)"),
    Variant(
        "ours_event", "/stream/ours_event", "sse_response, ServerSentEvent items (keepalive=15)"
    ),
    Variant("fastapi", "/stream/fastapi", "FastAPI native SSE"),
    Variant("ours_class", "/stream/ours_class", "EventSourceResponse, yield route"),
    Variant("sse_starlette", "/stream/sse_starlette", "sse-starlette EventSourceResponse"),
    Variant("handwritten", "/stream/handwritten", "StreamingResponse, f'data: {json}' per item"),
    Variant("preformatted", "/stream/preformatted", "StreamingResponse, ready-made frames"),
]
ANCHOR = "preformatted"
CPU_TARGETS = {"ours_dict": 1.2, "ours_event": 1.2}
"""Upper bounds on server CPU time relative to the anchor."""
FASTAPI_CPU_TARGETS = {"ours_class": 0.3}
"""Upper bounds on server CPU time relative to FastAPI's native SSE: the same path operation,
FastAPI's response class against ours (issue 14)."""

IDLE_VARIANTS = [
    Variant("ours", "/idle/ours", "sse_response, FastAPI route"),
    Variant("ours_class", "/idle/ours_class", "EventSourceResponse, yield route"),
    Variant("fastapi", "/idle/fastapi", "FastAPI native SSE"),
    Variant("sse_starlette", "/idle/sse_starlette", "sse-starlette, FastAPI route"),
    Variant("starlette", "/idle/starlette", "floor: StreamingResponse, FastAPI route"),
    # The same routes in a plain Starlette app, which sse-starlette and sse_response also
    # serve: FastAPI's path-operation wrapper holds ~5 KiB per open request of its own.
    Variant("ours_plain", "/idle/ours", "sse_response, Starlette route", "starlette_app"),
    Variant(
        "sse_starlette_plain", "/idle/sse_starlette", "sse-starlette, Starlette route",
        "starlette_app",
    ),
    Variant(
        "starlette_plain", "/idle/starlette", "floor: StreamingResponse, Starlette route",
        "starlette_app",
    ),
]  # fmt: skip
KIB_PER_CONNECTION_TARGETS = {"ours": 24.0, "ours_plain": 24.0}


# --- the server ----------------------------------------------------------------------------


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class Server:
    """``uvicorn bench._sse_apps:app`` in a subprocess, on a free loopback port."""

    def __init__(self, app: str = "app") -> None:
        self.app = app
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        self.wait_ready()
        return self

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            f"bench._sse_apps:{self.app}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--lifespan",
            "off",
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, preexec_fn=raise_open_files_limit, stdin=subprocess.DEVNULL
        )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if http_get(self.port, "/health", 2.0)["status"] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {SERVER_START_SECONDS} s")

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc/<pid>/status")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the client (runs in its own process: ``python bench/sse.py --client``) ---------------


def request_bytes(port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def dechunk(body: bytes) -> bytes:
    """The payload of a ``Transfer-Encoding: chunked`` body (no trailers expected)."""
    out, position = bytearray(), 0
    while True:
        line_end = body.index(b"\r\n", position)
        size = int(body[position:line_end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        start = line_end + 2
        out += body[start : start + size]
        position = start + size + 2


def http_get(port: int, path: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> dict[str, Any]:
    """One ``GET``, read to the end; wall seconds from connect to the last byte."""
    buffer = bytearray()
    chunk = bytearray(1 << 20)
    view = memoryview(chunk)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_bytes(port, path))
        while received := sock.recv_into(view):
            buffer += view[:received]
    seconds = time.perf_counter() - started
    head, _, body = bytes(buffer).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    # A frame ends with a blank line; sse-starlette writes CRLF line ends.
    events = body.replace(b"\r\n", b"\n").count(b"\n\n")
    return {"status": status, "body_bytes": len(body), "events": events, "seconds": seconds}


def hold_connections(port: int, path: str, count: int) -> list[socket.socket]:
    """Open ``count`` streams and wait until each has received its first event."""
    request = request_bytes(port, path)
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytearray] = {}
    sockets: list[socket.socket] = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=HOLD_TIMEOUT_SECONDS)
        sock.sendall(request)
        sock.setblocking(False)
        sockets.append(sock)
        received[sock] = bytearray()
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + HOLD_TIMEOUT_SECONDS
    waiting = count
    while waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{waiting} of {count} connections got no first event")
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed an idle stream")
            buffer = received[sock]
            buffer += data
            head, separator, body = bytes(buffer).partition(b"\r\n\r\n")
            if separator and b"\n\n" in body.replace(b"\r\n", b"\n"):
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(f"unexpected response: {head[:40]!r}")
                selector.unregister(sock)
                waiting -= 1
    selector.close()
    return sockets


def run_client(commands: IO[str], replies: IO[str]) -> None:
    """Serve the driver's commands, one JSON reply line each.

    ``get PORT PATH``; ``hold PORT PATH COUNT`` (replies when all got their first event);
    ``release`` (closes the held connections); ``quit``.
    """
    raise_open_files_limit()
    held: list[socket.socket] = []
    for line in commands:
        words = line.split()
        if not words or words[0] == "quit":
            break
        reply: dict[str, Any]
        try:
            if words[0] == "get":
                reply = http_get(int(words[1]), words[2])
            elif words[0] == "hold":
                started = time.perf_counter()
                held = hold_connections(int(words[1]), words[2], int(words[3]))
                reply = {"held": len(held), "seconds": time.perf_counter() - started}
            elif words[0] == "release":
                for sock in held:
                    sock.close()
                reply = {"released": len(held)}
                held = []
            else:
                reply = {"error": f"unknown command {words[0]!r}"}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    for sock in held:
        sock.close()


class Client:
    """The client process, driven line by line over its stdin/stdout."""

    def __enter__(self) -> Client:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()

    def ask(self, *words: object) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the client process exited")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"client: {reply['error']}")
        return reply


# --- the two measurements ------------------------------------------------------------------


def rotated(items: list[Variant], round_index: int) -> list[Variant]:
    shift = round_index % len(items)
    return items[shift:] + items[:shift]


def measure_throughput(client: Client, events: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {v.name: [] for v in STREAM_VARIANTS}
    servers = {v.name: Server() for v in STREAM_VARIANTS}
    try:
        for server in servers.values():  # start them all, then wait: imports overlap
            server.start()
        for server in servers.values():
            server.wait_ready()
        for variant in STREAM_VARIANTS:  # warm-up: imports, caches, the anchor's frames
            client.ask("get", servers[variant.name].port, f"{variant.path}?n={events}")
        for round_index in range(rounds):
            for variant in rotated(STREAM_VARIANTS, round_index):
                server = servers[variant.name]
                before = server.cpu_seconds()
                reply = client.ask("get", server.port, f"{variant.path}?n={events}")
                cpu = server.cpu_seconds() - before
                if reply["status"] != 200 or reply["events"] != events:
                    raise RuntimeError(f"{variant.name}: {reply} (expected {events} events)")
                samples[variant.name].append(
                    {"cpu_seconds": cpu, "wall_seconds": reply["seconds"], **reply}
                )
            print(f"  throughput round {round_index + 1}/{rounds} done", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    summary: dict[str, Any] = {}
    for variant in STREAM_VARIANTS:
        runs = samples[variant.name]
        summary[variant.name] = {
            "label": variant.label,
            "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in runs),
            "wall_seconds_median": statistics.median(r["wall_seconds"] for r in runs),
            "body_bytes": runs[0]["body_bytes"],
            "samples": runs,
        }
    anchor = summary[ANCHOR]
    for name, row in summary.items():
        row["cpu_ratio_to_anchor"] = row["cpu_seconds_median"] / anchor["cpu_seconds_median"]
        row["wall_ratio_to_anchor"] = row["wall_seconds_median"] / anchor["wall_seconds_median"]
        # Per-round ratios (same round, adjacent in time) are steadier on a noisy machine.
        row["cpu_ratio_per_round_median"] = statistics.median(
            mine["cpu_seconds"] / base["cpu_seconds"]
            for mine, base in zip(row["samples"], anchor["samples"], strict=True)
        )
        target = CPU_TARGETS.get(name)
        if target is not None:
            row["cpu_target"] = target
            row["cpu_target_met"] = row["cpu_ratio_to_anchor"] <= target
    fastapi = summary["fastapi"]
    for name, target in FASTAPI_CPU_TARGETS.items():
        row = summary[name]
        row["cpu_ratio_to_fastapi"] = row["cpu_seconds_median"] / fastapi["cpu_seconds_median"]
        row["cpu_ratio_to_fastapi_per_round_median"] = statistics.median(
            mine["cpu_seconds"] / theirs["cpu_seconds"]
            for mine, theirs in zip(row["samples"], fastapi["samples"], strict=True)
        )
        row["fastapi_cpu_target"] = target
        row["fastapi_cpu_target_met"] = row["cpu_ratio_to_fastapi_per_round_median"] <= target
    return summary


def measure_idle_memory(
    client: Client, connections: int, rounds: int, settle_seconds: float
) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {v.name: [] for v in IDLE_VARIANTS}
    for round_index in range(rounds):
        for variant in rotated(IDLE_VARIANTS, round_index):
            with Server(variant.app) as server:
                for _ in range(2):  # warm-up: the route, the response class, the parser
                    client.ask("hold", server.port, variant.path, 20)
                    client.ask("release")
                time.sleep(settle_seconds)
                before = server.rss_kib()
                opened = client.ask("hold", server.port, variant.path, connections)
                time.sleep(settle_seconds)
                held = server.rss_kib()
                client.ask("release")
                time.sleep(settle_seconds)
                after = server.rss_kib()
            samples[variant.name].append(
                {
                    "rss_before_kib": before,
                    "rss_held_kib": held,
                    "rss_after_release_kib": after,
                    "kib_per_connection": (held - before) / connections,
                    "open_seconds": opened["seconds"],
                }
            )
        print(f"  idle-memory round {round_index + 1}/{rounds} done", flush=True)
    summary: dict[str, Any] = {}
    for variant in IDLE_VARIANTS:
        runs = samples[variant.name]
        row: dict[str, Any] = {
            "label": variant.label,
            "kib_per_connection_median": statistics.median(r["kib_per_connection"] for r in runs),
            "rss_before_kib_median": statistics.median(r["rss_before_kib"] for r in runs),
            "samples": runs,
        }
        target = KIB_PER_CONNECTION_TARGETS.get(variant.name)
        if target is not None:
            row["target_kib"] = target
            row["target_met"] = row["kib_per_connection_median"] <= target
        summary[variant.name] = row
    base = summary["ours"]["kib_per_connection_median"]
    for row in summary.values():
        row["ratio_to_ours"] = row["kib_per_connection_median"] / base if base > 0 else None
    return summary


# --- report --------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for name in ("faststream-kit", "fastapi", "starlette", "sse-starlette", "uvicorn", "anyio"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    for name in ("uvloop", "httptools"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def print_throughput(summary: dict[str, Any], events: int) -> None:
    print(f"\nThroughput: {events:,} JSON events per request (server CPU from /proc, medians)")
    header = (
        f"{'implementation':<48} {'CPU ms':>8} {'µs/event':>9} {'wall ms':>8} "
        f"{'CPU ×':>6} {'(per rd)':>8} {'wall ×':>7}  target"
    )
    print(header)
    print("-" * len(header))
    for row in summary.values():
        verdict = ""
        if "cpu_target" in row:
            verdict = f"≤ {row['cpu_target']}× {'ok' if row['cpu_target_met'] else 'MISSED'}"
        print(
            f"{row['label']:<48} {row['cpu_seconds_median'] * 1e3:>8.0f} "
            f"{row['cpu_seconds_median'] / events * 1e6:>9.1f} "
            f"{row['wall_seconds_median'] * 1e3:>8.0f} {row['cpu_ratio_to_anchor']:>6.2f} "
            f"{row['cpu_ratio_per_round_median']:>8.2f} {row['wall_ratio_to_anchor']:>7.2f}  "
            f"{verdict}"
        )
    print(f"(× = ratio to '{summary[ANCHOR]['label']}')")
    for row in summary.values():
        if "fastapi_cpu_target" in row:
            met = "ok" if row["fastapi_cpu_target_met"] else "MISSED"
            print(
                f"{row['label']} / {summary['fastapi']['label']}: CPU "
                f"{row['cpu_ratio_to_fastapi']:.2f}× (per round "
                f"{row['cpu_ratio_to_fastapi_per_round_median']:.2f}×), target ≤ "
                f"{row['fastapi_cpu_target']}× {met}"
            )


def print_memory(summary: dict[str, Any], connections: int) -> None:
    print(f"\nIdle memory: {connections:,} open SSE streams, pings on (server RSS, medians)")
    header = (
        f"{'implementation':<42} {'RSS before MiB':>14} {'KiB/conn':>9} {'× ours':>7}  "
        f"{'per round':<22} target"
    )
    print(header)
    print("-" * len(header))
    for row in summary.values():
        verdict = ""
        if "target_kib" in row:
            verdict = f"≤ {row['target_kib']:.0f} KiB {'ok' if row['target_met'] else 'MISSED'}"
        rounds = " ".join(f"{r['kib_per_connection']:.1f}" for r in row["samples"])
        ratio = row["ratio_to_ours"]
        print(
            f"{row['label']:<42} {row['rss_before_kib_median'] / KiB:>14.1f} "
            f"{row['kib_per_connection_median']:>9.1f} "
            f"{ratio if ratio is not None else float('nan'):>7.2f}  {rounds:<22} {verdict}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, under a minute")
    parser.add_argument("--events", type=int, default=20_000, help="events per request")
    parser.add_argument("--connections", type=int, default=1_000, help="idle streams to hold")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 9, quick 3)")
    parser.add_argument("--memory-rounds", type=int, help="idle-memory rounds (default 3, quick 1)")
    parser.add_argument("--skip-memory", action="store_true", help="throughput only")
    parser.add_argument("--skip-throughput", action="store_true", help="idle memory only")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(sys.stdin, sys.stdout)
        return 0
    raise_open_files_limit()
    rounds = args.rounds or (3 if args.quick else 9)
    memory_rounds = args.memory_rounds or (1 if args.quick else 3)
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "sse",
        "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "versions": versions(),
        "params": {
            "events": args.events,
            "rounds": rounds,
            "connections": args.connections,
            "memory_rounds": memory_rounds,
            "anchor": ANCHOR,
        },
    }
    print(f"bench/sse.py: {rounds} throughput rounds, {memory_rounds} idle-memory rounds")
    with Client() as client:
        if not args.skip_throughput:
            result["throughput"] = measure_throughput(client, args.events, rounds)
        if not args.skip_memory:
            settle = SETTLE_SECONDS / 2 if args.quick else SETTLE_SECONDS
            result["idle_memory"] = measure_idle_memory(
                client, args.connections, memory_rounds, settle
            )
    result["seconds"] = time.monotonic() - started
    result["loadavg_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    if "throughput" in result:
        print_throughput(result["throughput"], args.events)
    if "idle_memory" in result:
        print_memory(result["idle_memory"], args.connections)
    print(
        f"\n{result['seconds']:.0f} s; load average {result['loadavg_at_start'][0]:.2f} → "
        f"{result['loadavg_at_end'][0]:.2f}; results in {RESULTS.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

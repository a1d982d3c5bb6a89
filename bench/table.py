"""``table_stream`` rows/s side by side with the hand-written ``StreamingResponse`` over
``csv.writer`` that every "export a query as CSV" answer shows, in one run.

    python bench/table.py            # 50,000 rows, five rounds
    python bench/table.py --quick    # 20,000 rows, three rounds

The server (uvicorn serving this file's ``app``) runs in its own process; the client reads
each body to its end over loopback and counts the rows. Each round requests every variant
once, in an order that rotates from round to round, so drift on a shared machine hits all
of them alike. Ratios of medians are what to compare across machines; the target is
``table_stream`` at >= 1.0x the hand-written response's rows/s, for sync and async rows.
A batched hand-written export (512 rows per write, no disconnect or error handling) is
shown for scale, without a target.

The hand-written responses are the blog snippet, as written: one ``csv.writer`` row into an
``io.StringIO``, yielded, buffer reset. Starlette runs a sync generator one ``next()`` per
thread hop, and sends every yielded row as its own ASGI message.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from faststream_kit import table_stream

COLUMNS = ["id", "name", "amount", "note"]


def make_rows(count: int) -> list[tuple[int, str, float, str]]:
    return [(i, f"name {i}", i * 0.5, 'a note, with "quotes"') for i in range(count)]


ROWS = make_rows(int(os.environ.get("FSK_BENCH_ROWS", "0")))


async def async_rows() -> AsyncIterator[tuple[int, str, float, str]]:
    for row in ROWS:
        yield row


def handwritten_sync(request: Request) -> Response:
    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        for row in ROWS:
            writer.writerow(row)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate(0)

    return StreamingResponse(generate(), media_type="text/csv")


def handwritten_async(request: Request) -> Response:
    async def generate() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        async for row in async_rows():
            writer.writerow(row)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate(0)

    return StreamingResponse(generate(), media_type="text/csv")


def handwritten_batched(request: Request) -> Response:
    """Not the snippet: what a careful hand-written export does (512 rows per write), for
    scale. No target; it has no disconnect handling, error contract or thread for sync rows
    beyond Starlette's."""

    async def generate() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        for start in range(0, len(ROWS), 512):
            writer.writerows(ROWS[start : start + 512])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate(0)

    return StreamingResponse(generate(), media_type="text/csv")


def table_sync(request: Request) -> Response:
    return table_stream(ROWS, columns=COLUMNS)


def table_async(request: Request) -> Response:
    return table_stream(async_rows(), columns=COLUMNS)


VARIANTS = {
    "handwritten-sync": handwritten_sync,
    "table_stream-sync": table_sync,
    "handwritten-async": handwritten_async,
    "table_stream-async": table_async,
    "handwritten-batched": handwritten_batched,
}
PAIRS = [("table_stream-sync", "handwritten-sync"), ("table_stream-async", "handwritten-async")]
FOR_SCALE = [
    ("table_stream-sync", "handwritten-batched"),
    ("table_stream-async", "handwritten-batched"),
]

app = Starlette(routes=[Route(f"/{name}", endpoint) for name, endpoint in VARIANTS.items()])


def fetch(port: int, path: str) -> tuple[float, int, int]:
    """Seconds to read the whole body, its size and its line count."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200, response.status
    size = lines = 0
    while chunk := response.read1(1 << 16):
        size += len(chunk)
        lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed, size, lines


def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the bench server exited")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("HEAD", "/")
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the bench server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    rows = args.rows or (20_000 if args.quick else 50_000)
    rounds = args.rounds or (3 if args.quick else 5)

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    here = Path(__file__).resolve().parent
    env = {**os.environ, "FSK_BENCH_ROWS": str(rows)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "table:app", "--app-dir", str(here),
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env,
    )  # fmt: skip
    try:
        wait_for(port, server)
        names = list(VARIANTS)
        sizes = {}
        for name in names:  # warm up, and check that every variant sends the same CSV
            _, size, lines = fetch(port, f"/{name}")
            assert lines == rows + 1, (name, lines)
            sizes[name] = size
        assert len(set(sizes.values())) == 1, sizes
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                elapsed, _, _ = fetch(port, f"/{name}")
                seconds[name].append(elapsed)
    finally:
        server.terminate()
        server.wait()

    load = os.getloadavg()[0]
    print(f"{rows:,} rows ({sizes[names[0]] / 2**20:.1f} MiB of CSV), {rounds} rounds, "
          f"load average {load:.1f}")  # fmt: skip
    print(f"{'variant':<22}{'median s':>10}{'rows/s':>14}")
    rates = {}
    for name in names:
        median = statistics.median(seconds[name])
        rates[name] = rows / median
        print(f"{name:<22}{median:>10.3f}{rates[name]:>14,.0f}")
    print()
    for ours, theirs in PAIRS:
        ratio = rates[ours] / rates[theirs]
        verdict = "ok" if ratio >= 1.0 else "BELOW TARGET"
        print(f"{ours} / {theirs}: {ratio:.2f}x rows/s (target >= 1.0x) {verdict}")
    for ours, theirs in FOR_SCALE:
        print(f"{ours} / {theirs}: {rates[ours] / rates[theirs]:.2f}x rows/s (no target)")


if __name__ == "__main__":
    main()

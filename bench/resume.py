"""Resumable streams on Redis against a direct ``sse_response``: events/s and added latency.

    python bench/resume.py            # full run: about 90 s on 2 busy cores
    python bench/resume.py --quick    # fewer events and rounds: about 20 s
    python bench/resume.py --json out.json

The bench starts its own ``redis-server`` (unix socket, no persistence) and one uvicorn server
in a subprocess (``python bench/resume.py --serve``) with two routes over the same producer:

- ``/direct``: ``sse_response(produce())``: events go from the generator to the socket;
- ``/resumable/{key}``: ``ResumableStreams.sse_response(key, producer=produce())``: the
  producer runs in a background task whose events the worker's shared writer appends in
  batches, and the response follows the Redis Stream through the worker's shared blocking
  ``XREAD`` (what every reader on every worker does);
- ``/resumable/{key}`` again once the stream has ended: a replay (a client resuming late).

Each event's data is ``time.monotonic_ns()`` taken when the producer yields it (one clock for
every process on Linux), so the reader (this process, httpx) measures produce → receive
latency. Throughput runs an unpaced producer of ``--events`` small events; latency runs a
paced one (50 events/s, an LLM's pace) so that queueing does not dominate. Rounds alternate
the two paths so a burst of load from elsewhere lands on both. The targets (issue 16): live
>= 100,000 events/s, replay >= 250,000 events/s, added latency median <= 1 ms, p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from core import free_port

PATHS = ("direct", "resumable")


# --------------------------------------------------------------------------- server


def create_app(redis_socket: str) -> Any:
    import anyio
    import redis.asyncio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from faststream_kit import StreamResponse, sse_response
    from faststream_kit.resume import ResumableStreams

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = redis.asyncio.Redis(unix_socket_path=redis_socket)
        async with ResumableStreams(store, ttl_seconds=600) as streams:
            app.state.streams = streams
            yield
        await store.aclose()

    async def produce(count: int, interval: float) -> AsyncIterator[str]:
        for _ in range(count):
            if interval:
                await anyio.sleep(interval)
            yield str(time.monotonic_ns())

    def options(request: Request) -> tuple[int, float]:
        return int(request.query_params["n"]), float(request.query_params.get("interval", 0))

    async def direct(request: Request) -> StreamResponse:
        return sse_response(produce(*options(request)))

    async def resumable(request: Request) -> StreamResponse:
        streams: ResumableStreams = request.app.state.streams
        key = request.path_params["key"]
        return streams.sse_response(key, producer=produce(*options(request)))

    routes = [Route("/direct", direct), Route("/resumable/{key}", resumable)]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(port: int, redis_socket: str) -> None:
    import uvicorn

    uvicorn.run(
        create_app(redis_socket),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


# --------------------------------------------------------------------------- peers


def ping(socket_path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(0.5)
            sock.connect(socket_path)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="fsk-bench-redis-"))
    socket_path = str(directory / "redis.sock")
    command = [
        binary, "--port", "0", "--unixsocket", socket_path, "--save", "",
        "--appendonly", "no", "--dir", str(directory),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not ping(socket_path):
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.01)
        yield socket_path
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def app_server(redis_socket: str, script: str = __file__) -> Iterator[tuple[str, int]]:
    """``script --serve PORT REDIS_SOCKET`` in a subprocess: its base URL and pid."""
    port = free_port()
    command = [sys.executable, script, "--serve", str(port), redis_socket]
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the bench server did not start")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# --------------------------------------------------------------------------- client


def read(client: httpx.Client, url: str) -> tuple[float, list[int]]:
    """Seconds from request to the end of the body, and each event's latency in ns."""
    latencies: list[int] = []
    pending = b""
    started = time.perf_counter()
    with client.stream("GET", url) as response:
        if response.status_code != 200:
            sys.exit(f"{url}: HTTP {response.status_code} {response.read()!r}")
        for chunk in response.iter_raw():
            received = time.monotonic_ns()
            blocks = (pending + chunk).split(b"\n\n")
            pending = blocks.pop()
            for block in blocks:
                for line in block.split(b"\n"):
                    if line.startswith(b"data: "):
                        latencies.append(received - int(line[6:]))
                    elif line.startswith(b"event: error"):
                        sys.exit(f"{url}: the stream ended with an error: {block!r}")
    return time.perf_counter() - started, latencies


def url_for(base: str, path: str, count: int, interval: float = 0.0) -> str:
    query = f"n={count}&interval={interval}"
    if path == "direct":
        return f"{base}/direct?{query}"
    return f"{base}/resumable/{uuid.uuid4().hex}?{query}"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_throughput(base: str, events: int, rounds: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"direct": [], "resumable": [], "replay": []}
    with httpx.Client(timeout=120) as client:
        for path in PATHS:  # warm-up, not counted
            read(client, url_for(base, path, events // 10))
        for index in range(rounds):
            for path in PATHS if index % 2 == 0 else PATHS[::-1]:
                url = url_for(base, path, events)
                seconds, latencies = read(client, url)
                if len(latencies) != events:
                    sys.exit(f"{url}: {len(latencies)} events, expected {events}")
                rates[path].append(events / seconds)
                if path == "resumable":
                    seconds, _ = read(client, url)  # the whole stream again, from Redis
                    rates["replay"].append(events / seconds)
    return {path: statistics.median(values) for path, values in rates.items()}


def measure_latency(base: str, events: int, rounds: int, interval: float) -> dict[str, Any]:
    """Both paths at once, each on its own connection: the same moments of machine load."""
    samples: dict[str, list[float]] = {"direct": [], "resumable": []}

    def follow(path: str) -> None:
        with httpx.Client(timeout=120) as client:
            _, latencies = read(client, url_for(base, path, events, interval))
        samples[path].extend(ns / 1e6 for ns in latencies[10:])  # skip the start-up

    for _ in range(rounds):
        threads = [threading.Thread(target=follow, args=(path,)) for path in PATHS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return {
        path: {"median_ms": statistics.median(values), "p99_ms": percentile(values, 0.99)}
        for path, values in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--events", type=int, help="events per throughput run (100,000)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--serve", nargs=2, metavar=("PORT", "REDIS_SOCKET"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return 0

    events = args.events or (20_000 if args.quick else 100_000)
    rounds = 2 if args.quick else 3
    paced_events, interval = (100 if args.quick else 250), 0.02
    load_before = os.getloadavg()
    with redis_server() as redis_socket, app_server(redis_socket) as (base, _):
        throughput = measure_throughput(base, events, rounds)
        latency = measure_latency(base, paced_events, 1 if args.quick else 3, interval)
    results = {
        "events": events,
        "rounds": rounds,
        "paced_events": paced_events,
        "interval_seconds": interval,
        "throughput_events_per_second": throughput,
        "latency": latency,
        "resumable_over_direct_throughput": throughput["resumable"] / throughput["direct"],
        "extra_latency_ms": {
            stat: latency["resumable"][stat] - latency["direct"][stat]
            for stat in ("median_ms", "p99_ms")
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "python": sys.version.split()[0],
    }

    print(f"throughput, {events:,} small events per request, median of {rounds} rounds")
    for path in ("direct", "resumable", "replay"):
        rate = throughput[path]
        print(f"  {path:<10} {rate:>10,.0f} events/s   {rate / throughput['direct']:>5.2f}x direct")
    print(f"latency produce -> receive, {paced_events:,} events, one every {interval * 1000:g} ms")
    for path in PATHS:
        stats = latency[path]
        print(f"  {path:<10} median {stats['median_ms']:6.2f} ms   p99 {stats['p99_ms']:6.2f} ms")
    extra = results["extra_latency_ms"]
    print(f"  extra      median {extra['median_ms']:6.2f} ms   p99 {extra['p99_ms']:6.2f} ms")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

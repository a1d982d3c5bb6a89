"""A thousand resumable streams on one worker: delivery, added latency, worker CPU.

    python bench/resume_load.py                      # 1,000 streams x 20 events/s x 30 s
    python bench/resume_load.py --streams 200 --seconds 10   # a quick look
    python bench/resume_load.py --direct             # the baseline: sse_response, no Redis
    python bench/resume_load.py --floor              # the baseline plus only the Redis writes

One ``redis-server`` (unix socket, no persistence) and one uvicorn worker (a subprocess, the
app below, ``redis.asyncio.Redis(unix_socket_path=...)`` built exactly as ``docs/resume.md``
shows, so redis-py's default pool of 100 connections). Each stream's producer yields one
event every ``1 / --rate`` seconds whose data is its sequence number and
``time.monotonic_ns()`` at the yield (one clock for every process on Linux). The readers are
another process (this one): a small asyncio HTTP/1.1 client, one connection per stream, that
checks every stream gets every sequence number exactly once and in order, with strictly
increasing ids, and records produce -> receive latency. The worker's CPU time comes from
``/proc/<pid>/stat``.

``--floor`` is what storing the events costs at the least: the direct ``sse_response`` (events
go to the reader at once, not after they are stored), plus one ``XADD`` per event to the
stream's own key, sent by one shared task in pipelined round trips (redis-py, nothing else:
no ids of our own, no end marker, no heartbeat, no TTL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from resume import app_server, percentile, redis_server


def create_app(redis_socket: str) -> Any:
    import asyncio

    import anyio
    import redis.asyncio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from faststream_kit import StreamResponse, sse_response
    from faststream_kit.resume import ResumableStreams

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis.asyncio.Redis(unix_socket_path=redis_socket)  # as docs/resume.md
        async with (
            ResumableStreams(client, ttl_seconds=600) as streams,
            anyio.create_task_group() as tg,
        ):
            app.state.streams = streams
            app.state.floor = floor = FloorWriter(client)
            tg.start_soon(floor.run)
            yield
            tg.cancel_scope.cancel()
        await client.aclose()

    class FloorWriter:
        """--floor: every event queued here is XADDed, pipelined, one round trip at a time."""

        def __init__(self, client: Any) -> None:
            self.client, self.queue, self.wakeup = client, [], asyncio.Event()

        def add(self, key: bytes, payload: bytes) -> None:
            self.queue.append((key, payload))
            self.wakeup.set()

        async def run(self) -> None:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                queued, self.queue = self.queue, []
                async with self.client.pipeline(transaction=False) as pipe:
                    for key, payload in queued:
                        pipe.xadd(key, {b"d": payload})
                    await pipe.execute()

    async def produce(count: int, interval: float) -> AsyncIterator[str]:
        for n in range(count):
            await anyio.sleep(interval)
            yield f"{n} {time.monotonic_ns()}"

    async def stored(key: bytes, events: AsyncIterator[str], app: Any) -> AsyncIterator[str]:
        add = app.state.floor.add
        async for event in events:
            add(key, event.encode())
            yield event

    async def stream(request: Request) -> StreamResponse:
        streams: ResumableStreams = request.app.state.streams
        count = int(request.query_params["n"])
        interval = float(request.query_params["interval"])
        key = request.path_params["key"]
        if key.startswith("direct-"):  # the baseline: the same producer, no Redis
            return sse_response(produce(count, interval))
        if key.startswith("floor-"):  # the baseline plus one pipelined XADD per event
            return sse_response(stored(key.encode(), produce(count, interval), request.app))
        return streams.sse_response(key, producer=produce(count, interval))

    return Starlette(routes=[Route("/stream/{key}", stream)], lifespan=lifespan)


def serve(port: int, redis_socket: str) -> None:
    import uvicorn

    uvicorn.run(
        create_app(redis_socket),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


class StreamReader(asyncio.Protocol):
    """One stream's HTTP/1.1 response: chunked body, SSE frames, checks and latencies."""

    def __init__(self, request: bytes, latencies: list[int], done: asyncio.Future[str]) -> None:
        self.request, self.latencies, self.done = request, latencies, done
        self.buffer = b""
        self.headers_done = False
        self.frames = b""
        self.next_sequence = 0
        self.last_id = (-1, -1)
        self.problem: str | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        received = time.monotonic_ns()
        self.buffer += data
        if not self.headers_done:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self.finish(f"status {head.splitlines()[0]!r}")
                return
            self.headers_done, self.buffer = True, rest
        # Chunked transfer coding (RFC 9112 section 7.1): size in hex, CRLF, data, CRLF.
        while True:
            size_end = self.buffer.find(b"\r\n")
            if size_end < 0:
                return
            size = int(self.buffer[:size_end], 16)
            if size == 0:
                self.finish(None)
                return
            if len(self.buffer) < size_end + 2 + size + 2:
                return
            self.frames += self.buffer[size_end + 2 : size_end + 2 + size]
            self.buffer = self.buffer[size_end + 2 + size + 2 :]
            self.take_frames(received)

    def take_frames(self, received: int) -> None:
        *complete, self.frames = self.frames.split(b"\n\n")
        for frame in complete:
            event_id = data = None
            if b"event: " in frame:  # an error or shutdown event: the stream failed
                self.problem = self.problem or f"event {frame!r}"
                continue
            for line in frame.split(b"\n"):
                if line.startswith(b"id: "):
                    event_id = line[4:]
                elif line.startswith(b"data: "):
                    data = line[6:]
            if data is None:
                continue  # a keepalive comment
            sequence, produced = data.split(b" ")
            if int(sequence) != self.next_sequence:
                self.problem = self.problem or f"got {sequence!r}, expected {self.next_sequence}"
            self.next_sequence = int(sequence) + 1
            if event_id is not None:  # the direct baseline sends none
                ms, _, seq = event_id.partition(b"-")
                parsed = (int(ms), int(seq))
                if parsed <= self.last_id:
                    self.problem = self.problem or f"id {event_id!r} after {self.last_id}"
                self.last_id = parsed
            self.latencies.append(received - int(produced))

    def finish(self, problem: str | None) -> None:
        if not self.done.done():
            self.done.set_result(problem or self.problem or "")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(f"connection lost: {exc}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def read_all(
    port: int, streams: int, count: int, interval: float, ramp_seconds: float, path: str
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    latencies: list[int] = []
    results: list[asyncio.Future[str]] = []
    sequences: list[StreamReader] = []
    connecting: list[asyncio.Task[None]] = []

    async def connect(request: bytes, done: asyncio.Future[str], delay: float) -> None:
        await asyncio.sleep(delay)  # connections arrive over the ramp, not in one burst
        _, protocol = await loop.create_connection(
            lambda: StreamReader(request, latencies, done), "127.0.0.1", port
        )
        sequences.append(protocol)

    for index in range(streams):
        key = ("" if path == "resumable" else f"{path}-") + uuid.uuid4().hex
        request = (
            f"GET /stream/{key}?n={count}&interval={interval} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n\r\n"
        ).encode()
        done: asyncio.Future[str] = loop.create_future()
        results.append(done)
        delay = ramp_seconds * index / streams
        connecting.append(asyncio.create_task(connect(request, done, delay)))
    await asyncio.gather(*connecting)
    problems = await asyncio.gather(*results)
    complete = sum(1 for reader in sequences if reader.next_sequence == count)
    return {
        "streams_with_problems": sum(1 for p in problems if p),
        "first_problems": [p for p in problems if p][:5],
        "streams_complete": complete,
        "events": len(latencies),
        "latencies_ns": latencies,
    }


LABELS = {
    "direct": "direct sse_response",
    "floor": "direct sse_response + pipelined XADD per event",
    "resumable": "resumable",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="events/s per stream")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each stream runs")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to open all streams")
    parser.add_argument(
        "--direct", action="store_true", help="the baseline: plain sse_response, no Redis"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="the baseline plus one pipelined XADD per event (what storing costs at the least)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return 0
    count = round(args.rate * args.seconds)
    path = "direct" if args.direct else "floor" if args.floor else "resumable"
    load_before = os.getloadavg()
    with redis_server() as redis_socket, app_server(redis_socket, __file__) as (base, pid):
        port = int(base.rsplit(":", 1)[1])
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        reading = read_all(port, args.streams, count, 1 / args.rate, args.ramp, path)
        try:
            import uvloop  # the readers' own CPU must not be what is measured

            outcome = uvloop.run(reading)
        except ImportError:
            outcome = asyncio.run(reading)
        wall = time.monotonic() - started
        worker_cpu = cpu_seconds(pid) - cpu_before
    latencies = [ns / 1e6 for ns in outcome.pop("latencies_ns")]
    expected = args.streams * count
    results = {
        "path": path,
        "streams": args.streams,
        "events_per_stream": count,
        "rate_per_stream": args.rate,
        **outcome,
        "events_expected": expected,
        "exactly_once_in_order": outcome["events"] == expected
        and outcome["streams_with_problems"] == 0,
        "latency_ms": {
            "median": statistics.median(latencies) if latencies else None,
            "p99": percentile(latencies, 0.99) if latencies else None,
            "max": max(latencies) if latencies else None,
        },
        "worker_cpu_seconds": worker_cpu,
        "wall_seconds": wall,
        "worker_cpu_percent": 100 * worker_cpu / wall,
        "worker_cpu_us_per_event": 1e6 * worker_cpu / max(1, outcome["events"]),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    print(
        f"{LABELS[path]}: "
        f"{args.streams} streams x {args.rate:g} events/s x {args.seconds:g} s on one worker: "
        f"{outcome['events']:,} of {expected:,} events, "
        f"{outcome['streams_complete']} streams complete, "
        f"{outcome['streams_with_problems']} with problems {outcome['first_problems']}"
    )
    lat = results["latency_ms"]
    print(
        f"  produce -> receive latency: median {lat['median']:.2f} ms, p99 {lat['p99']:.2f} ms, "
        f"max {lat['max']:.2f} ms"
    )
    print(
        f"  worker CPU {worker_cpu:.1f} s in {wall:.1f} s ({results['worker_cpu_percent']:.0f}% "
        f"of one core, {results['worker_cpu_us_per_event']:.0f} us per event); "
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["exactly_once_in_order"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Behind nginx with its default proxy config (``proxy_pass`` only, ``proxy_buffering on``).

nginx reads the upstream response into its proxy buffers (one memory page, 4 KiB on x86-64)
and only writes to the client when a buffer fills or the upstream response ends. A token
stream of a few short lines therefore arrives in one burst at the very end. The header
``X-Accel-Buffering: no`` turns buffering off for that one response (nginx docs,
``proxy_buffering``): ``stream_response`` sends it, so the same stream arrives line by line.

Measured here: the lines must stay well below 4 KiB in total; 1 KiB lines fill the first
buffer after four of them and nginx flushes it then, so they would not show the burst.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from faststream_kit import stream_response
from faststream_kit.testing import LiveServer, record_chunks

from .sources import TimedLines

LINES = [f"token {i:02d}\n".encode() for i in range(5)]
INTERVAL_SECONDS = 0.2


def make_app(source: TimedLines) -> Starlette:
    async def plain(request: Request) -> Response:
        return StreamingResponse(source.lines(), media_type="text/plain")

    async def kit(request: Request) -> Response:
        return stream_response(source.lines())

    return Starlette(routes=[Route("/plain", plain), Route("/kit", kit)])


def test_nginx_holds_a_plain_streaming_response_until_it_ends(
    nginx_proxy: Callable[[str], str],
) -> None:
    source = TimedLines(LINES, INTERVAL_SECONDS)
    # uvicorn's h11 protocol, whose small chunked writes nginx's default buffering holds
    # (with httptools nginx happened to pass these 9-byte lines on; the kit route streams
    # under both, see the next test).
    with LiveServer(make_app(source), uvicorn_options={"http": "h11"}) as upstream:
        proxy = nginx_proxy(upstream.url)
        with httpx.Client() as client:
            requested_at = time.perf_counter()
            recording = record_chunks(proxy + "/plain", client=client)

    assert recording.status_code == 200
    assert recording.complete
    assert recording.body == b"".join(LINES)
    # Nothing reached the client before the source had produced its last line ...
    first_arrival = requested_at + recording.chunks[0].at
    assert first_arrival >= source.produced_at[-1]
    # ... and then everything came at once.
    arrivals = recording.arrival_times()
    assert arrivals[-1] - arrivals[0] < 0.05, arrivals


def test_stream_response_streams_through_nginx_default_config(
    nginx_proxy: Callable[[str], str],
) -> None:
    source = TimedLines(LINES, INTERVAL_SECONDS)
    with LiveServer(make_app(source)) as upstream:
        proxy = nginx_proxy(upstream.url)
        with httpx.Client() as client:
            requested_at = time.perf_counter()
            recording = record_chunks(proxy + "/kit", client=client)

    assert recording.status_code == 200
    assert recording.complete
    # nginx acts on X-Accel-Buffering itself and, like every X-Accel-* header, does not pass
    # it on; the other anti-buffering headers do reach the client.
    assert "x-accel-buffering" not in recording.headers
    assert recording.headers["x-content-type-options"] == "nosniff"
    assert [chunk.data for chunk in recording.chunks] == LINES
    # The first line is at the client before the second one is even produced.
    first_arrival = requested_at + recording.chunks[0].at
    assert first_arrival < source.produced_at[1]
    assert 0.12 <= statistics.median(recording.gaps()) <= 0.32, recording.gaps()

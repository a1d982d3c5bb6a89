"""Under Starlette's GZipMiddleware a stream stays a stream, and stays readable.

``GZipMiddleware`` compresses a ``StreamingResponse`` whenever the client accepts gzip, so a
client (or a proxy in between) that decompresses in blocks sees text late, and ``curl``
without ``--compressed`` sees binary. ``stream_response`` sends ``Content-Encoding: identity``,
which the middleware honours by passing every chunk through untouched.
"""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from faststream_kit import stream_response
from faststream_kit.testing import LiveServer, Recording, record_chunks

from .sources import TimedLines

# The server runs in this process and the tests time its chunks.
pytestmark = pytest.mark.usefixtures("without_gc")

LINES = [f"line {i}: the quick brown fox jumps over the lazy dog\n".encode() for i in range(5)]
INTERVAL_SECONDS = 0.2
ACCEPT_GZIP = {"Accept-Encoding": "gzip"}


async def add_request_id(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["X-Request-Id"] = "req-1"
    return response


def make_app(source: TimedLines, middleware: list[Middleware]) -> Starlette:
    async def plain(request: Request) -> Response:
        return StreamingResponse(source.lines(), media_type="text/plain")

    async def kit(request: Request) -> Response:
        return stream_response(source.lines(), media_type="text/plain")

    return Starlette(routes=[Route("/plain", plain), Route("/kit", kit)], middleware=middleware)


def record(url: str, headers: dict[str, str]) -> tuple[float, Recording]:
    """Record ``url``; also return when the request was sent (``time.perf_counter()``)."""
    with httpx.Client() as client:
        requested_at = time.perf_counter()
        return requested_at, record_chunks(url, headers=headers, client=client)


def assert_arrived_as_produced(
    source: TimedLines, requested_at: float, recording: Recording
) -> None:
    # Every chunk on the wire is exactly one line the source produced: not compressed, not
    # merged, not held back.
    assert [chunk.data for chunk in recording.chunks] == LINES
    assert requested_at + recording.chunks[0].at < source.produced_at[1]
    assert 0.12 <= statistics.median(recording.gaps()) <= 0.32, recording.gaps()


def test_gzip_middleware_leaves_stream_response_uncompressed_and_incremental() -> None:
    source = TimedLines(LINES, INTERVAL_SECONDS)
    app = make_app(source, [Middleware(GZipMiddleware, minimum_size=0)])
    with LiveServer(app) as server:
        requested_at, recording = record(server.url + "/kit", ACCEPT_GZIP)

    assert recording.status_code == 200
    assert recording.complete
    assert recording.headers["content-encoding"] == "identity"
    assert recording.headers["content-type"].startswith("text/plain")
    assert_arrived_as_produced(source, requested_at, recording)


def test_default_gzip_middleware_leaves_stream_response_uncompressed() -> None:
    source = TimedLines(LINES, INTERVAL_SECONDS)
    app = make_app(source, [Middleware(GZipMiddleware)])
    with LiveServer(app) as server:
        requested_at, recording = record(server.url + "/kit", ACCEPT_GZIP)

    assert recording.headers["content-encoding"] == "identity"
    assert_arrived_as_produced(source, requested_at, recording)


def test_stream_response_streams_through_cors_base_http_and_gzip_middleware() -> None:
    source = TimedLines(LINES, INTERVAL_SECONDS)
    app = make_app(
        source,
        [
            Middleware(CORSMiddleware, allow_origins=["https://app.example"]),
            Middleware(BaseHTTPMiddleware, dispatch=add_request_id),
            Middleware(GZipMiddleware, minimum_size=0),
        ],
    )
    with LiveServer(app) as server:
        requested_at, recording = record(
            server.url + "/kit", {**ACCEPT_GZIP, "Origin": "https://app.example"}
        )

    assert recording.status_code == 200
    assert recording.complete
    assert recording.headers["x-request-id"] == "req-1"
    assert recording.headers["access-control-allow-origin"] == "https://app.example"
    assert recording.headers["content-encoding"] == "identity"
    assert recording.headers["x-content-type-options"] == "nosniff"
    assert_arrived_as_produced(source, requested_at, recording)


def test_gzip_middleware_compresses_a_plain_streaming_response() -> None:
    # The control: without faststream-kit the same source, behind the same middleware, reaches
    # the client gzip-compressed, so the tests above would notice if the opt-out broke.
    source = TimedLines(LINES, INTERVAL_SECONDS)
    app = make_app(source, [Middleware(GZipMiddleware, minimum_size=0)])
    with LiveServer(app) as server:
        _, recording = record(server.url + "/plain", ACCEPT_GZIP)

    assert recording.status_code == 200
    assert recording.complete
    assert recording.headers["content-encoding"] == "gzip"
    assert not any(line in recording.body for line in LINES)
    assert gzip.decompress(recording.body) == b"".join(LINES)

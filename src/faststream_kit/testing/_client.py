"""Read a live streaming endpoint and record when each piece arrived.

"It streamed" is a statement about time: chunks produced 200 ms apart must arrive about
200 ms apart, not all at once at the end. :func:`record_chunks` reads the raw bytes off the
socket (no decoding, no line buffering) and stamps each read with the seconds since the
request was sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from .._validate import (
    check_bool,
    check_bytes,
    check_client,
    check_headers,
    check_token,
    check_url,
    optional_positive_int,
    positive_seconds,
)
from ._sse_parser import ParsedEvent, SSEParser

__all__ = [
    "Chunk",
    "Recording",
    "SSERecording",
    "TimedEvent",
    "arecord_chunks",
    "read_sse",
    "record_chunks",
]


@dataclass(frozen=True)
class Chunk:
    """Bytes from one socket read, and when they arrived (seconds after the request)."""

    at: float
    data: bytes


@dataclass
class Recording:
    """What a client saw: status, headers, the chunks with their arrival times."""

    status_code: int
    headers: Mapping[str, str]
    http_version: str
    chunks: list[Chunk] = field(default_factory=list)
    headers_at: float = 0.0
    """Seconds from sending the request to receiving the response headers."""
    complete: bool = False
    """True when the body ended cleanly (not aborted, not cut short by the reader)."""
    error: BaseException | None = None
    """The exception that ended reading early, e.g. ``httpx.RemoteProtocolError``."""

    @property
    def body(self) -> bytes:
        return b"".join(chunk.data for chunk in self.chunks)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def arrival_times(self) -> list[float]:
        return [chunk.at for chunk in self.chunks]

    def gaps(self) -> list[float]:
        """Seconds between consecutive chunks."""
        times = self.arrival_times()
        return [later - earlier for earlier, later in pairwise(times)]


def record_chunks(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    content: bytes | str | None = None,
    http2: bool = False,
    stop_after_chunks: int | None = None,
    timeout: float = 30.0,
    client: Any = None,
) -> Recording:
    """Request ``url`` with httpx and record every chunk with its arrival time.

    ``stop_after_chunks=N`` closes the connection after N chunks: a real client disconnect,
    for testing that the server stops its work. ``http2=True`` speaks HTTP/2 with prior
    knowledge (needs ``h2`` and a server that supports it, such as hypercorn).
    """
    _check_request(url, method, headers, content, http2, timeout)
    optional_positive_int("stop_after_chunks", stop_after_chunks)
    _check_client(client, "an httpx.Client")

    def enough(recording: Recording) -> bool:
        return stop_after_chunks is not None and len(recording.chunks) >= stop_after_chunks

    return _record(url, method, headers, content, http2, timeout, client, enough)


def _check_request(
    url: Any, method: Any, headers: Any, content: Any, http2: Any, timeout: Any
) -> None:
    """The arguments the three readers share, under their parameter names."""
    check_url("url", url)
    check_token("method", method)
    check_headers("headers", headers)
    if not isinstance(content, str):
        check_bytes("content", content, optional=True)
    check_bool("http2", http2)
    positive_seconds("timeout", timeout)


def _check_client(client: object, kind: str) -> None:
    if client is not None:
        check_client("client", client, ("stream",), kind)


def _record(
    url: str,
    method: str,
    headers: Mapping[str, str] | None,
    content: bytes | str | None,
    http2: bool,
    timeout: float,
    client: Any,
    enough: Callable[[Recording], bool],
) -> Recording:
    """Read the response chunk by chunk until it ends or ``enough`` says stop."""
    import httpx

    own_client = client is None
    if client is None:
        client = httpx.Client(http1=not http2, http2=http2, timeout=timeout)
    try:
        started = time.perf_counter()
        with client.stream(method, url, headers=headers, content=content) as response:
            recording = Recording(
                status_code=response.status_code,
                headers=dict(response.headers),
                http_version=response.http_version,
                headers_at=time.perf_counter() - started,
            )
            try:
                for data in response.iter_raw():
                    recording.chunks.append(Chunk(time.perf_counter() - started, data))
                    if enough(recording):
                        return recording
                recording.complete = True
            except httpx.HTTPError as exc:
                recording.error = exc
            return recording
    finally:
        if own_client:
            client.close()


async def arecord_chunks(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    content: bytes | str | None = None,
    http2: bool = False,
    stop_after_chunks: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - public parameter; bounds the whole recording
    client: Any = None,
) -> Recording:
    """The async twin of :func:`record_chunks`, with ``httpx.AsyncClient``."""
    _check_request(url, method, headers, content, http2, timeout)
    optional_positive_int("stop_after_chunks", stop_after_chunks)
    _check_client(client, "an httpx.AsyncClient")
    import httpx

    own_client = client is None
    if client is None:
        client = httpx.AsyncClient(http1=not http2, http2=http2, timeout=timeout)
    try:
        started = time.perf_counter()
        async with client.stream(method, url, headers=headers, content=content) as response:
            recording = Recording(
                status_code=response.status_code,
                headers=dict(response.headers),
                http_version=response.http_version,
                headers_at=time.perf_counter() - started,
            )
            try:
                async for data in response.aiter_raw():
                    recording.chunks.append(Chunk(time.perf_counter() - started, data))
                    if stop_after_chunks is not None and len(recording.chunks) >= stop_after_chunks:
                        return recording
                recording.complete = True
            except httpx.HTTPError as exc:
                recording.error = exc
            return recording
    finally:
        if own_client:
            await client.aclose()


@dataclass(frozen=True)
class TimedEvent:
    """One dispatched Server-Sent Event and when its last byte arrived."""

    at: float
    event: ParsedEvent


@dataclass
class SSERecording:
    """What an SSE client saw: the raw recording plus the strictly parsed events."""

    recording: Recording
    events: list[TimedEvent]
    comments: list[str]

    @property
    def data(self) -> list[str]:
        return [timed.event.data for timed in self.events]


def read_sse(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    content: bytes | str | None = None,
    http2: bool = False,
    stop_after_events: int | None = None,
    timeout: float = 30.0,
    client: Any = None,
) -> SSERecording:
    """Read a live ``text/event-stream`` endpoint with the strict WHATWG parser.

    ``stop_after_events=N`` disconnects after the N-th event, like a browser tab closing.
    Each event carries the time its final byte arrived.
    """
    _check_request(url, method, headers, content, http2, timeout)
    optional_positive_int("stop_after_events", stop_after_events)
    _check_client(client, "an httpx.Client")
    parser = SSEParser()
    events: list[TimedEvent] = []

    def enough(recording: Recording) -> bool:
        chunk = recording.chunks[-1]
        events.extend(TimedEvent(chunk.at, event) for event in parser.feed(chunk.data))
        return stop_after_events is not None and len(events) >= stop_after_events

    recording = _record(url, method, headers, content, http2, timeout, client, enough)
    if stop_after_events is None or len(events) < stop_after_events:
        at = recording.chunks[-1].at if recording.chunks else recording.headers_at
        events.extend(TimedEvent(at, event) for event in parser.close())
    return SSERecording(recording, events, parser.comments)

"""StreamResponse over real sockets: timing, headers, errors, disconnects, HTTP/2."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from starlette.responses import StreamingResponse

from faststream_kit import StreamError, stream_response
from faststream_kit.testing import LiveServer, record_chunks

from .per_request import REQUEST_ID, PerRequest

# RFC 9113 §8.2.2
HTTP2_FORBIDDEN = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}


NEVER_WAITING_CHUNKS = 20_000  # 1.25 GiB of 64 KiB chunks


async def rows_in_memory(events: Events) -> AsyncIterator[bytes]:
    """Rows already in memory: never awaits anything, counts what it produced."""
    for _ in range(NEVER_WAITING_CHUNKS):
        events.produced += 1
        yield b"x" * 65536


class Events:
    """What one request's source did, and when (written in the server's threads)."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.closed_at = 0.0
        self.closed_in_thread = ""
        self.touched = False
        self.produced = 0

    def close(self) -> None:
        self.closed_at = time.monotonic()
        self.closed_in_thread = threading.current_thread().name
        self.closed.set()


def make_app(records: PerRequest[Events]) -> FastAPI:
    app = FastAPI()

    def events_of(request: Request) -> Events:
        return records.of(request.headers.get(REQUEST_ID, ""))

    @app.get("/ticks")
    async def ticks() -> StreamingResponse:
        async def produce() -> AsyncIterator[str]:
            for i in range(5):
                yield f"tick {i}\n"
                await anyio.sleep(0.2)

        return stream_response(produce())

    @app.get("/sync-ticks")
    def sync_ticks() -> StreamingResponse:
        def produce() -> Iterator[str]:
            for i in range(5):
                yield f"tick {i}\n"
                time.sleep(0.2)

        return stream_response(produce())

    @app.get("/slow-start")
    async def slow_start() -> StreamingResponse:
        async def produce() -> AsyncIterator[str]:
            await anyio.sleep(1.0)
            yield "data: late\n\n"

        return stream_response(produce(), media_type="text/event-stream", keepalive=0.2)

    @app.get("/never-waits")
    async def never_waits(request: Request) -> StreamingResponse:
        events = events_of(request)

        async def produce() -> AsyncIterator[bytes]:
            try:
                async for chunk in rows_in_memory(events):
                    yield chunk
            finally:
                events.close()

        return stream_response(produce(), media_type="application/octet-stream")

    @app.get("/swallows-cancellation")
    async def swallows_cancellation(request: Request) -> StreamingResponse:
        events = events_of(request)

        async def produce() -> AsyncIterator[bytes]:
            # Like pyreqwest's read_chunk() (0.15): a cancellation that reaches it while it
            # waits is dropped, and the next chunk is returned as if nothing happened.
            try:
                yield b"first\n"
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.get_running_loop().create_future()  # only a cancel ends it
                async for chunk in rows_in_memory(events):
                    yield chunk
            finally:
                events.close()

        return stream_response(produce(), media_type="application/octet-stream")

    @app.get("/fail-after-first")
    async def fail_after_first() -> StreamingResponse:
        async def produce() -> AsyncIterator[str]:
            yield "partial "
            raise RuntimeError("database password is hunter2")

        return stream_response(produce())

    @app.get("/fail-before-first")
    async def fail_before_first() -> StreamingResponse:
        async def produce() -> AsyncIterator[str]:
            raise RuntimeError("database password is hunter2")
            yield ""  # pragma: no cover

        return stream_response(produce())

    @app.get("/http-error-before-first")
    async def http_error_before_first() -> StreamingResponse:
        async def produce() -> AsyncIterator[str]:
            raise HTTPException(429, "slow down", headers={"Retry-After": "7"})
            yield ""  # pragma: no cover

        return stream_response(produce())

    @app.get("/sse-fail-after-first")
    async def sse_fail_after_first() -> StreamingResponse:
        async def produce() -> AsyncIterator[str]:
            yield "data: one\n\n"
            raise StreamError("model overloaded", type="overloaded")

        return stream_response(produce(), media_type="text/event-stream")

    @app.api_route("/untouched", methods=["GET", "HEAD"])
    async def untouched(request: Request) -> StreamingResponse:
        events = events_of(request)

        async def produce() -> AsyncIterator[str]:
            events.touched = True
            yield "body"

        return stream_response(produce(), headers={"X-Total": "4"})

    @app.get("/idle-async")
    async def idle_async(request: Request) -> StreamingResponse:
        events = events_of(request)

        async def produce() -> AsyncIterator[str]:
            try:
                yield "first\n"
                await anyio.sleep(60)
                yield "never\n"
            finally:
                events.close()

        return stream_response(produce())

    @app.get("/idle-sync")
    def idle_sync(request: Request) -> StreamingResponse:
        events = events_of(request)

        def produce() -> Iterator[str]:
            try:
                for i in range(1000):
                    yield f"item {i}\n"
                    time.sleep(0.05)
            finally:
                events.close()

        return stream_response(produce())

    @app.get("/firehose")
    async def firehose(request: Request) -> StreamingResponse:
        events = events_of(request)
        block = b"x" * 65536

        async def produce() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield block
                    await anyio.sleep(0)
            finally:
                events.close()

        return stream_response(produce(), send_timeout=0.5)

    @app.get("/idle-timeout")
    async def idle_timeout() -> StreamingResponse:
        async def produce() -> AsyncIterator[str]:
            yield "data: one\n\n"
            await anyio.sleep(30)
            yield "data: never\n\n"

        return stream_response(produce(), media_type="text/event-stream", idle_timeout=0.3)

    @app.get("/headers")
    async def headers() -> StreamingResponse:
        return stream_response(
            iter(["x"]), headers={"Connection": "keep-alive", "Cache-Control": "private"}
        )

    @app.post("/echo-upper")
    async def echo_upper(request: Request) -> StreamingResponse:
        async def produce() -> AsyncIterator[bytes]:
            yield b"ready\n"
            async for piece in request.stream():
                if piece:
                    yield piece.upper()

        return stream_response(produce(), request=request)

    return app


@pytest.fixture(scope="module")
def records() -> PerRequest[Events]:
    return PerRequest(Events)


@pytest.fixture(scope="module")
def server(records: PerRequest[Events]) -> Iterator[LiveServer]:
    with LiveServer(records.around(make_app(records))) as live:
        yield live


def assert_streamed_200ms_apart(gaps: list[float]) -> None:
    assert len(gaps) >= 3, gaps
    assert 0.12 <= statistics.median(gaps) <= 0.32, gaps


@pytest.mark.parametrize("path", ["/ticks", "/sync-ticks"])
def test_chunks_produced_200ms_apart_arrive_200ms_apart(server: LiveServer, path: str) -> None:
    recording = record_chunks(server.url + path)
    assert recording.complete
    assert recording.text == "".join(f"tick {i}\n" for i in range(5))
    assert len(recording.chunks) == 5
    assert recording.chunks[0].at < 0.15
    assert_streamed_200ms_apart(recording.gaps())


def test_keepalive_sends_headers_and_frame_while_source_waits(server: LiveServer) -> None:
    recording = record_chunks(server.url + "/slow-start")
    assert recording.status_code == 200
    assert recording.headers_at < 0.6, "headers must go out with the first keepalive"
    first = recording.chunks[0]
    assert first.data == b": ping\n\n"
    assert first.at < 0.6
    assert recording.body.endswith(b"data: late\n\n")
    assert recording.body.count(b": ping\n\n") >= 3


def test_anti_buffering_headers_are_sent(server: LiveServer) -> None:
    recording = record_chunks(server.url + "/ticks")
    headers = recording.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache, no-transform"
    assert headers["x-accel-buffering"] == "no"
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_caller_cache_control_wins_and_connection_header_is_dropped(server: LiveServer) -> None:
    response = httpx.get(server.url + "/headers")
    assert response.headers["cache-control"] == "private"
    # Not the caller's, and none other either: the server owns the connection (and HTTP/2
    # forbids the field, RFC 9113 §8.2.2). Exactly these fields went out, each once.
    assert sorted(name.decode().lower() for name, _ in response.headers.raw) == [
        "cache-control",
        "content-encoding",
        "content-type",
        "date",
        "server",
        "transfer-encoding",
        "x-accel-buffering",
        "x-content-type-options",
    ], response.headers.raw
    assert response.text == "x"


def test_exception_after_first_chunk_leaves_body_visibly_incomplete(server: LiveServer) -> None:
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("GET", server.url + "/fail-after-first") as response,
    ):
        assert response.status_code == 200
        response.read()


def test_exception_before_first_chunk_is_a_json_500_without_traceback(
    server: LiveServer,
) -> None:
    response = httpx.get(server.url + "/fail-before-first")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {"type": "server_error", "message": "Internal Server Error"}
    }
    assert "Traceback" not in response.text
    assert "hunter2" not in response.text


def test_http_exception_before_first_chunk_keeps_its_status_and_headers(
    server: LiveServer,
) -> None:
    response = httpx.get(server.url + "/http-error-before-first")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["message"] == "slow down"


def test_sse_failure_after_first_event_ends_with_an_error_frame(server: LiveServer) -> None:
    response = httpx.get(server.url + "/sse-fail-after-first")
    assert response.status_code == 200
    assert response.text == (
        'data: one\n\nevent: error\ndata: {"type":"overloaded","message":"model overloaded"}\n\n'
    )


def test_head_answers_headers_without_touching_the_source(
    server: LiveServer, records: PerRequest[Events], request_id: str
) -> None:
    response = httpx.head(server.url + "/untouched", headers={REQUEST_ID: request_id})
    assert response.status_code == 200
    assert response.headers["x-total"] == "4"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == b""
    assert not records.after(request_id).touched  # the app is done: it never will be
    got = f"{request_id}-get"
    assert httpx.get(server.url + "/untouched", headers={REQUEST_ID: got}).text == "body"
    assert records.after(got).touched


def test_idle_async_generator_is_closed_within_100ms_of_disconnect(
    server: LiveServer, records: PerRequest[Events], request_id: str
) -> None:
    events = records.of(request_id)
    recording = record_chunks(
        server.url + "/idle-async", headers={REQUEST_ID: request_id}, stop_after_chunks=1
    )
    left_at = time.monotonic()
    assert recording.text == "first\n"
    assert events.closed.wait(timeout=2), "the generator was never closed"
    assert events.closed_at - left_at < 0.1


def test_a_source_that_never_waits_still_sees_the_client_leave(
    server: LiveServer, records: PerRequest[Events], request_id: str
) -> None:
    """Nothing in the source gives the event loop a turn, so without the pump's own
    checkpoint the disconnect is never noticed and the whole body goes into a closed socket."""
    events = records.of(request_id)
    recording = record_chunks(
        server.url + "/never-waits", headers={REQUEST_ID: request_id}, stop_after_chunks=1
    )
    assert recording.chunks
    assert events.closed.wait(timeout=30), "the generator was never closed"
    assert events.produced < NEVER_WAITING_CHUNKS // 2


def test_a_source_that_swallows_the_cancellation_still_stops_when_the_client_leaves(
    server: LiveServer, records: PerRequest[Events], request_id: str
) -> None:
    """The cancellation that stops the source lands where it waits; a source that drops it
    (pyreqwest's body reads do) must still stop, not read on into a gone client's socket."""
    events = records.of(request_id)
    recording = record_chunks(
        server.url + "/swallows-cancellation", headers={REQUEST_ID: request_id}, stop_after_chunks=1
    )
    assert recording.text == "first\n"
    assert events.closed.wait(timeout=30), "the generator was never closed"
    assert events.produced <= 1  # at most the chunk it read when it dropped the cancellation


def test_sync_generator_finally_runs_in_its_worker_thread_after_disconnect(
    server: LiveServer, records: PerRequest[Events], request_id: str
) -> None:
    events = records.of(request_id)
    recording = record_chunks(
        server.url + "/idle-sync", headers={REQUEST_ID: request_id}, stop_after_chunks=3
    )
    left_at = time.monotonic()
    assert recording.body.startswith(b"item 0\n")
    assert events.closed.wait(timeout=2), "the generator's finally never ran"
    assert events.closed_at - left_at < 0.1
    assert events.closed_in_thread == "faststream-kit-source"


class ChunkedReader:
    """Reads an HTTP/1.1 response with a chunked body from a raw socket, one chunk at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")

    def head(self) -> tuple[bytes, dict[str, str]]:
        status = self._file.readline().rstrip(b"\r\n")
        headers: dict[str, str] = {}
        while line := self._file.readline().rstrip(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def chunk(self) -> bytes:
        size = int(self._file.readline().split(b";")[0], 16)
        data = self._file.read(size)
        assert self._file.read(2) == b"\r\n"
        return data


def test_request_body_parts_reach_the_source_while_the_response_streams(
    server: LiveServer,
) -> None:
    # A full-duplex conversation: the client sends each part of the request body only after
    # the echo of the one before has arrived. If the response held body messages back (until
    # the request ended, or until it ended itself), the client would wait for an echo that
    # never comes.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /echo-upper HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        reader = ChunkedReader(sock)
        status, headers = reader.head()
        assert status == b"HTTP/1.1 200 OK"
        assert headers["transfer-encoding"] == "chunked"
        assert reader.chunk() == b"ready\n", "the response must start before the body is sent"
        for part in (b"one ", b"two ", b"three"):
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            try:
                echo = reader.chunk()
            except TimeoutError:
                pytest.fail(f"{part!r} never reached the source while the response streamed")
            assert echo == part.upper()
        sock.sendall(b"0\r\n\r\n")
        assert reader.chunk() == b"", "the response ends when the request body has ended"


def test_http2_streams_incrementally_without_forbidden_headers() -> None:
    with LiveServer(make_app(PerRequest(Events)), server="hypercorn") as server:
        recording = record_chunks(server.url + "/ticks", http2=True)
        headers_recording = record_chunks(server.url + "/headers", http2=True)
    assert recording.http_version == "HTTP/2"
    assert recording.complete
    assert recording.text == "".join(f"tick {i}\n" for i in range(5))
    assert_streamed_200ms_apart(recording.gaps())
    for seen in (recording.headers, headers_recording.headers):
        assert not HTTP2_FORBIDDEN & {name.lower() for name in seen}
    assert headers_recording.text == "x"


def test_http2_keepalive_arrives_before_first_chunk() -> None:
    with LiveServer(make_app(PerRequest(Events)), server="hypercorn") as server:
        recording = record_chunks(server.url + "/slow-start", http2=True)
    assert recording.http_version == "HTTP/2"
    assert recording.chunks[0].data == b": ping\n\n"
    assert recording.chunks[0].at < 0.6
    assert recording.body.endswith(b"data: late\n\n")


def test_a_client_that_stops_reading_is_dropped_after_send_timeout(
    server: LiveServer, records: PerRequest[Events], request_id: str
) -> None:
    events = records.of(request_id)
    with socket.create_connection(("127.0.0.1", server.port)) as frozen:
        frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        frozen.sendall(
            f"GET /firehose HTTP/1.1\r\nHost: test\r\n{REQUEST_ID}: {request_id}\r\n\r\n".encode()
        )
        assert frozen.recv(1024).startswith(b"HTTP/1.1 200")
        # Never read again: the server's writes block once the socket buffers are full.
        assert events.closed.wait(timeout=10), "the source kept running for a frozen client"


def test_a_silent_source_is_ended_by_idle_timeout_with_an_error_frame(server: LiveServer) -> None:
    started = time.monotonic()
    response = httpx.get(server.url + "/idle-timeout")
    assert time.monotonic() - started < 3
    assert response.text.startswith("data: one\n\n")
    error = '{"type":"timeout","message":"the stream produced nothing for 0.3 s"}'
    assert response.text.endswith(f"event: error\ndata: {error}\n\n")

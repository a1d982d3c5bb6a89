"""sse_response over real sockets: pings, errors, Last-Event-ID, FastAPI and Starlette, h2."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faststream_kit import ServerSentEvent, StreamResponse, sse_response
from faststream_kit.testing import LiveServer, parse_events, read_sse

from .sources import slow_body


def make_fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/idle")
    async def idle() -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            yield "hello"
            await anyio.sleep(1.0)
            yield "bye"

        return sse_response(produce(), keepalive=0.2)

    @app.get("/busy")
    async def busy() -> StreamResponse:
        async def produce() -> AsyncIterator[ServerSentEvent]:
            for n in range(20):
                yield ServerSentEvent(data={"n": n}, id=str(n))
                await anyio.sleep(0.05)

        return sse_response(produce(), keepalive=0.2)

    @app.get("/fails")
    async def fails() -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            yield "one"
            yield "two"
            raise RuntimeError("connection string postgres://admin:s3cret@db")

        return sse_response(produce())

    @app.get("/resumable")
    async def resumable() -> StreamResponse:
        async def produce(last_event_id: str | None) -> AsyncIterator[dict[str, object]]:
            start = int(last_event_id or 0) + 1
            for n in range(start, 6):
                yield {"data": f"event {n}", "id": str(n)}

        return sse_response(produce, retry=1500)

    @app.api_route("/head", methods=["GET", "HEAD"])
    async def head() -> StreamResponse:
        def produce() -> Iterator[str]:
            raise AssertionError("HEAD must not touch the source")
            yield ""  # pragma: no cover

        return sse_response(produce())

    @app.post("/echo")
    async def echo(request: Request) -> StreamResponse:
        async def produce(last_event_id: str | None) -> AsyncIterator[str]:
            yield f"after {last_event_id}"
            async for piece in request.stream():
                if piece:
                    yield piece.decode().upper()

        return sse_response(produce, request=request)

    @app.get("/multiline")
    def multiline() -> StreamResponse:
        def produce() -> Iterator[ServerSentEvent]:
            yield ServerSentEvent(data="line one\nline two\r\nline three", event="note", id="a")
            yield ServerSentEvent(data="監視カメラ 🎥", event="note", id="b")

        return sse_response(produce())

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(make_fastapi_app()) as live:
        yield live


def test_idle_source_gets_pings_every_ping_interval(server: LiveServer) -> None:
    seen = read_sse(server.url + "/idle")
    assert seen.data == ["hello", "bye"]
    assert 3 <= seen.comments.count("ping") <= 6
    assert seen.recording.headers["content-type"] == "text/event-stream; charset=utf-8"


def test_no_pings_while_events_flow_faster_than_the_interval(server: LiveServer) -> None:
    seen = read_sse(server.url + "/busy")
    assert [json.loads(data)["n"] for data in seen.data] == list(range(20))
    assert seen.comments == []


def test_source_failure_after_two_events_ends_with_one_error_event(server: LiveServer) -> None:
    seen = read_sse(server.url + "/fails")
    assert seen.recording.status_code == 200
    assert seen.recording.complete
    assert [(e.event.event, e.event.data) for e in seen.events] == [
        ("message", "one"),
        ("message", "two"),
        ("error", '{"type":"server_error","message":"Internal Server Error"}'),
    ]
    assert "Traceback" not in seen.recording.text
    assert "s3cret" not in seen.recording.text


def test_last_event_id_is_handed_to_the_source(server: LiveServer) -> None:
    first = read_sse(server.url + "/resumable")
    assert first.data == [f"event {n}" for n in range(1, 6)]
    assert first.recording.body.startswith(b"retry: 1500\n\n")
    resumed = read_sse(server.url + "/resumable", headers={"Last-Event-ID": "3"})
    assert resumed.data == ["event 4", "event 5"]
    assert [e.event.id for e in resumed.events] == ["4", "5"]


@pytest.mark.parametrize("server_name", ["uvicorn", "hypercorn"])
def test_with_request_the_source_reads_the_body_and_gets_its_last_event_id(
    server_name: str,
) -> None:
    # hypercorn hands each body message to one receive() call: without the relay, the
    # response's disconnect watch would take some of the body away from the source.
    headers = {"Last-Event-ID": "7"}
    with (
        LiveServer(make_fastapi_app(), server=server_name) as live,  # type: ignore[arg-type]
        httpx.Client(timeout=5) as client,
    ):
        response = client.post(
            live.url + "/echo", content=slow_body(b"one", b"two", b"three"), headers=headers
        )
    assert response.status_code == 200
    assert [event.data for event in parse_events(response.content)] == [
        "after 7",
        "ONE",
        "TWO",
        "THREE",
    ]


def test_head_gets_headers_only(server: LiveServer) -> None:
    response = httpx.head(server.url + "/head")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b""


def test_multiline_and_non_ascii_data_survive(server: LiveServer) -> None:
    seen = read_sse(server.url + "/multiline")
    assert [(e.event.event, e.event.id, e.event.data) for e in seen.events] == [
        ("note", "a", "line one\nline two\nline three"),
        ("note", "b", "監視カメラ 🎥"),
    ]


def starlette_app() -> Starlette:
    async def ticks(request: Request) -> Response:
        async def produce() -> AsyncIterator[ServerSentEvent]:
            for n in range(4):
                yield ServerSentEvent(data=str(n), event="tick")
                await anyio.sleep(0.2)

        return sse_response(produce())

    return Starlette(routes=[Route("/ticks", ticks)])


def fastapi_ticks_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ticks")
    async def ticks() -> StreamResponse:
        async def produce() -> AsyncIterator[ServerSentEvent]:
            for n in range(4):
                yield ServerSentEvent(data=str(n), event="tick")
                await anyio.sleep(0.2)

        return sse_response(produce())

    return app


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
@pytest.mark.parametrize("server_name", ["uvicorn", "hypercorn"])
def test_events_stream_from_fastapi_and_starlette_over_http1_and_http2(
    framework: str, server_name: str
) -> None:
    app = fastapi_ticks_app() if framework == "fastapi" else starlette_app()
    with LiveServer(app, server=server_name) as live:  # type: ignore[arg-type]
        started = time.perf_counter()
        seen = read_sse(live.url + "/ticks", http2=server_name == "hypercorn")
        elapsed = time.perf_counter() - started
    assert seen.recording.http_version == ("HTTP/2" if server_name == "hypercorn" else "HTTP/1.1")
    assert seen.data == ["0", "1", "2", "3"]
    assert {e.event.event for e in seen.events} == {"tick"}
    arrivals = [e.at for e in seen.events]
    assert arrivals[0] < 0.15
    assert arrivals[-1] > 0.45, "events arrived in one burst"
    assert elapsed < 5
    assert "connection" not in {name.lower() for name in seen.recording.headers}


def test_invalid_retry_is_rejected_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="retry"):
        sse_response(iter([]), retry=-1)


def test_dict_item_with_unknown_field_fails_before_headers(server: LiveServer) -> None:
    # An unknown key is a programming error: it must surface as an HTTP error, not a frame.
    app = FastAPI()

    @app.get("/bad")
    async def bad() -> StreamResponse:
        return sse_response(iter([{"dat": "typo"}]))

    with LiveServer(app) as live:
        response = httpx.get(live.url + "/bad")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"

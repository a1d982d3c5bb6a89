"""``EventSourceResponse`` and ``NDJSONResponse`` as FastAPI ``response_class=`` on ``yield``
path operations, over real sockets on uvicorn and granian.

A plain ``FastAPI()``: FastAPI calls the path operation and hands its generator to the class;
everything on the wire after that is ours (items, validation, keepalives, errors, disconnect).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Header
from fastapi.sse import EventSourceResponse as FastAPIEventSourceResponse
from fastapi.sse import ServerSentEvent as FastAPIEvent
from pydantic import BaseModel, create_model
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faststream_kit import (
    EventSourceResponse,
    NDJSONResponse,
    ServerSentEvent,
    StreamResponse,
    document_streams,
)
from faststream_kit.testing import LiveServer, SSEParser, read_sse, record_chunks

from .conftest import APPS, free_port, need_peer, stop_process, wait_for_port
from .per_request import REQUEST_ID, PerRequest

SERVERS = ["uvicorn", "granian"]
FORMATS = {"sse": EventSourceResponse, "ndjson": NDJSONResponse}
INTERVAL = 0.2


class Tick(BaseModel):
    n: int


class Closing:
    """When a request's generator ran its ``finally``, and when the server told the app
    that the client had left."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.closed_at = 0.0
        self.disconnect_reported_at = 0.0

    def close(self) -> None:
        self.closed_at = time.monotonic()
        self.closed.set()


def noting_disconnects(app: Any, records: PerRequest[Closing]) -> Any:
    """``app``, noting when the server hands it ``http.disconnect`` for a named request."""

    async def noted(scope: Any, receive: Any, send: Any) -> None:
        request_id = dict(scope.get("headers", ())).get(REQUEST_ID.encode(), b"").decode()

        async def receive_noting() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect" and request_id:
                records.of(request_id).disconnect_reported_at = time.monotonic()
            return message

        await app(scope, receive_noting, send)

    return noted


def make_app(records: PerRequest[Closing]) -> FastAPI:
    app = FastAPI()

    for name, response_class in FORMATS.items():

        @app.get(f"/{name}/ticks-async", response_class=response_class)
        async def ticks_async() -> AsyncIterator[Tick]:
            for n in range(4):
                if n:
                    await anyio.sleep(INTERVAL)
                yield Tick(n=n)

        @app.get(f"/{name}/ticks-sync", response_class=response_class)
        def ticks_sync() -> Iterator[Tick]:
            for n in range(4):
                if n:
                    time.sleep(INTERVAL)
                yield Tick(n=n)

        @app.get(f"/{name}/idle-async", response_class=response_class)
        async def idle_async(x_test_request: str = Header("")) -> AsyncIterator[Tick]:
            closing = records.of(x_test_request)
            try:
                yield Tick(n=0)
                await anyio.sleep(60)
                yield Tick(n=1)
            finally:
                closing.close()

        @app.get(f"/{name}/idle-sync", response_class=response_class)
        def idle_sync(x_test_request: str = Header("")) -> Iterator[Tick]:
            closing = records.of(x_test_request)
            try:
                for n in range(1000):
                    yield Tick(n=n)
                    time.sleep(0.05)
            finally:
                closing.close()

        @app.get(f"/{name}/firehose", response_class=response_class)
        async def firehose(x_test_request: str = Header("")) -> AsyncIterator[Tick]:
            closing = records.of(x_test_request)
            try:
                n = 0
                while True:  # never waits: the disconnect finds it suspended at a yield
                    yield Tick(n=n)
                    n += 1
            finally:
                closing.close()

        @app.get(f"/{name}/invalid-second", response_class=response_class)
        async def invalid_second() -> AsyncIterator[Tick]:
            yield Tick(n=1)
            yield "secret value that must not reach the client"

        @app.get(f"/{name}/invalid-first", response_class=response_class)
        def invalid_first() -> Iterator[Tick]:
            yield "secret value that must not reach the client"

    @app.get("/sse/resume-async", response_class=EventSourceResponse)
    async def resume_async(
        last_event_id: str | None = Header(None),
    ) -> AsyncIterator[ServerSentEvent]:
        start = int(last_event_id) + 1 if last_event_id else 0
        for n in range(start, start + 2):
            yield ServerSentEvent(data={"n": n}, id=str(n))

    @app.get("/sse/resume-sync", response_class=EventSourceResponse)
    def resume_sync(last_event_id: str | None = Header(None)) -> Iterator[ServerSentEvent]:
        start = int(last_event_id) + 1 if last_event_id else 0
        for n in range(start, start + 2):
            yield ServerSentEvent(data={"n": n}, id=str(n))

    for path, response_class in (
        ("/ours/fastapi-events", EventSourceResponse),
        ("/fastapi/fastapi-events", FastAPIEventSourceResponse),
    ):

        @app.get(path, response_class=response_class)
        async def fastapi_events() -> AsyncIterator[FastAPIEvent]:
            yield FastAPIEvent(data={"x": 1}, event="update", id="7", retry=1500)
            yield FastAPIEvent(data="quoted", comment="a comment\nover two lines")
            yield FastAPIEvent(raw_data="sent as it is", event="raw", id="8")

        @app.get(path.replace("fastapi-events", "typed"), response_class=response_class)
        async def typed() -> AsyncIterator[str | Tick]:
            yield "a str item is JSON too"
            yield Tick(n=3)
            yield FastAPIEvent(data=[1, 2], event="mixed")

    @app.get("/sse/keepalive", response_class=EventSourceResponse.with_options(keepalive=0.1))
    async def keepalive() -> AsyncIterator[Tick]:
        yield Tick(n=0)
        await anyio.sleep(0.35)
        yield Tick(n=1)

    return app


@pytest.fixture(scope="module")
def records() -> PerRequest[Closing]:
    return PerRequest(Closing)


def have(server_name: str) -> None:
    need_peer(
        server_name != "granian" or importlib.util.find_spec("granian") is not None,
        "granian is not installed (pip install granian)",
    )


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, records: PerRequest[Closing]) -> Iterator[LiveServer]:
    have(request.param)
    app = records.around(noting_disconnects(make_app(records), records))
    with LiveServer(app, server=request.param) as live:
        yield live


def items_of(name: str, body: bytes) -> list[Any]:
    """The JSON items of a body: SSE events' data, or NDJSON lines."""
    if name == "sse":
        return [json.loads(event.data) for event in SSEParser().feed(body)]
    return [json.loads(line) for line in body.splitlines() if line]


# ------------------------------------------------------------------------------ streaming


@pytest.mark.usefixtures("without_gc")
@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("name", FORMATS)
def test_items_arrive_as_the_path_operation_yields_them(
    server: LiveServer, name: str, mode: str
) -> None:
    recording = record_chunks(f"{server.url}/{name}/ticks-{mode}")

    assert recording.status_code == 200
    assert recording.complete
    assert recording.headers["content-type"].startswith(FORMATS[name].media_type)
    assert recording.headers["x-accel-buffering"] == "no"
    assert items_of(name, recording.body) == [{"n": n} for n in range(4)]
    gaps = recording.gaps()
    assert len(gaps) >= 3, gaps  # one chunk per item, not one burst at the end
    assert 0.12 <= statistics.median(gaps) <= 0.32, gaps


@pytest.mark.usefixtures("without_gc")  # closing must not wait for it
@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("name", FORMATS)
def test_disconnect_closes_the_generator_within_100ms_while_it_waits(
    server: LiveServer, records: PerRequest[Closing], request_id: str, name: str, mode: str
) -> None:
    closing = records.of(request_id)
    recording = record_chunks(
        f"{server.url}/{name}/idle-{mode}", headers={REQUEST_ID: request_id}, stop_after_chunks=1
    )
    left_at = time.monotonic()

    assert items_of(name, recording.body)[0] == {"n": 0}
    assert closing.closed.wait(timeout=2), "the generator was never closed"
    assert closing.closed_at - left_at < 0.1, f"closed {closing.closed_at - left_at:.3f} s after"


@pytest.mark.usefixtures("without_gc")  # closing must not wait for it
@pytest.mark.parametrize("name", FORMATS)
def test_disconnect_closes_a_generator_that_never_waits(
    server: LiveServer, records: PerRequest[Closing], request_id: str, name: str
) -> None:
    # FastAPI wraps an async generator in one of its own whose aclose() leaves ours alone:
    # ours must still be closed (by the event loop's async generator finalizer). Timed from
    # when the server reports the disconnect, if that is later: while a stream floods the
    # socket, granian 2.8 sometimes reports it late (measured: 1.28 s after the client left,
    # in 1 run of this file in 10).
    closing = records.of(request_id)
    record_chunks(
        f"{server.url}/{name}/firehose", headers={REQUEST_ID: request_id}, stop_after_chunks=3
    )
    left_at = time.monotonic()

    assert closing.closed.wait(timeout=5), "the generator was never closed"
    reported_at = max(left_at, closing.disconnect_reported_at)
    closed_after = closing.closed_at - reported_at
    assert closed_after < 0.1, f"closed {closed_after:.3f} s after the disconnect"


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_last_event_id_reaches_the_path_operation_as_a_header_parameter(
    server: LiveServer, mode: str
) -> None:
    first = read_sse(f"{server.url}/sse/resume-{mode}")
    again = read_sse(f"{server.url}/sse/resume-{mode}", headers={"Last-Event-ID": "1"})

    assert [e.event.id for e in first.events] == ["0", "1"]
    assert [json.loads(e.event.data) for e in again.events] == [{"n": 2}, {"n": 3}]


def test_fastapi_server_sent_events_keep_their_fields(server: LiveServer) -> None:
    ours = httpx.get(server.url + "/ours/fastapi-events")
    theirs = httpx.get(server.url + "/fastapi/fastapi-events")

    events = list(SSEParser().feed(ours.content))
    assert [(e.event, e.id, e.retry, e.data) for e in events] == [
        ("update", "7", 1500, '{"x":1}'),
        ("message", "7", None, '"quoted"'),
        ("raw", "8", None, "sent as it is"),
    ]
    # What a browser sees is what FastAPI's own class sends (whitespace inside JSON aside).
    assert [(e.event, e.id, e.retry, json.loads(e.data) if e.event != "raw" else e.data)
            for e in events] == [
        (e.event, e.id, e.retry, json.loads(e.data) if e.event != "raw" else e.data)
        for e in SSEParser().feed(theirs.content)
    ]  # fmt: skip
    comments = SSEParser()
    list(comments.feed(ours.content))
    assert comments.comments == ["a comment", "over two lines"]


def test_items_of_an_annotated_route_are_serialized_as_fastapi_does(server: LiveServer) -> None:
    ours = list(SSEParser().feed(httpx.get(server.url + "/ours/typed").content))
    theirs = list(SSEParser().feed(httpx.get(server.url + "/fastapi/typed").content))

    assert [(e.event, e.data) for e in ours] == [
        ("message", '"a str item is JSON too"'),
        ("message", '{"n":3}'),
        ("mixed", "[1,2]"),
    ]
    assert [(e.event, json.loads(e.data)) for e in ours] == [
        (e.event, json.loads(e.data)) for e in theirs
    ]


@pytest.mark.parametrize("name", FORMATS)
def test_an_invalid_item_ends_the_stream_with_an_error_frame(server: LiveServer, name: str) -> None:
    response = httpx.get(f"{server.url}/{name}/invalid-second")

    assert response.status_code == 200
    error = {"type": "server_error", "message": "Internal Server Error"}
    if name == "sse":
        events = list(SSEParser().feed(response.content))
        assert [(e.event, json.loads(e.data)) for e in events] == [
            ("message", {"n": 1}),
            ("error", error),
        ]
    else:
        assert items_of(name, response.content) == [{"n": 1}, {"type": "error", "error": error}]
    assert "secret" not in response.text


@pytest.mark.parametrize("name", FORMATS)
def test_an_invalid_first_item_is_a_json_500(server: LiveServer, name: str) -> None:
    response = httpx.get(f"{server.url}/{name}/invalid-first")

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {"type": "server_error", "message": "Internal Server Error"}
    }


def test_with_options_sets_the_keepalive_of_a_route(server: LiveServer) -> None:
    recording = record_chunks(server.url + "/sse/keepalive")

    assert b": ping\n\n" in recording.body
    assert items_of("sse", recording.body) == [{"n": 0}, {"n": 1}]


# ------------------------------------------------------------------------------ shutdown


def server_command(server_name: str, port: int) -> list[str]:
    if server_name == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "yield_forever:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    # granian's default: one worker process, which its parent stops on SIGTERM.
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "yield_forever:app",
    ]  # fmt: skip


async def follow(url: str, started: anyio.Event, waiting: list[int]) -> tuple[bytes, bool]:
    """Read one stream until it ends; return its body and whether it ended cleanly."""
    body = b""
    async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", url) as response:
        try:
            async for data in response.aiter_raw():
                if not body:
                    waiting[0] -= 1
                    if not waiting[0]:
                        started.set()
                body += data
        except httpx.HTTPError:
            return body, False
    return body, True


@pytest.mark.parametrize("server_name", SERVERS)
def test_sigterm_ends_every_stream_with_the_shutdown_item(server_name: str) -> None:
    have(server_name)
    port = free_port()
    process = subprocess.Popen(
        server_command(server_name, port),
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS), *sys.path])},
    )
    urls = [
        f"http://127.0.0.1:{port}/{name}/{mode}"
        for name in FORMATS
        for mode in ("async", "sync")
        for _ in range(2)
    ]
    results: list[tuple[str, bytes, bool]] = []
    exited_after: list[float] = []
    try:
        wait_for_port(port)

        async def main() -> None:
            started, waiting = anyio.Event(), [len(urls)]

            async def run(url: str) -> None:
                results.append((url, *await follow(url, started, waiting)))

            async with anyio.create_task_group() as group:
                for url in urls:
                    group.start_soon(run, url)
                with anyio.fail_after(20):
                    await started.wait()
                sent = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(process.wait, 10)
                exited_after.append(time.monotonic() - sent)

        anyio.run(main)
    finally:
        stop_process(process)

    assert exited_after[0] < 3.0
    assert len(results) == len(urls)
    for url, body, clean in results:
        assert clean, f"{url} was cut off instead of ending"
        if "/sse/" in url:
            events = list(SSEParser().feed(body))
            assert events[-1].event == "shutdown", url
            assert json.loads(events[-1].data) == {"reason": "server shutting down"}
            assert all(event.event == "message" for event in events[:-1]), url
        else:
            lines = items_of("ndjson", body)
            assert lines[-1] == {"type": "shutdown", "reason": "server shutting down"}, url
            assert lines[:-1] == [{"n": n} for n in range(len(lines) - 1)], url


# ------------------------------------------------------------------------------ gzip


class TimedTicks:
    def __init__(self) -> None:
        self.produced_at: list[float] = []

    async def ticks(self) -> AsyncIterator[Tick]:
        for n in range(4):
            if n:
                await anyio.sleep(INTERVAL)
            self.produced_at.append(time.perf_counter())
            yield Tick(n=n)


@pytest.mark.usefixtures("without_gc")
@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("name", FORMATS)
def test_gzip_middleware_does_not_buffer_the_stream(server_name: str, name: str) -> None:
    have(server_name)
    source = TimedTicks()
    app = FastAPI()
    app.add_middleware(GZipMiddleware, minimum_size=0)

    @app.get("/ticks", response_class=FORMATS[name])
    async def ticks() -> AsyncIterator[Tick]:
        async for tick in source.ticks():
            yield tick

    with LiveServer(app, server=server_name) as live, httpx.Client() as client:
        requested_at = time.perf_counter()
        recording = record_chunks(
            live.url + "/ticks", headers={"Accept-Encoding": "gzip"}, client=client
        )

    assert recording.headers["content-encoding"] == "identity"
    assert items_of(name, recording.body) == [{"n": n} for n in range(4)]
    assert requested_at + recording.chunks[0].at < source.produced_at[1]
    assert 0.12 <= statistics.median(recording.gaps()) <= 0.32, recording.gaps()


# ------------------------------------------------------------------------------ Starlette


@pytest.mark.parametrize("name", FORMATS)
def test_a_plain_starlette_route_streams_an_iterable(name: str) -> None:
    async def ticks(request: Request) -> Response:
        async def produce() -> AsyncIterator[dict[str, int]]:
            for n in range(3):
                yield {"data": n} if name == "sse" else {"n": n}

        return FORMATS[name](produce())

    with LiveServer(Starlette(routes=[Route("/ticks", ticks)])) as live:
        response = httpx.get(live.url + "/ticks")

    assert response.headers["content-type"].startswith(FORMATS[name].media_type)
    expected: list[Any] = [0, 1, 2] if name == "sse" else [{"n": n} for n in range(3)]
    assert items_of(name, response.content) == expected


def test_any_stream_response_subclass_with_a_media_type_is_a_response_class() -> None:
    class CSVResponse(StreamResponse):
        media_type = "text/csv"

    app = FastAPI()

    @app.get("/rows", response_class=CSVResponse)
    def rows() -> Iterator[str]:
        yield "n,square\r\n"
        for n in range(3):
            yield f"{n},{n * n}\r\n"

    with LiveServer(app) as live:
        response = httpx.get(live.url + "/rows")

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text == "n,square\r\n0,0\r\n1,1\r\n2,4\r\n"
    content = app.openapi()["paths"]["/rows"]["get"]["responses"]["200"]["content"]
    assert content == {"text/csv": {"schema": {"type": "string"}}}


# ------------------------------------------------------------------------------ options


def test_with_options_checks_its_options_where_the_route_is_declared() -> None:
    with pytest.raises(TypeError, match="ping is not an option of EventSourceResponse"):
        EventSourceResponse.with_options(ping=5)
    with pytest.raises(ValueError, match=r"^keepalive must be a positive number"):
        EventSourceResponse.with_options(keepalive=-1)
    with pytest.raises(ValueError, match=r"^retry must not be negative"):
        EventSourceResponse.with_options(retry=-1)
    with pytest.raises(TypeError, match=r"^keepalive must be"):
        NDJSONResponse.with_options(keepalive=True)  # True is not one second


def test_with_options_gives_one_class_per_set_of_options() -> None:
    configured = NDJSONResponse.with_options(send_timeout=5, headers={"X-Feed": "1"})

    assert configured is NDJSONResponse.with_options(headers={"X-Feed": "1"}, send_timeout=5)
    assert configured is not NDJSONResponse.with_options(send_timeout=6, headers={"X-Feed": "1"})
    assert issubclass(configured, NDJSONResponse)
    response = configured(iter([]), headers={"X-Call": "2"})
    assert response.send_timeout == 5
    assert response.headers["x-feed"] == "1"
    assert response.headers["x-call"] == "2"
    jsonl = NDJSONResponse.with_options(media_type="application/jsonl")
    assert jsonl.media_type == "application/jsonl"  # what FastAPI's OpenAPI reads
    assert jsonl(iter([])).headers["content-type"] == "application/jsonl"


# ------------------------------------------------------------------------------ OpenAPI


class Inner(BaseModel):
    """A nested model.\fNot for the document."""

    x: float


class Reading(BaseModel):
    """A reading."""

    n: int
    inner: Inner | None = None


def openapi_of(sse_class: type[Response], jsonl_class: type[Response] | None) -> dict[str, Any]:
    """The same routes, answered by FastAPI's own classes or by ours."""
    from fastapi import APIRouter

    app = FastAPI()
    jsonl = {} if jsonl_class is None else {"response_class": jsonl_class}

    @app.get("/readings", response_class=sse_class)
    async def readings(last_event_id: str | None = Header(None)) -> AsyncIterator[Reading]:
        yield Reading(n=1)

    @app.get("/events", response_class=sse_class)
    async def events() -> AsyncIterator[FastAPIEvent]:
        yield FastAPIEvent(data=1)

    @app.post("/batches", response_class=sse_class, status_code=201)
    async def batches() -> AsyncIterator[list[Reading]]:
        yield []

    @app.get("/lines", **jsonl)
    def lines() -> Iterator[Reading]:
        yield Reading(n=1)

    @app.get("/counts", **jsonl)
    def counts() -> Iterator[dict[str, int]]:
        yield {}

    @app.get("/untyped", **jsonl)
    def untyped():
        yield {}

    router = APIRouter(prefix="/nested")

    @router.get("/inner", response_class=sse_class)
    async def inner() -> AsyncIterator[Inner]:
        yield Inner(x=1)

    app.include_router(router)
    if sse_class is EventSourceResponse:
        document_streams(app)
    return app.openapi()


def test_openapi_describes_the_items_as_fastapi_does_for_its_own_classes() -> None:
    theirs = openapi_of(FastAPIEventSourceResponse, None)
    ours = openapi_of(EventSourceResponse, NDJSONResponse)

    # The one difference on purpose: the media type name of JSON Lines.
    ours_text = json.dumps(ours, sort_keys=True)
    assert '"application/jsonl"' not in ours_text
    assert json.loads(ours_text.replace('"application/x-ndjson"', '"application/jsonl"')) == (
        json.loads(json.dumps(theirs, sort_keys=True))
    )
    content = ours["paths"]["/readings"]["get"]["responses"]["200"]["content"]
    data = content["text/event-stream"]["itemSchema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/Reading"}
    lines = ours["paths"]["/lines"]["get"]["responses"]["200"]["content"]
    assert lines == {
        "application/x-ndjson": {"itemSchema": {"$ref": "#/components/schemas/Reading"}}
    }


def test_without_document_streams_the_media_type_is_still_right() -> None:
    app = FastAPI()

    @app.get("/readings", response_class=EventSourceResponse)
    async def readings() -> AsyncIterator[Reading]:
        yield Reading(n=1)

    content = app.openapi()["paths"]["/readings"]["get"]["responses"]["200"]["content"]
    assert content == {"text/event-stream": {"schema": {"type": "string"}}}


OtherReading = create_model("Reading", celsius=(float, ...))
"""Another model named ``Reading``, with another schema."""


def test_document_streams_keeps_a_model_of_the_same_name_apart() -> None:
    app = FastAPI()

    @app.post("/readings")
    def record(reading: OtherReading) -> None:  # type: ignore[valid-type]
        pass

    @app.get("/stream", response_class=NDJSONResponse)
    async def stream() -> AsyncIterator[Reading]:
        yield Reading(n=1)

    document_streams(app)
    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert set(schemas["Reading"]["properties"]) == {"celsius"}
    item = document["paths"]["/stream"]["get"]["responses"]["200"]["content"]
    assert item["application/x-ndjson"]["itemSchema"] == {
        "$ref": "#/components/schemas/Reading-Output"
    }
    assert set(schemas["Reading-Output"]["properties"]) == {"n", "inner"}
    assert schemas["Inner"]["description"] == "A nested model."


def test_document_streams_keeps_what_a_route_documents_itself() -> None:
    app = FastAPI()
    own = {"itemSchema": {"type": "string", "description": "a log line"}}

    @app.get(
        "/log",
        response_class=NDJSONResponse,
        responses={200: {"content": {"application/x-ndjson": own}}},
    )
    async def log() -> AsyncIterator[str]:
        yield "started"

    document_streams(app)
    content = app.openapi()["paths"]["/log"]["get"]["responses"]["200"]["content"]
    assert content["application/x-ndjson"]["itemSchema"] == own["itemSchema"]


def test_document_streams_takes_a_fastapi_app_once() -> None:
    with pytest.raises(TypeError, match=r"^app must be a FastAPI application, got Starlette"):
        document_streams(Starlette())
    app = FastAPI()

    @app.get("/readings", response_class=EventSourceResponse)
    async def readings() -> AsyncIterator[Reading]:
        yield Reading(n=1)

    first = app.openapi()  # cached by FastAPI before the call
    document_streams(app)
    wrapped = app.openapi
    document_streams(app)

    assert app.openapi is wrapped
    document = app.openapi()
    assert document is first
    content = document["paths"]["/readings"]["get"]["responses"]["200"]["content"]
    assert "itemSchema" in content["text/event-stream"]

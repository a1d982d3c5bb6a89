"""FastAPI's and sse-starlette's ``ServerSentEvent`` yielded into ``sse_response``.

Code that moves from either library keeps yielding the events it built: their ``event``,
``id``, ``retry`` and ``comment`` must reach the client, with the data a client of the old
response saw, and the same field checks as our own events. Read through a strict WHATWG
parser over a real socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sse_starlette import EventSourceResponse as StarletteEventSourceResponse
from sse_starlette import JSONServerSentEvent
from sse_starlette import ServerSentEvent as StarletteEvent

from faststream_kit import StreamResponse, sse_response
from faststream_kit.testing import LiveServer, ParsedEvent, parse_events, read_sse

fastapi_sse = pytest.importorskip("fastapi.sse", reason="fastapi.sse needs FastAPI >= 0.135")
FastAPIEvent = fastapi_sse.ServerSentEvent
FastAPIEventSourceResponse = fastapi_sse.EventSourceResponse


def fastapi_events() -> list[Any]:
    return [
        FastAPIEvent(data={"n": 1}, event="tick", id="1"),
        FastAPIEvent(data="hello", event="greeting", id="2", retry=1500),
        FastAPIEvent(raw_data="plain text\nline two", event="raw", id="3"),
        FastAPIEvent(data=[1, 2.5, True, None], comment="a list"),
        FastAPIEvent(id="5"),  # no data: only moves the last event ID on
        FastAPIEvent(data=7, event="number"),
    ]


def starlette_events() -> list[Any]:
    return [
        StarletteEvent(data="hi", event="greeting", id="7", retry=100, comment="note"),
        StarletteEvent(data="two\r\nlines", event="multi", sep="\n"),
        JSONServerSentEvent(data={"a": 1}, event="json", id="8"),
        StarletteEvent(data=42),
    ]


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ours/fastapi")
    async def ours_fastapi() -> StreamResponse:
        async def produce() -> AsyncIterator[Any]:
            for event in fastapi_events():
                yield event

        return sse_response(produce())

    @app.get("/native/fastapi", response_class=FastAPIEventSourceResponse)
    async def native_fastapi() -> AsyncIterator[Any]:
        for event in fastapi_events():
            yield event

    @app.get("/ours/sse-starlette")
    def ours_starlette() -> StreamResponse:
        return sse_response(iter(starlette_events()))

    @app.get("/native/sse-starlette")
    async def native_starlette() -> StarletteEventSourceResponse:
        return StarletteEventSourceResponse(iter(starlette_events()), ping=600)

    @app.get("/ours/invalid/{library}")
    async def invalid(library: str) -> StreamResponse:
        async def produce() -> AsyncIterator[Any]:
            yield "before"
            if library == "sse-starlette":
                yield StarletteEvent(data="x", id="evil\ndata: injected")
            else:
                # Built past FastAPI's own validation, as model_construct() allows.
                yield FastAPIEvent.model_construct(data="x", event="evil\nid: 666")
            yield "never"

        return sse_response(produce())

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(make_app()) as live:
        yield live


def _fields(event: ParsedEvent) -> tuple[str, str | None, int | None, str, Any]:
    """What a client reads of an event; JSON data compared as values, not as spacing."""
    try:
        return event.event, event.id, event.retry, "json", json.loads(event.data)
    except ValueError:
        return event.event, event.id, event.retry, "text", event.data


def test_fastapi_events_keep_event_id_retry_and_fastapis_json_data(server: LiveServer) -> None:
    seen = read_sse(server.url + "/ours/fastapi")
    assert seen.recording.status_code == 200
    assert [(e.event.event, e.event.id, e.event.retry, e.event.data) for e in seen.events] == [
        ("tick", "1", None, '{"n":1}'),
        ("greeting", "2", 1500, '"hello"'),  # FastAPI's data is always JSON: a str is quoted
        ("raw", "3", None, "plain text\nline two"),  # raw_data is sent as it is
        ("message", "3", None, "[1,2.5,true,null]"),
        ("number", "5", None, "7"),  # the data-less event moved the last event ID to 5
    ]
    assert "a list" in seen.comments


def test_fastapi_events_read_the_same_as_from_fastapis_own_response(server: LiveServer) -> None:
    ours = read_sse(server.url + "/ours/fastapi")
    native = read_sse(server.url + "/native/fastapi")
    assert native.recording.status_code == 200
    assert [_fields(e.event) for e in ours.events] == [_fields(e.event) for e in native.events]


def test_sse_starlette_events_keep_their_fields(server: LiveServer) -> None:
    seen = read_sse(server.url + "/ours/sse-starlette")
    assert seen.recording.status_code == 200
    assert [(e.event.event, e.event.id, e.event.retry, e.event.data) for e in seen.events] == [
        ("greeting", "7", 100, "hi"),
        ("multi", "7", None, "two\nlines"),
        ("json", "8", None, '{"a":1}'),
        ("message", "8", None, "42"),
    ]
    assert "note" in seen.comments
    # Our frames end lines with LF whatever ``sep`` says: one of the three the spec allows.
    assert b"\r" not in seen.recording.body


def test_sse_starlette_events_read_the_same_as_from_sse_starlettes_response(
    server: LiveServer,
) -> None:
    ours = read_sse(server.url + "/ours/sse-starlette")
    native = read_sse(server.url + "/native/sse-starlette")
    assert native.recording.status_code == 200
    assert [_fields(e.event) for e in ours.events] == [_fields(e.event) for e in native.events]


@pytest.mark.parametrize("library", ["fastapi", "sse-starlette"])
def test_a_foreign_event_with_a_line_break_in_a_field_ends_with_an_error_event(
    server: LiveServer, library: str
) -> None:
    # sse-starlette would silently drop the line break, FastAPI's validation refuses it:
    # ours refuses it too, so nothing can be injected into the stream.
    seen = read_sse(server.url + f"/ours/invalid/{library}")
    assert seen.recording.complete
    events = parse_events(seen.recording.body)
    assert [(e.event, e.data) for e in events[:1]] == [("message", "before")]
    [error] = events[1:]
    assert error.event == "error"
    assert "injected" not in seen.recording.text
    assert "666" not in seen.recording.text

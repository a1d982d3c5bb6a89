"""An item that cannot be encoded, right after good ones: the same bytes whatever the timing.

The core writes the items a source has already produced in one go. Whether the failing item
was already produced when the good ones were written (no ``await`` in between, or a sync
source's worker thread ahead of the loop) or only later must not change what the client
gets: the good items, then the format's error frame (SSE, NDJSON) or an aborted body (text).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anyio
import httpx
import pytest
from fastapi import FastAPI

from faststream_kit import StreamResponse, sse_response, stream_response
from faststream_kit.testing import Chunk, LiveServer, Recording, parse_events, record_chunks

Format = Literal["text", "sse", "ndjson"]
Timing = Literal["together", "apart"]

# Two good items, one the format cannot encode, one that must never be sent.
ITEMS: dict[Format, list[Any]] = {
    "text": ["one\n", "two\n", 5, "never\n"],  # an int is not bytes or str
    "sse": ["one", "two", {"data": "x", "id": "line\nbreak"}, "never"],  # CR/LF in an id
    "ndjson": ['{"n":1}\n', '{"n":2}\n', 5, '{"n":4}\n'],
}
GOOD: dict[Format, bytes] = {
    "text": b"one\ntwo\n",
    "sse": b"data: one\n\ndata: two\n\n",
    "ndjson": b'{"n":1}\n{"n":2}\n',
}

chunks_received: dict[str, threading.Semaphore] = {}
"""Released by the test for each chunk the client read of the request ``tag``."""


def respond(fmt: Format, source: Any) -> StreamResponse:
    if fmt == "sse":
        return sse_response(source)
    media_type = "application/x-ndjson" if fmt == "ndjson" else "text/plain"
    return stream_response(source, media_type=media_type)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/async/{fmt}/{timing}")
    async def async_source(fmt: Format, timing: Timing) -> StreamResponse:
        async def produce() -> AsyncIterator[Any]:
            for item in ITEMS[fmt]:
                yield item
                if timing == "apart":
                    await anyio.sleep(0)  # suspends: the next item is not ready at once

        return respond(fmt, produce())

    @app.get("/sync/{fmt}/together")
    async def sync_together(fmt: Format) -> StreamResponse:
        loop = asyncio.get_running_loop()
        return respond(fmt, all_buffered_before_the_loop_looks(ITEMS[fmt], loop))

    @app.get("/sync/{fmt}/apart")
    def sync_apart(fmt: Format, tag: str) -> StreamResponse:
        def produce() -> Iterator[Any]:
            for index, item in enumerate(ITEMS[fmt]):
                yield item
                if index < 2:
                    # The next item comes only once this one reached the client.
                    assert chunks_received[tag].acquire(timeout=5), "the client saw no chunk"

        return respond(fmt, produce())

    return app


def all_buffered_before_the_loop_looks(
    items: list[Any], loop: asyncio.AbstractEventLoop
) -> Iterator[Any]:
    """A sync source whose items are all in the worker's buffer when the loop wakes up.

    The worker holds the event loop in a callback (once the response is waiting for the
    first item, since nothing else runs on a loop that is in a callback), produces
    everything, and only then lets it go: the response takes the first item, and the rest
    with it.
    """
    holding, produced = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        holding.set()
        produced.wait(5)

    loop.call_soon_threadsafe(hold_the_loop)
    assert holding.wait(5)
    try:
        yield from items
    finally:
        produced.set()


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(make_app()) as live:
        yield live


def read_apart(url: str, tag: str) -> Recording:
    """Read ``url``, letting the source go on after each chunk that arrived."""
    chunks_received[tag] = threading.Semaphore(0)
    try:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", f"{url}?tag={tag}") as response,
        ):
            recording = Recording(response.status_code, response.headers, response.http_version)
            try:
                for data in response.iter_raw():
                    recording.chunks.append(Chunk(0.0, data))
                    chunks_received[tag].release()
                recording.complete = True
            except httpx.RemoteProtocolError as exc:
                recording.error = exc
            return recording
    finally:
        del chunks_received[tag]


def assert_good_items_then_the_error_contract(fmt: Format, recording: Recording) -> None:
    assert recording.status_code == 200
    body = recording.body
    assert body.startswith(GOOD[fmt]), body
    assert b"never" not in body
    assert b'"n":4' not in body
    if fmt == "text":
        # No error frame in plain text: the body is aborted, visibly incomplete.
        assert body == GOOD[fmt]
        assert not recording.complete
        assert isinstance(recording.error, httpx.RemoteProtocolError)
        return
    assert recording.complete
    if fmt == "sse":
        events = parse_events(body)
        assert [(event.event, event.data) for event in events[:2]] == [
            ("message", "one"),
            ("message", "two"),
        ]
        [error] = events[2:]
        assert error.event == "error"
        assert "server_error" in error.data
    else:
        lines = body.decode().splitlines()
        assert lines[:2] == ['{"n":1}', '{"n":2}']
        [error_line] = lines[2:]
        assert "server_error" in json.dumps(json.loads(error_line))


FORMATS: list[Format] = ["text", "sse", "ndjson"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_async_source_failing_item_gives_the_same_bytes_with_or_without_an_await(
    server: LiveServer, fmt: Format
) -> None:
    together = record_chunks(f"{server.url}/async/{fmt}/together")
    apart = record_chunks(f"{server.url}/async/{fmt}/apart")
    assert_good_items_then_the_error_contract(fmt, apart)
    assert_good_items_then_the_error_contract(fmt, together)
    assert together.body == apart.body


@pytest.mark.parametrize("fmt", FORMATS)
def test_sync_source_failing_item_gives_the_same_bytes_however_far_the_thread_ran_ahead(
    server: LiveServer, fmt: Format
) -> None:
    together = record_chunks(f"{server.url}/sync/{fmt}/together")
    apart = read_apart(f"{server.url}/sync/{fmt}/apart", tag=f"sync-{fmt}")
    assert_good_items_then_the_error_contract(fmt, apart)
    assert_good_items_then_the_error_contract(fmt, together)
    assert together.body == apart.body

"""Headless Chromium's ``EventSource`` reading an ``sse_response``: the browser as the peer.

The page and the stream share an origin, so this is exactly what a FastAPI app serving its own
front end sees: events arrive one by one while the source is still producing, multi-line and
Japanese ``data`` come through intact, ``event: token`` reaches ``addEventListener('token')``,
and when the stream ends after id 3 the browser waits ``retry`` milliseconds, reconnects with
``Last-Event-ID: 3`` and the source resumes from 4 (WHATWG HTML, "Server-sent events":
"the user agent must [...] set the Last-Event-ID header to the last event ID string").
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from faststream_kit import ServerSentEvent, StreamResponse, sse_response
from faststream_kit.testing import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser

MULTILINE_JAPANESE = "監視カメラの映像\n二行目"
RETRY_MILLISECONDS = 200

# Every event the page sees, in order, with its type, data, lastEventId and arrival time (ms);
# plus the EventSource's own open/error events. It closes the source on the "done" event.
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>sse</title>
<script>
window.received = [];
window.connection = [];
const source = new EventSource('/events');
window.source = source;
function record(event) {
  window.received.push({
    type: event.type, data: event.data, lastEventId: event.lastEventId, at: performance.now()
  });
  if (event.data === 'done') source.close();
}
source.addEventListener('message', record);
source.addEventListener('token', record);
for (const kind of ['open', 'error']) {
  source.addEventListener(kind, () => window.connection.push({kind, at: performance.now()}));
}
</script>
"""


class Source:
    """The events behind ``/events``; remembers each connection's ``Last-Event-ID``.

    The first connection sends event 1, then waits for the test to ``release`` it (so event 1
    must reach the page while the source is blocked), then sends 2 and 3 with pauses and ends.
    A reconnection after 3 sends 4, 5 and ``done``. ``wait_seconds`` bounds the wait so a
    failing test cannot hang the server.
    """

    def __init__(self, wait_seconds: float = 15.0) -> None:
        self.wait_seconds = wait_seconds
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._last_event_ids: list[str | None] = []

    @property
    def last_event_ids(self) -> list[str | None]:
        with self._lock:
            return list(self._last_event_ids)

    def produce(self, last_event_id: str | None) -> AsyncIterator[Any]:
        with self._lock:
            self._last_event_ids.append(last_event_id)
        if last_event_id is None:
            return self._first_connection()
        assert last_event_id == "3", f"unexpected Last-Event-ID {last_event_id!r}"
        return self._after_reconnecting()

    async def _first_connection(self) -> AsyncIterator[Any]:
        yield ServerSentEvent(data=MULTILINE_JAPANESE, id="1")
        await anyio.to_thread.run_sync(self.release.wait, self.wait_seconds)
        await anyio.sleep(0.3)
        yield {"event": "token", "data": "トークン", "id": "2"}
        await anyio.sleep(0.3)
        yield ServerSentEvent(data={"n": 3}, id="3")

    async def _after_reconnecting(self) -> AsyncIterator[Any]:
        yield ServerSentEvent(data="four\r\nlines", id="4")
        yield ServerSentEvent(event="token", data="五", id="5")
        yield "done"


def make_app(source: Source) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/events")
    async def events() -> StreamResponse:
        return sse_response(source.produce, retry=RETRY_MILLISECONDS)

    return app


def test_chromium_event_source_streams_and_resumes_from_last_event_id(browser: Browser) -> None:
    source = Source()
    with LiveServer(make_app(source)) as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(server.url + "/")
            # Event 1 is on the page while the source is still blocked before event 2.
            page.wait_for_function("window.received.length >= 1", timeout=10_000)
            assert page.evaluate("window.received.length") == 1
            source.release.set()
            page.wait_for_function("window.received.some(e => e.data === 'done')", timeout=15_000)
            received: list[dict[str, Any]] = page.evaluate("window.received")
            connection: list[dict[str, Any]] = page.evaluate("window.connection")
            ready_state = page.evaluate("window.source.readyState")
        finally:
            source.release.set()
            context.close()

    assert source.last_event_ids == [None, "3"]
    assert [(e["type"], e["data"], e["lastEventId"]) for e in received] == [
        ("message", MULTILINE_JAPANESE, "1"),
        ("token", "トークン", "2"),
        ("message", '{"n":3}', "3"),
        ("message", "four\nlines", "4"),
        ("token", "五", "5"),
        ("message", "done", "5"),
    ]
    # Incremental: events 1 and 3 are 0.6 s apart at the source, and so in the browser.
    first, third = received[0]["at"], received[2]["at"]
    assert third - first >= 400, f"events 1 and 3 arrived {third - first:.0f} ms apart"
    # One reconnection, after the first stream ended; closed by the page on "done".
    assert [c["kind"] for c in connection] == ["open", "error", "open"]
    assert ready_state == 2  # EventSource.CLOSED
    # The reconnection honoured retry: 200 ms, well under Chromium's 3 s default.
    reconnect_ms = connection[2]["at"] - connection[1]["at"]
    assert RETRY_MILLISECONDS * 0.75 <= reconnect_ms < 2_500, f"reconnected after {reconnect_ms} ms"

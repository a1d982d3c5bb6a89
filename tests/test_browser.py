"""Headless Chromium opening a ``text/plain`` stream shows the text while it streams.

Without ``X-Content-Type-Options: nosniff`` Chromium sniffs a ``text/plain`` body (is it
really text?) and commits the navigation only once it has 1 KiB or the whole body: a token
stream opened in a tab shows nothing until it is over. ``stream_response`` sends ``nosniff``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from faststream_kit import stream_response
from faststream_kit.testing import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SHOWS_FIRST_LINE = "document.body && document.body.innerText.includes('first line')"
SHOWS_THE_REST = "document.body && document.body.innerText.includes('the rest')"


class Source:
    """Yields a short first line, then waits for the test to ``release`` it before the rest.

    ``wait_seconds`` bounds the wait so a failing test cannot hang the server.
    """

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self.release = threading.Event()
        self.done_waiting = threading.Event()
        self.released_by_test = False

    def lines(self) -> Iterator[str]:
        yield "first line\n"
        self.released_by_test = self.release.wait(timeout=self.wait_seconds)
        self.done_waiting.set()
        yield "the rest of the answer\n"


def make_app(source: Source) -> Starlette:
    async def plain(request: Request) -> Response:
        return StreamingResponse(source.lines(), media_type="text/plain")

    async def kit(request: Request) -> Response:
        return stream_response(source.lines(), media_type="text/plain")

    return Starlette(routes=[Route("/plain", plain), Route("/kit", kit)])


def test_chromium_renders_stream_response_text_before_the_stream_ends(browser: Browser) -> None:
    source = Source(wait_seconds=15)
    with LiveServer(make_app(source)) as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(server.url + "/kit", wait_until="commit")
            # The page shows the first line while the source is still waiting for us.
            page.wait_for_function(SHOWS_FIRST_LINE, timeout=10_000)
            assert not source.done_waiting.is_set()
            source.release.set()
            page.wait_for_function(SHOWS_THE_REST, timeout=10_000)
            assert page.inner_text("body") == "first line\nthe rest of the answer\n"
        finally:
            source.release.set()
            context.close()
    assert source.released_by_test


def test_chromium_shows_nothing_of_a_sniffed_plain_stream_until_it_ends(
    browser: Browser,
) -> None:
    # The control: a plain StreamingResponse (no nosniff) whose first chunk is tiny. The
    # source gives up waiting after a second, since the page never shows the first line.
    source = Source(wait_seconds=1.0)
    with LiveServer(make_app(source)) as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(server.url + "/plain", wait_until="commit", timeout=10_000)
            # Chromium committed the navigation only after the stream had ended.
            assert source.done_waiting.is_set()
            page.wait_for_function(SHOWS_THE_REST, timeout=10_000)
            assert page.inner_text("body") == "first line\nthe rest of the answer\n"
        finally:
            source.release.set()
            context.close()
    assert not source.released_by_test

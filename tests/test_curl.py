"""``curl -N`` shows each line of a ``stream_response`` when it is produced."""

from __future__ import annotations

import statistics
import subprocess
import time
from itertools import pairwise

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faststream_kit import stream_response
from faststream_kit.testing import LiveServer

from .sources import TimedLines

LINES = [f"token {i}\n".encode() for i in range(5)]
INTERVAL_SECONDS = 0.2


def make_app(source: TimedLines) -> Starlette:
    async def tokens(request: Request) -> Response:
        return stream_response(source.lines())

    return Starlette(routes=[Route("/tokens", tokens)])


def test_curl_no_buffer_prints_each_line_as_it_is_produced(curl: str) -> None:
    source = TimedLines(LINES, INTERVAL_SECONDS)
    with (
        LiveServer(make_app(source)) as server,
        # bufsize=0: read the pipe itself, so Python adds no buffering of its own.
        subprocess.Popen(
            [curl, "-N", "-s", "--no-buffer", "--fail", server.url + "/tokens"],
            stdout=subprocess.PIPE,
            bufsize=0,
        ) as process,
    ):
        assert process.stdout is not None
        lines: list[bytes] = []
        arrived_at: list[float] = []
        for line in iter(process.stdout.readline, b""):
            arrived_at.append(time.perf_counter())
            lines.append(line)
        assert process.wait(timeout=10) == 0

    assert lines == LINES
    # curl printed the first line before the server had produced the second one.
    assert arrived_at[0] < source.produced_at[1]
    gaps = [later - earlier for earlier, later in pairwise(arrived_at)]
    assert 0.12 <= statistics.median(gaps) <= 0.32, gaps

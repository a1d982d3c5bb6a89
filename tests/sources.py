"""Sources for tests: lines that remember when they were produced, a request body that
trickles in."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio


class TimedLines:
    """``lines`` yielded ``interval_seconds`` apart; ``produced_at`` holds perf_counter times."""

    def __init__(self, lines: list[bytes], interval_seconds: float = 0.2) -> None:
        self._lines = lines
        self._interval_seconds = interval_seconds
        self.produced_at: list[float] = []

    async def lines(self) -> AsyncIterator[bytes]:
        for index, line in enumerate(self._lines):
            if index:
                await anyio.sleep(self._interval_seconds)
            self.produced_at.append(time.perf_counter())
            yield line


def slow_body(*pieces: bytes, interval_seconds: float = 0.1) -> Iterator[bytes]:
    """A request body (for httpx's ``content=``) that arrives while the response streams."""
    for piece in pieces:
        time.sleep(interval_seconds)
        yield piece

"""Endless SSE streams, served in their own process for the shutdown tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI

from faststream_kit import ServerSentEvent, StreamResponse, sse_response

app = FastAPI()


@app.get("/forever")
async def forever() -> StreamResponse:
    async def produce() -> AsyncIterator[ServerSentEvent]:
        n = 0
        while True:
            yield ServerSentEvent(data=str(n), id=str(n))
            n += 1
            await anyio.sleep(0.5)

    return sse_response(produce(), keepalive=5)

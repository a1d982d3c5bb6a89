"""Endless ``yield`` path operations with our response classes, served in their own process
for the shutdown tests (uvicorn and granian)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio
from fastapi import FastAPI
from pydantic import BaseModel

from faststream_kit import EventSourceResponse, NDJSONResponse

app = FastAPI()


class Tick(BaseModel):
    n: int


for _name, _response_class in (("sse", EventSourceResponse), ("ndjson", NDJSONResponse)):

    @app.get(f"/{_name}/async", response_class=_response_class)
    async def forever_async() -> AsyncIterator[Tick]:
        n = 0
        while True:
            yield Tick(n=n)
            n += 1
            await anyio.sleep(0.5)

    @app.get(f"/{_name}/sync", response_class=_response_class)
    def forever_sync() -> Iterator[Tick]:
        n = 0
        while True:
            yield Tick(n=n)
            n += 1
            time.sleep(0.05)  # a blocking wait, in short steps: the thread can be told to stop

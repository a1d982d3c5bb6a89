"""An app with long sync streams and a trivial ``def`` endpoint, served in its own process."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import FastAPI
from starlette.responses import StreamingResponse

from faststream_kit import stream_response

ITEM_SECONDS = 0.05
"""How long each stream of ``/slow-sync`` sleeps between items."""

app = FastAPI()


@app.get("/slow-sync")
def slow_sync() -> StreamingResponse:
    def produce() -> Iterator[str]:
        for i in range(3000):  # 150 s at most: longer than a latency test may measure
            yield f"item {i}\n"
            time.sleep(ITEM_SECONDS)

    return stream_response(produce())


@app.get("/ping")
def ping() -> dict[str, bool]:
    return {"ok": True}

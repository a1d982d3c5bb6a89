"""An app with long sync streams and a trivial ``def`` endpoint, served in its own process."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import FastAPI
from starlette.responses import StreamingResponse

from faststream_kit import stream_response

app = FastAPI()


@app.get("/slow-sync")
def slow_sync() -> StreamingResponse:
    def produce() -> Iterator[str]:
        for i in range(400):  # 20 s at most
            yield f"item {i}\n"
            time.sleep(0.05)

    return stream_response(produce())


@app.get("/ping")
def ping() -> dict[str, bool]:
    return {"ok": True}

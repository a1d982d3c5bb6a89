"""Resumable streams served by a worker process; the tests run several against one Redis.

``FASTSTREAM_KIT_REDIS_SOCKET`` is the unix socket of the shared ``redis-server``, or
``FASTSTREAM_KIT_REDIS_CLUSTER`` (``host:port``) the cluster node this worker connects to;
``FASTSTREAM_KIT_OPENAI_BASE_URL`` points the ``AsyncOpenAI`` client at the scripted
OpenAI-compatible peer; ``FASTSTREAM_KIT_HEARTBEAT_SECONDS`` shortens the producer heartbeat
so that a lost producer is noticed quickly; ``FASTSTREAM_KIT_SHUTDOWN_GRACE_SECONDS`` how long
leaving the lifespan waits for producers. ``FASTSTREAM_KIT_MAX_EVENTS`` (100 by default) is
the ``max_events`` of a second ``ResumableStreams`` on the same client, which a route uses
with ``?trimmed=1``.

- ``GET /chat/{key}?model=...&format=sse|ui|ag-ui``: the answer of ``model``, produced once.
- ``GET /chat/{key}?...&idle_timeout=``: the same with ``llm_response(idle_timeout=...)``.
- ``GET /chat/{key}?...&trimmed=1``, ``GET /events/{key}?...&trimmed=1``: the same, kept to
  about the last ``FASTSTREAM_KIT_MAX_EVENTS`` events.
- ``GET /events/{key}?count=&delay=&fail_after=&failure=&retry=``: numbered events, produced
  once; ``failure`` is what the producer raises after ``fail_after`` events: ``stream_error``
  (a ``StreamError``), ``timeout`` (``TimeoutError``) or ``oserror`` (``ConnectionResetError``).
- ``POST /cancel/{key}``.
- ``GET /page/{key}?model=...``: an ``EventSource`` page that shows the answer of ``/chat``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import redis.asyncio
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from openai import AsyncOpenAI
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from faststream_kit import StreamError, StreamResponse
from faststream_kit.resume import ResumableStreams

client = AsyncOpenAI(
    base_url=os.environ.get("FASTSTREAM_KIT_OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
    api_key="sk-resume",
    max_retries=0,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # A short retry budget: a reader learns that Redis is gone within ~1 s, not after the
    # redis-py default of ten retries (up to ~5 s of backoff).
    retry = Retry(ExponentialBackoff(cap=0.1, base=0.01), 3)
    store: Any
    if "FASTSTREAM_KIT_REDIS_CLUSTER" in os.environ:
        host, port = os.environ["FASTSTREAM_KIT_REDIS_CLUSTER"].rsplit(":", 1)
        store = redis.asyncio.RedisCluster(
            host=host, port=int(port), retry=retry, socket_connect_timeout=1.0
        )
    else:
        store = redis.asyncio.Redis(
            unix_socket_path=os.environ["FASTSTREAM_KIT_REDIS_SOCKET"],
            retry=retry,
            socket_connect_timeout=1.0,
        )
    heartbeat = float(os.environ.get("FASTSTREAM_KIT_HEARTBEAT_SECONDS", "0.5"))
    grace = float(os.environ.get("FASTSTREAM_KIT_SHUTDOWN_GRACE_SECONDS", "30"))
    max_events = int(os.environ.get("FASTSTREAM_KIT_MAX_EVENTS", "100"))
    options: dict[str, Any] = {
        "ttl_seconds": 300,
        "heartbeat_seconds": heartbeat,
        "shutdown_grace_seconds": grace,
    }
    async with (
        ResumableStreams(store, **options) as streams,
        ResumableStreams(store, **options, max_events=max_events) as trimmed,
    ):
        app.state.streams = streams
        app.state.trimmed = trimmed
        yield
    await store.aclose()


app = FastAPI(lifespan=lifespan)


def streams_of(request: Request, *, trimmed: bool = False) -> ResumableStreams:
    streams: ResumableStreams = request.app.state.trimmed if trimmed else request.app.state.streams
    return streams


@app.get("/chat/{key}")
async def chat(
    key: str,
    request: Request,
    model: str = "answer",
    format: Literal["sse", "ui", "ag-ui"] = "sse",
    idle_timeout: float = 60.0,
    trimmed: bool = False,
) -> StreamResponse:
    def ask() -> Any:
        # Called only by the worker that really starts the stream: the model is asked once.
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": key}], stream=True
        )

    return streams_of(request, trimmed=trimmed).llm_response(
        key, source=ask, format=format, idle_timeout=idle_timeout
    )


@app.get("/events/{key}")
async def events(
    key: str,
    request: Request,
    count: int = 10,
    delay: float = 0.0,
    fail_after: int | None = None,
    failure: Literal["stream_error", "timeout", "oserror"] = "stream_error",
    retry: int | None = None,
    trimmed: bool = False,
) -> StreamResponse:
    async def numbers() -> AsyncIterator[str]:
        for n in range(count):
            if n == fail_after:
                if failure == "timeout":
                    raise TimeoutError("the source timed out")
                if failure == "oserror":
                    raise ConnectionResetError("the source's connection was reset")
                raise StreamError("the producer failed on purpose", type="scripted_failure")
            if delay:
                await anyio.sleep(delay)
            yield str(n)

    return streams_of(request, trimmed=trimmed).sse_response(
        key, producer=numbers(), retry=retry, keepalive=5
    )


@app.post("/cancel/{key}")
async def cancel(key: str, request: Request) -> dict[str, bool]:
    await streams_of(request).cancel(key)
    return {"cancelled": True}


PAGE = """<!doctype html>
<meta charset="utf-8">
<pre id="answer"></pre>
<script>
  window.received = 0;
  window.opened = 0;
  window.finished = false;
  window.errors = [];
  const answer = document.getElementById("answer");
  const source = new EventSource(%(url)s);
  source.onopen = () => { window.opened += 1; };
  source.addEventListener("text", (event) => {
    answer.textContent += JSON.parse(event.data).text;
    window.received += 1;
  });
  source.addEventListener("done", () => { window.finished = true; source.close(); });
  source.addEventListener("error", (event) => {
    if (event.data) { window.errors.push(event.data); source.close(); }
  });
</script>
"""


@app.get("/page/{key}")
async def page(key: str, model: str = "answer") -> HTMLResponse:
    return HTMLResponse(PAGE % {"url": json.dumps(f"/chat/{key}?model={model}")})

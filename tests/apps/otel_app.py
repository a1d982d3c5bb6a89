"""Streams under OpenTelemetry, served in their own process (tests/test_observability.py).

The real OpenTelemetry SDK records into its own test components (an in-memory span exporter
and an in-memory metric reader), configured as global providers the way an app does, in this
process only: the test process stays free of them. ``GET /_telemetry`` hands over what was
recorded as JSON; at exit (``FSK_TELEMETRY_DUMP``) the same goes to a file, for a stream the
server's shutdown ended.

``FSK_SERVER_TELEMETRY`` picks who makes the server span: ``fastapi`` (FastAPI's built-in
telemetry), ``asgi`` (opentelemetry-instrumentation-asgi) or ``starlette`` (Starlette's
``OpenTelemetryMiddleware``).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI
from openai import AsyncOpenAI
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.responses import JSONResponse

from faststream_kit import (
    ServerSentEvent,
    StreamResponse,
    llm_stream,
    sse_response,
    stream_response,
)

exporter = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(tracer_provider)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

SERVER_TELEMETRY = os.environ.get("FSK_SERVER_TELEMETRY", "fastapi")


def recorded() -> dict[str, Any]:
    spans = [json.loads(span.to_json()) for span in exporter.get_finished_spans()]
    data = reader.get_metrics_data()
    return {"spans": spans, "metrics": json.loads(data.to_json()) if data else {}}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    dump = os.environ.get("FSK_TELEMETRY_DUMP")
    if dump:
        Path(dump).write_text(json.dumps(recorded()))


# FastAPI's own telemetry makes the server span, or stays out of the way of the middleware.
OWN_TELEMETRY: Any = {"operation_spans": False}
OTHERS_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}
app = FastAPI(
    lifespan=lifespan,
    telemetry=OWN_TELEMETRY if SERVER_TELEMETRY == "fastapi" else OTHERS_TELEMETRY,
)


@app.get("/_telemetry")
async def telemetry() -> JSONResponse:
    return JSONResponse(recorded())


async def ticks(
    count: int | None, every_seconds: float, first_delay_seconds: float = 0.0
) -> AsyncIterator[ServerSentEvent]:
    await anyio.sleep(first_delay_seconds)
    n = 0
    while count is None or n < count:
        yield ServerSentEvent(data=str(n), id=str(n))
        n += 1
        await anyio.sleep(every_seconds)


@app.get("/completed")
async def completed() -> StreamResponse:
    return sse_response(ticks(4, 0.05, first_delay_seconds=0.1))


@app.get("/forever")
async def forever() -> StreamResponse:
    return sse_response(ticks(None, 0.05), keepalive=0.02)


@app.get("/error")
async def error() -> StreamResponse:
    async def fail() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data="one")
        raise RuntimeError("the source broke")

    return sse_response(fail())


@app.get("/idle")
async def idle() -> StreamResponse:
    async def stall() -> AsyncIterator[str]:
        yield "first\n"
        await anyio.sleep(3600)

    return stream_response(stall(), media_type="text/plain", idle_timeout=0.3)


@app.get("/flood")
async def flood() -> StreamResponse:
    def chunks() -> Iterator[bytes]:
        while True:
            yield b"x" * 65536

    return stream_response(chunks(), media_type="application/octet-stream", send_timeout=0.5)


@app.get("/chat")
async def chat(model: str) -> StreamResponse:
    client = AsyncOpenAI(base_url=os.environ["FSK_OPENAI_URL"], api_key="sk-test", max_retries=0)
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    return llm_stream(stream, model=model)


if SERVER_TELEMETRY == "asgi":
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    server: Any = OpenTelemetryMiddleware(app)
elif SERVER_TELEMETRY == "starlette":
    from starlette.middleware.opentelemetry import OpenTelemetryMiddleware as StarletteOTel

    server = StarletteOTel(app)
else:
    server = app

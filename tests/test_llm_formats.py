"""llm_stream with plain-text sources: formats, error frames, idle timeout, on_complete."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request

from faststream_kit import Completion, StreamError, StreamResponse, llm_stream
from faststream_kit.testing import LiveServer, parse_events, record_chunks

from .per_request import REQUEST_ID, PerRequest

FORMATS = ["text", "sse", "ndjson", "openai", "ui", "ag-ui"]


@dataclass
class Log:
    """One request's record: what ``on_complete`` reported, which threads ran the source."""

    completions: list[Completion] = field(default_factory=list)
    source_threads: list[threading.Thread] = field(default_factory=list)


def make_app(logs: PerRequest[Log]) -> FastAPI:
    app = FastAPI()

    def log_of(request: Request) -> Log:
        return logs.of(request.headers.get(REQUEST_ID, ""))

    @app.get("/tokens/{fmt}")
    async def tokens(fmt: str, request: Request) -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            for token in ["Hel", "lo", " wor", "ld"]:
                yield token
                await anyio.sleep(0.1)

        on_complete = log_of(request).completions.append
        return llm_stream(produce(), format=fmt, on_complete=on_complete)  # type: ignore[arg-type]

    @app.get("/fails/{fmt}")
    async def fails(fmt: str, request: Request) -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            yield "partial"
            yield " answer"
            raise StreamError("model overloaded", status_code=502, type="overloaded")

        on_complete = log_of(request).completions.append
        return llm_stream(produce(), format=fmt, on_complete=on_complete)  # type: ignore[arg-type]

    @app.get("/stalls/{fmt}")
    async def stalls(fmt: str) -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            yield "before the stall"
            await anyio.sleep(30)
            yield "never"

        return llm_stream(produce(), format=fmt, idle_timeout=0.3)  # type: ignore[arg-type]

    @app.get("/waits")
    async def waits(request: Request) -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            yield "first"
            await anyio.sleep(30)
            yield "never"

        return llm_stream(produce(), format="sse", on_complete=log_of(request).completions.append)

    @app.get("/sync")
    def sync(request: Request) -> StreamResponse:
        threads = log_of(request).source_threads

        def produce() -> Iterator[str]:
            for token in ["sync ", "tokens"]:
                time.sleep(0.05)  # a blocking call, as a sync SDK makes
                threads.append(threading.current_thread())
                yield token

        return llm_stream(produce(), format="text")

    @app.get("/loop-thread")
    async def loop_thread() -> int:
        return threading.get_ident()

    return app


@pytest.fixture(scope="module")
def logs() -> PerRequest[Log]:
    return PerRequest(Log)


@pytest.fixture(scope="module")
def server(logs: PerRequest[Log]) -> Iterator[LiveServer]:
    with LiveServer(logs.around(make_app(logs))) as live:
        yield live


def text_of(fmt: str, body: bytes) -> str:
    """Re-assemble the answer's text from each format, the way its client would."""
    if fmt == "text":
        return body.decode()
    if fmt == "ndjson":
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        return "".join(line["text"] for line in lines if line["type"] == "text")
    events = parse_events(body)
    if fmt == "sse":
        return "".join(json.loads(e.data)["text"] for e in events if e.event == "text")
    if fmt == "openai":
        chunks = [json.loads(e.data) for e in events if e.data != "[DONE]"]
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
        )
    parts = [json.loads(e.data) for e in events if e.data and e.data != "[DONE]"]
    if fmt == "ag-ui":
        return "".join(p["delta"] for p in parts if p["type"] == "TEXT_MESSAGE_CONTENT")
    return "".join(p["delta"] for p in parts if p["type"] == "text-delta")


@pytest.mark.parametrize("fmt", FORMATS)
def test_tokens_arrive_one_by_one_and_reassemble(
    server: LiveServer, logs: PerRequest[Log], request_id: str, fmt: str
) -> None:
    recording = record_chunks(server.url + f"/tokens/{fmt}", headers={REQUEST_ID: request_id})
    assert recording.complete
    assert text_of(fmt, recording.body) == "Hello world"
    assert len(recording.chunks) >= 4
    assert recording.chunks[-1].at - recording.chunks[0].at > 0.25, "arrived in one burst"
    completions = logs.after(request_id).completions
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    assert completions[0].text == "Hello world"
    assert completions[0].finished


@pytest.mark.parametrize("fmt", ["sse", "ndjson", "openai", "ui", "ag-ui"])
def test_mid_stream_failure_ends_with_the_format_error_frame(
    server: LiveServer, logs: PerRequest[Log], request_id: str, fmt: str
) -> None:
    recording = record_chunks(server.url + f"/fails/{fmt}", headers={REQUEST_ID: request_id})
    assert recording.status_code == 200
    assert recording.complete
    assert text_of(fmt, recording.body) == "partial answer"
    body = recording.body
    if fmt == "sse":
        last = parse_events(body)[-1]
        assert (last.event, json.loads(last.data)) == (
            "error",
            {"type": "overloaded", "message": "model overloaded"},
        )
    elif fmt == "ndjson":
        assert json.loads(body.splitlines()[-1]) == {
            "type": "error",
            "error": {"type": "overloaded", "message": "model overloaded"},
        }
    elif fmt == "openai":
        last = parse_events(body)[-1]
        assert json.loads(last.data)["error"]["message"] == "model overloaded"
    elif fmt == "ag-ui":
        last = parse_events(body)[-1]
        assert json.loads(last.data) == {
            "type": "RUN_ERROR",
            "message": "model overloaded",
            "code": "overloaded",
        }
    else:
        events = parse_events(body)
        assert json.loads(events[-2].data) == {"type": "error", "errorText": "model overloaded"}
        assert events[-1].data == "[DONE]"
    clean_end = {
        "sse": b"event: done",
        "ndjson": b'"type":"done"',
        "openai": b"data: [DONE]",
        "ui": b'"type":"finish"',
        "ag-ui": b"RUN_FINISHED",
    }
    assert clean_end[fmt] not in body, "a failed stream must not look finished"
    completions = logs.after(request_id).completions
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    assert isinstance(completions[0].error, StreamError)
    assert completions[0].text == "partial answer"


def test_mid_stream_failure_aborts_a_text_stream(server: LiveServer) -> None:
    recording = record_chunks(server.url + "/fails/text")
    assert recording.text == "partial answer"
    assert not recording.complete
    assert isinstance(recording.error, httpx.RemoteProtocolError)


@pytest.mark.parametrize("fmt", ["sse", "text"])
def test_idle_timeout_between_tokens_ends_the_stream(server: LiveServer, fmt: str) -> None:
    started = time.monotonic()
    recording = record_chunks(server.url + f"/stalls/{fmt}")
    assert time.monotonic() - started < 3
    if fmt == "text":
        assert not recording.complete
    else:
        last = parse_events(recording.body)[-1]
        assert last.event == "error"
        assert json.loads(last.data)["type"] == "timeout"


def test_disconnect_reports_partial_text_once(
    server: LiveServer, logs: PerRequest[Log], request_id: str
) -> None:
    recording = record_chunks(
        server.url + "/waits", headers={REQUEST_ID: request_id}, stop_after_chunks=1
    )
    assert b"first" in recording.body
    # Once the app has returned from the request, nothing can report it again.
    completions = logs.after(request_id).completions
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.disconnected
    assert completion.text == "first"
    assert completion.error is None


def test_sync_iterable_source_runs_in_one_worker_thread_off_the_event_loop(
    server: LiveServer, logs: PerRequest[Log], request_id: str
) -> None:
    assert httpx.get(server.url + "/sync", headers={REQUEST_ID: request_id}).text == "sync tokens"
    threads = logs.after(request_id).source_threads
    loop_thread = httpx.get(server.url + "/loop-thread").json()
    assert len(threads) == 2
    assert threads[0] is threads[1], f"ran in several threads: {[t.name for t in threads]}"
    assert threads[0].ident != loop_thread, "the sync source ran on the event loop"
    assert threads[0].name == "faststream-kit-source"


def test_unknown_format_is_rejected_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="format must be one of"):
        llm_stream(iter(["x"]), format="xml")  # type: ignore[arg-type]


def test_ui_format_sends_the_protocol_header(server: LiveServer) -> None:
    recording = record_chunks(server.url + "/tokens/ui")
    assert recording.headers["x-vercel-ai-ui-message-stream"] == "v1"

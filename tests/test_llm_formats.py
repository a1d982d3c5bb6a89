"""llm_stream with plain-text sources: formats, error frames, idle timeout, on_complete."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from fastapi import FastAPI

from faststream_kit import Completion, StreamError, StreamResponse, llm_stream
from faststream_kit.testing import LiveServer, parse_events, record_chunks

FORMATS = ["text", "sse", "ndjson", "openai", "ui"]


class Log:
    def __init__(self) -> None:
        self.completions: list[Completion] = []
        self.reported = threading.Event()

    def on_complete(self, completion: Completion) -> None:
        self.completions.append(completion)
        self.reported.set()


def make_app(log: Log) -> FastAPI:
    app = FastAPI()

    @app.get("/tokens/{fmt}")
    async def tokens(fmt: str) -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            for token in ["Hel", "lo", " wor", "ld"]:
                yield token
                await anyio.sleep(0.1)

        return llm_stream(produce(), format=fmt, on_complete=log.on_complete)  # type: ignore[arg-type]

    @app.get("/fails/{fmt}")
    async def fails(fmt: str) -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            yield "partial"
            yield " answer"
            raise StreamError("model overloaded", status_code=502, type="overloaded")

        return llm_stream(produce(), format=fmt, on_complete=log.on_complete)  # type: ignore[arg-type]

    @app.get("/stalls/{fmt}")
    async def stalls(fmt: str) -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            yield "before the stall"
            await anyio.sleep(30)
            yield "never"

        return llm_stream(produce(), format=fmt, idle_timeout=0.3)  # type: ignore[arg-type]

    @app.get("/waits")
    async def waits() -> StreamResponse:
        async def produce() -> AsyncIterator[str]:
            yield "first"
            await anyio.sleep(30)
            yield "never"

        return llm_stream(produce(), format="sse", on_complete=log.on_complete)

    @app.get("/sync")
    def sync() -> StreamResponse:
        def produce() -> Iterator[str]:
            for token in ["sync ", "tokens"]:
                time.sleep(0.05)
                yield token

        return llm_stream(produce(), format="text")

    return app


@pytest.fixture(scope="module")
def log_and_server() -> Iterator[tuple[Log, LiveServer]]:
    log = Log()
    with LiveServer(make_app(log)) as server:
        yield log, server


@pytest.fixture
def server(log_and_server: tuple[Log, LiveServer]) -> LiveServer:
    return log_and_server[1]


@pytest.fixture
def log(log_and_server: tuple[Log, LiveServer]) -> Log:
    holder = log_and_server[0]
    holder.__init__()  # type: ignore[misc]
    return holder


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
    parts = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    return "".join(p["delta"] for p in parts if p["type"] == "text-delta")


@pytest.mark.parametrize("fmt", FORMATS)
def test_tokens_arrive_one_by_one_and_reassemble(server: LiveServer, log: Log, fmt: str) -> None:
    recording = record_chunks(server.url + f"/tokens/{fmt}")
    assert recording.complete
    assert text_of(fmt, recording.body) == "Hello world"
    assert len(recording.chunks) >= 4
    assert recording.chunks[-1].at - recording.chunks[0].at > 0.25, "arrived in one burst"
    assert log.reported.wait(2)
    assert log.completions[0].text == "Hello world"
    assert log.completions[0].finished


@pytest.mark.parametrize("fmt", ["sse", "ndjson", "openai", "ui"])
def test_mid_stream_failure_ends_with_the_format_error_frame(
    server: LiveServer, log: Log, fmt: str
) -> None:
    recording = record_chunks(server.url + f"/fails/{fmt}")
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
    else:
        events = parse_events(body)
        assert json.loads(events[-2].data) == {"type": "error", "errorText": "model overloaded"}
        assert events[-1].data == "[DONE]"
    clean_end = {
        "sse": b"event: done",
        "ndjson": b'"type":"done"',
        "openai": b"data: [DONE]",
        "ui": b'"type":"finish"',
    }
    assert clean_end[fmt] not in body, "a failed stream must not look finished"
    assert log.reported.wait(2)
    assert isinstance(log.completions[0].error, StreamError)
    assert log.completions[0].text == "partial answer"


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


def test_disconnect_reports_partial_text_once(server: LiveServer, log: Log) -> None:
    recording = record_chunks(server.url + "/waits", stop_after_chunks=1)
    assert b"first" in recording.body
    assert log.reported.wait(2)
    # A later stream's report is the barrier: a second report of the first would precede it.
    log.reported.clear()
    assert httpx.get(server.url + "/tokens/text").text == "Hello world"
    assert log.reported.wait(2)
    assert len(log.completions) == 2
    completion = log.completions[0]
    assert completion.disconnected
    assert completion.text == "first"
    assert completion.error is None


def test_sync_iterable_source_streams_from_a_thread(server: LiveServer) -> None:
    assert httpx.get(server.url + "/sync").text == "sync tokens"


def test_unknown_format_is_rejected_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="format must be one of"):
        llm_stream(iter(["x"]), format="xml")  # type: ignore[arg-type]


def test_ui_format_sends_the_protocol_header(server: LiveServer) -> None:
    recording = record_chunks(server.url + "/tokens/ui")
    assert recording.headers["x-vercel-ai-ui-message-stream"] == "v1"

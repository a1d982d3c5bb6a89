"""llm_stream with the real google-genai SDK against the scripted Gemini API peer.

Three clients read the same scripts: ``client.aio`` on aiohttp (the SDK's default async
transport when aiohttp is installed), ``client.aio`` on httpx (when the app gives it an
``httpx.AsyncClient``), and the sync ``client.models`` (httpx2, in a worker thread).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI, Request
from google import genai

from faststream_kit import Completion, StreamResponse, llm_stream
from faststream_kit.resume import ResumableStreams
from faststream_kit.testing import LiveServer, parse_events, record_chunks

from .gemini_peer import FAILURES, FunctionCall, Script, ScriptedGemini, Usage
from .per_request import REQUEST_ID, PerRequest
from .redis_peer import (
    RedisServer,
    redis_server_fixture,  # noqa: F401  (fixture: redis_server)
)
from .test_llm import decode

API_KEY = "AIza-test-never-echo-me-0123456789"
FORMATS = ["text", "sse", "ndjson", "openai", "ui"]
CLIENTS = ["aio", "aio-httpx", "sync"]
WEATHER_ARGS = {"city": "Oslo", "unit": "celsius"}
WEATHER_USAGE = {"prompt_tokens": 12, "completion_tokens": 14, "total_tokens": 26}


class Reports(PerRequest[list[Completion]]):
    """What ``on_complete`` reported, filed per request."""

    def __init__(self) -> None:
        super().__init__(list)

    def for_request(self, request_id: str) -> Callable[[Completion], None]:
        return self.of(request_id).append


def gemini_client(peer: ScriptedGemini, *, httpx_transport: bool = False) -> genai.Client:
    options: dict[str, Any] = dict(peer.http_options)
    if httpx_transport:
        # The SDK reads async streams with aiohttp when it is installed, unless given httpx.
        options["httpx_async_client"] = httpx.AsyncClient()
    return genai.Client(api_key=API_KEY, http_options=options)


def make_app(peer: ScriptedGemini, reports: Reports) -> FastAPI:
    app = FastAPI()
    clients = {
        "aio": gemini_client(peer),
        "aio-httpx": gemini_client(peer, httpx_transport=True),
        "sync": gemini_client(peer),
    }

    @app.post("/gemini/aio/{fmt}")
    @app.post("/gemini/aio-httpx/{fmt}")
    async def ask_async(fmt: str, request: Request) -> StreamResponse:
        options = await request.json()
        kind = request.url.path.split("/")[2]
        return llm_stream(
            clients[kind].aio.models.generate_content_stream(  # not awaited
                model=options["script"], contents="What is the weather in Oslo?"
            ),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
            idle_timeout=options.get("idle_timeout", 60),
            send_timeout=options.get("send_timeout", 30),
        )

    @app.post("/gemini-peeked/{kind}")
    async def ask_peeked(kind: str, options: dict[str, Any]) -> StreamResponse:
        # The caller reads the first chunk itself, then hands the stream on.
        stream: Any
        if kind == "sync":
            stream = clients["sync"].models.generate_content_stream(
                model=options["script"], contents="hi"
            )
            next(stream)
        else:
            stream = await clients[kind].aio.models.generate_content_stream(
                model=options["script"], contents="hi"
            )
            await anext(stream)
        return llm_stream(stream, format="text")

    @app.post("/gemini/sync/{fmt}")
    def ask_sync(fmt: str, options: dict[str, Any], request: Request) -> StreamResponse:
        stream = clients["sync"].models.generate_content_stream(
            model=options["script"], contents="What is the weather in Oslo?"
        )
        return llm_stream(
            stream,
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
            idle_timeout=options.get("idle_timeout", 60),
        )

    return app


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedGemini]:
    with ScriptedGemini() as scripted:
        scripted.script(
            "weather",
            Script(
                thoughts=["Oslo is", " in Norway"],
                tokens=["The", " weather", " in", " Oslo"],
                function_calls=[FunctionCall("get_weather", WEATHER_ARGS, id="fc_1")],
                usage=Usage(prompt_tokens=12, candidates_tokens=9, thoughts_tokens=5),
                delay_seconds=0.08,
            ),
        )
        scripted.script("rate-limited", Script(http_status=429, retry_delay="16.2s"))
        scripted.script(
            "rate-limited-header", Script(http_status=429, http_headers={"Retry-After": "7"})
        )
        scripted.script("unauthenticated", Script(http_status=401))
        scripted.script("forbidden", Script(http_status=403))
        scripted.script("invalid-key", Script(http_status=400))
        scripted.script("overloaded", Script(http_status=503))
        scripted.script("blocked", Script(block_reason="PROHIBITED_CONTENT", usage=Usage(7, 0)))
        for failure in FAILURES:
            scripted.script(
                failure,
                Script(
                    tokens=["one", " two", " three"],
                    fail_after_tokens=2,
                    failure=failure,
                    stall_seconds=10,
                ),
            )
        scripted.script("between-tokens", Script(tokens=["first", " second"], delay_seconds=5))
        scripted.script("reuse", Script(tokens=["same", " connection"]))
        scripted.script(
            "long",
            Script(tokens=["one", " two", " three", " four"], continue_after_tokens=2),
        )
        scripted.script("firehose", Script(tokens=["x" * 32768] * 1000))
        for reason in ("MAX_TOKENS", "SAFETY", "RECITATION", "MALFORMED_FUNCTION_CALL"):
            scripted.script(reason, Script(tokens=["cut"], finish_reason=reason))
        yield scripted


@pytest.fixture(scope="module")
def reports() -> Reports:
    return Reports()


@pytest.fixture(scope="module")
def app_server(peer: ScriptedGemini, reports: Reports) -> Iterator[LiveServer]:
    with LiveServer(reports.around(make_app(peer, reports))) as server:
        yield server


def ask(
    server: LiveServer, client: str, fmt: str, script: str, request_id: str = "", **options: Any
) -> Any:
    return record_chunks(
        f"{server.url}/gemini/{client}/{fmt}",
        method="POST",
        content=json.dumps({"script": script, **options}),
        headers={REQUEST_ID: request_id, "content-type": "application/json"},
    )


def only_completion(reports: Reports, request_id: str) -> Completion:
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    return completions[0]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_gemini_stream_arrives_token_by_token_and_reassembles(
    app_server: LiveServer,
    peer: ScriptedGemini,
    reports: Reports,
    request_id: str,
    client: str,
    fmt: str,
) -> None:
    before = len(peer.requests)
    requested_at = time.monotonic()
    recording = ask(app_server, client, fmt, "weather", request_id)
    assert recording.status_code == 200
    assert recording.complete
    answer = decode(fmt, recording.body)
    assert answer["text"] == "The weather in Oslo"
    # Frames 80 ms apart: the first chunk reached the client before the model sent its last
    # token (the peer runs in this process and stamps time.monotonic(), like requested_at).
    sent_at = peer.wait_for_request(before + 1).token_sent_at
    assert requested_at + recording.chunks[0].at < sent_at[-1]
    assert len(recording.chunks) >= 2
    if fmt != "text":
        assert answer["tools"] == {
            0: {"name": "get_weather", "arguments": json.dumps(WEATHER_ARGS, separators=(",", ":"))}
        }
        assert answer["finish"] == "tool_calls"
        assert answer["usage"] == WEATHER_USAGE
    completion = only_completion(reports, request_id)
    assert completion.text == "The weather in Oslo"
    assert completion.reasoning == "Oslo is in Norway"
    [call] = completion.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == ("fc_1", "get_weather", WEATHER_ARGS)
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == WEATHER_USAGE
    assert completion.finished


def test_thought_parts_are_reasoning_events_before_the_text(app_server: LiveServer) -> None:
    recording = ask(app_server, "aio", "sse", "weather")
    events = [(e.event, json.loads(e.data)) for e in parse_events(recording.body)]
    assert [data["text"] for kind, data in events if kind == "reasoning"] == [
        "Oslo is",
        " in Norway",
    ]
    kinds = [kind for kind, _ in events]
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    assert kinds[-1] == "done"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("script", "status", "error_type", "retry_after"),
    [
        ("rate-limited", 429, "rate_limited", "17"),  # RetryInfo 16.2s, rounded up
        ("rate-limited-header", 429, "rate_limited", "7"),
        ("unauthenticated", 502, "upstream_auth_error", None),
        ("forbidden", 502, "upstream_auth_error", None),
        ("invalid-key", 502, "upstream_auth_error", None),  # Gemini's 400 API_KEY_INVALID
        ("overloaded", 503, "unavailable", None),
    ],
)
def test_errors_before_the_first_token_become_statuses_without_the_key(
    app_server: LiveServer,
    reports: Reports,
    request_id: str,
    client: str,
    script: str,
    status: int,
    error_type: str,
    retry_after: str | None,
) -> None:
    response = httpx.post(
        f"{app_server.url}/gemini/{client}/sse",
        json={"script": script},
        headers={REQUEST_ID: request_id},
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == error_type
    assert response.headers.get("retry-after") == retry_after
    assert API_KEY not in response.text
    completion = only_completion(reports, request_id)
    assert completion.error is not None
    assert API_KEY not in str(completion.error)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_blocked_prompt_is_a_502_upstream_error_with_code_prompt_blocked(
    app_server: LiveServer, reports: Reports, request_id: str, client: str
) -> None:
    response = httpx.post(
        f"{app_server.url}/gemini/{client}/ui",
        json={"script": "blocked"},
        headers={REQUEST_ID: request_id},
    )
    assert response.status_code == 502
    assert response.json() == {
        "error": {
            "type": "upstream_error",
            "message": "the model provider blocked the prompt (PROHIBITED_CONTENT)",
            "code": "prompt_blocked",
        }
    }
    completion = only_completion(reports, request_id)
    assert completion.error is not None
    assert not completion.finished


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("failure", ["error_payload", "drop", "bad_json"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_mid_stream_failure_ends_with_an_error_frame_after_the_tokens(
    app_server: LiveServer, reports: Reports, request_id: str, client: str, failure: str, fmt: str
) -> None:
    recording = ask(app_server, client, fmt, failure, request_id)
    assert recording.status_code == 200
    answer = decode(fmt, recording.body)
    assert answer["text"] == "one two"
    if fmt == "text":
        assert not recording.complete, "a failed text stream must be visibly incomplete"
    else:
        assert recording.complete
        assert answer["error"] is not None
        assert answer["finish"] is None, "a failed stream must not look finished"
    if fmt == "sse":
        expected = "upstream_unavailable" if failure == "drop" else "upstream_error"
        assert answer["error"]["type"] == expected
    completion = only_completion(reports, request_id)
    assert completion.error is not None
    assert completion.text == "one two"


@pytest.mark.parametrize("client", ["aio", "aio-httpx"])
def test_consecutive_streams_reuse_one_upstream_connection(
    app_server: LiveServer, peer: ScriptedGemini, client: str
) -> None:
    # A finished answer hands its connection back to the SDK's pool, as the SDK itself does.
    before = len(peer.requests)
    for _ in range(3):
        assert ask(app_server, client, "text", "reuse").body == b"same connection"
    ports = {peer.wait_for_request(before + n).client_port for n in (1, 2, 3)}
    assert len(ports) == 1, f"one connection per answer: ports {ports}"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_stream_the_caller_began_to_read_streams_the_rest(
    app_server: LiveServer, client: str
) -> None:
    response = httpx.post(f"{app_server.url}/gemini-peeked/{client}", json={"script": "weather"})
    # The first chunk (a thought) went to the caller; the rest is the answer.
    assert response.text == "The weather in Oslo"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_continued_generation_streams_both_requests_as_one_answer(
    app_server: LiveServer, peer: ScriptedGemini, reports: Reports, request_id: str, client: str
) -> None:
    # The SDK asks again with the continuationToken the first stream ended with: the chunk
    # that carries it must reach the SDK, not only llm_stream.
    before = len(peer.requests)
    recording = ask(app_server, client, "ndjson", "long", request_id)
    answer = decode("ndjson", recording.body)
    assert answer["text"] == "one two three four"
    assert answer["finish"] == "stop"
    assert len(peer.requests) == before + 2
    assert only_completion(reports, request_id).finish_reason == "stop"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "MALFORMED_FUNCTION_CALL"),
    ],
)
def test_finish_reasons_are_mapped_to_openai_words(
    app_server: LiveServer, reports: Reports, request_id: str, reason: str, expected: str
) -> None:
    recording = ask(app_server, "aio", "ndjson", reason, request_id)
    assert decode("ndjson", recording.body)["finish"] == expected
    assert only_completion(reports, request_id).finish_reason == expected


@pytest.mark.parametrize("client", ["aio", "aio-httpx"])
@pytest.mark.usefixtures("without_gc")
def test_client_disconnect_between_tokens_closes_the_gemini_stream_within_100ms(
    app_server: LiveServer, peer: ScriptedGemini, reports: Reports, request_id: str, client: str
) -> None:
    before = len(peer.requests)
    recording = record_chunks(
        f"{app_server.url}/gemini/{client}/sse",
        method="POST",
        content=json.dumps({"script": "between-tokens"}),
        headers={REQUEST_ID: request_id, "content-type": "application/json"},
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert b"first" in recording.body
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2), "the Gemini stream was left open"
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    completion = only_completion(reports, request_id)
    assert completion.disconnected
    assert completion.text == "first"


@pytest.mark.parametrize("client", ["aio", "aio-httpx"])
def test_idle_timeout_between_tokens_ends_the_stream_and_closes_the_upstream(
    app_server: LiveServer, peer: ScriptedGemini, client: str
) -> None:
    before = len(peer.requests)
    recording = ask(app_server, client, "sse", "stall", idle_timeout=0.4)
    answer = decode("sse", recording.body)
    assert answer["text"] == "one two"
    assert answer["error"]["type"] == "timeout"
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2), "the stalled upstream was not closed"


@pytest.mark.parametrize("client", ["aio", "aio-httpx"])
@pytest.mark.usefixtures("without_gc")
def test_a_client_that_stops_reading_closes_the_gemini_stream_after_send_timeout(
    app_server: LiveServer, peer: ScriptedGemini, reports: Reports, request_id: str, client: str
) -> None:
    # The answer waits in a send to the frozen client, so the SDK's generators are parked at
    # a yield, not in a read a cancellation would end: aclose() alone leaves the model's
    # HTTP response open (until the garbage collector, which is off here).
    before = len(peer.requests)
    body = json.dumps({"script": "firehose", "send_timeout": 0.5}).encode()
    with socket.create_connection(("127.0.0.1", app_server.port)) as frozen:
        frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        frozen.sendall(
            f"POST /gemini/{client}/text HTTP/1.1\r\nHost: test\r\n{REQUEST_ID}: {request_id}"
            f"\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert frozen.recv(1024).startswith(b"HTTP/1.1 200")
        record = peer.wait_for_request(before + 1)
        # Generous: without the fix it is never closed (the GC is off), so a slow, loaded
        # machine is no reason to fail.
        closed = record.wait_disconnected(10)
        assert closed, f"the Gemini stream stayed open for a frozen client: {record}"
    assert record.tokens_sent < 1000
    assert only_completion(reports, request_id).disconnected


@pytest.mark.usefixtures("without_gc")
def test_client_disconnect_between_tokens_closes_a_sync_gemini_stream_within_100ms(
    app_server: LiveServer, peer: ScriptedGemini, reports: Reports, request_id: str
) -> None:
    # The worker thread is blocked reading the next token (5 s away): the socket is shut
    # down from the event loop, so the model stops at once, not when that token comes.
    before = len(peer.requests)
    recording = record_chunks(
        f"{app_server.url}/gemini/sync/sse",
        method="POST",
        content=json.dumps({"script": "between-tokens"}),
        headers={REQUEST_ID: request_id, "content-type": "application/json"},
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert b"first" in recording.body
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2), "the Gemini stream was left open"
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    assert record.wait_finished(3)
    assert record.outcome == "disconnected", record.outcome
    completion = only_completion(reports, request_id)
    assert completion.disconnected
    assert completion.text == "first"


# --------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def resumable_workers(
    redis_server: RedisServer, peer: ScriptedGemini
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two apps, each with its own ``ResumableStreams`` on the same Redis: two workers."""

    def worker() -> FastAPI:
        client = gemini_client(peer)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            store = redis.asyncio.Redis(unix_socket_path=redis_server.socket_path)
            async with ResumableStreams(store, ttl_seconds=60) as streams:
                app.state.streams = streams
                yield
            await store.aclose()

        app = FastAPI(lifespan=lifespan)

        @app.get("/answer/{key}")
        async def answer(key: str, request: Request, model: str) -> StreamResponse:
            streams: ResumableStreams = request.app.state.streams
            return streams.llm_response(
                key,
                source=lambda: client.aio.models.generate_content_stream(model=model, contents=key),
            )

        return app

    with LiveServer(worker()) as a, LiveServer(worker()) as b:
        yield a, b


def test_a_gemini_answer_resumes_on_another_worker_after_last_event_id(
    resumable_workers: tuple[LiveServer, LiveServer], peer: ScriptedGemini, request_id: str
) -> None:
    a, b = resumable_workers
    tokens = [f"g{n:02d} " for n in range(12)]
    model = f"resume-{request_id}"
    peer.script(model, Script(tokens=tokens, delay_seconds=0.03, usage=Usage(3, 12)))

    first = record_chunks(f"{a.url}/answer/{request_id}?model={model}", stop_after_chunks=4)
    first_events = [e for e in parse_events(first.body) if e.event == "text"]
    assert first_events, first.body
    with httpx.Client(timeout=10) as http:
        rest = http.get(
            f"{b.url}/answer/{request_id}?model={model}",
            headers={"Last-Event-ID": first_events[-1].id or ""},
        )
    rest_events = list(parse_events(rest.content))
    texts = [json.loads(e.data)["text"] for e in first_events + rest_events if e.event == "text"]
    assert "".join(texts) == "".join(tokens)
    assert rest_events[-1].event == "done"
    assert json.loads(rest_events[-1].data)["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 12,
        "total_tokens": 15,
    }
    assert sum(1 for r in peer.requests if r.model == model) == 1, "the model was asked twice"

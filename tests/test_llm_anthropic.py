"""llm_stream with the real anthropic SDK against the scripted Anthropic peer.

Every route hands ``llm_stream`` what a FastAPI developer gets from the SDK: the async
``messages.create(..., stream=True)`` call (not awaited, and awaited), a ``messages.stream()``
manager (async and sync, not entered), and the sync client's ``Stream``.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from anthropic import Anthropic, AsyncAnthropic
from fastapi import FastAPI, Request

from faststream_kit import Completion, StreamResponse, llm_stream
from faststream_kit.testing import LiveServer, parse_events, read_sse, record_chunks

from .anthropic_peer import FAILURES, Script, ScriptedAnthropic, ToolUse, Usage
from .per_request import REQUEST_ID, PerRequest
from .redis_peer import RedisServer, redis_server_fixture  # noqa: F401  (fixture: redis_server)

API_KEY = "sk-ant-api03-never-echo-me-0123456789"
FORMATS = ["text", "sse", "ndjson", "openai", "ui", "ag-ui"]
ASYNC_SOURCES = ["create", "awaited", "manager"]
SYNC_SOURCES = ["sync-create", "sync-manager"]
MESSAGES = [{"role": "user", "content": "What is the weather in Oslo?"}]
WEATHER_INPUT = json.dumps({"city": "Oslo", "unit": "celsius"})
TIME_INPUT = json.dumps({"timezone": "Europe/Oslo"})
USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


class BodyReadThreads(httpx2.BaseTransport):
    """The sync SDK's transport: which thread read each piece of each response body.

    Keyed by the ``X-Test-Request`` header the app sends with the model request.
    """

    def __init__(self) -> None:
        self._transport = httpx2.HTTPTransport()
        self.reads: dict[str, list[threading.Thread]] = {}

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._transport.handle_request(request)
        reads = self.reads.setdefault(request.headers.get(REQUEST_ID, ""), [])
        assert isinstance(response.stream, httpx2.SyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=RecordedBody(response.stream, reads),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._transport.close()


class RecordedBody(httpx2.SyncByteStream):
    def __init__(self, stream: httpx2.SyncByteStream, reads: list[threading.Thread]) -> None:
        self._stream = stream
        self._reads = reads

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._stream:
            self._reads.append(threading.current_thread())
            yield piece

    def close(self) -> None:
        self._stream.close()


class Reports(PerRequest[list[Completion]]):
    """What ``on_complete`` reported, filed per request."""

    def __init__(self) -> None:
        super().__init__(list)

    def for_request(self, request: Request) -> Any:
        return self.of(request.headers.get(REQUEST_ID, "")).append


def make_app(peer: ScriptedAnthropic, reports: Reports, read_threads: BodyReadThreads) -> FastAPI:
    app = FastAPI()
    async_client = AsyncAnthropic(base_url=peer.base_url, api_key=API_KEY, max_retries=0)
    sync_client = Anthropic(
        base_url=peer.base_url,
        api_key=API_KEY,
        max_retries=0,
        http_client=httpx2.Client(transport=read_threads),
    )

    def stream_of(request: Request, source: Any, fmt: str) -> StreamResponse:
        return llm_stream(
            source,
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request),
            idle_timeout=float(request.query_params.get("idle_timeout", 60)),
        )

    @app.post("/create/{fmt}")
    async def create(fmt: str, script: str, request: Request) -> StreamResponse:
        source = async_client.messages.create(
            model=script, max_tokens=1024, messages=MESSAGES, stream=True
        )
        return stream_of(request, source, fmt)

    @app.post("/awaited/{fmt}")
    async def awaited(fmt: str, script: str, request: Request) -> StreamResponse:
        source = await async_client.messages.create(
            model=script, max_tokens=1024, messages=MESSAGES, stream=True
        )
        return stream_of(request, source, fmt)

    @app.api_route("/manager/{fmt}", methods=["POST", "HEAD"])
    async def manager(fmt: str, script: str, request: Request) -> StreamResponse:
        source = async_client.messages.stream(model=script, max_tokens=1024, messages=MESSAGES)
        return stream_of(request, source, fmt)

    @app.post("/sync-create/{fmt}")
    def sync_create(fmt: str, script: str, request: Request) -> StreamResponse:
        source = sync_client.messages.create(
            model=script,
            max_tokens=1024,
            messages=MESSAGES,
            stream=True,
            extra_headers={REQUEST_ID: request.headers.get(REQUEST_ID, "")},
        )
        return stream_of(request, source, fmt)

    @app.api_route("/sync-manager/{fmt}", methods=["POST", "HEAD"])
    def sync_manager(fmt: str, script: str, request: Request) -> StreamResponse:
        source = sync_client.messages.stream(
            model=script,
            max_tokens=1024,
            messages=MESSAGES,
            extra_headers={REQUEST_ID: request.headers.get(REQUEST_ID, "")},
        )
        return stream_of(request, source, fmt)

    @app.post("/beta-manager/{fmt}")
    async def beta_manager(fmt: str, script: str, request: Request) -> StreamResponse:
        source = async_client.beta.messages.stream(model=script, max_tokens=1024, messages=MESSAGES)
        return stream_of(request, source, fmt)

    @app.post("/wrapped/{fmt}")
    async def wrapped(fmt: str, script: str, request: Request) -> StreamResponse:
        async def logged() -> AsyncIterator[Any]:
            # What apps write to log or filter the SDK's events on the way: a generator
            # that llm_stream cannot recognise until it sees the first event.
            async with await async_client.messages.create(
                model=script, max_tokens=1024, messages=MESSAGES, stream=True
            ) as stream:
                async for event in stream:
                    yield event

        return stream_of(request, logged(), fmt)

    @app.get("/loop-thread")
    async def loop_thread() -> int:
        return threading.get_ident()

    @app.post("/peeked/{kind}")
    async def peeked(kind: str, script: str) -> StreamResponse:
        # The caller reads the first event itself (message_start), then hands the stream on.
        if kind == "sync":
            stream: Any = sync_client.messages.create(
                model=script, max_tokens=1024, messages=MESSAGES, stream=True
            )
            next(stream)
        else:
            stream = await async_client.messages.create(
                model=script, max_tokens=1024, messages=MESSAGES, stream=True
            )
            await anext(stream)
        return llm_stream(stream, format="ndjson")

    return app


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedAnthropic]:
    with ScriptedAnthropic() as scripted:
        scripted.script(
            "weather",
            Script(
                thinking=["The user", " wants", " Oslo"],
                tokens=["Let", " me", " check", " Oslo"],
                delay_seconds=0.06,
                tool_uses=[
                    ToolUse("toolu_01", "get_weather", WEATHER_INPUT, chunks=3),
                    ToolUse("toolu_02", "get_time", TIME_INPUT, chunks=2),
                ],
                usage=Usage(input_tokens=12, output_tokens=9),
                ping_every_tokens=2,
            ),
        )
        scripted.script(
            "cached",
            Script(
                tokens=["ok"],
                usage=Usage(
                    input_tokens=3,
                    output_tokens=2,
                    cache_creation_input_tokens=100,
                    cache_read_input_tokens=1000,
                ),
                stop_reason="max_tokens",
            ),
        )
        scripted.script("rate-limited", Script(http_status=429, http_headers={"Retry-After": "7"}))
        scripted.script("bad-key", Script(http_status=401))
        scripted.script("overloaded-529", Script(http_status=529))
        scripted.script("overloaded-at-once", Script(fail_after_tokens=0, failure="overloaded"))
        scripted.script(
            "rate-limited-at-once",
            Script(fail_after_tokens=0, failure="api_error", error_type="rate_limit_error"),
        )
        for failure in FAILURES:
            scripted.script(
                failure,
                Script(
                    tokens=["one", " two", " three"],
                    fail_after_tokens=2,
                    failure=failure,
                    error_message="the scripted model failed",
                    stall_seconds=10,
                ),
            )
        scripted.script("between-tokens", Script(tokens=["first", " second"], delay_seconds=5))
        yield scripted


@pytest.fixture(scope="module")
def reports() -> Reports:
    return Reports()


@pytest.fixture(scope="module")
def read_threads() -> BodyReadThreads:
    return BodyReadThreads()


@pytest.fixture(scope="module")
def app_server(
    peer: ScriptedAnthropic, reports: Reports, read_threads: BodyReadThreads
) -> Iterator[LiveServer]:
    with LiveServer(reports.around(make_app(peer, reports, read_threads))) as server:
        yield server


def decode(fmt: str, body: bytes) -> dict[str, Any]:
    """What a client of each format reconstructs."""
    answer: dict[str, Any] = {
        "text": "",
        "reasoning": "",
        "tools": {},
        "finish": None,
        "usage": None,
        "error": None,
    }

    def tool(index: int, call_id: str | None, name: str | None, arguments: str) -> None:
        entry = answer["tools"].setdefault(index, {"id": None, "name": None, "arguments": ""})
        entry["id"] = entry["id"] or call_id
        entry["name"] = entry["name"] or name
        entry["arguments"] += arguments

    if fmt == "text":
        answer["text"] = body.decode()
        return answer
    if fmt == "ag-ui":
        return decode_ag_ui(body)
    if fmt == "ndjson":
        records = [json.loads(line) for line in body.splitlines() if line.strip()]
        kinds = [(r["type"], r) for r in records]
    elif fmt == "sse":
        kinds = [(e.event, json.loads(e.data)) for e in parse_events(body)]
    else:
        kinds = [("part", json.loads(e.data)) for e in parse_events(body) if e.data != "[DONE]"]
    for kind, record in kinds:
        if fmt in ("sse", "ndjson"):
            if kind == "text":
                answer["text"] += record["text"]
            elif kind == "reasoning":
                answer["reasoning"] += record["text"]
            elif kind == "tool_call":
                tool(record["index"], record.get("id"), record.get("name"), record["arguments"])
            elif kind == "done":
                answer["finish"], answer["usage"] = record["finish_reason"], record["usage"]
            elif kind == "error":
                answer["error"] = record.get("error", record)
        elif fmt == "openai":
            if "error" in record:
                answer["error"] = record["error"]
                continue
            if record.get("usage"):
                answer["usage"] = record["usage"]
            for choice in record["choices"]:
                delta = choice["delta"]
                answer["text"] += delta.get("content") or ""
                answer["reasoning"] += delta.get("reasoning_content") or ""
                for call in delta.get("tool_calls") or []:
                    function = call.get("function", {})
                    tool(
                        call["index"],
                        call.get("id"),
                        function.get("name"),
                        function.get("arguments", ""),
                    )
                answer["finish"] = choice["finish_reason"] or answer["finish"]
        else:
            part = record["type"]
            if part == "text-delta":
                answer["text"] += record["delta"]
            elif part == "reasoning-delta":
                answer["reasoning"] += record["delta"]
            elif part == "tool-input-start":
                tool(len(answer["tools"]), record["toolCallId"], record["toolName"], "")
            elif part == "tool-input-delta":
                tool(len(answer["tools"]) - 1, None, None, record["inputTextDelta"])
            elif part == "message-metadata":
                metadata = record["messageMetadata"]
                answer["finish"] = metadata.get("finishReason", answer["finish"])
                answer["usage"] = metadata.get("usage", answer["usage"])
            elif part == "error":
                answer["error"] = record
    return answer


def decode_ag_ui(body: bytes) -> dict[str, Any]:
    """What an AG-UI client reconstructs, in the same shape as :func:`decode`'s."""
    answer: dict[str, Any] = {
        "text": "",
        "reasoning": "",
        "tools": {},
        "finish": None,
        "usage": None,
        "error": None,
    }
    calls: dict[str, dict[str, Any]] = {}
    for event in parse_events(body):
        record = json.loads(event.data)
        kind = record["type"]
        if kind == "TEXT_MESSAGE_CONTENT":
            answer["text"] += record["delta"]
        elif kind == "REASONING_MESSAGE_CONTENT":
            answer["reasoning"] += record["delta"]
        elif kind == "TOOL_CALL_START":
            entry = {"id": record["toolCallId"], "name": record["toolCallName"], "arguments": ""}
            calls[record["toolCallId"]] = answer["tools"][len(answer["tools"])] = entry
        elif kind == "TOOL_CALL_ARGS":
            calls[record["toolCallId"]]["arguments"] += record["delta"]
        elif kind == "RUN_FINISHED":
            answer["finish"] = record["metadata"]["finishReason"]
            if record.get("usage"):
                [usage] = record["usage"]
                answer["usage"] = {
                    "prompt_tokens": usage["inputTokens"],
                    "completion_tokens": usage["outputTokens"],
                    "total_tokens": usage["totalTokens"],
                }
        elif kind == "RUN_ERROR":
            answer["error"] = {"type": record["code"], "message": record["message"]}
    return answer


def post(server: LiveServer, route: str, script: str, request_id: str = "") -> httpx.Response:
    return httpx.post(
        f"{server.url}/{route}?script={script}", headers={REQUEST_ID: request_id}, timeout=10
    )


# --- tokens, reasoning, tool calls, usage ------------------------------------------------------


@pytest.mark.parametrize("source", ASYNC_SOURCES + SYNC_SOURCES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_anthropic_stream_arrives_token_by_token_in_every_format(
    app_server: LiveServer,
    peer: ScriptedAnthropic,
    reports: Reports,
    request_id: str,
    fmt: str,
    source: str,
) -> None:
    before = len(peer.requests)
    requested_at = time.monotonic()
    recording = record_chunks(
        f"{app_server.url}/{source}/{fmt}?script=weather",
        method="POST",
        headers={REQUEST_ID: request_id},
    )
    assert recording.status_code == 200
    assert recording.complete
    answer = decode(fmt, recording.body)
    assert answer["text"] == "Let me check Oslo"
    # Scripted 60 ms apart: the first piece reached the client before the model sent its
    # last token (the peer stamps time.monotonic() in this process, like requested_at).
    sent_at = peer.wait_for_request(before + 1).token_sent_at
    assert requested_at + recording.chunks[0].at < sent_at[-1]
    assert len(recording.chunks) >= 4
    if fmt != "text":
        assert answer["reasoning"] == "The user wants Oslo"
        assert answer["tools"] == {
            0: {"id": "toolu_01", "name": "get_weather", "arguments": WEATHER_INPUT},
            1: {"id": "toolu_02", "name": "get_time", "arguments": TIME_INPUT},
        }
        assert answer["finish"] == "tool_calls"
        assert answer["usage"] == USAGE
        assert answer["error"] is None
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.finished
    assert completion.text == "Let me check Oslo"
    assert completion.reasoning == "The user wants Oslo"
    assert [(call.id, call.name, call.arguments) for call in completion.tool_calls] == [
        ("toolu_01", "get_weather", WEATHER_INPUT),
        ("toolu_02", "get_time", TIME_INPUT),
    ]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == USAGE


@pytest.mark.parametrize("source", ["create", "sync-manager"])
def test_cached_prompt_tokens_count_as_prompt_tokens_and_max_tokens_is_length(
    app_server: LiveServer, reports: Reports, request_id: str, source: str
) -> None:
    response = post(app_server, f"{source}/sse", "cached", request_id)
    answer = decode("sse", response.content)
    expected = {"prompt_tokens": 1103, "completion_tokens": 2, "total_tokens": 1105}
    assert answer["usage"] == expected
    assert answer["finish"] == "length"
    [completion] = reports.after(request_id)
    assert completion.usage == expected
    assert completion.finish_reason == "length"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_the_caller_began_to_read_streams_the_rest(
    app_server: LiveServer, kind: str
) -> None:
    response = post(app_server, f"peeked/{kind}", "weather")
    assert response.status_code == 200
    answer = decode("ndjson", response.content)
    assert answer["text"] == "Let me check Oslo"
    assert answer["tools"][0]["arguments"] == WEATHER_INPUT
    # The caller read message_start, which carried the input tokens: the usage is unknown,
    # and an unknown usage is None, never a made-up prompt_tokens=0.
    assert answer["finish"] == "tool_calls"
    assert answer["usage"] is None


@pytest.mark.parametrize(
    ("script", "error_type"), [("overloaded", "unavailable"), ("api_error", "upstream_error")]
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_error_event_in_a_stream_the_caller_began_to_read_is_mapped_the_same(
    app_server: LiveServer, kind: str, script: str, error_type: str
) -> None:
    # Read through the SDK's models, the error event arrives as the SDK's APIStatusError
    # with the stream's 200 status: it must become the same error as on the fast path.
    response = post(app_server, f"peeked/{kind}", script)
    answer = decode("ndjson", response.content)
    assert answer["text"] == "one two"
    assert answer["error"]["type"] == error_type


def test_the_beta_namespaces_stream_manager_is_read_too(
    app_server: LiveServer, reports: Reports, request_id: str
) -> None:
    response = post(app_server, "beta-manager/sse", "weather", request_id)
    answer = decode("sse", response.content)
    assert answer["text"] == "Let me check Oslo"
    assert answer["tools"][1]["arguments"] == TIME_INPUT
    assert answer["usage"] == USAGE
    [completion] = reports.after(request_id)
    assert completion.finished


@pytest.mark.parametrize("fmt", ["sse", "ui"])
def test_a_generator_of_the_sdks_events_is_read_by_its_first_event(
    app_server: LiveServer, reports: Reports, request_id: str, fmt: str
) -> None:
    response = post(app_server, f"wrapped/{fmt}", "weather", request_id)
    answer = decode(fmt, response.content)
    assert answer["text"] == "Let me check Oslo"
    assert answer["reasoning"] == "The user wants Oslo"
    assert answer["tools"][0]["arguments"] == WEATHER_INPUT
    assert answer["usage"] == USAGE
    [completion] = reports.after(request_id)
    assert completion.finished


@pytest.mark.parametrize("source", ["manager", "sync-manager"])
def test_head_never_enters_the_stream_manager(
    app_server: LiveServer, peer: ScriptedAnthropic, reports: Reports, request_id: str, source: str
) -> None:
    model = f"head-{source}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = httpx.head(
            f"{app_server.url}/{source}/sse?script={model}", headers={REQUEST_ID: request_id}
        )
        reports.after(request_id)
        gc.collect()
    # The async manager holds its request as a coroutine: closed, not left to the GC's warning.
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert response.status_code == 200
    assert response.content == b""
    [completion] = reports.after(request_id)
    assert completion == Completion()
    assert model not in [record.script_name for record in peer.requests], "the model was asked"


# --- errors before the first token -------------------------------------------------------------


@pytest.mark.parametrize("source", ["create", "manager", "sync-manager"])
def test_upstream_429_keeps_status_and_retry_after(app_server: LiveServer, source: str) -> None:
    response = post(app_server, f"{source}/sse", "rate-limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limited"


@pytest.mark.parametrize("source", ["create", "manager", "sync-manager"])
def test_upstream_401_becomes_502_that_never_echoes_the_key(
    app_server: LiveServer, peer: ScriptedAnthropic, source: str
) -> None:
    response = post(app_server, f"{source}/sse", "bad-key")
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_auth_error"
    assert peer.requests[-1].api_key == API_KEY  # the peer did quote it back
    assert API_KEY not in response.text
    assert API_KEY[-10:] not in response.text


@pytest.mark.parametrize("script", ["overloaded-529", "overloaded-at-once"])
@pytest.mark.parametrize("source", ["create", "manager", "sync-manager"])
def test_provider_overload_before_the_first_token_is_503(
    app_server: LiveServer, source: str, script: str
) -> None:
    # 529 is Anthropic's overloaded status; once a stream has begun, it says the same with
    # an ``overloaded_error`` event, here before any token.
    response = post(app_server, f"{source}/ndjson", script)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "unavailable"


@pytest.mark.parametrize("source", ["create", "sync-manager"])
def test_a_rate_limit_error_event_before_the_first_token_is_429(
    app_server: LiveServer, source: str
) -> None:
    response = post(app_server, f"{source}/sse", "rate-limited-at-once")
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limited"
    assert "retry-after" not in response.headers  # the event carries none to keep


# --- errors after it ---------------------------------------------------------------------------

MID_STREAM = {
    "overloaded": "unavailable",
    "api_error": "upstream_error",
    "drop": "upstream_unavailable",
    "bad_json": "upstream_error",
    "truncate": "upstream_error",
}


@pytest.mark.parametrize("failure", list(MID_STREAM))
@pytest.mark.parametrize("fmt", FORMATS)
def test_mid_stream_failure_ends_with_the_formats_error_frame(
    app_server: LiveServer, reports: Reports, request_id: str, fmt: str, failure: str
) -> None:
    recording = record_chunks(
        f"{app_server.url}/create/{fmt}?script={failure}",
        method="POST",
        headers={REQUEST_ID: request_id},
    )
    assert recording.status_code == 200
    answer = decode(fmt, recording.body)
    assert answer["text"] == "one two"
    if fmt == "text":
        assert not recording.complete, "a failed text stream must be visibly incomplete"
    else:
        assert recording.complete
        assert answer["error"] is not None
        assert answer["finish"] is None, "a failed stream must not look finished"
        if fmt != "ui":  # the ui format's error part carries the message alone
            assert answer["error"]["type"] == MID_STREAM[failure]
        if failure == "api_error" and fmt not in ("ui", "ag-ui"):
            assert answer["error"]["message"] == "the scripted model failed"
            assert answer["error"]["code"] == "api_error"
    [completion] = reports.after(request_id)
    assert completion.error is not None
    assert completion.text == "one two"
    assert not completion.finished


def test_idle_timeout_between_tokens_ends_the_stream_and_closes_the_upstream(
    app_server: LiveServer, peer: ScriptedAnthropic
) -> None:
    before = len(peer.requests)
    response = httpx.post(f"{app_server.url}/create/sse?script=stall&idle_timeout=0.4", timeout=10)
    answer = decode("sse", response.content)
    assert answer["text"] == "one two"
    assert answer["error"]["type"] == "timeout"
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2), "the stalled upstream was not closed"


# --- the client leaves -------------------------------------------------------------------------


@pytest.mark.parametrize("source", ASYNC_SOURCES + SYNC_SOURCES)
def test_client_disconnect_between_tokens_closes_the_anthropic_stream_within_100ms(
    app_server: LiveServer,
    peer: ScriptedAnthropic,
    reports: Reports,
    request_id: str,
    source: str,
) -> None:
    before = len(peer.requests)
    recording = record_chunks(
        f"{app_server.url}/{source}/sse?script=between-tokens",
        method="POST",
        headers={REQUEST_ID: request_id},
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert b"first" in recording.body
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2)
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    [completion] = reports.after(request_id)
    assert completion.disconnected
    assert completion.text == "first"


@pytest.mark.parametrize("source", SYNC_SOURCES)
def test_the_sync_client_is_read_in_one_worker_thread_off_the_event_loop(
    app_server: LiveServer, read_threads: BodyReadThreads, request_id: str, source: str
) -> None:
    response = post(app_server, f"{source}/text", "weather", request_id)
    assert response.text == "Let me check Oslo"
    # Every read of the model's response body (a blocking socket read in the sync SDK) ran
    # in one thread of the library's own, never in the event loop's thread.
    loop_thread = httpx.get(app_server.url + "/loop-thread").json()
    threads = read_threads.reads[request_id]
    assert len(threads) >= 2, "the answer came in one read: the test would prove nothing"
    assert len(set(threads)) == 1, f"read in several threads: {sorted({t.name for t in threads})}"
    assert threads[0].ident != loop_thread, "the sync stream was read on the event loop"
    assert threads[0].name == "faststream-kit-source"


# --- resumable answers -------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["create", "manager"])
def test_a_claude_answer_resumes_after_last_event_id_and_is_asked_for_once(
    redis_server: RedisServer, peer: ScriptedAnthropic, source: str
) -> None:
    import redis.asyncio

    from faststream_kit.resume import ResumableStreams

    client = AsyncAnthropic(base_url=peer.base_url, api_key=API_KEY, max_retries=0)
    model = f"resume-{source}"
    peer.script(model, Script(tokens=[f"t{n} " for n in range(6)], delay_seconds=0.03))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = redis.asyncio.Redis(unix_socket_path=redis_server.socket_path)
        async with ResumableStreams(store, ttl_seconds=60) as streams:
            app.state.streams = streams
            yield
        await store.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/answers/{key}")
    async def answer(key: str, request: Request) -> StreamResponse:
        def ask() -> Any:
            if source == "manager":
                return client.messages.stream(model=model, max_tokens=64, messages=MESSAGES)
            return client.messages.create(
                model=model, max_tokens=64, messages=MESSAGES, stream=True
            )

        streams: ResumableStreams = request.app.state.streams
        return streams.llm_response(key, source=ask, request=request)

    key = uuid.uuid4().hex
    with LiveServer(app) as server:
        first = read_sse(server.url + f"/answers/{key}", stop_after_events=3)
        last_id = first.events[-1].event.id
        assert last_id
        rest = read_sse(server.url + f"/answers/{key}", headers={"Last-Event-ID": last_id})
    events = [(e.event.event, json.loads(e.event.data)) for e in [*first.events, *rest.events]]
    text = "".join(data["text"] for kind, data in events if kind == "text")
    assert text == "".join(f"t{n} " for n in range(6))  # every token once, in order
    assert events[-1] == (
        "done",
        {
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
    )
    assert [r.script_name for r in peer.requests].count(model) == 1

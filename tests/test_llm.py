"""llm_stream with the real openai SDK against the scripted OpenAI-compatible peer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from openai import AsyncOpenAI, AzureOpenAI, OpenAI

from faststream_kit import Completion, StreamResponse, llm_stream
from faststream_kit._llm._providers.openai import _SyncPayloads, sdk_payloads
from faststream_kit.testing import LiveServer, parse_events, record_chunks

from .openai_peer import FAILURES, Script, ScriptedOpenAI, ToolCall, Usage
from .per_request import REQUEST_ID, PerRequest
from .sources import slow_body

API_KEY = "sk-test-never-echo-me-0123456789"
FORMATS = ["text", "sse", "ndjson", "openai", "ui"]
MESSAGES = [{"role": "user", "content": "hi"}]
WEATHER_ARGS = json.dumps({"city": "Oslo", "unit": "celsius"})


class Reports(PerRequest[list[Completion]]):
    """What ``on_complete`` reported, filed per request."""

    def __init__(self) -> None:
        super().__init__(list)

    def for_request(self, request_id: str) -> Callable[[Completion], None]:
        return self.of(request_id).append


class BodyReadThreads(httpx.BaseTransport):
    """The sync SDK's transport: which thread read each piece of each response body.

    Keyed by the ``X-Test-Request`` header the app sends with the model request.
    """

    def __init__(self) -> None:
        self._transport = httpx.HTTPTransport()
        self.reads: dict[str, list[threading.Thread]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._transport.handle_request(request)
        reads = self.reads.setdefault(request.headers.get(REQUEST_ID, ""), [])
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=RecordedBody(response.stream, reads),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._transport.close()


class RecordedBody(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, reads: list[threading.Thread]) -> None:
        self._stream = stream
        self._reads = reads

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._stream:
            self._reads.append(threading.current_thread())
            yield piece

    def close(self) -> None:
        self._stream.close()


def make_app(peer: ScriptedOpenAI, reports: Reports, read_threads: BodyReadThreads) -> FastAPI:
    app = FastAPI()
    async_client = AsyncOpenAI(base_url=peer.base_url, api_key=API_KEY, max_retries=0)
    sync_client = OpenAI(
        base_url=peer.base_url,
        api_key=API_KEY,
        max_retries=0,
        http_client=httpx.Client(transport=read_threads),
    )
    azure_client = AzureOpenAI(
        azure_endpoint=peer.azure_endpoint,
        api_key=API_KEY,
        api_version="2024-10-21",
        max_retries=0,
    )

    @app.post("/chat/{fmt}")
    async def chat(fmt: str, request: Request) -> StreamResponse:
        options = await request.json()
        return llm_stream(
            async_client.chat.completions.create(
                model=options["script"],
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            ),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
            idle_timeout=options.get("idle_timeout", 60),
        )

    @app.post("/responses/{fmt}")
    async def responses(fmt: str, request: Request) -> StreamResponse:
        options = await request.json()
        return llm_stream(
            async_client.responses.create(model=options["script"], input="hi", stream=True),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

    @app.post("/sync-chat/{fmt}")
    def sync_chat(fmt: str, options: dict[str, Any], request: Request) -> StreamResponse:
        request_id = request.headers.get(REQUEST_ID, "")
        stream = sync_client.chat.completions.create(
            model=options["script"],
            messages=MESSAGES,
            stream=True,
            extra_headers={REQUEST_ID: request_id},
        )
        return llm_stream(
            stream,
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request_id),
        )

    @app.get("/loop-thread")
    async def loop_thread() -> int:
        return threading.get_ident()

    @app.post("/peeked-chat/{kind}")
    async def peeked_chat(kind: str, options: dict[str, Any]) -> StreamResponse:
        # The caller reads the first chunk itself (the role chunk), then hands the stream on.
        if kind == "sync":
            stream: Any = sync_client.chat.completions.create(
                model=options["script"], messages=MESSAGES, stream=True
            )
            next(stream)
        else:
            stream = await async_client.chat.completions.create(
                model=options["script"], messages=MESSAGES, stream=True
            )
            await anext(stream)
        return llm_stream(stream, format="text")

    @app.post("/azure/{fmt}")
    async def azure(fmt: str, request: Request) -> StreamResponse:
        options = await request.json()
        stream = azure_client.chat.completions.create(
            model=options["script"], messages=MESSAGES, stream=True
        )
        return llm_stream(stream, format=fmt)  # type: ignore[arg-type]

    return app


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as scripted:
        scripted.script(
            "weather",
            Script(
                tokens=["The", " weather", " in", " Oslo"],
                delay_seconds=0.08,
                tool_calls=[ToolCall("call_w1", "get_weather", WEATHER_ARGS, chunks=3)],
                usage=Usage(prompt_tokens=12, completion_tokens=9),
            ),
        )
        scripted.script("reuse", Script(tokens=["same", " connection"]))
        scripted.script("drop-after-done", Script(tokens=["all", " here"], drop_after_done=True))
        scripted.script("slow", Script(tokens=["a", "b", "c", "d"], delay_seconds=0.15))
        scripted.script("rate-limited", Script(http_status=429, http_headers={"Retry-After": "7"}))
        scripted.script("bad-key", Script(http_status=401))
        for failure in FAILURES:
            scripted.script(
                failure,
                Script(
                    tokens=["one", " two", " three"],
                    fail_after_tokens=2,
                    failure=failure,  # type: ignore[arg-type]
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
    peer: ScriptedOpenAI, reports: Reports, read_threads: BodyReadThreads
) -> Iterator[LiveServer]:
    with LiveServer(reports.around(make_app(peer, reports, read_threads))) as server:
        yield server


def decode(fmt: str, body: bytes) -> dict[str, Any]:
    """What a client of each format reconstructs: text, tool arguments, finish, usage."""
    answer: dict[str, Any] = {"text": "", "tools": {}, "finish": None, "usage": None, "error": None}

    def tool(index: int, name: str | None, arguments: str) -> None:
        entry = answer["tools"].setdefault(index, {"name": None, "arguments": ""})
        entry["name"] = entry["name"] or name
        entry["arguments"] += arguments

    if fmt == "text":
        answer["text"] = body.decode()
        return answer
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
            elif kind == "tool_call":
                tool(record["index"], record.get("name"), record["arguments"])
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
                for call in delta.get("tool_calls") or []:
                    function = call.get("function", {})
                    tool(call["index"], function.get("name"), function.get("arguments", ""))
                answer["finish"] = choice["finish_reason"] or answer["finish"]
        else:
            kind = record["type"]
            if kind == "text-delta":
                answer["text"] += record["delta"]
            elif kind == "tool-input-start":
                tool(len(answer["tools"]), record["toolName"], "")
            elif kind == "tool-input-delta":
                tool(len(answer["tools"]) - 1, None, record["inputTextDelta"])
            elif kind == "message-metadata":
                answer["finish"] = record["messageMetadata"]["finishReason"]
                answer["usage"] = record["messageMetadata"]["usage"]
            elif kind == "error":
                answer["error"] = record
    return answer


@pytest.mark.parametrize("fmt", FORMATS)
def test_real_sdk_stream_arrives_token_by_token_and_reassembles(
    app_server: LiveServer, peer: ScriptedOpenAI, reports: Reports, request_id: str, fmt: str
) -> None:
    before = len(peer.requests)
    requested_at = time.monotonic()
    recording = record_chunks(
        app_server.url + f"/chat/{fmt}",
        method="POST",
        content=json.dumps({"script": "weather"}),
        headers={REQUEST_ID: request_id},
    )
    assert recording.status_code == 200
    assert recording.complete
    answer = decode(fmt, recording.body)
    assert answer["text"] == "The weather in Oslo"
    # Scripted 80 ms apart: the first token reached the client before the model sent the
    # last one (the peer runs in this process and stamps time.monotonic(), like requested_at;
    # chunks[0].at is a duration since the request).
    sent_at = peer.wait_for_request(before + 1).token_sent_at
    assert requested_at + recording.chunks[0].at < sent_at[-1]
    assert len(recording.chunks) >= 2
    if fmt != "text":
        assert answer["tools"] == {0: {"name": "get_weather", "arguments": WEATHER_ARGS}}
        assert answer["finish"] == "tool_calls"
        assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.text == "The weather in Oslo"
    assert completion.tool_calls[0].arguments == WEATHER_ARGS
    assert completion.usage == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    assert completion.finished


@pytest.fixture(scope="module")
def openai_compatible_app(peer: ScriptedOpenAI) -> Iterator[LiveServer]:
    """Our app as an OpenAI-compatible endpoint: POST /v1/chat/completions."""
    app = FastAPI()
    upstream = AsyncOpenAI(base_url=peer.base_url, api_key=API_KEY, max_retries=0)

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> StreamResponse:
        body = await request.json()
        return llm_stream(
            upstream.chat.completions.create(
                model="weather",
                messages=body["messages"],
                stream=True,
                stream_options={"include_usage": True},
            ),
            format="openai",
            model=body["model"],
        )

    with LiveServer(app) as server:
        yield server


def test_openai_sdk_pointed_at_our_endpoint_streams_the_same_answer(
    openai_compatible_app: LiveServer,
) -> None:
    client = OpenAI(
        base_url=openai_compatible_app.url + "/v1",
        api_key="anything",
        max_retries=0,
        _strict_response_validation=True,
    )
    stream = client.chat.completions.create(
        model="our-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    arguments = "".join(
        call.function.arguments or ""
        for c in chunks
        if c.choices
        for call in c.choices[0].delta.tool_calls or []
        if call.function
    )
    usage = chunks[-1].usage
    assert text == "The weather in Oslo"
    assert finish == ["tool_calls"]
    assert arguments == WEATHER_ARGS
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 9, 21)
    assert {c.model for c in chunks} == {"our-model"}


def test_upstream_429_keeps_status_and_retry_after(app_server: LiveServer) -> None:
    response = httpx.post(app_server.url + "/chat/sse", json={"script": "rate-limited"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limited"


def test_upstream_401_becomes_502_without_the_key(app_server: LiveServer) -> None:
    response = httpx.post(app_server.url + "/chat/sse", json={"script": "bad-key"})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_auth_error"
    assert API_KEY not in response.text
    assert API_KEY[-10:] not in response.text


@pytest.mark.parametrize(
    ("route", "script"),
    [
        ("chat", "error_payload"),
        ("responses", "responses_error"),
        ("responses", "response_failed"),
        ("chat", "drop"),
        ("chat", "bad_json"),
        ("responses", "bad_json"),
    ],
)
@pytest.mark.parametrize("fmt", ["sse", "ndjson", "openai", "ui", "text"])
def test_mid_stream_failure_ends_with_an_error_frame_after_the_tokens(
    app_server: LiveServer, reports: Reports, request_id: str, route: str, script: str, fmt: str
) -> None:
    recording = record_chunks(
        app_server.url + f"/{route}/{fmt}",
        method="POST",
        content=json.dumps({"script": script}),
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
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.error is not None
    assert completion.text == "one two"


@pytest.mark.parametrize("fmt", ["sse", "text"])
def test_idle_timeout_between_tokens_ends_the_stream(
    app_server: LiveServer, peer: ScriptedOpenAI, fmt: str
) -> None:
    before = len(peer.requests)
    recording = record_chunks(
        app_server.url + f"/chat/{fmt}",
        method="POST",
        content=json.dumps({"script": "stall", "idle_timeout": 0.4}),
    )
    answer = decode(fmt, recording.body)
    assert answer["text"] == "one two"
    if fmt == "text":
        assert not recording.complete
    else:
        assert answer["error"]["type"] == "timeout"
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2), "the stalled upstream was not closed"


def test_client_disconnect_between_tokens_closes_the_upstream_within_100ms(
    app_server: LiveServer, peer: ScriptedOpenAI, reports: Reports, request_id: str
) -> None:
    before = len(peer.requests)
    recording = record_chunks(
        app_server.url + "/chat/sse",
        method="POST",
        content=json.dumps({"script": "between-tokens"}),
        headers={REQUEST_ID: request_id},
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert b"first" in recording.body
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2)
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.disconnected
    assert completion.text == "first"


def test_client_disconnect_between_tokens_closes_a_sync_openai_stream_within_100ms(
    app_server: LiveServer, peer: ScriptedOpenAI, reports: Reports, request_id: str
) -> None:
    """The worker thread is blocked reading the next token (5 s away): the socket is shut
    down from the event loop, so the model stops at once, not when that token comes."""
    before = len(peer.requests)
    recording = record_chunks(
        app_server.url + "/sync-chat/sse",
        method="POST",
        content=json.dumps({"script": "between-tokens"}),
        headers={REQUEST_ID: request_id, "content-type": "application/json"},
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert b"first" in recording.body
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2)
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    assert completions[0].disconnected


def test_a_sync_responses_stream_left_after_its_last_event_keeps_its_pooled_connection(
    peer: ScriptedOpenAI,
) -> None:
    """The Responses API sends no ``[DONE]``: after ``response.completed`` the next read ends
    the body and gives the connection back to the client's pool. A client leaving then must
    not shut that socket down from the event loop: it may already carry another request."""
    with OpenAI(base_url=peer.base_url, api_key="sk-test", max_retries=0) as client:
        stream = client.responses.create(model="reuse", input="hi", stream=True)
        payloads = sdk_payloads(stream)
        assert isinstance(payloads, _SyncPayloads)
        while next(payloads)["type"] != "response.completed":
            pass
        payloads.interrupt()  # the client leaves now, as the worker reads the end of the body
        assert list(payloads) == []
        payloads.close()
        for _ in client.responses.create(model="reuse", input="hi", stream=True):
            pass
    first, second = [r for r in peer.requests if r.script_name == "reuse"][-2:]
    assert first.client_port is not None
    assert second.client_port == first.client_port


def test_responses_api_stream_reassembles(app_server: LiveServer) -> None:
    recording = record_chunks(
        app_server.url + "/responses/sse", method="POST", content=json.dumps({"script": "weather"})
    )
    answer = decode("sse", recording.body)
    assert answer["text"] == "The weather in Oslo"
    assert answer["tools"][0]["arguments"] == WEATHER_ARGS
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def test_sync_client_stream_is_read_in_one_worker_thread_off_the_event_loop(
    app_server: LiveServer, reports: Reports, read_threads: BodyReadThreads, request_id: str
) -> None:
    response = httpx.post(
        app_server.url + "/sync-chat/text",
        json={"script": "weather"},
        headers={REQUEST_ID: request_id},
    )
    assert response.text == "The weather in Oslo"
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.finished
    # Every read of the model's response body (a blocking socket read in the sync SDK) ran
    # in one thread of the library's own, never in the event loop's thread, which would
    # stall every other request meanwhile.
    loop_thread = httpx.get(app_server.url + "/loop-thread").json()
    threads = read_threads.reads[request_id]
    assert len(threads) >= 2, "the answer came in one read: the test would prove nothing"
    assert len(set(threads)) == 1, f"read in several threads: {sorted({t.name for t in threads})}"
    assert threads[0].ident != loop_thread, "the sync stream was read on the event loop"
    assert threads[0].name == "faststream-kit-source"


def test_azure_prelude_chunk_without_choices_is_skipped(app_server: LiveServer) -> None:
    response = httpx.post(app_server.url + "/azure/sse", json={"script": "slow"})
    assert decode("sse", response.content)["text"] == "abcd"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_the_caller_began_to_read_streams_the_rest(
    app_server: LiveServer, kind: str
) -> None:
    response = httpx.post(app_server.url + f"/peeked-chat/{kind}", json={"script": "weather"})
    assert response.status_code == 200
    assert response.text == "The weather in Oslo"


def test_consecutive_async_streams_reuse_one_upstream_connection(
    app_server: LiveServer, peer: ScriptedOpenAI
) -> None:
    # After ``[DONE]`` the rest of the body is read, so the HTTP/1.1 connection goes back to
    # the openai client's pool instead of being closed (a new TLS handshake per answer).
    for _ in range(2):
        response = httpx.post(app_server.url + "/chat/text", json={"script": "reuse"})
        assert response.text == "same connection"
    first, second = [r for r in peer.requests if r.script_name == "reuse"][-2:]
    assert first.client_port is not None
    assert second.client_port == first.client_port


@pytest.mark.parametrize("route", ["chat", "responses"])
def test_an_upstream_event_that_is_not_json_is_reported_as_an_upstream_error(
    app_server: LiveServer, route: str
) -> None:
    response = httpx.post(app_server.url + f"/{route}/sse", json={"script": "bad_json"})
    answer = decode("sse", response.content)
    assert answer["text"] == "one two"
    assert answer["error"]["type"] == "upstream_error"
    assert "JSON" in answer["error"]["message"]


def test_a_connection_lost_after_done_does_not_spoil_a_complete_answer(
    app_server: LiveServer, reports: Reports, request_id: str
) -> None:
    response = httpx.post(
        app_server.url + "/chat/sse",
        json={"script": "drop-after-done"},
        headers={REQUEST_ID: request_id},
    )
    answer = decode("sse", response.content)
    assert answer == {**answer, "text": "all here", "finish": "stop", "error": None}
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.finished


# --- the request being answered, and the thread limiter --------------------------------------


def make_request_app(limiter: anyio.CapacityLimiter) -> FastAPI:
    app = FastAPI()

    @app.post("/echo/{fmt}")
    async def echo(fmt: str, request: Request) -> StreamResponse:
        async def tokens() -> AsyncIterator[str]:
            async for piece in request.stream():
                if piece:
                    yield piece.decode()

        return llm_stream(tokens(), format=fmt, request=request)  # type: ignore[arg-type]

    @app.get("/sync-tokens")
    def sync_tokens() -> StreamResponse:
        def tokens() -> Iterator[str]:
            # Runs in the worker thread, which holds one token of the limiter it was given.
            yield f"{limiter.borrowed_tokens} of {limiter.total_tokens}"

        return llm_stream(tokens(), format="text", thread_limiter=limiter)

    return app


@pytest.fixture(scope="module", params=["uvicorn", "hypercorn"])
def request_app_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    # hypercorn hands each body message to one receive() call: without the relay, the
    # response's disconnect watch would take some of the body away from the source.
    app = make_request_app(anyio.CapacityLimiter(3))
    with LiveServer(app, server=request.param) as live:
        yield live


@pytest.mark.parametrize("fmt", ["text", "ndjson"])
def test_with_request_a_source_reads_the_request_body_while_the_answer_streams(
    request_app_server: LiveServer, fmt: str
) -> None:
    with httpx.Client(timeout=5) as client:
        response = client.post(
            f"{request_app_server.url}/echo/{fmt}", content=slow_body(b"Hello", b", ", b"world")
        )
    assert response.status_code == 200
    if fmt == "text":
        assert response.text == "Hello, world"
    else:
        lines = [json.loads(line) for line in response.text.splitlines() if line]
        assert "".join(line["text"] for line in lines if line["type"] == "text") == "Hello, world"


def test_a_sync_source_runs_on_the_thread_limiter_given(request_app_server: LiveServer) -> None:
    response = httpx.get(request_app_server.url + "/sync-tokens", timeout=5)
    assert response.text == "1 of 3"

"""llm_stream with the real openai SDK against the scripted OpenAI-compatible peer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from openai import AsyncOpenAI, AzureOpenAI, OpenAI

from faststream_kit import Completion, StreamResponse, llm_stream
from faststream_kit.testing import LiveServer, parse_events, record_chunks

from .openai_peer import FAILURES, Script, ScriptedOpenAI, ToolCall, Usage

API_KEY = "sk-test-never-echo-me-0123456789"
FORMATS = ["text", "sse", "ndjson", "openai", "ui"]
MESSAGES = [{"role": "user", "content": "hi"}]
WEATHER_ARGS = json.dumps({"city": "Oslo", "unit": "celsius"})


class Reports:
    def __init__(self) -> None:
        self.completions: list[Completion] = []
        self.arrived = threading.Event()

    def __call__(self, completion: Completion) -> None:
        self.completions.append(completion)
        self.arrived.set()


def make_app(peer: ScriptedOpenAI, reports: Reports) -> FastAPI:
    app = FastAPI()
    async_client = AsyncOpenAI(base_url=peer.base_url, api_key=API_KEY, max_retries=0)
    sync_client = OpenAI(base_url=peer.base_url, api_key=API_KEY, max_retries=0)
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
            on_complete=reports,
            idle_timeout=options.get("idle_timeout", 60),
        )

    @app.post("/responses/{fmt}")
    async def responses(fmt: str, request: Request) -> StreamResponse:
        options = await request.json()
        return llm_stream(
            async_client.responses.create(model=options["script"], input="hi", stream=True),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports,
        )

    @app.post("/sync-chat/{fmt}")
    def sync_chat(fmt: str, options: dict[str, Any]) -> StreamResponse:
        stream = sync_client.chat.completions.create(
            model=options["script"], messages=MESSAGES, stream=True
        )
        return llm_stream(stream, format=fmt, on_complete=reports)  # type: ignore[arg-type]

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
def reports_and_app(peer: ScriptedOpenAI) -> Iterator[tuple[Reports, LiveServer]]:
    reports = Reports()
    with LiveServer(make_app(peer, reports)) as server:
        yield reports, server


@pytest.fixture
def app_server(reports_and_app: tuple[Reports, LiveServer]) -> LiveServer:
    return reports_and_app[1]


@pytest.fixture
def reports(reports_and_app: tuple[Reports, LiveServer]) -> Reports:
    holder = reports_and_app[0]
    holder.__init__()  # type: ignore[misc]
    return holder


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
    app_server: LiveServer, peer: ScriptedOpenAI, reports: Reports, fmt: str
) -> None:
    before = len(peer.requests)
    requested_at = time.monotonic()
    recording = record_chunks(
        app_server.url + f"/chat/{fmt}", method="POST", content=json.dumps({"script": "weather"})
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
    assert reports.arrived.wait(2)
    completion = reports.completions[0]
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
    app_server: LiveServer, reports: Reports, route: str, script: str, fmt: str
) -> None:
    recording = record_chunks(
        app_server.url + f"/{route}/{fmt}", method="POST", content=json.dumps({"script": script})
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
    assert reports.arrived.wait(2)
    assert reports.completions[0].error is not None
    assert reports.completions[0].text == "one two"


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
    app_server: LiveServer, peer: ScriptedOpenAI, reports: Reports
) -> None:
    before = len(peer.requests)
    recording = record_chunks(
        app_server.url + "/chat/sse",
        method="POST",
        content=json.dumps({"script": "between-tokens"}),
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert b"first" in recording.body
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2)
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    assert reports.arrived.wait(2)
    assert len(reports.completions) == 1
    assert reports.completions[0].disconnected
    assert reports.completions[0].text == "first"


def test_responses_api_stream_reassembles(app_server: LiveServer) -> None:
    recording = record_chunks(
        app_server.url + "/responses/sse", method="POST", content=json.dumps({"script": "weather"})
    )
    answer = decode("sse", recording.body)
    assert answer["text"] == "The weather in Oslo"
    assert answer["tools"][0]["arguments"] == WEATHER_ARGS
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def test_sync_client_stream_works(app_server: LiveServer) -> None:
    response = httpx.post(app_server.url + "/sync-chat/text", json={"script": "weather"})
    assert response.text == "The weather in Oslo"


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
    app_server: LiveServer, reports: Reports
) -> None:
    response = httpx.post(app_server.url + "/chat/sse", json={"script": "drop-after-done"})
    answer = decode("sse", response.content)
    assert answer == {**answer, "text": "all here", "finish": "stop", "error": None}
    assert reports.arrived.wait(2)
    assert reports.completions[0].finished

"""llm_stream with LangChain chat models and LangGraph graphs.

The real ``langchain-openai`` ``ChatOpenAI`` talks over HTTP to the scripted OpenAI-compatible
peer (``tests/openai_peer.py``), which records what it sent and when the client left; the app
runs in a real uvicorn and a real client reads it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI, Request
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode

from faststream_kit import StreamResponse, llm_stream
from faststream_kit.resume import ResumableStreams
from faststream_kit.testing import LiveServer, parse_events, record_chunks

from .anthropic_peer import Script as Script_
from .anthropic_peer import ScriptedAnthropic, ToolUse
from .anthropic_peer import Usage as AnthropicUsage
from .openai_peer import Script, ScriptedOpenAI, ToolCall, Usage
from .per_request import REQUEST_ID
from .redis_peer import (
    RedisServer,
    redis_server_fixture,  # noqa: F401  (fixture: redis_server)
)
from .test_llm import Reports, decode

API_KEY = "sk-test-langchain-never-echo-me-0123456789"
ANTHROPIC_KEY = "sk-ant-test-langchain-never-echo-me-0123456789"
FORMATS = ["text", "sse", "ndjson", "openai", "ui"]
MESSAGES = [("user", "What is the weather in Oslo?")]
WEATHER_ARGS = json.dumps({"city": "Oslo", "unit": "celsius"})
ANSWER = "It is 12 degrees in Oslo."
USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


@tool
def get_weather(city: str, unit: str) -> str:
    """The current weather in a city."""
    return f"TOOL RESULT: 12 degrees {unit} in {city}"


def weather_graph(models: ModelCache, plan: str | None, answer: str) -> CompiledStateGraph[Any]:
    """``plan`` (a model that calls ``get_weather``) -> ``tools`` -> ``answer``; or ``answer``
    alone when ``plan`` is None. Each model is a script of the peer."""

    async def answer_node(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await models.get(answer).ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer_node)
    builder.add_edge("answer", END)
    if plan is None:
        builder.add_edge(START, "answer")
        return builder.compile()

    async def plan_node(state: MessagesState) -> dict[str, Any]:
        planner = models.get(plan).bind_tools([get_weather])
        return {"messages": [await planner.ainvoke(state["messages"])]}

    builder.add_node("plan", plan_node)
    builder.add_node("tools", ToolNode([get_weather]))
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "tools")
    builder.add_edge("tools", "answer")
    return builder.compile()


class ChatWithReasoningContent(ChatOpenAI):
    """What OpenAI-compatible integrations such as langchain-deepseek do with a delta's
    ``reasoning_content``: they put it in the chunk's ``additional_kwargs``."""

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        generation = super()._convert_chunk_to_generation_chunk(chunk, *args, **kwargs)
        choices = chunk.get("choices") or [{}]
        reasoning = (choices[0].get("delta") or {}).get("reasoning_content")
        if generation is not None and reasoning:
            generation.message.additional_kwargs["reasoning_content"] = reasoning
        return generation


class ModelCache:
    """One ``ChatOpenAI`` per script name (and API), all pointed at the peer."""

    def __init__(self, peer: ScriptedOpenAI) -> None:
        self.peer = peer
        self.models: dict[tuple[str, bool, bool, bool], ChatOpenAI] = {}

    def get(
        self,
        name: str,
        *,
        responses_api: bool = False,
        reasoning_content: bool = False,
        chunk_timeout: bool = True,
    ) -> ChatOpenAI:
        key = (name, responses_api, reasoning_content, chunk_timeout)
        if key not in self.models:
            model_class = ChatWithReasoningContent if reasoning_content else ChatOpenAI
            self.models[key] = model_class(
                model=name,
                base_url=self.peer.base_url,
                api_key=API_KEY,  # type: ignore[arg-type]
                max_retries=0,
                stream_usage=True,
                use_responses_api=responses_api,
                # None: no asyncio.wait_for per chunk (docs/llm.md recommends it)
                stream_chunk_timeout=120.0 if chunk_timeout else None,
            )
        return self.models[key]


def fixed_answer_graph() -> CompiledStateGraph[Any]:
    """A node that answers without a model: its message arrives whole, not in chunks."""

    def fixed(state: MessagesState) -> dict[str, Any]:
        call = {"id": "call_f1", "name": "get_weather", "args": {"city": "Oslo"}}
        usage = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
        message = AIMessage("A fixed answer.", tool_calls=[call], usage_metadata=usage)
        return {"messages": [message]}

    builder = StateGraph(MessagesState)
    builder.add_node("fixed", fixed)
    builder.add_edge(START, "fixed")
    builder.add_edge("fixed", END)
    return builder.compile()


def graph_stream(graph: CompiledStateGraph[Any], shape: str) -> Any:
    """The graph's ``astream`` in the item shape a test asks for."""
    inputs: Any = {"messages": MESSAGES}
    if shape == "v2":  # {"type": "messages", "ns": (), "data": (message, metadata)}
        return graph.astream(inputs, stream_mode="messages", version="v2")
    if shape == "modes":  # ("messages", (message, metadata)) among ("updates", {...})
        return graph.astream(inputs, stream_mode=["updates", "messages"])
    if shape == "subgraphs":  # ((), (message, metadata))
        return graph.astream(inputs, stream_mode="messages", subgraphs=True)
    return graph.astream(inputs, stream_mode="messages")  # (message, metadata)


def make_app(peer: ScriptedOpenAI, reports: Reports) -> FastAPI:
    app = FastAPI()
    models = ModelCache(peer)

    @app.post("/chat/{fmt}")
    async def chat(fmt: str, options: dict[str, Any], request: Request) -> StreamResponse:
        model = models.get(
            options["script"],
            responses_api=options.get("responses", False),
            reasoning_content=options.get("reasoning_content", False),
            chunk_timeout=options.get("chunk_timeout", True),
        )
        return llm_stream(
            model.astream(MESSAGES),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

    @app.head("/chat/{fmt}")
    async def chat_head(fmt: str, request: Request) -> StreamResponse:
        return llm_stream(
            models.get("weather").astream(MESSAGES),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

    @app.post("/sync-chat/{fmt}")
    def sync_chat(fmt: str, options: dict[str, Any], request: Request) -> StreamResponse:
        return llm_stream(
            models.get(options["script"]).stream(MESSAGES),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

    @app.post("/graph/{fmt}")
    async def graph(fmt: str, options: dict[str, Any], request: Request) -> StreamResponse:
        compiled = weather_graph(models, options.get("plan"), options["script"])
        return llm_stream(
            graph_stream(compiled, options.get("shape", "messages")),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

    @app.post("/last-chunk-with-text/{fmt}")
    async def last_chunk_with_text(fmt: str, request: Request) -> StreamResponse:
        # langchain-google-genai's last chunk: text with the finish reason (or usage).
        async def chunks() -> AsyncIterator[AIMessageChunk]:
            yield AIMessageChunk("It is", response_metadata={"model_provider": "google_genai"})
            usage = {"input_tokens": 4, "output_tokens": 3, "total_tokens": 7}
            yield AIMessageChunk(" cold", usage_metadata=usage)  # type: ignore[arg-type]
            yield AIMessageChunk(".", response_metadata={"finish_reason": "MAX_TOKENS"})

        return llm_stream(
            chunks(),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

    @app.post("/fixed-graph/{fmt}")
    async def fixed_graph(fmt: str, request: Request) -> StreamResponse:
        return llm_stream(
            fixed_answer_graph().astream({"messages": MESSAGES}, stream_mode="messages"),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

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
        scripted.script(
            "thinking",
            Script(
                tokens=["Take", " a coat"],
                reasoning=["Oslo is", " cold"],
                tool_calls=[ToolCall("call_t1", "get_weather", WEATHER_ARGS, chunks=2)],
                usage=Usage(prompt_tokens=12, completion_tokens=9),
            ),
        )
        scripted.script(
            "plan",
            Script(
                tokens=[],
                tool_calls=[ToolCall("call_p1", "get_weather", WEATHER_ARGS, chunks=3)],
                usage=Usage(prompt_tokens=12, completion_tokens=9),
            ),
        )
        scripted.script(
            "answer",
            Script(
                tokens=["It is", " 12 degrees", " in Oslo."],
                delay_seconds=0.08,
                usage=Usage(prompt_tokens=30, completion_tokens=4),
            ),
        )
        scripted.script(
            "answer-and-call",
            Script(
                tokens=["Checking", " the time too."],
                tool_calls=[ToolCall("call_a1", "get_time", '{"city": "Oslo"}', chunks=2)],
                usage=Usage(prompt_tokens=30, completion_tokens=4),
            ),
        )
        scripted.script("rate-limited", Script(http_status=429, http_headers={"Retry-After": "7"}))
        scripted.script("bad-key", Script(http_status=401))
        scripted.script("overloaded", Script(http_status=503))
        for failure in ("error_payload", "drop"):
            scripted.script(
                failure,
                Script(tokens=["one", " two", " three"], fail_after_tokens=2, failure=failure),
            )
        scripted.script("between-tokens", Script(tokens=["first", " second"], delay_seconds=5))
        yield scripted


@pytest.fixture(scope="module")
def reports() -> Reports:
    return Reports()


@pytest.fixture(scope="module")
def app_server(peer: ScriptedOpenAI, reports: Reports) -> Iterator[LiveServer]:
    with LiveServer(reports.around(make_app(peer, reports))) as server:
        yield server


def post(server: LiveServer, path: str, options: dict[str, Any], request_id: str = "") -> Any:
    return record_chunks(
        server.url + path,
        method="POST",
        content=json.dumps(options),
        headers={REQUEST_ID: request_id, "content-type": "application/json"},
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_chat_model_astream_arrives_token_by_token_and_reassembles(
    app_server: LiveServer, peer: ScriptedOpenAI, reports: Reports, request_id: str, fmt: str
) -> None:
    before = len(peer.requests)
    requested_at = time.monotonic()
    recording = post(app_server, f"/chat/{fmt}", {"script": "weather"}, request_id)
    assert recording.status_code == 200
    assert recording.complete
    answer = decode(fmt, recording.body)
    assert answer["text"] == "The weather in Oslo"
    # Tokens 80 ms apart: the first reached the client before the model sent the last one.
    sent_at = peer.wait_for_request(before + 1).token_sent_at
    assert requested_at + recording.chunks[0].at < sent_at[-1]
    assert len(recording.chunks) >= 2
    if fmt != "text":
        assert answer["tools"] == {0: {"name": "get_weather", "arguments": WEATHER_ARGS}}
        assert answer["finish"] == "tool_calls"
        assert answer["usage"] == USAGE
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.finished
    assert completion.text == "The weather in Oslo"
    assert [(c.id, c.name, c.arguments) for c in completion.tool_calls] == [
        ("call_w1", "get_weather", WEATHER_ARGS)
    ]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == USAGE


def ag_ui_answer(body: bytes) -> dict[str, Any]:
    """What an AG-UI client reconstructs from the run's events."""
    events = [json.loads(event.data) for event in parse_events(body)]
    answer: dict[str, Any] = {"types": [e["type"] for e in events], "text": "", "tools": {}}
    for event in events:
        if event["type"] == "TEXT_MESSAGE_CONTENT":
            answer["text"] += event["delta"]
        elif event["type"] == "TOOL_CALL_START":
            answer["tools"][event["toolCallId"]] = {"name": event["toolCallName"], "args": ""}
        elif event["type"] == "TOOL_CALL_ARGS":
            answer["tools"][event["toolCallId"]]["args"] += event["delta"]
        elif event["type"] == "RUN_FINISHED":
            answer["usage"] = event.get("usage")
    return answer


@pytest.mark.parametrize("route", ["chat", "graph"])
def test_ag_ui_run_carries_the_text_tool_calls_and_usage(
    app_server: LiveServer, peer: ScriptedOpenAI, request_id: str, route: str
) -> None:
    before = len(peer.requests)
    options = {"script": "weather"} if route == "chat" else {"plan": "plan", "script": "answer"}
    requested_at = time.monotonic()
    recording = post(app_server, f"/{route}/ag-ui", options, request_id)
    assert recording.status_code == 200
    answer = ag_ui_answer(recording.body)
    assert answer["types"][0] == "RUN_STARTED"
    assert answer["types"][-1] == "RUN_FINISHED"
    sent_at = peer.requests[-1].token_sent_at
    assert len(peer.requests) == before + (1 if route == "chat" else 2)
    assert requested_at + recording.chunks[0].at < sent_at[-1]
    if route == "chat":
        assert answer["text"] == "The weather in Oslo"
        assert answer["tools"] == {"call_w1": {"name": "get_weather", "args": WEATHER_ARGS}}
        assert answer["usage"] == [{"inputTokens": 12, "outputTokens": 9, "totalTokens": 21}]
    else:
        assert answer["text"] == ANSWER
        assert answer["tools"] == {"call_p1": {"name": "get_weather", "args": WEATHER_ARGS}}
        assert answer["usage"] == [{"inputTokens": 42, "outputTokens": 13, "totalTokens": 55}]


def test_sync_chat_model_stream_is_read_off_the_event_loop(
    app_server: LiveServer, reports: Reports, request_id: str
) -> None:
    recording = post(app_server, "/sync-chat/sse", {"script": "weather"}, request_id)
    answer = decode("sse", recording.body)
    assert answer["text"] == "The weather in Oslo"
    assert answer["usage"] == USAGE
    assert len(recording.chunks) >= 2
    (completion,) = reports.after(request_id)
    assert completion.finished
    assert completion.tool_calls[0].arguments == WEATHER_ARGS


def test_responses_api_model_streams_reasoning_text_and_a_tool_call_numbered_from_0(
    app_server: LiveServer, reports: Reports, request_id: str
) -> None:
    # ChatOpenAI(use_responses_api=True): content blocks instead of a string, the reasoning
    # summary as "reasoning" blocks, and tool calls indexed by output item (here the third:
    # after the reasoning and the message).
    recording = post(app_server, "/chat/sse", {"script": "thinking", "responses": True}, request_id)
    events = [(e.event, json.loads(e.data)) for e in parse_events(recording.body)]
    assert [data["text"] for kind, data in events if kind == "reasoning"] == ["Oslo is", " cold"]
    answer = decode("sse", recording.body)
    assert answer["text"] == "Take a coat"
    assert answer["tools"] == {0: {"name": "get_weather", "arguments": WEATHER_ARGS}}
    assert answer["finish"] == "tool_calls"
    assert answer["usage"] == USAGE
    (completion,) = reports.after(request_id)
    assert completion.reasoning == "Oslo is cold"
    assert [(c.id, c.arguments) for c in completion.tool_calls] == [("call_t1", WEATHER_ARGS)]


def test_reasoning_content_in_additional_kwargs_is_streamed_as_reasoning(
    app_server: LiveServer, reports: Reports, request_id: str
) -> None:
    options = {"script": "thinking", "reasoning_content": True}
    recording = post(app_server, "/chat/ndjson", options, request_id)
    parts = [json.loads(line) for line in recording.body.splitlines() if line]
    kinds = [part["type"] for part in parts]
    assert kinds[:4] == ["reasoning", "reasoning", "text", "text"]
    assert "".join(part["text"] for part in parts if part["type"] == "reasoning") == "Oslo is cold"
    (completion,) = reports.after(request_id)
    assert completion.reasoning == "Oslo is cold"
    assert completion.text == "Take a coat"


def test_head_never_asks_the_model(
    app_server: LiveServer, peer: ScriptedOpenAI, reports: Reports, request_id: str
) -> None:
    before = len(peer.requests)
    response = httpx.head(app_server.url + "/chat/sse", headers={REQUEST_ID: request_id})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b""
    (completion,) = reports.after(request_id)
    assert completion.text == ""
    assert not completion.finished
    assert len(peer.requests) == before, "a HEAD request made the model answer"


def test_a_message_a_node_returns_whole_is_part_of_the_answer(
    app_server: LiveServer, reports: Reports, request_id: str
) -> None:
    recording = post(app_server, "/fixed-graph/sse", {}, request_id)
    answer = decode("sse", recording.body)
    assert answer["text"] == "A fixed answer."
    assert answer["tools"] == {0: {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    assert answer["finish"] == "tool_calls"
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    (completion,) = reports.after(request_id)
    assert completion.finished


def test_a_text_chunk_carrying_the_finish_reason_and_usage_keeps_them(
    app_server: LiveServer, reports: Reports, request_id: str
) -> None:
    answer = decode("sse", post(app_server, "/last-chunk-with-text/sse", {}, request_id).body)
    assert answer["text"] == "It is cold."
    assert answer["finish"] == "length"
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    (completion,) = reports.after(request_id)
    assert (completion.text, completion.finish_reason) == ("It is cold.", "length")


GRAPH_CASES = [("messages", fmt) for fmt in FORMATS] + [
    (shape, "sse") for shape in ("v2", "modes", "subgraphs")
]


@pytest.mark.parametrize(("shape", "fmt"), GRAPH_CASES)
def test_graph_streams_the_ai_messages_of_every_node(
    app_server: LiveServer,
    peer: ScriptedOpenAI,
    reports: Reports,
    request_id: str,
    shape: str,
    fmt: str,
) -> None:
    before = len(peer.requests)
    options = {"plan": "plan", "script": "answer", "shape": shape}
    requested_at = time.monotonic()
    recording = post(app_server, f"/graph/{fmt}", options, request_id)
    assert recording.status_code == 200
    assert recording.complete
    answer = decode(fmt, recording.body)
    # The tool's result (a ToolMessage from the tools node) is not part of the answer.
    assert answer["text"] == ANSWER
    sent_at = peer.wait_for_request(before + 2).token_sent_at
    assert requested_at + recording.chunks[0].at < sent_at[-1]
    if fmt != "text":
        assert answer["tools"] == {0: {"name": "get_weather", "arguments": WEATHER_ARGS}}
        assert answer["finish"] == "stop"  # the last model's: the graph answered
        # Both model calls are billed: 12 + 9 for the plan, 30 + 4 for the answer.
        assert answer["usage"] == {"prompt_tokens": 42, "completion_tokens": 13, "total_tokens": 55}
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    completion = completions[0]
    assert completion.finished
    assert completion.text == ANSWER
    assert [(c.id, c.name, c.arguments) for c in completion.tool_calls] == [
        ("call_p1", "get_weather", WEATHER_ARGS)
    ]
    assert completion.usage == {"prompt_tokens": 42, "completion_tokens": 13, "total_tokens": 55}


def test_graph_numbers_the_tool_calls_of_each_model_call_apart(
    app_server: LiveServer, reports: Reports, request_id: str
) -> None:
    # Both model calls number their tool calls from 0; the client must see two calls.
    options = {"plan": "plan", "script": "answer-and-call"}
    recording = post(app_server, "/graph/sse", options, request_id)
    answer = decode("sse", recording.body)
    assert answer["tools"] == {
        0: {"name": "get_weather", "arguments": WEATHER_ARGS},
        1: {"name": "get_time", "arguments": '{"city": "Oslo"}'},
    }
    assert answer["finish"] == "tool_calls"
    (completion,) = reports.after(request_id)
    assert [c.id for c in completion.tool_calls] == ["call_p1", "call_a1"]


@pytest.mark.parametrize("route", ["chat", "graph"])
def test_upstream_429_keeps_status_and_retry_after(app_server: LiveServer, route: str) -> None:
    response = httpx.post(app_server.url + f"/{route}/sse", json={"script": "rate-limited"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limited"


@pytest.mark.parametrize("route", ["chat", "graph"])
def test_upstream_401_becomes_502_without_the_key(app_server: LiveServer, route: str) -> None:
    response = httpx.post(app_server.url + f"/{route}/sse", json={"script": "bad-key"})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_auth_error"
    assert API_KEY not in response.text
    assert API_KEY[-10:] not in response.text


@pytest.mark.parametrize("route", ["chat", "graph"])
def test_upstream_overload_becomes_503(app_server: LiveServer, route: str) -> None:
    response = httpx.post(app_server.url + f"/{route}/sse", json={"script": "overloaded"})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "unavailable"


MID_STREAM_ERRORS = {
    "error_payload": "upstream_error",  # data: {"error": ...}, which the SDK raises as APIError
    "drop": "upstream_unavailable",  # the connection lost mid-body
}


@pytest.mark.parametrize("failure", list(MID_STREAM_ERRORS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_mid_stream_failure_ends_with_an_error_frame_after_the_tokens(
    app_server: LiveServer, reports: Reports, request_id: str, failure: str, fmt: str
) -> None:
    recording = post(app_server, f"/chat/{fmt}", {"script": failure}, request_id)
    assert recording.status_code == 200
    answer = decode(fmt, recording.body)
    assert answer["text"] == "one two"
    if fmt == "text":
        assert not recording.complete, "a failed text stream must be visibly incomplete"
    else:
        assert recording.complete
        assert answer["error"] is not None
        assert answer["finish"] is None, "a failed stream must not look finished"
    if fmt in ("sse", "ndjson", "openai"):
        assert answer["error"]["type"] == MID_STREAM_ERRORS[failure]
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    assert getattr(completions[0].error, "type", None) == MID_STREAM_ERRORS[failure]
    assert completions[0].text == "one two"


@pytest.mark.usefixtures("without_gc")
@pytest.mark.parametrize(
    ("route", "chunk_timeout"), [("chat", True), ("chat", False), ("graph", True)]
)
def test_client_disconnect_between_tokens_closes_the_upstream_within_100ms(
    app_server: LiveServer,
    peer: ScriptedOpenAI,
    reports: Reports,
    request_id: str,
    route: str,
    chunk_timeout: bool,
) -> None:
    # ChatOpenAI's stream_chunk_timeout=None takes away the asyncio.wait_for around each
    # chunk, and with it langchain-openai's own aclose() of the SDK stream on exit.
    before = len(peer.requests)
    recording = record_chunks(
        app_server.url + f"/{route}/sse",
        method="POST",
        content=json.dumps({"script": "between-tokens", "chunk_timeout": chunk_timeout}),
        headers={REQUEST_ID: request_id, "content-type": "application/json"},
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert b"first" in recording.body
    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2), "the model's stream was not closed"
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    completions = reports.after(request_id)
    assert len(completions) == 1, f"on_complete was called {len(completions)} times"
    assert completions[0].disconnected
    assert completions[0].text == "first"


# --- resumable answers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resume_server(redis_server: RedisServer, peer: ScriptedOpenAI) -> Iterator[LiveServer]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = redis.asyncio.Redis(unix_socket_path=redis_server.socket_path)
        async with ResumableStreams(store, ttl_seconds=60) as streams:
            app.state.streams = streams
            yield
        await store.aclose()

    app = FastAPI(lifespan=lifespan)
    models = ModelCache(peer)

    @app.get("/chat/{key}")
    async def chat(key: str, request: Request) -> StreamResponse:
        streams: ResumableStreams = request.app.state.streams
        return streams.llm_response(key, source=lambda: models.get("weather").astream(MESSAGES))

    with LiveServer(app) as server:
        yield server


def test_a_resumed_chat_model_answer_replays_after_last_event_id(
    resume_server: LiveServer, peer: ScriptedOpenAI, request_id: str
) -> None:
    asked_before = sum(r.script_name == "weather" for r in peer.requests)
    url = f"{resume_server.url}/chat/{request_id}"
    first = parse_events(httpx.get(url, timeout=10).content)
    assert "".join(json.loads(e.data)["text"] for e in first if e.event == "text") == (
        "The weather in Oslo"
    )
    assert first[-1].event == "done"
    assert json.loads(first[-1].data)["usage"] == USAGE
    # A second reader (another tab, a reconnect) after the second event gets the rest, and
    # the model was asked once.
    rest = parse_events(
        httpx.get(url, headers={"Last-Event-ID": first[1].id or ""}, timeout=10).content
    )
    assert [(e.event, e.data) for e in rest] == [(e.event, e.data) for e in first[2:]]
    assert sum(r.script_name == "weather" for r in peer.requests) == asked_before + 1


# --- langchain-anthropic against the scripted Anthropic API -----------------------------------


def make_anthropic_app(anthropic_peer: ScriptedAnthropic, reports: Reports) -> FastAPI:
    app = FastAPI()

    def chat_anthropic(script: str) -> ChatAnthropic:
        return ChatAnthropic(  # type: ignore[call-arg]
            model=script,
            base_url=anthropic_peer.base_url,
            api_key=ANTHROPIC_KEY,  # type: ignore[arg-type]
            max_retries=0,
            max_tokens=1024,
            thinking={"type": "enabled", "budget_tokens": 512},
        )

    @app.post("/claude/{fmt}")
    async def claude(fmt: str, options: dict[str, Any], request: Request) -> StreamResponse:
        return llm_stream(
            chat_anthropic(options["script"]).astream(MESSAGES),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

    @app.post("/sync-claude/{fmt}")
    def sync_claude(fmt: str, options: dict[str, Any], request: Request) -> StreamResponse:
        return llm_stream(
            chat_anthropic(options["script"]).stream(MESSAGES),
            format=fmt,  # type: ignore[arg-type]
            on_complete=reports.for_request(request.headers.get(REQUEST_ID, "")),
        )

    return app


@pytest.fixture(scope="module")
def anthropic_peer() -> Iterator[ScriptedAnthropic]:
    with ScriptedAnthropic() as scripted:
        scripted.script(
            "claude-weather",
            Script_(
                thinking=["Oslo is", " cold"],
                tokens=["Take", " a coat"],
                delay_seconds=0.08,
                tool_uses=[ToolUse("toolu_w1", "get_weather", WEATHER_ARGS, chunks=3)],
                usage=AnthropicUsage(input_tokens=12, output_tokens=9),
            ),
        )
        scripted.script(
            "claude-rate-limited", Script_(http_status=429, http_headers={"retry-after": "7"})
        )
        scripted.script("claude-bad-key", Script_(http_status=401))
        scripted.script("claude-overloaded", Script_(http_status=529))
        scripted.script(
            "claude-overloaded-mid-stream",
            Script_(tokens=["one", " two", " three"], fail_after_tokens=2, failure="overloaded"),
        )
        scripted.script(
            "claude-between-tokens", Script_(tokens=["first", " second"], delay_seconds=5)
        )
        yield scripted


@pytest.fixture(scope="module")
def anthropic_server(anthropic_peer: ScriptedAnthropic, reports: Reports) -> Iterator[LiveServer]:
    with LiveServer(reports.around(make_anthropic_app(anthropic_peer, reports))) as server:
        yield server


@pytest.mark.parametrize("fmt", FORMATS)
def test_chat_anthropic_streams_thinking_text_and_tool_use(
    anthropic_server: LiveServer,
    anthropic_peer: ScriptedAnthropic,
    reports: Reports,
    request_id: str,
    fmt: str,
) -> None:
    before = len(anthropic_peer.requests)
    requested_at = time.monotonic()
    recording = post(anthropic_server, f"/claude/{fmt}", {"script": "claude-weather"}, request_id)
    assert recording.status_code == 200
    assert recording.complete
    answer = decode(fmt, recording.body)
    assert answer["text"] == "Take a coat"
    sent_at = anthropic_peer.wait_for_request(before + 1).token_sent_at
    assert requested_at + recording.chunks[0].at < sent_at[-1]
    if fmt != "text":
        # Anthropic's block index of the tool_use is 2 (after thinking and text): ours is 0.
        assert answer["tools"] == {0: {"name": "get_weather", "arguments": WEATHER_ARGS}}
        assert answer["finish"] == "tool_calls"  # stop_reason "tool_use"
    (completion,) = reports.after(request_id)
    assert completion.finished
    assert completion.reasoning == "Oslo is cold"
    assert completion.text == "Take a coat"
    assert completion.finish_reason == "tool_calls"
    assert [(c.id, c.arguments) for c in completion.tool_calls] == [("toolu_w1", WEATHER_ARGS)]
    assert completion.usage is not None
    assert completion.usage["completion_tokens"] == 9


@pytest.mark.parametrize(
    ("script", "status", "error_type"),
    [
        ("claude-rate-limited", 429, "rate_limited"),
        ("claude-bad-key", 502, "upstream_auth_error"),
        ("claude-overloaded", 503, "unavailable"),
    ],
)
def test_chat_anthropic_errors_before_the_first_token_become_statuses(
    anthropic_server: LiveServer, script: str, status: int, error_type: str
) -> None:
    response = httpx.post(anthropic_server.url + "/claude/sse", json={"script": script})
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
    assert ANTHROPIC_KEY[-10:] not in response.text
    if status == 429:
        assert response.headers["retry-after"] == "7"


def test_chat_anthropic_overloaded_mid_stream_ends_with_an_error_frame(
    anthropic_server: LiveServer, reports: Reports, request_id: str
) -> None:
    recording = post(
        anthropic_server, "/claude/sse", {"script": "claude-overloaded-mid-stream"}, request_id
    )
    answer = decode("sse", recording.body)
    assert answer["text"] == "one two"
    assert answer["error"]["type"] == "unavailable"
    assert answer["finish"] is None
    (completion,) = reports.after(request_id)
    assert getattr(completion.error, "type", None) == "unavailable"


@pytest.mark.usefixtures("without_gc")
def test_chat_anthropic_disconnect_between_tokens_closes_the_upstream_within_100ms(
    anthropic_server: LiveServer,
    anthropic_peer: ScriptedAnthropic,
    reports: Reports,
    request_id: str,
) -> None:
    before = len(anthropic_peer.requests)
    recording = record_chunks(
        anthropic_server.url + "/claude/sse",
        method="POST",
        content=json.dumps({"script": "claude-between-tokens"}),
        headers={REQUEST_ID: request_id, "content-type": "application/json"},
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert b"first" in recording.body
    record = anthropic_peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2), "the model's stream was not closed"
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    (completion,) = reports.after(request_id)
    assert completion.disconnected


@pytest.mark.usefixtures("without_gc")
@pytest.mark.parametrize(
    ("server", "scripted", "route", "script"),
    [
        ("app_server", "peer", "/sync-chat/text", "between-tokens"),
        ("anthropic_server", "anthropic_peer", "/sync-claude/text", "claude-between-tokens"),
    ],
    ids=["ChatOpenAI", "ChatAnthropic"],
)
def test_client_disconnect_between_tokens_closes_a_sync_chat_model_stream_within_100ms(
    request: pytest.FixtureRequest,
    reports: Reports,
    request_id: str,
    server: str,
    scripted: str,
    route: str,
    script: str,
) -> None:
    # model.stream(...) is read in a worker thread, blocked on the next token (5 s away):
    # its socket is shut down from the event loop, so the model stops at once, not when
    # that token comes.
    app: LiveServer = request.getfixturevalue(server)
    provider: ScriptedOpenAI | ScriptedAnthropic = request.getfixturevalue(scripted)
    before = len(provider.requests)
    recording = record_chunks(
        app.url + route,
        method="POST",
        content=json.dumps({"script": script}),
        headers={REQUEST_ID: request_id, "content-type": "application/json"},
        stop_after_chunks=1,
    )
    left_at = time.monotonic()
    assert recording.body == b"first"
    record = provider.wait_for_request(before + 1)
    assert record.wait_disconnected(2), "the sync stream was not closed"
    assert record.disconnected_at is not None
    assert record.disconnected_at - left_at < 0.1
    (completion,) = reports.after(request_id)
    assert completion.disconnected
    assert completion.text == "first"

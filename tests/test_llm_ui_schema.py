"""``llm_stream(format="ui")`` speaks the Vercel AI SDK UI message stream, checked by the SDK.

Each body is piped to ``tests/ui_schema/validate.mjs``, which validates every part with the
``ai`` package's own ``uiMessageChunkSchema`` (through ``parseJsonEventStream``, as ``useChat``
does), rejects keys the SDK does not know, and replays the parts through the SDK's
``readUIMessageStream`` to rebuild the UIMessage a ``useChat`` page would show.

The first tests feed hand-made chunks; the ``sdk_`` ones stream the real ``openai`` SDK's answer
from the scripted OpenAI server (``tests/openai_peer.py``): text, reasoning, a tool call, usage,
a failure and a stall, as they reach a browser.

The node dependencies are pinned in ``tests/ui_schema/package-lock.json``; install them with
``npm ci --prefix tests/ui_schema``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from openai import AsyncOpenAI

from faststream_kit import StreamError, StreamResponse, llm_stream
from faststream_kit.testing import LiveServer, record_chunks

from .conftest import need_peer
from .front_end_scripts import UI_SCHEMA_DIR, run_script
from .openai_peer import Script, ScriptedOpenAI, Usage, weather_script

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def chat_chunk(
    *,
    content: str | None = None,
    reasoning_content: str | None = None,
    tool_calls: list[SimpleNamespace] | None = None,
    finish_reason: str | None = None,
) -> SimpleNamespace:
    """A chat completion chunk the way the openai SDK hands it over (attributes, not keys)."""
    delta = SimpleNamespace(
        content=content, reasoning_content=reasoning_content, tool_calls=tool_calls
    )
    choice = SimpleNamespace(index=0, delta=delta, finish_reason=finish_reason)
    return SimpleNamespace(choices=[choice], usage=None)


def usage_chunk() -> SimpleNamespace:
    """The last chunk with ``stream_options={"include_usage": True}``: no choices, usage."""
    return SimpleNamespace(choices=[], usage=SimpleNamespace(**USAGE))


def tool_call(arguments: str, *, id: str | None = None, name: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        index=0, id=id, type="function", function=SimpleNamespace(name=name, arguments=arguments)
    )


async def text_answer() -> AsyncIterator[SimpleNamespace]:
    for token in ["Hel", "lo", " wor", "ld"]:
        yield chat_chunk(content=token)
        await anyio.sleep(0.05)  # long enough for a keepalive comment between parts
    yield chat_chunk(finish_reason="stop")
    yield usage_chunk()


async def reasoning_then_text() -> AsyncIterator[SimpleNamespace]:
    for piece in ["The user ", "greets me."]:
        yield chat_chunk(reasoning_content=piece)
    for token in ["Hi", " there"]:
        yield chat_chunk(content=token)
    yield chat_chunk(finish_reason="stop")
    yield usage_chunk()


async def tool_call_in_three_pieces() -> AsyncIterator[SimpleNamespace]:
    yield chat_chunk(tool_calls=[tool_call('{"city', id="call_weather_1", name="get_weather")])
    yield chat_chunk(tool_calls=[tool_call('": "Par')])
    yield chat_chunk(tool_calls=[tool_call('is"}')])
    yield chat_chunk(finish_reason="tool_calls")
    yield usage_chunk()


async def error_after_two_tokens() -> AsyncIterator[SimpleNamespace]:
    yield chat_chunk(content="Hel")
    yield chat_chunk(content="lo")
    raise StreamError("model overloaded", status_code=502)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/text")
    async def text() -> StreamResponse:
        return llm_stream(text_answer(), format="ui", keepalive=0.02)

    @app.get("/reasoning")
    async def reasoning() -> StreamResponse:
        return llm_stream(reasoning_then_text(), format="ui")

    @app.get("/tool")
    async def tool() -> StreamResponse:
        return llm_stream(tool_call_in_three_pieces(), format="ui")

    @app.get("/error")
    async def error() -> StreamResponse:
        return llm_stream(error_after_two_tokens(), format="ui")

    return app


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    need_peer(path is not None, "node is not installed (apt-get install nodejs)")
    need_peer(
        (UI_SCHEMA_DIR / "node_modules" / "ai").is_dir(),
        "the AI SDK is not installed (npm ci --prefix tests/ui_schema)",
    )
    assert path is not None
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(make_app()) as live:
        yield live


def fetch(server: LiveServer, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=10)


def validate_with_ai_sdk(node: str, body: str) -> dict[str, Any]:
    """What the AI SDK makes of ``body``: ``{ok, errors, message, parts, streamErrors, ...}``."""
    return run_script(node, "validate.mjs", body=body)


def test_ui_stream_has_the_protocol_header(server: LiveServer) -> None:
    response = fetch(server, "/text")

    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")


def test_ui_text_stream_validates_and_rebuilds_the_message(node: str, server: LiveServer) -> None:
    body = fetch(server, "/text").text
    assert ": ping\n\n" in body  # keepalive comments must not upset the SDK either

    report = validate_with_ai_sdk(node, body)

    assert report["errors"] == []
    assert report["ok"] is True
    message = report["message"]
    assert message["role"] == "assistant"
    assert message["id"].startswith("msg-")
    assert [part["type"] for part in message["parts"]] == ["step-start", "text"]
    assert message["parts"][1] == {"type": "text", "text": "Hello world", "state": "done"}
    assert message["metadata"] == {"finishReason": "stop", "usage": USAGE}
    assert report["parts"][-1] == {"type": "finish", "finishReason": "stop"}


def test_ui_reasoning_then_text_validates(node: str, server: LiveServer) -> None:
    report = validate_with_ai_sdk(node, fetch(server, "/reasoning").text)

    assert report["errors"] == []
    parts = report["message"]["parts"]
    assert [part["type"] for part in parts] == ["step-start", "reasoning", "text"]
    assert parts[1]["text"] == "The user greets me."
    assert parts[1]["state"] == "done"
    assert parts[2]["text"] == "Hi there"
    assert parts[2]["state"] == "done"


def test_ui_tool_call_streamed_in_three_pieces_validates(node: str, server: LiveServer) -> None:
    report = validate_with_ai_sdk(node, fetch(server, "/tool").text)

    assert report["errors"] == []
    deltas = [part for part in report["parts"] if part["type"] == "tool-input-delta"]
    assert [part["inputTextDelta"] for part in deltas] == ['{"city', '": "Par', 'is"}']
    tool_parts = [p for p in report["message"]["parts"] if p["type"] == "tool-get_weather"]
    assert tool_parts == [
        {
            "type": "tool-get_weather",
            "toolCallId": "call_weather_1",
            "state": "input-available",
            "input": {"city": "Paris"},
        }
    ]
    assert report["message"]["metadata"]["finishReason"] == "tool_calls"


def test_ui_error_mid_stream_ends_with_error_part_then_done(node: str, server: LiveServer) -> None:
    response = fetch(server, "/error")
    assert response.status_code == 200  # the headers went out with the first token
    assert response.text.endswith(
        'data: {"type":"error","errorText":"model overloaded"}\n\ndata: [DONE]\n\n'
    )

    report = validate_with_ai_sdk(node, response.text)

    assert report["errors"] == []
    assert report["parts"][-1] == {"type": "error", "errorText": "model overloaded"}
    assert report["streamErrors"] == ["model overloaded"]
    text_parts = [p for p in report["message"]["parts"] if p["type"] == "text"]
    assert [p["text"] for p in text_parts] == ["Hello"]


def test_validator_rejects_a_part_with_a_key_the_sdk_does_not_know(
    node: str, server: LiveServer
) -> None:
    # The SDK's own schema is loose (zod looseObject) and lets unknown keys through, so the
    # strict check in validate.mjs is what would catch an encoder adding one: prove it bites.
    body = fetch(server, "/text").text
    tampered = body.replace('"type":"text-delta",', '"type":"text-delta","extra":1,', 1)
    assert tampered != body

    report = validate_with_ai_sdk(node, tampered)

    assert report["ok"] is False
    assert [error["part"]["type"] for error in report["errors"]] == ["text-delta"]
    assert 'Unrecognized key: "extra"' in report["errors"][0]["error"]


# --- the real openai SDK, through the scripted OpenAI server ----------------------------------

API_KEY = "sk-test-never-echo-me-0123456789"
SDK_USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as scripted:
        scripted.script("weather", weather_script())
        scripted.script(
            "thinking",
            Script(
                reasoning=["The user ", "greets me."],
                tokens=["Hi", " there"],
                usage=Usage(prompt_tokens=12, completion_tokens=9),
            ),
        )
        scripted.script("cut-short", Script(tokens=["Once", " upon"], finish_reason="length"))
        scripted.script(
            "fails",
            Script(tokens=["one", " two", " three"], fail_after_tokens=2, error_code="boom"),
        )
        scripted.script(
            "stalls",
            Script(tokens=["one", " two", " three"], fail_after_tokens=2, failure="stall"),
        )
        yield scripted


@pytest.fixture(scope="module")
def sdk_server(peer: ScriptedOpenAI) -> Iterator[LiveServer]:
    app = FastAPI()
    client = AsyncOpenAI(base_url=peer.base_url, api_key=API_KEY, max_retries=0)

    @app.get("/chat/{script}")
    async def chat(script: str, idle_timeout: float = 10.0) -> StreamResponse:
        return llm_stream(
            client.chat.completions.create(
                model=script,
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            ),
            format="ui",
            idle_timeout=idle_timeout,
        )

    with LiveServer(app) as live:
        yield live


def test_ui_sdk_answer_with_a_tool_call_validates(node: str, sdk_server: LiveServer) -> None:
    report = validate_with_ai_sdk(node, fetch(sdk_server, "/chat/weather").text)

    assert report["errors"] == []
    message = report["message"]
    assert [part["type"] for part in message["parts"]] == ["step-start", "text", "tool-get_weather"]
    assert message["parts"][1] == {"type": "text", "text": "The weather in Oslo", "state": "done"}
    assert message["parts"][2] == {
        "type": "tool-get_weather",
        "toolCallId": "call_w1",
        "state": "input-available",
        "input": {"city": "Oslo", "unit": "celsius"},
    }
    assert message["metadata"] == {"finishReason": "tool_calls", "usage": SDK_USAGE}
    assert [part["type"] for part in report["parts"][-3:]] == [
        "finish-step",
        "message-metadata",
        "finish",
    ]
    assert report["parts"][-1] == {"type": "finish", "finishReason": "tool-calls"}


def test_ui_sdk_tokens_reach_the_client_as_the_model_sends_them(sdk_server: LiveServer) -> None:
    recording = record_chunks(sdk_server.url + "/chat/weather")

    assert recording.complete
    arrivals = [
        chunk.at
        for chunk in recording.chunks
        for _ in range(chunk.data.count(b'"type":"text-delta"'))
    ]
    # The model sends a token every 80 ms: each text-delta part came in its own chunk, spread out.
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 0.15, arrivals


def test_ui_sdk_reasoning_then_text_validates(node: str, sdk_server: LiveServer) -> None:
    report = validate_with_ai_sdk(node, fetch(sdk_server, "/chat/thinking").text)

    assert report["errors"] == []
    parts = report["message"]["parts"]
    assert [part["type"] for part in parts] == ["step-start", "reasoning", "text"]
    assert (parts[1]["text"], parts[1]["state"]) == ("The user greets me.", "done")
    assert (parts[2]["text"], parts[2]["state"]) == ("Hi there", "done")
    assert report["message"]["metadata"]["usage"] == SDK_USAGE


def test_ui_finish_reason_uses_the_ai_sdk_vocabulary(node: str, sdk_server: LiveServer) -> None:
    report = validate_with_ai_sdk(node, fetch(sdk_server, "/chat/cut-short").text)

    assert report["errors"] == []
    assert report["parts"][-1] == {"type": "finish", "finishReason": "length"}
    assert report["message"]["metadata"]["finishReason"] == "length"


def test_validator_rejects_a_finish_reason_the_ai_sdk_does_not_know(
    node: str, sdk_server: LiveServer
) -> None:
    body = fetch(sdk_server, "/chat/weather").text
    tampered = body.replace('"finishReason":"tool-calls"', '"finishReason":"tool_calls"')
    assert tampered != body

    report = validate_with_ai_sdk(node, tampered)

    assert report["ok"] is False
    assert [error["part"]["type"] for error in report["errors"]] == ["finish"]


def test_ui_sdk_mid_stream_error_validates(node: str, sdk_server: LiveServer) -> None:
    response = fetch(sdk_server, "/chat/fails")
    assert response.status_code == 200

    report = validate_with_ai_sdk(node, response.text)

    assert report["errors"] == []
    types = [part["type"] for part in report["parts"]]
    assert types[-2:] == ["text-end", "error"]
    assert "abort" not in types, "a failure the provider reported is an error, not an abort"
    assert "finish" not in types
    assert len(report["streamErrors"]) == 1
    assert report["message"]["parts"][1] == {"type": "text", "text": "one two", "state": "done"}


def test_ui_model_silent_for_idle_timeout_ends_with_error_then_abort(
    node: str, sdk_server: LiveServer
) -> None:
    response = fetch(sdk_server, "/chat/stalls?idle_timeout=1.5")
    assert response.status_code == 200

    report = validate_with_ai_sdk(node, response.text)

    assert report["errors"] == []
    reason = "the stream produced nothing for 1.5 s"
    assert report["parts"][-3:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": reason},
        {"type": "abort", "reason": reason},
    ]
    assert report["streamErrors"] == [reason]  # what useChat shows: the error
    assert report["message"]["parts"][1] == {"type": "text", "text": "one two", "state": "done"}

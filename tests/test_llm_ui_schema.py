"""``llm_stream(format="ui")`` speaks the Vercel AI SDK UI message stream, checked by the SDK.

Each body is piped to ``tests/ui_schema/validate.mjs``, which validates every part with the
``ai`` package's own ``uiMessageChunkSchema`` (through ``parseJsonEventStream``, as ``useChat``
does), rejects keys the SDK does not know, and replays the parts through the SDK's
``readUIMessageStream`` to rebuild the UIMessage a ``useChat`` page would show.

The node dependencies are pinned in ``tests/ui_schema/package-lock.json``; install them with
``npm ci --prefix tests/ui_schema``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from faststream_kit import StreamError, StreamResponse, llm_stream
from faststream_kit.testing import LiveServer

from .conftest import need_peer

UI_SCHEMA_DIR = Path(__file__).parent / "ui_schema"
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
    result = subprocess.run(
        [node, str(UI_SCHEMA_DIR / "validate.mjs")],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert (result.returncode == 0) == report["ok"]
    return report


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
    assert report["parts"][-1] == {"type": "finish"}


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

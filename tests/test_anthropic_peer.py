"""The scripted Anthropic peer against the real ``anthropic`` SDK.

These test the peer, not ``llm_stream``: every scenario the Anthropic tests of llm_stream rely
on is shown here to reach the SDK the way the real API would. Clients use
``_strict_response_validation``, so an event the SDK's typed models would reject fails here
rather than being silently constructed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import pytest
from anthropic import Anthropic, AsyncAnthropic

from .anthropic_peer import Script, ScriptedAnthropic, ToolUse, Usage

MESSAGES = [{"role": "user", "content": "hi"}]
API_KEY = "sk-ant-test-do-not-echo-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[ScriptedAnthropic]:
    with ScriptedAnthropic() as peer:
        yield peer


@pytest.fixture
def client(server: ScriptedAnthropic) -> Iterator[Anthropic]:
    with Anthropic(
        base_url=server.base_url,
        api_key=API_KEY,
        max_retries=0,
        _strict_response_validation=True,
    ) as sdk:
        yield sdk


def test_message_stream_accumulates_thinking_text_tool_use_and_usage(
    server: ScriptedAnthropic, client: Anthropic
) -> None:
    arguments = json.dumps({"city": "Oslo", "days": [1, 2]})
    server.script(
        "full",
        Script(
            thinking=["Let me", " think"],
            tokens=["It", " is", " sunny"],
            tool_uses=[ToolUse("toolu_1", "weather", arguments, chunks=4)],
            usage=Usage(input_tokens=12, output_tokens=9),
            ping_every_tokens=1,
        ),
    )
    with client.messages.stream(model="full", max_tokens=64, messages=MESSAGES) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    thinking, text, tool = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "Let me think"
    assert thinking.signature == Script().signature
    assert text.type == "text"
    assert text.text == "It is sunny"
    assert tool.type == "tool_use"
    assert (tool.id, tool.name) == ("toolu_1", "weather")
    assert tool.input == json.loads(arguments)
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 9)
    assert kinds.count("text") == 3
    assert kinds.count("thinking") == 2
    assert "ping" not in kinds  # the SDK skips them
    record = server.wait_for_request(1)
    assert record.api_key == API_KEY
    assert record.headers["anthropic-version"]
    assert record.tokens_sent == 3
    assert record.wait_finished(timeout=2)  # the peer records after its last byte went out
    assert record.completed


@pytest.mark.anyio
async def test_async_create_streams_raw_events_in_wire_order(server: ScriptedAnthropic) -> None:
    server.script("plain", Script(tokens=["a", "b"]))
    async with AsyncAnthropic(
        base_url=server.base_url, api_key=API_KEY, max_retries=0, _strict_response_validation=True
    ) as sdk:
        stream = await sdk.messages.create(
            model="plain", max_tokens=8, messages=MESSAGES, stream=True
        )
        kinds = [event.type async for event in stream]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_error_event_mid_stream_raises_after_the_tokens(
    server: ScriptedAnthropic, client: Anthropic
) -> None:
    server.script("busy", Script(tokens=["one", " two", " three"], fail_after_tokens=2))
    texts: list[str] = []
    stream = client.messages.create(model="busy", max_tokens=8, messages=MESSAGES, stream=True)
    with pytest.raises(anthropic.APIStatusError) as raised:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                texts.append(event.delta.text)
    assert texts == ["one", " two"]
    # The stream's own status: the error came in-band, after a 200.
    assert raised.value.status_code == 200
    assert raised.value.type == "overloaded_error"


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_http_errors_raise_the_sdk_error_of_their_status(
    server: ScriptedAnthropic,
    client: Anthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    server.script("error", Script(http_status=status, http_headers={"retry-after": "7"}))
    with pytest.raises(error_class) as raised:
        client.messages.create(model="error", max_tokens=8, messages=MESSAGES, stream=True)
    assert raised.value.status_code == status
    assert raised.value.type == error_type
    assert raised.value.response.headers["retry-after"] == "7"
    if status == 401:
        assert API_KEY in str(raised.value), "the 401 must quote the key, as real servers do"


def test_truncated_body_ends_quietly_without_message_stop(
    server: ScriptedAnthropic, client: Anthropic
) -> None:
    server.script("cut", Script(tokens=["one", "two"], fail_after_tokens=1, failure="truncate"))
    stream = client.messages.create(model="cut", max_tokens=8, messages=MESSAGES, stream=True)
    kinds = [event.type for event in stream]  # the SDK raises nothing: only the end is missing
    assert kinds == ["message_start", "content_block_start", "content_block_delta"]


def test_dropped_connection_raises_api_connection_error(
    server: ScriptedAnthropic, client: Anthropic
) -> None:
    server.script("drop", Script(tokens=["one", "two"], fail_after_tokens=1, failure="drop"))
    stream = client.messages.create(model="drop", max_tokens=8, messages=MESSAGES, stream=True)
    with pytest.raises(anthropic.APIConnectionError):
        for _ in stream:
            pass
    record = server.wait_for_request(1)
    assert record.wait_finished(timeout=2)
    assert record.outcome == "dropped"


def test_closing_a_stream_between_tokens_is_recorded_within_100ms(
    server: ScriptedAnthropic, client: Anthropic
) -> None:
    server.script("slow", Script(tokens=["first", "second"], delay_seconds=5))
    stream = client.messages.create(model="slow", max_tokens=8, messages=MESSAGES, stream=True)
    for event in stream:
        if event.type == "content_block_delta":
            break
    closed_at = time.monotonic()
    stream.close()
    record = server.wait_for_request(1)
    assert record.wait_disconnected(2)
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed_at < 0.1
    assert record.tokens_sent == 1


def test_non_streaming_request_is_refused(server: ScriptedAnthropic, client: Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="any", max_tokens=8, messages=MESSAGES)


def test_script_rejects_unknown_failure() -> None:
    with pytest.raises(ValueError, match=r"Script\.failure"):
        Script(failure="explode")  # type: ignore[arg-type]

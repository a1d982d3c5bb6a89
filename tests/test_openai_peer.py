"""The scripted OpenAI-compatible peer against the real ``openai`` SDK.

These test the peer, not ``llm_stream``: every scenario the llm_stream tests rely on is shown
here to reach the SDK the way the real API would. Clients use ``_strict_response_validation``
where the real API's shapes allow it, so a chunk or event the SDK's typed models would reject
fails here rather than being silently constructed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest
from openai import AsyncOpenAI, AzureOpenAI, OpenAI

from .openai_peer import Script, ScriptedOpenAI, ToolCall, Usage

MESSAGES = [{"role": "user", "content": "hi"}]
API_KEY = "sk-test-do-not-echo-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as peer:
        yield peer


@pytest.fixture
def client(server: ScriptedOpenAI) -> Iterator[OpenAI]:
    with OpenAI(
        base_url=server.base_url,
        api_key=API_KEY,
        max_retries=0,
        _strict_response_validation=True,
    ) as sdk:
        yield sdk


def test_sync_chat_stream_delivers_tokens_tool_call_and_usage(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    arguments = json.dumps({"city": "Paris", "days": [1, 2, 3]})
    server.script(
        "tools",
        Script(
            tokens=["It", " is", " sunny"],
            tool_calls=[ToolCall(id="call_1", name="weather", arguments_json=arguments, chunks=4)],
            usage=Usage(prompt_tokens=11, completion_tokens=7),
        ),
    )

    stream = client.chat.completions.create(
        model="tools",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    argument_deltas = [
        call.function.arguments
        for c in chunks
        if c.choices
        for call in c.choices[0].delta.tool_calls or []
        if call.function and call.function.arguments
    ]
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert text == "It is sunny"
    assert len(argument_deltas) == 4
    assert "".join(argument_deltas) == arguments
    first_call = next(
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert (first_call.id, first_call.function.name) == ("call_1", "weather")
    assert finish == ["tool_calls"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 7)
    assert chunks[-1].usage.total_tokens == 18

    record = server.wait_for_request(1)
    assert record.wait_finished(timeout=2)
    assert record.path == "/v1/chat/completions"
    assert record.headers["authorization"] == f"Bearer {API_KEY}"
    assert record.body["messages"] == MESSAGES
    assert (record.tokens_sent, record.completed, record.disconnected) == (3, True, False)


def test_usage_chunk_is_sent_only_when_requested_unless_usage_always(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    server.script("usage", Script(tokens=["a"], usage=Usage(1, 1)))
    server.script("always", Script(tokens=["a"], usage=Usage(1, 1), usage_always=True))

    unrequested = list(
        client.chat.completions.create(model="usage", messages=MESSAGES, stream=True)
    )
    always = list(client.chat.completions.create(model="always", messages=MESSAGES, stream=True))

    assert all(c.usage is None for c in unrequested)
    assert always[-1].usage is not None
    assert always[-1].usage.total_tokens == 2


@pytest.mark.anyio
async def test_async_chat_stream_delivers_tokens_reasoning_and_pacing(
    server: ScriptedOpenAI,
) -> None:
    server.script(
        "paced",
        Script(
            tokens=["one", " two", " three"],
            reasoning=["Let me", " think"],
            first_token_delay_seconds=0.05,
            delay_seconds=0.05,
            finish_reason="length",
        ),
    )
    async with AsyncOpenAI(
        base_url=server.base_url, api_key=API_KEY, max_retries=0, _strict_response_validation=True
    ) as sdk:
        stream = await sdk.chat.completions.create(model="paced", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]

    deltas = [c.choices[0].delta for c in chunks]
    # reasoning_content is not in the SDK's ChoiceDelta type: it arrives as a pydantic extra.
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert reasoning == "Let me think"
    assert "".join(d.content or "" for d in deltas) == "one two three"
    assert chunks[-1].choices[0].finish_reason == "length"
    record = server.wait_for_request(1)
    assert record.headers["x-stainless-async"].startswith("async")
    gaps = [b - a for a, b in zip(record.token_sent_at, record.token_sent_at[1:], strict=False)]
    assert len(gaps) == 2
    assert all(gap >= 0.045 for gap in gaps)


def test_responses_stream_delivers_text_tool_call_reasoning_and_usage(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    arguments = '{"q": "streaming"}'
    server.script(
        "resp",
        Script(
            tokens=["Hel", "lo"],
            reasoning=["Thinking"],
            tool_calls=[ToolCall(id="call_9", name="search", arguments_json=arguments, chunks=3)],
            usage=Usage(prompt_tokens=20, completion_tokens=5, reasoning_tokens=2),
        ),
    )

    events = list(client.responses.create(model="resp", input="hi", stream=True))

    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    argument_deltas = [
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    ]
    assert (text, summary) == ("Hello", "Thinking")
    assert len(argument_deltas) == 3
    assert "".join(argument_deltas) == arguments
    completed = events[-1].response
    assert completed.status == "completed"
    assert completed.usage is not None
    usage = completed.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (20, 5, 25)
    assert completed.output_text == "Hello"
    call = next(item for item in completed.output if item.type == "function_call")
    assert (call.call_id, call.name, call.arguments) == ("call_9", "search", arguments)
    assert server.wait_for_request(1).path == "/v1/responses"


def test_azure_client_gets_prelude_chunk_then_tokens(server: ScriptedOpenAI) -> None:
    server.script("my-deployment", Script(tokens=["Hi", " there"]))
    # Not strict: Azure's prelude has object "" and model "", which the SDK's
    # Literal["chat.completion.chunk"] would reject; the SDK's default parsing accepts it.
    with AzureOpenAI(
        azure_endpoint=server.azure_endpoint,
        api_key=API_KEY,
        api_version="2024-10-21",
        max_retries=0,
    ) as azure:
        chunks = list(
            azure.chat.completions.create(model="my-deployment", messages=MESSAGES, stream=True)
        )

    prelude = chunks[0]
    assert prelude.choices == []
    assert prelude.model_extra is not None
    assert prelude.model_extra["prompt_filter_results"][0]["prompt_index"] == 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi there"
    record = server.wait_for_request(1)
    assert record.path == "/openai/deployments/my-deployment/chat/completions"
    assert record.query == {"api-version": "2024-10-21"}
    assert record.headers["api-key"] == API_KEY
    assert record.api_key == API_KEY
    assert record.script_name == "my-deployment"


def test_rate_limit_raises_rate_limit_error_with_retry_after(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    server.script("limited", Script(http_status=429, http_headers={"Retry-After": "7"}))

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="limited", messages=MESSAGES, stream=True)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    record = server.wait_for_request(1)
    assert record.wait_finished(timeout=2)  # the peer records after its answer went out
    assert record.outcome == "http_error"


def test_unauthorized_raises_authentication_error_that_echoes_the_key(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    server.script("denied", Script(http_status=401))

    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="denied", messages=MESSAGES, stream=True)

    assert caught.value.status_code == 401
    assert API_KEY in caught.value.message
    assert API_KEY in caught.value.response.text


def test_headers_delay_makes_create_time_out(server: ScriptedOpenAI) -> None:
    server.script("slow-headers", Script(headers_delay_seconds=2.0))
    with (
        OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=0.1) as sdk,
        pytest.raises(openai.APITimeoutError),
    ):
        sdk.chat.completions.create(model="slow-headers", messages=MESSAGES, stream=True)

    record = server.wait_for_request(1)
    assert record.wait_disconnected(timeout=1)
    assert record.tokens_sent == 0


def test_error_payload_mid_stream_raises_api_error(server: ScriptedOpenAI, client: OpenAI) -> None:
    server.script(
        "broken",
        Script(tokens=["a", "b", "c"], fail_after_tokens=2, error_message="upstream exploded"),
    )

    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="broken", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "a", "b"]
    assert not isinstance(caught.value, openai.APIStatusError)
    assert caught.value.message == "upstream exploded"
    assert caught.value.code == "server_error"
    record = server.wait_for_request(1)
    assert record.wait_finished(timeout=2)
    assert (record.tokens_sent, record.outcome, record.completed) == (2, "failed", False)


def test_responses_error_event_is_delivered_not_raised(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    server.script(
        "resp-error",
        Script(tokens=["a", "b"], fail_after_tokens=1, failure="responses_error"),
    )

    events = list(client.responses.create(model="resp-error", input="hi", stream=True))

    assert [e.type for e in events if e.type.endswith(".delta")] == ["response.output_text.delta"]
    last = events[-1]
    assert last.type == "error"
    assert (last.code, last.param) == ("server_error", None)
    assert last.sequence_number == len(events) - 1


def test_response_failed_event_is_delivered_not_raised(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    server.script(
        "resp-failed",
        Script(
            tokens=["a", "b"],
            fail_after_tokens=1,
            failure="response_failed",
            error_message="model crashed",
        ),
    )

    events = list(client.responses.create(model="resp-failed", input="hi", stream=True))

    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error is not None
    assert (last.response.error.code, last.response.error.message) == (
        "server_error",
        "model crashed",
    )


def test_error_payload_on_responses_endpoint_raises_api_error(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    server.script("resp-payload", Script(tokens=["a"], fail_after_tokens=0))

    with pytest.raises(openai.APIError, match="The server had an error"):
        list(client.responses.create(model="resp-payload", input="hi", stream=True))


def test_dropped_connection_raises_api_connection_error(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    server.script("drop", Script(tokens=["a", "b", "c"], fail_after_tokens=2, failure="drop"))

    received = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in client.chat.completions.create(model="drop", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "a", "b"]
    # The SDK wraps httpx2's "incomplete chunked read" (httpx2.RemoteProtocolError).
    assert type(caught.value.__cause__).__name__ == "RemoteProtocolError"
    record = server.wait_for_request(1)
    assert record.wait_finished(timeout=2)
    assert (record.outcome, record.tokens_sent, record.disconnected) == ("dropped", 2, False)


def test_stall_holds_the_stream_until_the_client_gives_up(server: ScriptedOpenAI) -> None:
    server.script("stall", Script(tokens=["a", "b"], fail_after_tokens=1, failure="stall"))

    received = []
    with (
        OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=0.2) as sdk,
        pytest.raises(openai.APITimeoutError),
    ):
        for chunk in sdk.chat.completions.create(model="stall", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "a"]
    record = server.wait_for_request(1)
    assert record.wait_disconnected(timeout=1)
    assert record.wait_finished(timeout=1)
    assert record.outcome == "disconnected"


def test_closing_sync_stream_between_tokens_is_recorded_within_100ms(
    server: ScriptedOpenAI, client: OpenAI
) -> None:
    server.script("slow", Script(tokens=["a", "b", "c"], delay_seconds=10))
    stream = client.chat.completions.create(model="slow", messages=MESSAGES, stream=True)
    chunks = iter(stream)
    next(chunks)  # role
    assert next(chunks).choices[0].delta.content == "a"

    closed_at = time.monotonic()
    stream.close()

    record = server.wait_for_request(1)
    assert record.wait_disconnected(timeout=1)
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed_at < 0.1
    assert record.wait_finished(timeout=1)
    assert (record.outcome, record.tokens_sent, record.completed) == ("disconnected", 1, False)


@pytest.mark.anyio
async def test_closing_async_stream_between_tokens_is_recorded_within_100ms(
    server: ScriptedOpenAI,
) -> None:
    server.script("slow", Script(tokens=["a", "b", "c"], delay_seconds=10))
    async with AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as sdk:
        stream = await sdk.responses.create(model="slow", input="hi", stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                break
        closed_at = time.monotonic()
        await stream.close()

    record = server.wait_for_request(1)
    assert record.wait_disconnected(timeout=1)
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed_at < 0.1
    assert record.tokens_sent == 1


def test_unknown_model_gets_the_default_script(server: ScriptedOpenAI, client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-x", messages=MESSAGES, stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello, world!"
    assert server.wait_for_request(1).script_name == "gpt-x"


def test_non_streaming_request_is_refused(server: ScriptedOpenAI, client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="stream=true"):
        client.chat.completions.create(model="gpt-x", messages=MESSAGES)


def test_script_rejects_unknown_failure() -> None:
    with pytest.raises(ValueError, match=r"Script\.failure"):
        Script(failure="explode")  # type: ignore[arg-type]

"""``llm_stream(format="ag-ui")`` runs an AG-UI agent that the real ``@ag-ui/client`` reads.

The app streams the real ``openai`` SDK's answer from the scripted OpenAI server
(``tests/openai_peer.py``) as AG-UI events, under a real uvicorn. ``tests/ui_schema/
validate_ag_ui.mjs`` runs the ``HttpAgent`` of ``@ag-ui/client`` against it, the way CopilotKit
does: it POSTs a ``RunAgentInput``, and the client's own pipeline (SSE parser, schema
enforcement of ``@ag-ui/core``, verifier, reducer) reads the run; the script also checks each
raw event against ``@ag-ui/core``'s schema with no unknown key, and reports when each event
reached the agent. Install the node packages with ``npm ci --prefix tests/ui_schema``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openai import AsyncOpenAI

from faststream_kit import StreamResponse, llm_stream
from faststream_kit.testing import LiveServer, parse_events

from .conftest import need_peer
from .front_end_scripts import UI_SCHEMA_DIR, run_script
from .openai_peer import WEATHER_ARGS, Script, ScriptedOpenAI, Usage, weather_script

API_KEY = "sk-test-never-echo-me-0123456789"
MESSAGES = [{"role": "user", "content": "hi"}]
USAGE = [{"inputTokens": 12, "outputTokens": 9, "totalTokens": 21, "model": "gpt-test"}]


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    need_peer(path is not None, "node is not installed (apt-get install nodejs)")
    need_peer(
        (UI_SCHEMA_DIR / "node_modules" / "@ag-ui" / "client").is_dir(),
        "@ag-ui/client is not installed (npm ci --prefix tests/ui_schema)",
    )
    assert path is not None
    return path


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as scripted:
        scripted.script("weather", weather_script())
        scripted.script("slow", Script(tokens=["a", "b", "c", "d"], delay_seconds=0.3))
        scripted.script(
            "thinking",
            Script(
                reasoning=["The user ", "greets me."],
                tokens=["Hi", " there"],
                usage=Usage(prompt_tokens=12, completion_tokens=9),
            ),
        )
        scripted.script(
            "fails",
            Script(tokens=["one", " two", " three"], fail_after_tokens=2, error_code="boom"),
        )
        scripted.script(
            "stalls",
            Script(tokens=["one", " two", " three"], fail_after_tokens=2, failure="stall"),
        )
        scripted.script("rate-limited", Script(http_status=429, http_headers={"Retry-After": "7"}))
        scripted.script("rate-limited-late", Script(http_status=429, headers_delay_seconds=0.3))
        yield scripted


def make_app(peer: ScriptedOpenAI) -> FastAPI:
    app = FastAPI()
    client = AsyncOpenAI(base_url=peer.base_url, api_key=API_KEY, max_retries=0)

    @app.post("/agent/{script}")
    async def agent(
        script: str, run: dict[str, Any], keepalive: float = 15.0, idle_timeout: float = 10.0
    ) -> StreamResponse:
        # ``run`` is the client's RunAgentInput: the run's ids are the client's.
        return llm_stream(
            client.chat.completions.create(
                model=script, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            ),
            format="ag-ui",
            thread_id=run["threadId"],
            run_id=run["runId"],
            model="gpt-test",
            idle_timeout=idle_timeout,
            keepalive=keepalive,
        )

    return app


@pytest.fixture(scope="module")
def server(peer: ScriptedOpenAI) -> Iterator[LiveServer]:
    with LiveServer(make_app(peer)) as live:
        yield live


def run_agent(node: str, url: str, *, body: str | None = None) -> dict[str, Any]:
    """What ``HttpAgent`` made of ``url`` (or of a recorded ``body``): ``{ok, errors, events,
    raw, messages, runError, ...}``; thread ``thread-test``, run ``run-test``."""
    return run_script(node, "validate_ag_ui.mjs", "-" if body is not None else url, body=body)


def types(report: dict[str, Any]) -> list[str]:
    return [event["type"] for event in report["events"]]


def test_ag_ui_run_with_text_and_a_tool_call_is_read_by_the_client(
    node: str, server: LiveServer
) -> None:
    report = run_agent(node, server.url + "/agent/weather")

    assert report["errors"] == []
    assert types(report) == [
        "RUN_STARTED",
        "TEXT_MESSAGE_START",
        *["TEXT_MESSAGE_CONTENT"] * 4,
        "TEXT_MESSAGE_END",
        "TOOL_CALL_START",
        *["TOOL_CALL_ARGS"] * 3,
        "TOOL_CALL_END",
        "RUN_FINISHED",
    ]
    started, finished = report["events"][0], report["events"][-1]
    assert (started["threadId"], started["runId"]) == ("thread-test", "run-test")
    assert (finished["threadId"], finished["runId"]) == ("thread-test", "run-test")
    assert finished["usage"] == USAGE
    assert finished["metadata"] == {"finishReason": "tool_calls"}
    [message] = report["messages"]
    assert message["role"] == "assistant"
    assert message["content"] == "The weather in Oslo"
    assert message["toolCalls"] == [
        {
            "id": "call_w1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": WEATHER_ARGS},
        }
    ]


def test_ag_ui_tokens_reach_the_client_as_the_model_sends_them(
    node: str, server: LiveServer
) -> None:
    report = run_agent(node, server.url + "/agent/slow")

    # The model sends a token every 300 ms: their bytes reached the client's fetch spread out,
    # not in one burst at the end (and the agent then saw each of them). Node's own start-up
    # and the agent's work delay single reads by tens of ms on a busy machine, so the test
    # asks for most of the 900 ms, not for each gap.
    assert report["errors"] == []
    content = [raw for raw in report["raw"] if raw["event"]["type"] == "TEXT_MESSAGE_CONTENT"]
    arrivals = [raw["at"] for raw in content]
    assert [raw["event"]["delta"] for raw in content] == ["a", "b", "c", "d"]
    assert arrivals[-1] - arrivals[0] >= 600, arrivals  # a burst would be ~1 ms
    assert [e["delta"] for e in report["events"] if e["type"] == "TEXT_MESSAGE_CONTENT"] == list(
        "abcd"
    )


def test_ag_ui_reasoning_is_a_reasoning_message_before_the_answer(
    node: str, server: LiveServer
) -> None:
    report = run_agent(node, server.url + "/agent/thinking")

    assert report["errors"] == []
    assert types(report) == [
        "RUN_STARTED",
        "REASONING_START",
        "REASONING_MESSAGE_START",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_END",
        "REASONING_END",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    reasoning, answer = report["messages"]
    assert (reasoning["role"], reasoning["content"]) == ("reasoning", "The user greets me.")
    assert (answer["role"], answer["content"]) == ("assistant", "Hi there")


def test_ag_ui_mid_stream_error_ends_the_run_with_run_error(node: str, server: LiveServer) -> None:
    report = run_agent(node, server.url + "/agent/fails")

    assert report["errors"] == []
    assert types(report)[-2:] == ["TEXT_MESSAGE_END", "RUN_ERROR"]
    assert "RUN_FINISHED" not in types(report)
    assert report["runError"]["code"] == "upstream_error"
    assert report["runError"]["message"]
    [message] = report["messages"]
    assert message["content"] == "one two"


def test_ag_ui_model_silent_for_idle_timeout_is_a_timeout_run_error(
    node: str, server: LiveServer
) -> None:
    report = run_agent(node, server.url + "/agent/stalls?idle_timeout=1.5")

    assert report["errors"] == []
    assert report["runError"]["code"] == "timeout"
    assert report["messages"][0]["content"] == "one two"


def test_ag_ui_error_before_the_first_token_is_an_http_status(
    node: str, server: LiveServer
) -> None:
    report = run_agent(node, server.url + "/agent/rate-limited")

    [error] = [error for error in report["errors"] if error.get("status")]
    assert error["status"] == 429
    assert error["payload"]["error"]["type"] == "rate_limited"
    assert report["events"] == []


def test_ag_ui_error_after_a_keepalive_is_a_lone_run_error(node: str, server: LiveServer) -> None:
    # The keepalive sent the headers before the model refused: too late for a status.
    report = run_agent(node, server.url + "/agent/rate-limited-late?keepalive=0.05")

    assert report["errors"] == []
    assert types(report) == ["RUN_ERROR"]
    assert report["runError"]["code"] == "rate_limited"


def test_ag_ui_stream_headers_and_keepalive(server: LiveServer) -> None:
    response = httpx.post(
        server.url + "/agent/weather?keepalive=0.03",
        json={"threadId": "t", "runId": "r", "messages": []},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert ": ping\n\n" in response.text  # the client skips comments: keepalives are safe
    events = [json.loads(event.data) for event in parse_events(response.content) if event.data]
    assert events[0] == {
        "type": "RUN_STARTED",
        "threadId": "t",
        "runId": "r",
        "protocolVersion": "1.0",
    }


def recorded_run(server: LiveServer) -> str:
    return httpx.post(
        server.url + "/agent/weather",
        json={"threadId": "thread-test", "runId": "run-test", "messages": []},
        timeout=10,
    ).text


def test_validator_rejects_an_event_with_a_key_the_protocol_does_not_know(
    node: str, server: LiveServer
) -> None:
    body = recorded_run(server)
    assert run_agent(node, "", body=body)["ok"] is True
    tampered = body.replace('"type":"TOOL_CALL_END",', '"type":"TOOL_CALL_END","extra":1,', 1)
    assert tampered != body

    report = run_agent(node, "", body=tampered)

    assert report["ok"] is False
    assert 'Unrecognized key: "extra"' in report["errors"][0]["error"]
    assert "Removed unrecognised material at '/extra'" in report["errors"][1]["error"]


def test_validator_rejects_a_run_that_finishes_with_a_tool_call_open(
    node: str, server: LiveServer
) -> None:
    body = recorded_run(server)
    events = body.split("\n\n")
    tampered = "\n\n".join(event for event in events if '"TOOL_CALL_END"' not in event)

    report = run_agent(node, "", body=tampered)

    assert report["ok"] is False
    assert "tool calls are still active" in report["errors"][0]["error"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"thread_id": "t"}, "thread_id is only used by format='ag-ui'"),
        ({"run_id": "r"}, "run_id is only used by format='ag-ui'"),
        ({"format": "ag-ui", "thread_id": ""}, "thread_id must be a non-empty str or None"),
        ({"format": "ag-ui", "run_id": 7}, "run_id must be a non-empty str or None"),
    ],
)
def test_ag_ui_ids_are_checked_before_any_io(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        llm_stream(iter(["never read"]), **arguments)

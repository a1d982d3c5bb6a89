"""OpenTelemetry: every stream records a span and metrics, without code in the route.

The app runs in a uvicorn process of its own (``tests/apps/otel_app.py``) with the real
OpenTelemetry SDK recording into its own in-memory exporter and metric reader; the tests read
what it recorded over HTTP. Each stream ends one way (completed, the client left, an error, a
send timeout, an idle timeout, the server's shutdown), and the span says which.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ServedApp, free_port, stop_process, uvicorn_process, wait_for_port
from .openai_peer import Script, ScriptedOpenAI, Usage

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the otel extra)")

SERVER_SPAN_KIND = "SpanKind.SERVER"


@pytest.fixture(scope="module")
def openai_peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as peer:
        peer.script("steady", Script(tokens=["a", "b", "c", "d"], usage=Usage(7, 4)))
        peer.script(
            "slow",
            Script(tokens=[f"t{n} " for n in range(200)], delay_seconds=0.05, usage=Usage(9, 200)),
        )
        yield peer


@pytest.fixture(scope="module", params=["fastapi", "asgi"])
def served(request: pytest.FixtureRequest, openai_peer: ScriptedOpenAI) -> Iterator[ServedApp]:
    env = {"FSK_SERVER_TELEMETRY": request.param, "FSK_OPENAI_URL": openai_peer.base_url}
    with uvicorn_process("otel_app:server", env=env) as served:
        yield served


def recorded(served: ServedApp) -> dict[str, Any]:
    response = httpx.get(served.url + "/_telemetry")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def stream_span(served: ServedApp, route: str, timeout: float = 5.0) -> tuple[dict, dict]:
    """The ``stream <route>`` span once it has ended, and its parent span."""
    deadline = time.monotonic() + timeout
    while True:
        spans = recorded(served)["spans"]
        ours = [span for span in spans if span["name"] == f"stream {route}"]
        if ours:
            span = ours[-1]
            by_id = {s["context"]["span_id"]: s for s in spans}
            parent = by_id.get(span["parent_id"])
            if parent is not None:  # the server span ends after ours
                return span, parent
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no finished span 'stream {route}' in {[s['name'] for s in spans]}"
            )
        time.sleep(0.02)  # polling the recorder for a condition, not waiting for time to pass


def seconds(span: dict[str, Any]) -> tuple[float, float]:
    def parse(text: str) -> float:
        from datetime import datetime

        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    return parse(span["start_time"]), parse(span["end_time"])


def assert_child_of_server_span(span: dict[str, Any], parent: dict[str, Any]) -> None:
    assert parent["kind"] == SERVER_SPAN_KIND
    assert span["context"]["trace_id"] == parent["context"]["trace_id"]
    # Started while the server span was open. It may end a little after it: the ASGI
    # instrumentation ends its span at the last body message, ours ends once the source
    # is closed.
    start, _ = seconds(span)
    parent_start, parent_end = seconds(parent)
    assert parent_start <= start <= parent_end


def test_a_completed_stream_records_its_span_under_the_server_span(served: ServedApp) -> None:
    started = time.monotonic()
    with httpx.stream("GET", served.url + "/completed") as response:
        body = response.read()
    elapsed = time.monotonic() - started
    span, parent = stream_span(served, "/completed")
    attributes = span["attributes"]
    assert attributes["faststream_kit.outcome"] == "completed"
    assert attributes["faststream_kit.bytes"] == len(body)
    assert attributes["faststream_kit.chunks"] == 4
    assert attributes["faststream_kit.keepalives"] == 0
    assert "faststream_kit.error.type" not in attributes
    assert span["status"]["status_code"] == "UNSET"
    start, end = seconds(span)
    # The whole stream: 100 ms before the first tick, then four ticks 50 ms apart.
    assert 0.25 <= end - start <= elapsed
    assert 0.1 <= attributes["faststream_kit.time_to_first_byte"] <= end - start
    assert_child_of_server_span(span, parent)


def test_a_client_that_leaves_is_recorded_as_client_disconnected(served: ServedApp) -> None:
    with httpx.stream("GET", served.url + "/forever") as response:
        lines = response.iter_lines()
        assert next(lines).startswith(("id:", "data:", ":"))
    span, parent = stream_span(served, "/forever")
    attributes = span["attributes"]
    assert attributes["faststream_kit.outcome"] == "client_disconnected"
    assert attributes["faststream_kit.chunks"] >= 1
    assert attributes["faststream_kit.keepalives"] >= 0
    assert span["status"]["status_code"] == "UNSET"
    assert_child_of_server_span(span, parent)


def test_keepalives_are_counted(served: ServedApp) -> None:
    with httpx.stream("GET", served.url + "/forever") as response:
        comments = 0
        for line in response.iter_lines():
            comments += line.startswith(":")
            if comments >= 2:
                break
    span, _ = stream_span(served, "/forever")
    assert span["attributes"]["faststream_kit.keepalives"] >= 2


def test_a_source_error_is_recorded_with_its_type(served: ServedApp) -> None:
    with httpx.stream("GET", served.url + "/error") as response:
        body = response.read()
    assert b"event: error" in body
    span, parent = stream_span(served, "/error")
    attributes = span["attributes"]
    assert attributes["faststream_kit.outcome"] == "error"
    assert attributes["faststream_kit.error.type"] == "server_error"
    assert span["status"]["status_code"] == "ERROR"
    assert_child_of_server_span(span, parent)


def test_an_idle_timeout_is_recorded(served: ServedApp) -> None:
    with httpx.stream("GET", served.url + "/idle") as response, pytest.raises(httpx.HTTPError):
        response.read()  # plain text has no error frame: the connection is aborted
    span, parent = stream_span(served, "/idle")
    attributes = span["attributes"]
    assert attributes["faststream_kit.outcome"] == "idle_timeout"
    assert attributes["faststream_kit.error.type"] == "timeout"
    start, end = seconds(span)
    assert end - start >= 0.3
    assert span["status"]["status_code"] == "ERROR"
    assert_child_of_server_span(span, parent)


def test_a_client_that_stops_reading_is_recorded_as_send_timeout(served: ServedApp) -> None:
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /flood HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # Never read: the server's writes fill the socket buffers and then wait.
        span, parent = stream_span(served, "/flood", timeout=10.0)
    attributes = span["attributes"]
    assert attributes["faststream_kit.outcome"] == "send_timeout"
    assert attributes["faststream_kit.bytes"] > 0
    assert span["status"]["status_code"] == "ERROR"
    assert_child_of_server_span(span, parent)


def test_metrics_count_outcomes_and_open_streams(served: ServedApp) -> None:
    with httpx.stream("GET", served.url + "/completed") as response:
        response.read()
    stream_span(served, "/completed")
    metrics = {
        metric["name"]: metric
        for resource in recorded(served)["metrics"]["resource_metrics"]
        for scope in resource["scope_metrics"]
        if scope["scope"]["name"] == "faststream_kit"
        for metric in scope["metrics"]
    }
    outcomes = metrics["faststream_kit.stream.outcomes"]["data"]["data_points"]
    completed = [
        point
        for point in outcomes
        if point["attributes"]
        == {"http.route": "/completed", "faststream_kit.outcome": "completed"}
    ]
    assert completed
    assert completed[0]["value"] >= 1
    duration = metrics["faststream_kit.stream.duration"]["data"]["data_points"]
    assert any(point["count"] >= 1 and point["sum"] >= 0.25 for point in duration)
    first_byte = metrics["faststream_kit.stream.time_to_first_byte"]["data"]["data_points"]
    assert any(point["count"] >= 1 for point in first_byte)
    open_streams = metrics["faststream_kit.stream.open"]["data"]["data_points"]
    by_route = {point["attributes"].get("http.route"): point["value"] for point in open_streams}
    assert by_route["/completed"] == 0  # every stream that opened has closed


def test_llm_stream_records_time_to_first_token_usage_and_finish_reason(
    served: ServedApp,
) -> None:
    with httpx.stream("GET", served.url + "/chat", params={"model": "steady"}) as response:
        body = response.read()
    assert b"event: done" in body
    span, parent = stream_span(served, "/chat")
    attributes = span["attributes"]
    assert attributes["faststream_kit.outcome"] == "completed"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "steady"
    assert attributes["gen_ai.usage.input_tokens"] == 7
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert "faststream_kit.llm.usage_estimated" not in attributes
    first_token = attributes["faststream_kit.llm.time_to_first_token"]
    start, end = seconds(span)
    assert 0 < first_token <= end - start
    assert attributes["faststream_kit.llm.output_tokens_per_second"] > 0
    assert_child_of_server_span(span, parent)


def test_an_abandoned_llm_stream_still_reports_usage_and_the_disconnect(
    served: ServedApp,
) -> None:
    with httpx.stream("GET", served.url + "/chat", params={"model": "slow"}) as response:
        tokens = 0
        for line in response.iter_lines():
            tokens += line == "event: text"
            if tokens == 3:
                break
    span, parent = stream_span(served, "/chat")
    attributes = span["attributes"]
    assert attributes["faststream_kit.outcome"] == "client_disconnected"
    # The provider never sent its usage: what was generated until the client left is counted.
    assert attributes["faststream_kit.llm.usage_estimated"] is True
    assert 3 <= attributes["gen_ai.usage.output_tokens"] < 200
    assert "gen_ai.response.finish_reasons" not in attributes
    assert attributes["faststream_kit.llm.time_to_first_token"] > 0
    assert_child_of_server_span(span, parent)


def test_a_stream_ended_by_the_server_shutdown_is_recorded(tmp_path: Path) -> None:
    dump = tmp_path / "telemetry.json"
    env = {"FSK_SERVER_TELEMETRY": "fastapi", "FSK_TELEMETRY_DUMP": str(dump)}
    with uvicorn_process("otel_app:server", env=env) as served:
        with httpx.stream("GET", served.url + "/forever") as response:
            lines = response.iter_lines()
            next(lines)
            served.process.terminate()  # SIGTERM: uvicorn shuts down, ending open streams
            rest = list(lines)
        assert "event: shutdown" in rest or any("shutdown" in line for line in rest)
        served.process.wait(timeout=10)
    spans = json.loads(dump.read_text())["spans"]
    ours = [span for span in spans if span["name"] == "stream /forever"]
    assert [span["attributes"]["faststream_kit.outcome"] for span in ours] == ["shutdown"]


def test_without_opentelemetry_nothing_of_it_is_imported() -> None:
    """With the package hidden, a stream still runs and no OpenTelemetry module is loaded;
    with it installed, importing faststream_kit loads none either (only a stream does)."""
    script = r"""
import importlib.abc, sys

class HideOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(name)
        return None

if sys.argv[1] == "hidden":
    sys.meta_path.insert(0, HideOpenTelemetry())

import httpx
import faststream_kit
from faststream_kit import stream_response
from faststream_kit.testing import LiveServer
from starlette.applications import Starlette
from starlette.routing import Route

assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported at import"
if sys.argv[1] == "hidden":
    async def route(request):
        return stream_response(iter(["a", "b"]), media_type="text/plain")
    with LiveServer(Starlette(routes=[Route("/", route)])) as server:
        assert httpx.get(server.url).text == "ab"
    loaded = [m for m in sys.modules if m.startswith("opentelemetry")]
    assert not loaded, loaded
print("ok")
"""
    for mode in ("hidden", "installed"):
        result = subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "ok"


def test_the_demo_prints_its_stream_spans_with_otel_traces_exporter_console() -> None:
    port = free_port()
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "faststream_kit", "demo", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, timeout=30.0)
        with httpx.stream("GET", f"http://127.0.0.1:{port}/clock") as response:
            next(line for line in response.iter_lines() if line.startswith("data:"))
        # The span is exported when the stream ends, before the server shuts down.
        stream_printed = False
        for line in process.stdout or ():
            if '"name": "stream /clock"' in line:
                stream_printed = True
                break
        assert stream_printed
    finally:
        stop_process(process)


DOCS = Path(__file__).resolve().parents[1] / "docs" / "observability.md"


def own_process_examples() -> list[str]:
    """The examples of docs/observability.md that set global providers: each runs in a
    process of its own, so the rest of the suite never records telemetry."""
    text = DOCS.read_text()
    blocks = text.split("```python notest\n")[1:]
    return [block.split("```", 1)[0] for block in blocks if block.startswith("# test: own-process")]


@pytest.mark.parametrize("example", own_process_examples())
def test_docs_example_runs(example: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr

"""The seed's broken pattern, written with the library: a sync ``OpenAI`` stream under load.

Fifty clients stream answers that a sync ``openai.OpenAI`` client reads from the scripted
peer (a token every 50 ms), and a trivial ``def`` endpoint of the same app must still answer
at once: ``llm_stream`` runs each sync stream in its own worker thread on its own limiter, so
the 40 tokens of anyio's default limiter stay free for ``def`` endpoints. The app runs under
uvicorn in a subprocess so that the measuring client does not share its GIL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, wait_for_port
from .openai_peer import Script, ScriptedOpenAI

APPS = Path(__file__).parent / "apps"
STREAMS = 50
PINGS = 200
TOKENS = [f"t{i} " for i in range(200)]  # 10 s at 50 ms a token: outlives the measurement
TOKEN_SECONDS = 0.05


@pytest.fixture
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI(Script(tokens=TOKENS, delay_seconds=TOKEN_SECONDS)) as peer:
        yield peer


@pytest.fixture
def app_port(peer: ScriptedOpenAI) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
        "FASTSTREAM_KIT_OPENAI_BASE_URL": peer.base_url,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "llm_sync_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "2",
        ],
        env=env,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def open_streams(port: int, path: str, count: int) -> list[socket.socket]:
    """Start ``count`` streaming requests; return once every one has received a token."""
    streams = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        streams.append(sock)
    for sock in streams:
        received = b""
        while TOKENS[0].encode() not in received:
            data = sock.recv(65536)
            assert data, f"stream closed before its first token: {received!r}"
            received += data
        assert received.startswith(b"HTTP/1.1 200 ")
    return streams


def ping_latencies(port: int) -> list[float]:
    """``PINGS`` sequential requests to the ``def`` endpoint, sorted seconds."""
    url = f"http://127.0.0.1:{port}/ping"
    latencies = []
    with httpx.Client() as client:
        client.get(url)  # open the keep-alive connection first
        for _ in range(PINGS):
            started = time.perf_counter()
            response = client.get(url)
            latencies.append(time.perf_counter() - started)
            assert response.json() == {"ok": True}
    return sorted(latencies)


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def test_def_endpoint_answers_within_10ms_p99_while_50_sync_openai_streams_run(
    peer: ScriptedOpenAI, app_port: int
) -> None:
    streams = open_streams(app_port, "/chat", STREAMS)
    try:
        latencies = ping_latencies(app_port)
        # Every stream was still producing while we measured.
        for sock in streams:
            assert sock.recv(65536)
        records = peer.requests
        assert len(records) == STREAMS
        assert not any(record.completed for record in records)
    finally:
        closed_at = time.monotonic()
        for sock in streams:
            sock.close()

    # Each sync stream is closed in its thread when its current read returns: within a token.
    for record in records:
        assert record.wait_disconnected(timeout=max(0.0, closed_at + 1.0 - time.monotonic()))
    slowest = max(record.disconnected_at or 0.0 for record in records) - closed_at
    assert slowest <= 1.0, f"the last upstream disconnect came {slowest:.3f} s after closing"
    assert all(record.tokens_sent < len(TOKENS) for record in records)

    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"llm_stream: /ping p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    assert p99 <= 0.010, f"p99 {p99 * 1000:.1f} ms, p50 {p50 * 1000:.1f} ms"


def test_control_handwritten_streaming_response_starves_the_def_endpoint(
    peer: ScriptedOpenAI, app_port: int
) -> None:
    # Starlette pulls each item of a sync iterator with its own ``run_sync`` on anyio's
    # default 40-token limiter, and every token waits there for the model's next chunk: 50
    # streams hold all 40, so ``/ping`` queues behind them. This is what llm_stream avoids.
    streams = open_streams(app_port, "/chat-handwritten", STREAMS)
    try:
        latencies = ping_latencies(app_port)
    finally:
        for sock in streams:
            sock.close()
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"hand-written StreamingResponse: /ping p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    assert p50 > 0.010, f"p50 {p50 * 1000:.1f} ms: the control no longer starves /ping"

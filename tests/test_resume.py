"""Resumable streams on a real ``redis-server``, served by real uvicorn worker processes.

Every worker runs ``tests/apps/resume_app.py`` against the same Redis (a unix socket) and the
same scripted OpenAI-compatible peer, which lives in this process and records every request,
so a test can prove the model was asked exactly once however many workers served the answer.
Each test uses its own stream key and model name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import anyio
import httpx
import pytest
import redis

from faststream_kit.testing import ParsedEvent, SSEParser

from .conftest import free_port, wait_for_port
from .openai_peer import Script, ScriptedOpenAI
from .redis_peer import (
    RedisServer,
    redis_server_fixture,  # noqa: F401  (fixture: redis_server)
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

APPS = Path(__file__).parent / "apps"
TOKENS = [f"w{n:02d} " for n in range(20)]


class Worker:
    """``uvicorn resume_app:app`` in its own process, on a port that survives a restart."""

    def __init__(self, redis_socket: str, openai_base_url: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
            "FASTSTREAM_KIT_REDIS_SOCKET": redis_socket,
            "FASTSTREAM_KIT_OPENAI_BASE_URL": openai_base_url,
            "FASTSTREAM_KIT_HEARTBEAT_SECONDS": "0.5",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Worker:
        command = [
            sys.executable, "-m", "uvicorn", "resume_app:app", "--host", "127.0.0.1",
            "--port", str(self.port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, env=self.env)
        return self

    def wait_ready(self) -> Worker:
        wait_for_port(self.port, timeout=30)
        return self

    def start(self) -> Worker:
        return self.launch().wait_ready()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


class Fleet(NamedTuple):
    a: Worker  # A and B share the module's Redis
    b: Worker
    spare: Worker  # shares it too; tests kill and restart it
    isolated: Worker  # has its own Redis, which starts out stopped
    isolated_redis: RedisServer


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, peer: ScriptedOpenAI) -> Iterator[Fleet]:
    """Every worker process of the module, launched at once (each takes a second to import)."""
    with RedisServer.created(redis_server.binary) as isolated_redis:
        shared = [Worker(redis_server.socket_path, peer.base_url) for _ in range(3)]
        isolated = Worker(isolated_redis.socket_path, peer.base_url)
        processes = [*shared, isolated]
        try:
            for worker in processes:
                worker.launch()
            for worker in processes:
                worker.wait_ready()
            yield Fleet(*shared, isolated, isolated_redis)
        finally:
            for worker in processes:
                worker.kill(signal.SIGTERM)


@pytest.fixture
def workers(fleet: Fleet) -> tuple[Worker, Worker]:
    """Workers A and B: two processes, two ports, one Redis."""
    return fleet.a, fleet.b


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(unix_socket_path=redis_server.socket_path)
    yield client
    client.close()


def scripted(peer: ScriptedOpenAI, script: Script) -> str:
    """Register ``script`` under a fresh model name (so request counts are per test)."""
    model = f"model-{uuid.uuid4().hex[:8]}"
    peer.script(model, script)
    return model


def requests_for(peer: ScriptedOpenAI, model: str) -> int:
    return sum(1 for record in peer.requests if record.script_name == model)


def read_events(
    url: str, *, last_event_id: str | None = None, stop_after_text: int | None = None
) -> list[ParsedEvent]:
    """Read SSE events until the body ends, or until ``stop_after_text`` ``text`` events."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    parser, events = SSEParser(), []
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            for event in parser.feed(chunk):
                events.append(event)
                texts = sum(1 for e in events if e.event == "text")
                if stop_after_text is not None and texts >= stop_after_text:
                    return events  # leaving the block closes the connection mid-stream
    return events


def texts(events: list[ParsedEvent]) -> list[str]:
    return [json.loads(e.data)["text"] for e in events if e.event == "text"]


def entry_order(entry_id: str | None) -> tuple[int, int]:
    assert entry_id is not None
    milliseconds, sequence = entry_id.split("-")
    return int(milliseconds), int(sequence)


# 1 ------------------------------------------------------------------------------------------


def test_half_an_answer_from_worker_a_and_the_rest_from_worker_b_with_last_event_id(
    workers: tuple[Worker, Worker], peer: ScriptedOpenAI
) -> None:
    a, b = workers
    model = scripted(peer, Script(tokens=TOKENS, delay_seconds=0.03))
    key = uuid.uuid4().hex

    first = read_events(f"{a.url}/chat/{key}?model={model}", stop_after_text=10)
    rest = read_events(f"{b.url}/chat/{key}?model={model}", last_event_id=first[-1].id)

    assert texts(first) == TOKENS[:10]
    assert texts(rest) == TOKENS[10:]
    assert [e.event for e in rest] == ["text"] * 10 + ["done"]
    ids = [entry_order(e.id) for e in first + rest]
    assert ids == sorted(set(ids)), "event ids must strictly increase: no repeat, no reorder"
    # Exactly the remaining events: the same ids and data as a full replay from the start.
    everything = read_events(f"{b.url}/chat/{key}?model={model}")
    assert [(e.id, e.event, e.data) for e in first + rest] == [
        (e.id, e.event, e.data) for e in everything
    ]
    # The model was asked once, and the producer did not stop when A's client left.
    assert requests_for(peer, model) == 1
    [record] = [r for r in peer.requests if r.script_name == model]
    assert record.wait_finished(5.0)
    assert record.outcome == "completed"


# 3 ------------------------------------------------------------------------------------------


def test_a_failing_producer_ends_live_and_resuming_readers_with_an_error_event(
    workers: tuple[Worker, Worker], peer: ScriptedOpenAI, store: redis.Redis
) -> None:
    a, b = workers
    model = scripted(peer, Script(tokens=TOKENS, delay_seconds=0.02, fail_after_tokens=5))
    key = uuid.uuid4().hex

    live = read_events(f"{a.url}/chat/{key}?model={model}")
    resumed = read_events(f"{b.url}/chat/{key}?model={model}", last_event_id=live[1].id)

    assert [e.event for e in live] == ["text"] * 5 + ["error"]
    assert texts(live) == TOKENS[:5]
    assert [e.event for e in resumed] == ["text"] * 3 + ["error"]
    assert texts(resumed) == TOKENS[2:5]
    # The provider's own error code travels beside the library's type, live and resumed.
    assert json.loads(live[-1].data) == json.loads(resumed[-1].data)
    assert json.loads(live[-1].data) == {
        "type": "upstream_error",
        "message": "The server had an error while processing your request. Sorry about that!",
        "code": "server_error",
    }
    assert requests_for(peer, model) == 1
    assert_every_key_expires(store)


def test_a_failing_sse_producer_ends_readers_with_an_error_event(
    workers: tuple[Worker, Worker], store: redis.Redis
) -> None:
    a, b = workers
    key = uuid.uuid4().hex

    live = read_events(f"{a.url}/events/{key}?count=10&fail_after=4&delay=0.01")
    resumed = read_events(f"{b.url}/events/{key}", last_event_id=live[0].id)

    assert [(e.event, e.data) for e in live[:4]] == [("message", str(n)) for n in range(4)]
    assert live[-1].event == "error"
    assert len(live) == 5
    assert [e.data for e in resumed[:-1]] == ["1", "2", "3"]
    assert resumed[-1].event == "error"
    assert_every_key_expires(store)


def test_a_producer_stream_error_keeps_its_public_type_and_message(
    workers: tuple[Worker, Worker],
) -> None:
    a, _ = workers
    key = uuid.uuid4().hex
    events = read_events(f"{a.url}/events/{key}?count=10&fail_after=2")
    assert json.loads(events[-1].data) == {
        "type": "scripted_failure",
        "message": "the producer failed on purpose",
    }


def assert_every_key_expires(store: redis.Redis) -> None:
    """``SCAN`` every key in the shared Redis: none may live forever (TTL -1)."""
    keys = list(store.scan_iter(count=1000))
    assert keys, "the tests wrote no keys?"
    ttls = {key: store.ttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


# 4 ------------------------------------------------------------------------------------------


def test_resuming_a_completed_stream_replays_the_whole_answer_and_ends(
    workers: tuple[Worker, Worker], peer: ScriptedOpenAI
) -> None:
    a, b = workers
    model = scripted(peer, Script(tokens=TOKENS))
    key = uuid.uuid4().hex

    original = read_events(f"{a.url}/chat/{key}?model={model}")
    replayed = read_events(f"{b.url}/chat/{key}?model={model}")
    after_last_text = read_events(
        f"{b.url}/chat/{key}?model={model}", last_event_id=original[-2].id
    )
    with httpx.Client(timeout=10) as client:
        ui = client.get(f"{b.url}/chat/{key}?model={model}&format=ui")

    assert texts(original) == TOKENS
    assert original[-1].event == "done"
    assert [(e.id, e.event, e.data) for e in replayed] == [
        (e.id, e.event, e.data) for e in original
    ]
    assert [e.event for e in after_last_text] == ["done"]
    # The AI SDK resumes by replaying the whole message.
    parts = [
        json.loads(line[len("data: ") :])
        for line in ui.text.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == "".join(TOKENS)
    assert parts[-1]["type"] == "finish"
    assert ui.text.endswith("data: [DONE]\n\n")
    assert requests_for(peer, model) == 1


# 5 ------------------------------------------------------------------------------------------


def test_100_concurrent_readers_on_two_workers_receive_identical_sequences(
    workers: tuple[Worker, Worker],
) -> None:
    """The first reader starts the stream; 99 more join while it is live, on both workers.

    (Readers that race to *start* the same stream are the next test.)
    """
    key, count = uuid.uuid4().hex, 100
    url = f"/events/{key}?count={count}&delay=0.005"
    sequences: list[list[tuple[str | None, str]]] = []

    async def follow(client: httpx.AsyncClient, url: str, first: anyio.Event) -> None:
        parser, events = SSEParser(), []
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                events.extend(parser.feed(chunk))
                if events:
                    first.set()
        sequences.append([(e.id, e.data) for e in events])

    async def main() -> None:
        limits = httpx.Limits(max_connections=200)
        async with (
            httpx.AsyncClient(timeout=20, limits=limits) as client,
            anyio.create_task_group() as group,
        ):
            started = anyio.Event()
            group.start_soon(follow, client, workers[0].url + url, started)
            with anyio.fail_after(10):
                await started.wait()
            for n in range(1, 100):
                group.start_soon(follow, client, workers[n % 2].url + url, anyio.Event())

    anyio.run(main)

    assert len(sequences) == 100
    assert [data for _, data in sequences[0]] == [str(n) for n in range(count)]
    assert all(sequence == sequences[0] for sequence in sequences)


# 6 ------------------------------------------------------------------------------------------


def test_redis_absent_is_503_and_redis_killed_mid_stream_is_an_error_event_within_2s(
    fleet: Fleet, peer: ScriptedOpenAI
) -> None:
    """The isolated worker's Redis is down when the first requests come, then starts, then is
    SIGKILLed while three readers follow: an SSE producer's reader, a second reader of the
    same stream, and an LLM answer's reader."""
    worker, server = fleet.isolated, fleet.isolated_redis
    model = scripted(peer, Script(tokens=TOKENS * 20, delay_seconds=0.02))
    with httpx.Client(timeout=10) as client:
        absent = client.get(f"{worker.url}/events/{uuid.uuid4().hex}")
        absent_llm = client.get(f"{worker.url}/chat/{uuid.uuid4().hex}?model={model}")
    assert absent.status_code == 503
    assert absent.json()["error"]["type"] == "unavailable"
    assert absent_llm.status_code == 503
    assert absent_llm.json()["error"]["type"] == "unavailable"
    assert requests_for(peer, model) == 0

    server.start()
    endings = anyio.run(read_until_redis_dies, worker, server, model)

    assert sorted(kind for kind, _, _ in endings) == ["llm", "sse", "sse-second-reader"]
    for kind, event, seconds in endings:
        assert event.event == "error", kind
        assert json.loads(event.data)["type"] == "unavailable", kind
        assert seconds < 2.0, f"{kind} reader waited {seconds:.2f} s for its error event"


async def read_until_redis_dies(
    worker: Worker, server: RedisServer, model: str
) -> list[tuple[str, ParsedEvent, float]]:
    """Follow three streams; kill Redis once each has delivered 3 events; time the endings."""
    key = uuid.uuid4().hex
    urls = {
        "sse": f"{worker.url}/events/{key}?count=100000&delay=0.01",
        "sse-second-reader": f"{worker.url}/events/{key}",
        "llm": f"{worker.url}/chat/{uuid.uuid4().hex}?model={model}",
    }
    ready = {kind: anyio.Event() for kind in urls}
    killed_at: list[float] = []
    endings: list[tuple[str, ParsedEvent, float]] = []

    async def follow(client: httpx.AsyncClient, kind: str) -> None:
        parser, seen = SSEParser(), 0
        async with client.stream("GET", urls[kind]) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                for event in parser.feed(chunk):
                    seen += 1
                    if seen == 3:
                        ready[kind].set()
                    if event.event == "error":
                        endings.append((kind, event, time.monotonic() - killed_at[0]))
                        return

    async with httpx.AsyncClient(timeout=10) as client, anyio.create_task_group() as group:
        group.start_soon(follow, client, "sse")
        await ready["sse"].wait()  # the stream exists before its second reader comes
        group.start_soon(follow, client, "sse-second-reader")
        group.start_soon(follow, client, "llm")
        with anyio.fail_after(10):
            for event in ready.values():
                await event.wait()
        killed_at.append(time.monotonic())
        server.kill()
    return endings


# the producer's worker dies -------------------------------------------------------------------


def test_readers_get_an_error_event_when_the_producers_worker_is_killed(
    fleet: Fleet, peer: ScriptedOpenAI
) -> None:
    """The producer runs in the worker that started it; if that process dies, its answer is
    lost (resuming cannot finish it). Readers on other workers must not hang: once the
    producer's heartbeat key expires they end with ``producer_lost``."""
    producer, b = fleet.spare, fleet.b
    model = scripted(peer, Script(tokens=TOKENS * 10, delay_seconds=0.02))
    key = uuid.uuid4().hex
    read_events(f"{producer.url}/chat/{key}?model={model}", stop_after_text=1)
    got_events = threading.Event()
    events: list[ParsedEvent] = []

    def follow() -> None:
        parser = SSEParser()
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", f"{b.url}/chat/{key}?model={model}") as response,
        ):
            for chunk in response.iter_raw():
                events.extend(parser.feed(chunk))
                if len(events) >= 3:
                    got_events.set()

    reader = threading.Thread(target=follow)
    reader.start()
    assert got_events.wait(10)
    producer.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    reader.join(10)
    ended_after = time.monotonic() - killed_at

    assert not reader.is_alive()
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["type"] == "producer_lost"
    # three heartbeats of 0.5 s for the owner key to expire, plus one XREAD block
    assert ended_after < 4.0
    assert requests_for(peer, model) == 1


# 2 (last: the module-scoped browser keeps an event loop in this thread) ----------------------


def test_chromium_event_source_survives_a_restart_of_its_worker(
    browser: Browser, fleet: Fleet, peer: ScriptedOpenAI
) -> None:
    """The page's worker is SIGKILLed mid-answer and a new one starts on the same port.

    The producer runs in the worker that started the stream (A here), not in the one the
    browser reads from: a producer dies with its process (see the test above), so what a
    restart of the *reader's* worker must show is that ``EventSource`` reconnects with
    ``Last-Event-ID`` to the new process and gets every remaining token once. The model is
    still answering when the page's worker dies (asserted), so the resumed read is live.
    ``llm_response`` sends no ``retry`` field, so Chromium waits its default 3 s to reconnect.
    """
    a, reader = fleet.a, fleet.spare
    if reader.process is None:
        reader.start()  # the test above killed it
    tokens = [f"t{n:02d} " for n in range(60)]
    model = scripted(peer, Script(tokens=tokens, delay_seconds=0.1))
    key = uuid.uuid4().hex
    page = browser.new_page()
    try:
        read_events(f"{a.url}/chat/{key}?model={model}", stop_after_text=1)  # starts it on A
        page.goto(f"{reader.url}/page/{key}?model={model}")
        page.wait_for_function("window.received >= 8", timeout=10_000)
        reader.kill(signal.SIGKILL)
        [upstream] = [r for r in peer.requests if r.script_name == model]
        assert upstream.finished_at is None, "the answer must still be in progress"
        reader.start()  # same port: EventSource reconnects to the URL it was given
        page.wait_for_function("window.finished", timeout=20_000)
        answer = page.evaluate("document.getElementById('answer').textContent")
        opened = page.evaluate("window.opened")
        errors = page.evaluate("window.errors")
    finally:
        page.close()
    assert answer == "".join(tokens)
    assert opened >= 2, "EventSource should have reconnected"
    assert errors == []
    assert requests_for(peer, model) == 1

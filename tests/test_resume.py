"""Resumable streams on a real Redis, served by real uvicorn worker processes.

Every test runs twice: against one ``redis-server`` (a unix socket) and against a three-node
Redis Cluster, where workers A, B and the spare each connect through a different node. Every
worker runs ``tests/apps/resume_app.py``; the scripted OpenAI-compatible peer lives in this
process and records every request, so a test can prove the model was asked exactly once
however many workers served the answer. Each test uses its own stream key and model name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import anyio
import httpx
import pytest
import redis

from faststream_kit.testing import ParsedEvent, SSEParser

from .conftest import free_port, wait_for_port
from .openai_peer import Script, ScriptedOpenAI
from .redis_peer import (
    RedisCluster,
    RedisServer,
    redis_cluster_fixture,  # noqa: F401  (fixture: redis_cluster)
    redis_server_fixture,  # noqa: F401  (fixture: redis_server)
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

APPS = Path(__file__).parent / "apps"
TOKENS = [f"w{n:02d} " for n in range(20)]
HEARTBEAT_SECONDS = 1.0  # the owner key lives two: a stall on a busy CI box is no lost worker


class Worker:
    """``uvicorn resume_app:app`` in its own process, on a port that survives a restart.

    ``redis_env`` says which Redis: ``FASTSTREAM_KIT_REDIS_SOCKET`` or
    ``FASTSTREAM_KIT_REDIS_CLUSTER`` (the node it connects through).
    """

    def __init__(
        self, redis_env: dict[str, str], openai_base_url: str, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
            **redis_env,
            "FASTSTREAM_KIT_OPENAI_BASE_URL": openai_base_url,
            "FASTSTREAM_KIT_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "FASTSTREAM_KIT_SHUTDOWN_GRACE_SECONDS": "0.2",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None  # the running process's stderr, read if it fails

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Worker:
        command = [
            sys.executable, "-m", "uvicorn", "resume_app:app", "--host", "127.0.0.1",
            "--port", str(self.port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (closed by kill())
        self.process = subprocess.Popen(command, env=self.env, stderr=self.log)
        return self

    def wait_ready(self) -> Worker:
        try:
            wait_for_port(self.port, timeout=60)
        except RuntimeError:
            assert self.log is not None
            self.log.seek(0)
            exited = self.process.poll() if self.process else None
            raise RuntimeError(
                f"worker on {self.port} (exit code {exited}) did not start: "
                + self.log.read()[-3000:].decode(errors="replace")
            ) from None
        return self

    def start(self) -> Worker:
        return self.launch().wait_ready()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=10)
        self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


class Backend(NamedTuple):
    name: str
    worker_env: Callable[[int], dict[str, str]]  # the n-th worker's Redis settings
    client: Callable[[], Any]  # a sync client, for the tests' own look at the keys


@pytest.fixture(scope="module", params=["single", "cluster"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """One ``redis-server``, or a three-node cluster with each worker on another node."""
    if request.param == "single":
        server: RedisServer = request.getfixturevalue("redis_server")
        return Backend(
            "single",
            lambda n: {"FASTSTREAM_KIT_REDIS_SOCKET": server.socket_path},
            lambda: redis.Redis(unix_socket_path=server.socket_path),
        )
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return Backend(
        "cluster",
        lambda n: {"FASTSTREAM_KIT_REDIS_CLUSTER": f"127.0.0.1:{cluster.ports[n % 3]}"},
        lambda: redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0]),
    )


class Fleet(NamedTuple):
    a: Worker  # A, B and the spare share the backend's Redis (each through its own node)
    b: Worker
    spare: Worker  # tests kill and restart it


@pytest.fixture(scope="module")
def fleet(backend: Backend, peer: ScriptedOpenAI) -> Iterator[Fleet]:
    """Every worker process of the module, launched at once (each takes a second to import)."""
    workers = [Worker(backend.worker_env(n), peer.base_url) for n in range(3)]
    try:
        for worker in workers:
            worker.launch()
        for worker in workers:
            worker.wait_ready()
        yield Fleet(*workers)
    finally:
        for worker in workers:
            worker.kill(signal.SIGTERM)


class Isolated(NamedTuple):
    worker: Worker
    redis: RedisServer  # starts out stopped


@pytest.fixture(scope="module")
def isolated(redis_server: RedisServer, peer: ScriptedOpenAI) -> Iterator[Isolated]:
    """A worker with a ``redis-server`` of its own, which the test starts and kills."""
    with RedisServer.created(redis_server.binary) as server:
        worker = Worker({"FASTSTREAM_KIT_REDIS_SOCKET": server.socket_path}, peer.base_url)
        try:
            yield Isolated(worker.start(), server)
        finally:
            worker.kill(signal.SIGTERM)


@pytest.fixture
def workers(fleet: Fleet) -> tuple[Worker, Worker]:
    """Workers A and B: two processes, two ports, one Redis (or one cluster)."""
    return fleet.a, fleet.b


@pytest.fixture
def store(backend: Backend) -> Iterator[Any]:
    client = backend.client()
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


def run_async(function: Callable[..., Any], *args: Any) -> Any:
    """``anyio.run`` in a thread of its own: the module's Chromium (Playwright's sync API)
    keeps an event loop in the test thread once it has run."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(anyio.run(function, *args))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


class Follower(threading.Thread):
    """Reads one SSE response in a thread, recording each event and when it arrived."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers or {}
        self.events: list[ParsedEvent] = []
        self.arrived: list[float] = []
        self.changed = threading.Condition()

    def run(self) -> None:
        parser = SSEParser()
        with (
            httpx.Client(timeout=20) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            for chunk in response.iter_raw():
                for event in parser.feed(chunk):
                    with self.changed:
                        self.events.append(event)
                        self.arrived.append(time.monotonic())
                        self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.events) >= count, timeout), self.events


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
    workers: tuple[Worker, Worker], peer: ScriptedOpenAI, store: Any
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
    workers: tuple[Worker, Worker], store: Any
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


def assert_every_key_expires(store: Any) -> None:
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
        ag_ui = client.get(f"{b.url}/chat/{key}?model={model}&format=ag-ui")

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
    # So does an AG-UI client: the whole run again.
    run = [
        json.loads(line[len("data: ") :])
        for line in ag_ui.text.splitlines()
        if line.startswith("data: {")
    ]
    assert run[0]["type"] == "RUN_STARTED"
    content = "".join(e["delta"] for e in run if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert content == "".join(TOKENS)
    assert run[-1]["type"] == "RUN_FINISHED"
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

    run_async(main)

    assert len(sequences) == 100
    assert [data for _, data in sequences[0]] == [str(n) for n in range(count)]
    assert all(sequence == sequences[0] for sequence in sequences)


# 6 ------------------------------------------------------------------------------------------


def test_redis_absent_is_503_and_redis_killed_mid_stream_is_an_error_event_within_2s(
    isolated: Isolated, peer: ScriptedOpenAI
) -> None:
    """The isolated worker's Redis is down when the first requests come, then starts, then is
    SIGKILLed while three readers follow: an SSE producer's reader, a second reader of the
    same stream, and an LLM answer's reader."""
    worker, server = isolated
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
    endings = run_async(read_until_redis_dies, worker, server, model)

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
    """The producer runs in the worker that started it; if that process dies (SIGKILL), its
    answer is lost (resuming cannot finish it). A reader on another worker ends with
    ``producer_lost`` within three heartbeats, and a reader that comes later gets every
    event the producer wrote, then the same error."""
    producer, b = fleet.spare, fleet.b
    if producer.process is None:
        producer.start()
    model = scripted(peer, Script(tokens=TOKENS * 10, delay_seconds=0.02))
    key = uuid.uuid4().hex
    read_events(f"{producer.url}/chat/{key}?model={model}", stop_after_text=1)
    reader = Follower(f"{b.url}/chat/{key}?model={model}")
    reader.start()
    reader.wait_for(3)
    producer.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    reader.join(10)
    late = read_events(f"{b.url}/chat/{key}?model={model}")

    assert not reader.is_alive()
    assert reader.events[-1].event == "error"
    assert json.loads(reader.events[-1].data)["type"] == "producer_lost"
    ended_after = reader.arrived[-1] - killed_at
    assert ended_after < 3 * HEARTBEAT_SECONDS, f"the error came {ended_after:.2f} s after"
    assert [(e.id, e.event, e.data) for e in late] == [
        (e.id, e.event, e.data) for e in reader.events
    ]
    assert texts(late) == (TOKENS * 10)[: len(texts(late))]
    assert len(texts(late)) >= 3
    assert requests_for(peer, model) == 1


# correct ends ---------------------------------------------------------------------------------


def test_leaving_the_context_records_a_cancelled_end_for_each_producer_it_stops(
    fleet: Fleet,
) -> None:
    """SIGTERM: uvicorn leaves the lifespan, which waits ``shutdown_grace_seconds`` (0.2 s
    here) and then stops the producer, which writes a ``cancelled`` end for its readers on
    other workers, at once (not ``producer_lost`` after its owner key expired)."""
    producer, b = fleet.spare, fleet.b
    if producer.process is None:
        producer.start()
    key = uuid.uuid4().hex
    read_events(f"{producer.url}/events/{key}?count=100000&delay=0.02", stop_after_text=0)
    reader = Follower(f"{b.url}/events/{key}")
    reader.start()
    reader.wait_for(3)
    producer.kill(signal.SIGTERM)
    stopped_at = time.monotonic()
    reader.join(10)
    late = read_events(f"{b.url}/events/{key}")

    assert not reader.is_alive()
    assert reader.events[-1].event == "error"
    assert json.loads(reader.events[-1].data) == {
        "type": "cancelled",
        "message": "the server shut down before the stream finished",
    }
    assert reader.arrived[-1] - stopped_at < 2 * HEARTBEAT_SECONDS
    assert [e.data for e in late] == [e.data for e in reader.events]


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ("timeout", {"type": "timeout", "message": "The stream timed out."}),
        ("oserror", {"type": "server_error", "message": "Internal Server Error"}),
    ],
)
def test_a_source_timeout_or_oserror_is_the_sources_error_not_lost_redis(
    workers: tuple[Worker, Worker], failure: str, error: dict[str, str]
) -> None:
    """``TimeoutError`` and ``OSError`` from the producer's own source are its failure:
    readers get it at once, live and resumed (they are no sign that Redis is gone)."""
    a, b = workers
    key = uuid.uuid4().hex
    started = time.monotonic()
    live = read_events(f"{a.url}/events/{key}?count=10&fail_after=3&failure={failure}")
    resumed = read_events(f"{b.url}/events/{key}", last_event_id=live[0].id)

    assert [e.data for e in live[:3]] == ["0", "1", "2"]
    assert live[-1].event == "error"
    assert json.loads(live[-1].data) == error
    assert time.monotonic() - started < 2 * HEARTBEAT_SECONDS  # not a lost producer's wait
    assert [e.data for e in resumed[:-1]] == ["1", "2"]
    assert json.loads(resumed[-1].data) == error


def test_a_redis_that_forgot_the_writers_script_still_gets_every_event_then_the_end(
    workers: tuple[Worker, Worker], store: Any
) -> None:
    """The shared writer sends its script by SHA1: a Redis that does not have it (restarted,
    ``SCRIPT FLUSH``, a failover) is sent the script, and a stream whose events and end are
    produced at once still has its events, then its end, in order."""
    a, b = workers
    store.script_flush()
    key = uuid.uuid4().hex
    live = read_events(f"{a.url}/events/{key}?count=3")
    resumed = read_events(f"{b.url}/events/{key}")

    assert [e.data for e in live] == ["0", "1", "2"]
    assert [(e.id, e.data) for e in resumed] == [(e.id, e.data) for e in live]


@pytest.mark.parametrize(
    "last_event_id",
    ["\u0661\u0662-\u0663", "12", "abc", "1-2-3", "1-", "99999999999999999999999-0"],
)
@pytest.mark.parametrize("route", ["events", "chat"])
def test_a_malformed_last_event_id_is_a_400_with_json(
    workers: tuple[Worker, Worker], peer: ScriptedOpenAI, route: str, last_event_id: str
) -> None:
    """Arabic-Indic digits ('\u0661\u0662') are digits to ``str.isdigit`` and ``\\d``,
    but no stream id: Redis would refuse them (a 503 'Redis unavailable')."""
    a, _ = workers
    model = scripted(peer, Script(tokens=TOKENS[:2]))
    key = uuid.uuid4().hex
    url = f"{a.url}/{route}/{key}?model={model}"
    read_events(url)  # the stream exists: only the header is wrong
    with httpx.Client(timeout=10) as client:
        response = client.get(url, headers={"Last-Event-ID": last_event_id.encode()})

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["type"] == "bad_request"
    assert body["error"]["message"].startswith("Last-Event-ID must be an event id")


def test_llm_idle_timeout_ends_a_stalled_answer_for_every_reader(
    workers: tuple[Worker, Worker], peer: ScriptedOpenAI
) -> None:
    """The model sends 3 tokens and then nothing (its connection stays open): with
    ``idle_timeout=1`` the producer stops it, and every reader, now or later, ends with a
    ``timeout`` error after the 3 tokens; the model's request is closed."""
    a, b = workers
    model = scripted(
        peer, Script(tokens=TOKENS, fail_after_tokens=3, failure="stall", stall_seconds=30)
    )
    key = uuid.uuid4().hex
    reader = Follower(f"{a.url}/chat/{key}?model={model}&idle_timeout=1")
    reader.start()
    reader.wait_for(3)
    third_at = reader.arrived[2]
    reader.join(10)
    late = read_events(f"{b.url}/chat/{key}?model={model}")

    assert not reader.is_alive()
    assert [e.event for e in reader.events] == ["text"] * 3 + ["error"]
    assert json.loads(reader.events[-1].data)["type"] == "timeout"
    assert 0.9 < reader.arrived[-1] - third_at < 1.0 + 2 * HEARTBEAT_SECONDS
    assert [(e.id, e.data) for e in late] == [(e.id, e.data) for e in reader.events]
    [record] = [r for r in peer.requests if r.script_name == model]
    assert record.wait_finished(5.0)
    assert record.outcome == "disconnected"


# batches and many streams ---------------------------------------------------------------------


def test_resuming_in_the_middle_of_a_batch_gets_exactly_the_rest(
    workers: tuple[Worker, Worker], store: Any
) -> None:
    """An unpaced producer's events go out many to an entry; each still has its own id."""
    a, b = workers
    key, count = uuid.uuid4().hex, 5000
    everything = read_events(f"{a.url}/events/{key}?count={count}")
    [events_key] = list(store.scan_iter(match=f"*:{key}:events"))
    entries = store.xlen(events_key)

    assert [e.data for e in everything] == [str(n) for n in range(count)]
    assert entries <= count // 10, f"{entries} entries for {count} events: not batched"
    ids = [entry_order(e.id) for e in everything]
    assert ids == sorted(set(ids))
    for middle in (1, 777, 2500, count - 2):
        rest = read_events(f"{b.url}/events/{key}", last_event_id=everything[middle].id)
        assert [(e.id, e.data) for e in rest] == [(e.id, e.data) for e in everything[middle + 1 :]]


MAX_EVENTS = 100  # the workers' ResumableStreams(max_events=...) behind ?trimmed=1


def test_max_events_keeps_a_long_stream_to_its_latest_events_and_resuming_before_them_is_410(
    workers: tuple[Worker, Worker], store: Any
) -> None:
    """400 paced events (an entry or a few each) on ``ResumableStreams(max_events=100)``: the
    live reader gets them all; Redis keeps about the last 100 (it trims whole nodes of
    entries); a new reader gets the last 100 (and the rest of the oldest entry kept), each
    of which it can resume from: resuming inside that window gets exactly the rest, resuming
    before it is a 410 ``gone``, not a silent gap; every key expires."""
    a, b = workers
    key, count = uuid.uuid4().hex, 400
    live = read_events(f"{a.url}/events/{key}?count={count}&delay=0.002&trimmed=1")
    [events_key] = list(store.scan_iter(match=f"*:{key}:events"))
    kept = store.xlen(events_key)
    tail = read_events(f"{b.url}/events/{key}")
    inside = read_events(f"{b.url}/events/{key}", last_event_id=tail[0].id)
    with httpx.Client(timeout=10) as client:
        refused = [
            client.get(f"{b.url}/events/{key}", headers={"Last-Event-ID": event.id or ""})
            # the first event; the last but one not kept (the last one not kept is no gap)
            for event in (live[0], live[-len(tail) - 2])
        ]
    just_before = read_events(f"{b.url}/events/{key}", last_event_id=live[-len(tail) - 1].id)

    assert [e.data for e in live] == [str(n) for n in range(count)]
    # Redis trims whole nodes (100 entries) and an entry may hold several events.
    assert kept < 2 * MAX_EVENTS + 10, f"{kept} entries kept of {count} events"
    data = [e.data for e in tail]
    assert MAX_EVENTS <= len(data) < MAX_EVENTS + 10
    assert data == [str(n) for n in range(count - len(data), count)]
    assert [(e.id, e.data) for e in tail] == [(e.id, e.data) for e in live[-len(data) :]]
    assert [(e.id, e.data) for e in inside] == [(e.id, e.data) for e in tail[1:]]
    assert [(e.id, e.data) for e in just_before] == [(e.id, e.data) for e in tail]
    for before in refused:
        assert before.status_code == 410, before.text
        assert before.headers["content-type"] == "application/json"
        assert before.json()["error"]["type"] == "gone"
    assert_every_key_expires(store)


def test_max_events_trims_an_llm_answer_whose_whole_replay_is_then_410(
    workers: tuple[Worker, Worker], peer: ScriptedOpenAI
) -> None:
    """The ``ui`` format replays the whole answer (the AI SDK's resume): once the answer
    lost its first events it is 410, not a message missing its beginning; an ``sse`` reader
    resuming from its last events still gets the rest."""
    a, b = workers
    tokens = [f"t{n:03d} " for n in range(3 * MAX_EVENTS)]
    model = scripted(peer, Script(tokens=tokens, delay_seconds=0.002))
    key = uuid.uuid4().hex
    url = f"/chat/{key}?model={model}&trimmed=1"
    live = read_events(a.url + url)
    near_end = read_events(b.url + url, last_event_id=live[-4].id)
    with httpx.Client(timeout=10) as client:
        ui = client.get(b.url + url + "&format=ui")
        from_start = client.get(b.url + url, headers={"Last-Event-ID": live[0].id})

    assert texts(live) == tokens
    assert [(e.id, e.data) for e in near_end] == [(e.id, e.data) for e in live[-3:]]
    assert ui.status_code == 410, ui.text[:300]
    assert ui.json()["error"]["type"] == "gone"
    assert from_start.status_code == 410
    assert from_start.json()["error"]["type"] == "gone"
    assert requests_for(peer, model) == 1


def test_300_concurrent_streams_on_one_worker_with_the_documented_client(
    workers: tuple[Worker, Worker],
) -> None:
    """More live streams than redis-py's pool has connections (100): every reader of every
    stream gets all its events, in order, once."""
    a, _ = workers
    streams, count = 300, 10
    keys = [uuid.uuid4().hex for _ in range(streams)]
    received: dict[str, list[str]] = {}

    async def follow(client: httpx.AsyncClient, key: str) -> None:
        parser, data = SSEParser(), []
        async with client.stream("GET", f"{a.url}/events/{key}?count={count}&delay=0.1") as r:
            assert r.status_code == 200, await r.aread()
            async for chunk in r.aiter_raw():
                data.extend(e.data if e.event == "message" else e.event for e in parser.feed(chunk))
        received[key] = data

    async def main() -> None:
        limits = httpx.Limits(max_connections=streams)
        async with (
            httpx.AsyncClient(timeout=30, limits=limits) as client,
            anyio.create_task_group() as group,
        ):
            for key in keys:
                group.start_soon(follow, client, key)

    run_async(main)
    expected = [str(n) for n in range(count)]
    assert {key: data for key, data in received.items() if data != expected} == {}
    assert len(received) == streams


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

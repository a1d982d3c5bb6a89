"""``HEAD`` on every helper: headers only, and everything the route opened is closed.

A ``HEAD`` never starts a source, but a route may have opened something before it returned
the response: an SDK call not yet awaited, an OpenAI stream whose HTTP response is open, a
sync generator it peeked at, another service's response. Each must be closed, and
``llm_stream`` calls ``on_complete`` once, as on every other path.
"""

from __future__ import annotations

import gc
import inspect
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI, Request
from openai import AsyncOpenAI, OpenAI
from starlette.responses import Response

from faststream_kit import (
    Completion,
    StreamResponse,
    llm_stream,
    sse_response,
    stream_response,
    upstream_stream,
)
from faststream_kit.testing import LiveServer

from .openai_peer import Script, ScriptedOpenAI
from .redis_peer import RedisServer, redis_server_fixture  # noqa: F401  (fixture: redis_server)
from .upstream_peers import Upstream

API_KEY = "sk-test-head"
MESSAGES = [{"role": "user", "content": "hi"}]
# Slow enough that an upstream left open is still streaming when the test looks.
SLOW = Script(tokens=[f"t{i} " for i in range(50)], delay_seconds=0.1)


class Completions:
    """``on_complete`` reports, by the ``tag`` each test gives its request."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._by_tag: dict[str, list[Completion]] = {}

    def reporter(self, tag: str) -> Any:
        def report(completion: Completion) -> None:
            with self._lock:
                self._by_tag.setdefault(tag, []).append(completion)
                self._lock.notify_all()

        return report

    def wait(self, tag: str, timeout: float = 5.0) -> list[Completion]:
        with self._lock:
            self._lock.wait_for(lambda: tag in self._by_tag, timeout)
            return list(self._by_tag.get(tag, []))


class Opened:
    """What the routes opened, by tag, for the tests to inspect afterwards."""

    def __init__(self) -> None:
        self.coroutines: dict[str, Coroutine[Any, Any, Any]] = {}
        self.closed_in_thread: dict[str, str] = {}
        self.loop_thread = ""
        self.factory_called: set[str] = set()


def make_app(peer: ScriptedOpenAI, completions: Completions, opened: Opened) -> FastAPI:
    app = FastAPI()
    async_client = AsyncOpenAI(base_url=peer.base_url, api_key=API_KEY, max_retries=0)
    sync_client = OpenAI(base_url=peer.base_url, api_key=API_KEY, max_retries=0)

    @app.api_route("/llm/not-awaited", methods=["GET", "HEAD"])
    async def not_awaited(tag: str) -> StreamResponse:
        create = async_client.chat.completions.create(model=tag, messages=MESSAGES, stream=True)
        opened.coroutines[tag] = create
        return llm_stream(create, on_complete=completions.reporter(tag))

    @app.api_route("/llm/async-stream", methods=["GET", "HEAD"])
    async def async_stream(tag: str) -> StreamResponse:
        stream = await async_client.chat.completions.create(
            model=tag, messages=MESSAGES, stream=True
        )
        return llm_stream(stream, on_complete=completions.reporter(tag))

    @app.api_route("/llm/sync-stream", methods=["GET", "HEAD"])
    def sync_stream(tag: str) -> StreamResponse:
        stream = sync_client.chat.completions.create(model=tag, messages=MESSAGES, stream=True)
        return llm_stream(stream, on_complete=completions.reporter(tag))

    @app.api_route("/llm/async-text", methods=["GET", "HEAD"])
    async def async_text(tag: str) -> StreamResponse:
        async def tokens() -> AsyncIterator[str]:
            yield "never read"

        return llm_stream(tokens(), format="text", on_complete=completions.reporter(tag))

    def peeked(tag: str) -> Iterator[str]:
        """A sync generator the route starts itself (say, to fail early on a bad query)."""
        try:
            yield "first"
            yield "second"
        finally:
            opened.closed_in_thread[tag] = threading.current_thread().name

    @app.api_route("/peeked/{helper}", methods=["GET", "HEAD"])
    async def peeked_source(helper: Literal["stream", "sse"], tag: str) -> StreamResponse:
        opened.loop_thread = threading.current_thread().name
        items = peeked(tag)
        next(items)
        return stream_response(items) if helper == "stream" else sse_response(items)

    @app.api_route("/sse/factory", methods=["GET", "HEAD"])
    async def sse_factory(tag: str) -> StreamResponse:
        def events(last_event_id: str | None) -> Iterator[str]:
            opened.factory_called.add(tag)
            yield "hello"

        return sse_response(events)

    return app


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI(default=SLOW) as scripted:
        yield scripted


@pytest.fixture(scope="module")
def served(peer: ScriptedOpenAI) -> Iterator[tuple[LiveServer, Completions, Opened]]:
    completions, opened = Completions(), Opened()
    with LiveServer(make_app(peer, completions, opened)) as server:
        yield server, completions, opened


def _tag(name: str) -> str:
    return f"head-{name}-{time.monotonic_ns()}"


HEAD_COMPLETION = Completion()
"""What ``on_complete`` gets for a ``HEAD``: nothing generated, no error, no disconnect."""


def _round_trip(server: LiveServer) -> None:
    """One more request through the same server loop: callbacks queued before it have run."""
    assert httpx.head(server.url + f"/sse/factory?tag={_tag('sync')}").status_code == 200


def test_head_never_awaits_the_create_call_and_reports_once(
    served: tuple[LiveServer, Completions, Opened], peer: ScriptedOpenAI
) -> None:
    server, completions, opened = served
    tag = _tag("not-awaited")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = httpx.head(server.url + f"/llm/not-awaited?tag={tag}")
        assert completions.wait(tag) == [HEAD_COMPLETION]
        create = opened.coroutines.pop(tag)
        assert inspect.getcoroutinestate(create) == inspect.CORO_CLOSED
        del create
        _round_trip(server)
        gc.collect()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b""
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert tag not in [record.script_name for record in peer.requests]
    assert completions.wait(tag) == [HEAD_COMPLETION]  # once, also after the round trip


@pytest.mark.parametrize("route", ["async-stream", "sync-stream"])
def test_head_closes_an_open_openai_stream_and_reports_once(
    served: tuple[LiveServer, Completions, Opened], peer: ScriptedOpenAI, route: str
) -> None:
    server, completions, _ = served
    tag = _tag(route)
    response = httpx.head(server.url + f"/llm/{route}?tag={tag}")
    assert response.status_code == 200
    assert response.content == b""
    record = next(record for record in peer.requests if record.script_name == tag)
    assert record.wait_disconnected(2), "the OpenAI stream's connection was left open"
    assert not record.completed
    assert completions.wait(tag) == [HEAD_COMPLETION]
    _round_trip(server)
    assert completions.wait(tag) == [HEAD_COMPLETION]


def test_head_of_a_text_source_reports_once(
    served: tuple[LiveServer, Completions, Opened],
) -> None:
    server, completions, _ = served
    tag = _tag("async-text")
    response = httpx.head(server.url + f"/llm/async-text?tag={tag}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert completions.wait(tag) == [HEAD_COMPLETION]


def test_get_still_reports_the_answer(
    served: tuple[LiveServer, Completions, Opened], peer: ScriptedOpenAI
) -> None:
    # The HEAD path must not change the GET one: the same route streams and reports it all.
    server, completions, _ = served
    tag = _tag("get")
    peer.script(tag, Script(tokens=["Hello", " there"]))
    response = httpx.get(server.url + f"/llm/not-awaited?tag={tag}")
    assert response.status_code == 200
    [completion] = completions.wait(tag)
    assert completion.text == "Hello there"
    assert completion.finished


@pytest.mark.parametrize("route", ["stream", "sse"])
def test_head_closes_a_peeked_sync_generator_in_a_worker_thread(
    served: tuple[LiveServer, Completions, Opened], route: str
) -> None:
    # Its ``finally`` may block (a database cursor, a file): never on the event loop.
    server, _, opened = served
    tag = _tag(f"peeked-{route}")
    response = httpx.head(server.url + f"/peeked/{route}?tag={tag}")
    assert response.status_code == 200
    assert response.content == b""
    assert tag in opened.closed_in_thread, "the generator was never closed"
    assert opened.closed_in_thread[tag] != opened.loop_thread


def test_head_never_calls_an_sse_factory(served: tuple[LiveServer, Completions, Opened]) -> None:
    server, _, opened = served
    tag = _tag("factory")
    response = httpx.head(server.url + f"/sse/factory?tag={tag}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert tag not in opened.factory_called
    assert httpx.get(server.url + f"/sse/factory?tag={tag}").text == "data: hello\n\n"
    assert tag in opened.factory_called


# --- upstream_stream -------------------------------------------------------------------------


def make_proxy(upstream_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as client:
            app.state.client = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/get/{path:path}", methods=["GET", "HEAD"])
    async def proxy_as_get(path: str, request: Request) -> Response:
        # Always a GET upstream, also for our HEAD: the upstream body is open and streaming.
        url = f"{upstream_url}/{path}?{request.url.query}"
        return upstream_stream(request.app.state.client, "GET", url, request=request)

    return app


def test_head_closes_the_upstream_response_of_a_proxied_get() -> None:
    upstream = Upstream()
    with (
        LiveServer(upstream, log_level="critical") as upstream_server,
        LiveServer(make_proxy(upstream_server.url), log_level="critical") as proxy,
    ):
        request_id = _tag("upstream")
        response = httpx.head(f"{proxy.url}/get/sse?n=200&interval=0.05&id={request_id}")
        assert response.status_code == 200
        assert response.content == b""
        seen = upstream.log.get(request_id)
        assert seen.disconnected.wait(5), "the upstream response was left open"


def test_head_of_a_resumable_llm_stream_closes_the_create_call_it_never_awaits(
    redis_server: RedisServer, peer: ScriptedOpenAI
) -> None:
    import redis.asyncio

    from faststream_kit.resume import ResumableStreams

    client = AsyncOpenAI(base_url=peer.base_url, api_key="sk-test", max_retries=0)
    created: list[Any] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = redis.asyncio.Redis(unix_socket_path=redis_server.socket_path)
        async with ResumableStreams(store, ttl_seconds=60) as streams:
            app.state.streams = streams
            yield
        await store.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/answers/{key}", methods=["GET", "HEAD"])
    async def answer(key: str, request: Request) -> Response:
        create = client.chat.completions.create(
            model="resume-head", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        created.append(create)
        return request.app.state.streams.llm_response(key, source=create)  # type: ignore[no-any-return]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LiveServer(app) as server:
            response = httpx.head(server.url + "/answers/" + uuid.uuid4().hex)
        [create] = created
        assert inspect.getcoroutinestate(create) == inspect.CORO_CLOSED
        del create
        created.clear()
        gc.collect()
    assert response.status_code == 200
    assert response.content == b""
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert "resume-head" not in [record.script_name for record in peer.requests]

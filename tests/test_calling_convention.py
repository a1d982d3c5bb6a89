"""``s3_stream`` and ``upstream_stream`` are called like every helper: ``return helper(...)``.

They return at once, having checked their arguments, and talk to S3 or the upstream when
the response starts (the statuses they decide before the headers are in ``test_s3.py`` and
``test_upstream.py``). The old ``await helper(...)`` still answers, with a
``DeprecationWarning``; what is set on the returned object reaches the client; a client that
leaves before the response started leaves no S3 body and no upstream request open.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import anyio
import anyio.to_thread
import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from faststream_kit import s3_stream, upstream_stream
from faststream_kit.testing import LiveServer

from .s3_peers import (
    BUCKET,
    ClientKind,
    S3Peer,
    SentRequests,
    moto_s3_fixture,  # noqa: F401  (the moto_s3 fixture)
)
from .upstream_peers import CLIENT_KINDS, Upstream, proxy_app, pyreqwest_proxy_client

KINDS: tuple[ClientKind, ...] = ("aiobotocore", "boto3")
KEY = "clip.bin"
DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(scope="module")
def s3(moto_s3: S3Peer) -> S3Peer:
    client = moto_s3.sync_client()
    with suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=DATA)
    client.close()
    return moto_s3


class HeldBody:
    """An S3 body that writes down whether it was closed."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.closed = threading.Event()

    def read(self, amount: int) -> Any:
        return self.body.read(amount)

    def close(self) -> Any:
        self.closed.set()
        return self.body.close()


class HeldGetObject:
    """Wraps an S3 client: each ``GetObject`` is sent, then held until ``release`` is set.

    ``answered`` is set once S3 has answered (the body is open from then on), and ``bodies``
    lists every body handed out, so a test can tell whether each one was closed.
    """

    def __init__(self, client: Any, *, is_async: bool) -> None:
        self.client = client
        self.is_async = is_async
        self.answered = threading.Event()
        self.release = threading.Event()
        self.bodies: list[HeldBody] = []
        if is_async:
            self.get_object = self._get_object_async
        else:
            self.get_object = self._get_object_sync

    def _hold(self, found: dict[str, Any]) -> dict[str, Any]:
        body = HeldBody(found["Body"])
        self.bodies.append(body)
        self.answered.set()
        self.release.wait(10)
        return {**found, "Body": body}

    async def _get_object_async(self, **params: Any) -> dict[str, Any]:
        found = await self.client.get_object(**params)
        return await anyio.to_thread.run_sync(self._hold, found)

    def _get_object_sync(self, **params: Any) -> dict[str, Any]:
        return self._hold(self.client.get_object(**params))

    def head_object(self, **params: Any) -> Any:
        return self.client.head_object(**params)


def s3_app(peer: S3Peer, kind: ClientKind) -> FastAPI:
    """Routes over ``peer`` with one client of ``kind``; ``app.state`` keeps what they saw."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.sent = SentRequests()
        if kind == "aiobotocore":
            async with peer.async_client() as client:
                client.meta.events.register("before-send.s3", app.state.sent.record)
                app.state.s3 = client
                app.state.held = HeldGetObject(client, is_async=True)
                yield
        else:
            client = peer.sync_client()
            client.meta.events.register("before-send.s3", app.state.sent.record)
            app.state.s3 = client
            app.state.held = HeldGetObject(client, is_async=False)
            yield
            client.close()

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/returned/{key}", methods=["GET", "HEAD"])
    async def returned(key: str, request: Request) -> Response:
        response = s3_stream(request.app.state.s3, BUCKET, key, request=request)
        request.app.state.sent_when_returned = request.app.state.sent.take()
        return response

    @app.get("/awaited/{key}")
    async def awaited(key: str, request: Request) -> Response:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            response = await s3_stream(request.app.state.s3, BUCKET, key)  # type: ignore[misc]
        request.app.state.warned = [(w.category, str(w.message), w.filename) for w in caught]
        return response

    @app.get("/decorated/{key}")
    async def decorated(key: str, request: Request, background: BackgroundTasks) -> Response:
        background.add_task(request.app.state.background_ran.set)
        response = s3_stream(request.app.state.s3, BUCKET, key)
        response.headers["x-trace"] = "t-1"
        response.headers["cache-control"] = "private, max-age=60"
        response.set_cookie("seen", "1")
        return response

    @app.get("/sync/{key}")
    def sync_route(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.s3, BUCKET, key)

    @app.get("/unused/{key}")
    async def unused(key: str, request: Request) -> str:
        s3_stream(request.app.state.s3, BUCKET, key)  # made, never returned
        return "not served"

    @app.get("/held/{key}")
    async def held(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.held, BUCKET, key)

    return app


class DisconnectProbe:
    """ASGI middleware: sets ``left`` once the server reports a client gone, whether or not
    the app is listening. The app receives the same messages, and ``http.disconnect`` for
    good once it came (as uvicorn answers)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.left = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages: asyncio.Queue[Message] = asyncio.Queue()

        async def listen() -> None:
            while True:
                message = await receive()
                messages.put_nowait(message)
                if message["type"] == "http.disconnect":
                    self.left.set()
                    return

        async def relayed() -> Message:
            message = await messages.get()
            if message["type"] == "http.disconnect":
                messages.put_nowait(message)
            return message

        listening = asyncio.get_running_loop().create_task(listen())
        try:
            await self.app(scope, relayed, send)
        finally:
            listening.cancel()


Served = tuple[str, FastAPI, DisconnectProbe]


@pytest.fixture(scope="module", params=KINDS)
def s3_server(request: pytest.FixtureRequest, s3: S3Peer) -> Iterator[Served]:
    app = s3_app(s3, request.param)
    probe = DisconnectProbe(app)
    with LiveServer(probe, log_level="critical") as server:
        yield server.url, app, probe


# --- returned at once, S3 asked when the response starts ---------------------------------------


def test_s3_stream_returns_before_asking_s3(s3_server: Served) -> None:
    url, app, _ = s3_server
    response = httpx.get(f"{url}/returned/{KEY}", headers={"range": "bytes=0-99"})
    assert app.state.sent_when_returned == []  # nothing went to S3 while the route ran
    assert response.status_code == 206
    assert response.content == DATA[:100]
    assert app.state.sent.take() == [("GetObject", "bytes=0-99")]


def test_an_s3_stream_that_is_never_served_asks_s3_nothing(
    s3_server: Served,
) -> None:
    url, app, _ = s3_server
    app.state.sent.take()
    assert httpx.get(f"{url}/unused/{KEY}").text == '"not served"'
    served = httpx.get(f"{url}/sync/{KEY}")
    assert served.content == DATA
    # Had the first one opened the object (at once, or in a task of its own), it would be here.
    assert app.state.sent.take() == [("GetObject", None)]


def test_s3_stream_asks_head_object_for_a_head_when_it_starts(
    s3_server: Served,
) -> None:
    url, app, _ = s3_server
    response = httpx.head(f"{url}/returned/{KEY}")
    assert app.state.sent_when_returned == []
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(DATA))
    assert app.state.sent.take() == [("HeadObject", None)]


# --- the old await form ------------------------------------------------------------------------


def test_awaiting_s3_stream_still_answers_and_warns_what_to_do(
    s3_server: Served,
) -> None:
    url, app, _ = s3_server
    response = httpx.get(f"{url}/awaited/{KEY}")
    assert response.status_code == 200
    assert response.content == DATA
    [(category, message, filename)] = app.state.warned
    assert category is DeprecationWarning
    assert "drop the await" in message
    assert "return s3_stream(...)" in message
    assert filename == __file__  # points at the route's line, not at faststream-kit


# --- what the caller sets on the returned object -----------------------------------------------


def test_headers_cookies_and_background_set_on_the_response_reach_the_client(
    s3_server: Served,
) -> None:
    url, app, _ = s3_server
    app.state.background_ran = threading.Event()
    response = httpx.get(f"{url}/decorated/{KEY}")
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["x-trace"] == "t-1"
    assert response.headers.get_list("cache-control") == ["private, max-age=60"]  # replaced
    assert response.cookies["seen"] == "1"
    assert response.headers["etag"]  # the object's own fields are still there
    assert app.state.background_ran.wait(5)


def test_headers_set_on_the_response_reach_an_error_response_too(
    s3_server: Served,
) -> None:
    url, app, _ = s3_server
    app.state.background_ran = threading.Event()
    response = httpx.get(f"{url}/decorated/nope.bin")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    assert response.headers["x-trace"] == "t-1"
    assert app.state.background_ran.wait(5)


def test_a_def_route_can_return_s3_stream(s3_server: Served) -> None:
    url, _, _ = s3_server
    response = httpx.get(f"{url}/sync/{KEY}")
    assert response.status_code == 200
    assert response.content == DATA


# --- a client that leaves before the response starts ------------------------------------------


def _send_and_leave(url: str, path: str, arrived: threading.Event, body: bytes = b"") -> float:
    """Send a request over a raw socket, wait for ``arrived``, close the connection; return when
    it was closed."""
    host, port = url.removeprefix("http://").split(":")
    method = "POST" if body else "GET"
    head = f"{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + body)
        assert arrived.wait(10), "the request never got that far"
    return time.monotonic()


def test_a_client_leaving_while_s3_answers_leaves_no_body_open(
    s3_server: Served,
) -> None:
    url, app, probe = s3_server
    held: HeldGetObject = app.state.held
    held.answered.clear()
    held.release.clear()
    probe.left.clear()
    bodies_before = len(held.bodies)
    try:
        _send_and_leave(url, f"/held/{KEY}", held.answered)
        assert probe.left.wait(5), "the server never reported the client gone"
    finally:
        held.release.set()  # S3 has answered and the client is gone: now the response starts
    [body] = held.bodies[bodies_before:]
    assert body.closed.wait(5), "the S3 body of a client that left was never closed"


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    with LiveServer(app, log_level="critical") as live:
        yield app, live.url


def upstream_app(upstream_url: str, peer: Upstream) -> FastAPI:
    """``proxy_app`` plus routes that look at the upstream while the route runs (one path
    segment: ``proxy_app`` proxies every path of two)."""
    app = proxy_app(upstream_url)

    @app.get("/returned-{kind}")
    async def returned(kind: str, id: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        response = upstream_stream(client, "GET", f"{upstream_url}/headers?id={id}")
        request.app.state.arrived_when_returned = peer.log.get(id).arrived.is_set()
        return response

    @app.get("/awaited-{kind}")
    async def awaited(kind: str, id: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            response = await upstream_stream(  # type: ignore[misc]
                client, "GET", f"{upstream_url}/headers?id={id}"
            )
        request.app.state.warned = [(w.category, str(w.message)) for w in caught]
        return response

    @app.get("/decorated-{kind}")
    async def decorated(kind: str, id: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        response = upstream_stream(client, "GET", f"{upstream_url}/headers?id={id}")
        response.headers["x-trace"] = "t-2"
        return response

    @app.get("/pairs-{kind}")
    async def pairs(kind: str, id: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        url = f"{upstream_url}/headers?id={id}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            response = upstream_stream(
                client,
                "GET",
                url,
                headers=[("x-tag", "a"), ("X-Tag", "b")],  # type: ignore[arg-type]
            )
        request.app.state.warned = [(w.category, str(w.message)) for w in caught]
        return response

    @app.post("/sync-{kind}")
    def sync_route(kind: str, id: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        url = f"{upstream_url}/count?id={id}"
        return upstream_stream(client, "POST", url, request=request)

    @app.get("/closed-{kind}")
    async def closed_client(kind: str, id: str) -> Response:
        url = f"{upstream_url}/headers?id={id}"
        if kind == "httpx":
            async with httpx.AsyncClient() as client:
                return upstream_stream(client, "GET", url)
        if kind == "pyreqwest":
            async with pyreqwest_proxy_client() as client:
                return upstream_stream(client, "GET", url)
        async with aiohttp.ClientSession() as session:
            return upstream_stream(session, "GET", url)

    return app


class Outcomes:
    """ASGI middleware: how each request's app call ended (``"returned"`` or the exception's
    type, which the server would log with its traceback), by the request's ``id=``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._ended: dict[str, str] = {}
        self._changed = threading.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = parse_qs(scope["query_string"].decode()).get("id", [""])[0]
        outcome = "returned"
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            with self._changed:
                self._ended[request_id] = outcome
                self._changed.notify_all()

    def wait(self, request_id: str, timeout: float) -> str | None:
        with self._changed:
            self._changed.wait_for(lambda: request_id in self._ended, timeout=timeout)
            return self._ended.get(request_id)


@dataclass
class Proxies:
    urls: dict[str, str]  # by server
    app: FastAPI  # the uvicorn one's
    outcomes: Outcomes  # the uvicorn one's


@pytest.fixture(scope="module")
def proxies(upstream: tuple[Upstream, str]) -> Iterator[Proxies]:
    peer, upstream_url = upstream
    app = upstream_app(upstream_url, peer)
    outcomes = Outcomes(app)
    with (
        LiveServer(outcomes, log_level="critical") as uvicorn,
        LiveServer(
            upstream_app(upstream_url, peer), server="hypercorn", log_level="critical"
        ) as hypercorn,
    ):
        yield Proxies({"uvicorn": uvicorn.url, "hypercorn": hypercorn.url}, app, outcomes)


def _request_id(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_upstream_stream_returns_before_sending_upstream(
    upstream: tuple[Upstream, str], proxies: Proxies, kind: str
) -> None:
    urls, app = proxies.urls, proxies.app
    request_id = _request_id("returned")
    response = httpx.get(f"{urls['uvicorn']}/returned-{kind}?id={request_id}")
    assert app.state.arrived_when_returned is False
    assert response.status_code == 200
    assert response.text == "headers recorded"
    assert response.headers["x-end-to-end"] == "kept"  # the upstream's own fields
    assert upstream[0].log.get(request_id).arrived.is_set()


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_awaiting_upstream_stream_still_answers_and_warns_what_to_do(
    proxies: Proxies, kind: str
) -> None:
    urls, app = proxies.urls, proxies.app
    response = httpx.get(f"{urls['uvicorn']}/awaited-{kind}?id={_request_id('awaited')}")
    assert response.status_code == 200
    assert response.text == "headers recorded"
    [(category, message)] = app.state.warned
    assert category is DeprecationWarning
    assert "drop the await" in message
    assert "return upstream_stream(...)" in message


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_upstream_headers_as_pairs_still_go_upstream_joined_with_a_warning(
    upstream: tuple[Upstream, str], proxies: Proxies, kind: str
) -> None:
    request_id = _request_id("pairs")
    response = httpx.get(f"{proxies.urls['uvicorn']}/pairs-{kind}?id={request_id}")
    assert response.status_code == 200
    sent = [value for name, value in upstream[0].log.get(request_id).headers if name == "x-tag"]
    assert sent == ["a, b"]  # one field, its values joined (RFC 9110 §5.3)
    [(category, message)] = proxies.app.state.warned
    assert category is DeprecationWarning
    assert "pass a dict" in message


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_headers_set_on_upstream_stream_reach_the_client(proxies: Proxies, kind: str) -> None:
    urls = proxies.urls
    response = httpx.get(f"{urls['uvicorn']}/decorated-{kind}?id={_request_id('decorated')}")
    assert response.status_code == 200
    assert response.headers["x-trace"] == "t-2"
    assert response.headers["x-end-to-end"] == "kept"


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_a_def_route_can_return_upstream_stream(proxies: Proxies, kind: str) -> None:
    urls = proxies.urls
    body = b"x" * 100_000
    response = httpx.post(f"{urls['uvicorn']}/sync-{kind}?id={_request_id('sync')}", content=body)
    assert response.status_code == 200
    assert response.json() == {"bytes": len(body)}  # the body was forwarded, all of it


@pytest.mark.parametrize("body", [b"", b"hello"], ids=["no-body", "forwarded-body"])
@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
@pytest.mark.parametrize("kind", CLIENT_KINDS)
@pytest.mark.usefixtures("without_gc")  # the proxy and the upstream are threads of this process
def test_a_client_leaving_before_the_upstream_answers_cancels_the_upstream_request(
    upstream: tuple[Upstream, str],
    proxies: Proxies,
    kind: str,
    server: str,
    body: bytes,
    request: pytest.FixtureRequest,
) -> None:
    if kind == "pyreqwest":
        # Measured with pyreqwest 0.15.1: cancelling a request before its headers raises
        # CancelledError in Python but leaves the connection open on pyreqwest's runtime
        # until the upstream answers. Strict: this fails loudly once pyreqwest closes it.
        request.applymarker(
            pytest.mark.xfail(strict=True, reason="pyreqwest cannot abort a request in flight")
        )
    # The upstream would answer after 30 s; the client leaves once the request reached it.
    urls = proxies.urls
    request_id = _request_id("leave-early")
    seen = upstream[0].log.get(request_id)
    path = f"/{kind}/slow?seconds=30&id={request_id}"
    try:
        left_at = _send_and_leave(urls[server], path, seen.arrived, body)
        # A hang-up seen later than 0.5 s fails the assertion below whenever it comes, so the
        # wait ends there (with a little slack for this thread to wake), not after seconds.
        seen.disconnected.wait(max(0.0, left_at + 0.6 - time.monotonic()))
        assert seen.disconnected.is_set(), "the upstream request outlived the client"
        assert seen.disconnected_at - left_at < 0.5
        assert seen.body_bytes == len(body)  # the body was forwarded whole before that
    finally:
        # A request the proxy failed to cancel would hold every server's shutdown for its
        # grace period at the end of the module: the upstream answers it now instead.
        upstream[0].answer_slow_now(request_id)


class _Records(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()


@pytest.mark.parametrize("kind", CLIENT_KINDS)
@pytest.mark.usefixtures("without_gc")
def test_a_client_leaving_in_the_middle_of_its_body_is_no_server_error(
    upstream: tuple[Upstream, str], proxies: Proxies, kind: str
) -> None:
    request_id = _request_id("leave-mid-body")
    seen = upstream[0].log.get(request_id)
    host, port = proxies.urls["uvicorn"].removeprefix("http://").split(":")
    head = (
        f"POST /{kind}/slow?seconds=30&id={request_id} HTTP/1.1\r\n"
        f"host: {host}\r\ncontent-length: 1000\r\n\r\n"
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + b"x" * 100)  # 100 of the 1000 bytes it announced
        assert seen.arrived.wait(10)
    assert seen.disconnected.wait(5), "the upstream request outlived the client"
    assert proxies.outcomes.wait(request_id, timeout=5) == "returned"  # no traceback logged


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_a_client_closed_before_the_response_starts_is_a_500_that_says_why(
    proxies: Proxies, kind: str
) -> None:
    urls = proxies.urls
    errors = _Records(logging.ERROR)
    server_log = logging.getLogger("uvicorn.error")
    level = server_log.level
    server_log.setLevel(logging.ERROR)
    server_log.addHandler(errors)
    try:
        response = httpx.get(
            f"{urls['uvicorn']}/closed-{kind}?id={_request_id('closed')}",
            headers={"connection": "close"},  # uvicorn closes the connection of a 500
        )
        assert errors.arrived.wait(5)  # uvicorn logs the exception after it sent the 500
    finally:
        server_log.removeHandler(errors)
        server_log.setLevel(level)
    assert response.status_code == 500  # a bug in the route, not the upstream's failure
    causes = [str(record.exc_info[1]) for record in errors.records if record.exc_info]
    assert any("lifespan" in cause and "client" in cause for cause in causes), causes

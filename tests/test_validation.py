"""Every public function checks all of its arguments before any I/O, naming the parameter.

For each function, bad arguments one at a time: the exception is a ``TypeError`` or
``ValueError`` whose message starts with the parameter's name as the caller wrote it, and
the client or source handed in alongside (a recorder that writes down every attribute looked
up on it and every call) was not touched. The recorders stand in for an SDK client on
purpose: the thing under test is our checking, which must happen before a real client would
do anything; ``test_the_recorders_see_a_valid_call`` shows that they do notice use.

The live tests at the end run the route in uvicorn against the real peers: a bad argument
in a route reaches neither S3 nor the upstream service.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from faststream_kit import (
    ServerSentEvent,
    StreamResponse,
    iterate_in_thread,
    llm_stream,
    s3_stream,
    sse_frame,
    sse_response,
    stream_response,
    upstream_stream,
)
from faststream_kit.resume import ResumableStreams
from faststream_kit.testing import (
    LiveServer,
    SSEParser,
    arecord_chunks,
    parse_events,
    read_sse,
    record_chunks,
)

from .s3_peers import (
    ClientKind,
    S3Peer,
    SentRequests,
    moto_s3_fixture,  # noqa: F401  (the moto_s3 fixture)
)
from .upstream_peers import CLIENT_KINDS, POOL_SIZE, Upstream, proxy_app

# --- recorders -------------------------------------------------------------------------------


class RecordingClient:
    """An SDK client stand-in (S3, httpx, aiohttp, Redis): every attribute is an async method.

    ``seen`` lists every attribute looked up on it and every call of one.
    """

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.seen.append(name)
        if name.startswith("__"):
            raise AttributeError(name)

        async def method(*args: Any, **kwargs: Any) -> None:
            self.seen.append(f"{name}()")

        return method


class RecordingSource:
    """A stream source, sync and async, that writes down every use of it in ``seen``."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __iter__(self) -> Iterator[Any]:
        self.seen.append("__iter__")
        return iter(())

    def __aiter__(self) -> AsyncIterator[Any]:
        self.seen.append("__aiter__")
        return self._nothing()

    async def _nothing(self) -> AsyncIterator[Any]:
        return
        yield

    def close(self) -> None:
        self.seen.append("close()")

    def __getattr__(self, name: str) -> Any:
        self.seen.append(name)
        raise AttributeError(name)


class RecordingApp:
    """An ASGI app that writes down every call."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append("__call__")


def numbers() -> Iterator[str]:
    yield "1"


async def anumbers() -> AsyncIterator[str]:
    yield "1"


async def create() -> list[str]:
    return ["1"]


def case(name: str, value: Any, error: type[Exception]) -> Any:
    """One bad argument: ``name=value`` must raise ``error`` naming ``name``."""
    shown = repr(value) if " at 0x" not in repr(value) else type(value).__name__
    return pytest.param(name, value, error, id=f"{name}={shown}"[:60])


# What every response-building helper shares, with the same names everywhere.
STATUS_CASES = [
    case("status_code", 100, ValueError),
    case("status_code", 600, ValueError),
    case("status_code", "200", TypeError),
    case("status_code", True, TypeError),
]
HEADER_CASES = [
    case("headers", [("x-a", "1")], TypeError),
    case("headers", {"x-a": 1}, TypeError),
    case("headers", {"x-a": "1\r\nset-cookie: a=b"}, ValueError),
    case("headers", {"x-a": "1\n"}, ValueError),
    case("headers", {"x-a": "\0"}, ValueError),
    case("headers", {"x-a": "€"}, ValueError),
    case("headers", {"bad name": "1"}, ValueError),
    case("headers", {"": "1"}, ValueError),
    case("headers", {b"x-a": "1"}, TypeError),
]
SEND_TIMEOUT_CASES = [
    case("send_timeout", 0, ValueError),
    case("send_timeout", -1, ValueError),
    case("send_timeout", float("nan"), ValueError),
    case("send_timeout", float("inf"), ValueError),
    case("send_timeout", "30", TypeError),
    case("send_timeout", True, TypeError),
]
KEEPALIVE_CASES = [
    case("keepalive", 0, ValueError),
    case("keepalive", -1, ValueError),
    case("keepalive", float("nan"), ValueError),
    case("keepalive", float("inf"), ValueError),
    case("keepalive", "15", TypeError),
    case("keepalive", True, TypeError),
]
IDLE_TIMEOUT_CASES = [
    case("idle_timeout", 0, ValueError),
    case("idle_timeout", [], TypeError),
    case("idle_timeout", "60", TypeError),
]
LIMITER_CASES = [case("thread_limiter", 4, TypeError)]
REQUEST_CASES = [
    case("request", object(), TypeError),
    case("request", {"headers": {}}, TypeError),
]


def assert_names(caught: pytest.ExceptionInfo[Exception], name: str) -> None:
    message = str(caught.value)
    assert message.startswith(name), f"the message does not start with {name!r}: {message}"


# --- stream_response and StreamResponse ------------------------------------------------------

RESPONSE_CASES = [
    *STATUS_CASES,
    *HEADER_CASES,
    *SEND_TIMEOUT_CASES,
    *LIMITER_CASES,
    *REQUEST_CASES,
    case("media_type", 5, TypeError),
    case("media_type", "", ValueError),
    case("media_type", "text/plain\r\nx-injected: 1", ValueError),
    *KEEPALIVE_CASES,
    *IDLE_TIMEOUT_CASES,
    case("background", "task", TypeError),
    case("keepalive_frame", ": ping\n\n", TypeError),
    case("error_frame", b"event: error\n\n", TypeError),
    case("read_ahead", 0, ValueError),
    case("read_ahead", 1.5, TypeError),
    case("read_ahead", True, TypeError),
]


@pytest.mark.parametrize(("name", "value", "error"), RESPONSE_CASES)
def test_stream_response_rejects_a_bad_argument_naming_it(
    name: str, value: Any, error: type[Exception]
) -> None:
    source = RecordingSource()
    with pytest.raises(error) as caught:
        stream_response(source, **{name: value})
    assert_names(caught, name)
    assert source.seen == []


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *RESPONSE_CASES,
        case("encode", "utf-8", TypeError),
        case("preamble", "retry: 1\n\n", TypeError),
        case("shutdown_frame", "bye", TypeError),
    ],
)
def test_stream_response_class_rejects_a_bad_argument_naming_it(
    name: str, value: Any, error: type[Exception]
) -> None:
    source = RecordingSource()
    with pytest.raises(error) as caught:
        StreamResponse(source, **{name: value})
    assert_names(caught, name)
    assert source.seen == []


BAD_CONTENT = [
    pytest.param(5, id="int"),
    pytest.param(None, id="None"),
    pytest.param("text", id="str"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(numbers, id="generator-function"),
    pytest.param(anumbers, id="async-generator-function"),
    pytest.param(create, id="coroutine-function"),
    pytest.param(lambda: ["1"], id="function"),
]


@pytest.mark.parametrize("content", BAD_CONTENT)
def test_stream_response_rejects_content_that_is_no_iterable(content: Any) -> None:
    with pytest.raises(TypeError) as caught:
        stream_response(content)
    assert_names(caught, "content")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(5, id="int"),
        pytest.param("text", id="str"),
        pytest.param(numbers, id="generator-function-without-scope"),
        pytest.param(create, id="coroutine-function"),
        pytest.param(lambda: ["1"], id="function-without-scope"),
    ],
)
def test_stream_response_class_rejects_content_that_is_no_iterable_or_factory(
    content: Any,
) -> None:
    with pytest.raises(TypeError) as caught:
        StreamResponse(content)
    assert_names(caught, "content")


@pytest.mark.parametrize(
    ("call", "parameter", "function", "expected"),
    [
        pytest.param(stream_response, "content", numbers, "numbers", id="stream_response-gen"),
        pytest.param(stream_response, "content", anumbers, "anumbers", id="stream_response-agen"),
        pytest.param(stream_response, "content", create, "create", id="stream_response-coro"),
        pytest.param(llm_stream, "source", numbers, "numbers", id="llm_stream-gen"),
        pytest.param(llm_stream, "source", create, "create", id="llm_stream-coro"),
        pytest.param(sse_response, "events", anumbers, "anumbers", id="sse_response-agen"),
        pytest.param(iterate_in_thread, "iterable", numbers, "numbers", id="iterate_in_thread"),
    ],
)
def test_a_source_function_passed_uncalled_is_told_to_call_it(
    call: Callable[[Any], Any], parameter: str, function: Any, expected: str
) -> None:
    with pytest.raises(TypeError) as caught:
        call(function)
    assert_names(caught, parameter)
    assert f"pass {expected}() not {expected}" in str(caught.value)


# --- iterate_in_thread -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        case("iterable", 5, TypeError),
        case("iterable", None, TypeError),
        case("iterable", numbers, TypeError),
        case("thread_limiter", 4, TypeError),
        case("read_ahead", 0, ValueError),
        case("read_ahead", "1", TypeError),
        case("read_ahead_bytes", 0, ValueError),
        case("read_ahead_bytes", 1.5, TypeError),
    ],
)
def test_iterate_in_thread_rejects_a_bad_argument_naming_it(
    name: str, value: Any, error: type[Exception]
) -> None:
    source = RecordingSource()
    arguments: dict[str, Any] = {"iterable": source, name: value}
    with pytest.raises(error) as caught:
        iterate_in_thread(**arguments)
    assert_names(caught, name)
    assert source.seen == []


def test_iterate_in_thread_rejects_an_async_iterable() -> None:
    with pytest.raises(TypeError) as caught:
        iterate_in_thread(anumbers())  # type: ignore[arg-type]
    assert_names(caught, "iterable")


# --- sse_frame and ServerSentEvent (no I/O at all: the message is what counts) ---------------

FRAME_CASES = [
    case("event", 5, ValueError),
    case("event", "a\nb", ValueError),
    case("id", 5, ValueError),
    case("id", "a\0b", ValueError),
    case("retry", -1, ValueError),
    case("retry", "1000", ValueError),
    case("retry", True, ValueError),
    case("retry", 1.5, ValueError),
    case("comment", 5, ValueError),
    case("data", object(), ValueError),
]


@pytest.mark.parametrize(("name", "value", "error"), FRAME_CASES)
def test_sse_frame_rejects_a_bad_field_naming_it(
    name: str, value: Any, error: type[Exception]
) -> None:
    arguments: dict[str, Any] = {"data": "x", name: value}
    with pytest.raises(error) as caught:
        sse_frame(**arguments)
    assert_names(caught, name)


@pytest.mark.parametrize(("name", "value", "error"), FRAME_CASES)
def test_server_sent_event_rejects_a_bad_field_naming_it(
    name: str, value: Any, error: type[Exception]
) -> None:
    arguments: dict[str, Any] = {"data": "x", name: value}
    with pytest.raises(error) as caught:
        ServerSentEvent(**arguments)
    assert_names(caught, name)


# --- sse_response ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *KEEPALIVE_CASES,
        *STATUS_CASES,
        *HEADER_CASES,
        *SEND_TIMEOUT_CASES,
        *IDLE_TIMEOUT_CASES,
        *LIMITER_CASES,
        *REQUEST_CASES,
        case("retry", -1, ValueError),
        case("retry", "1000", ValueError),
        case("background", "task", TypeError),
        case("shutdown_event", "bye", TypeError),
        case("shutdown_event", {"event": "shutdown"}, TypeError),
    ],
)
def test_sse_response_rejects_a_bad_argument_naming_it(
    name: str, value: Any, error: type[Exception]
) -> None:
    source = RecordingSource()
    with pytest.raises(error) as caught:
        sse_response(source, **{name: value})
    assert_names(caught, name)
    assert source.seen == []


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(5, id="int"),
        pytest.param("text", id="str"),
        pytest.param(numbers, id="generator-function-without-argument"),
        pytest.param(anumbers, id="async-generator-function-without-argument"),
        pytest.param(create, id="coroutine-function"),
        pytest.param(lambda: [], id="function-without-argument"),
        pytest.param(lambda last, other: [], id="function-of-two-arguments"),
    ],
)
def test_sse_response_rejects_events_that_are_no_iterable_or_factory(events: Any) -> None:
    with pytest.raises(TypeError) as caught:
        sse_response(events)
    assert_names(caught, "events")


def test_sse_response_accepts_a_factory_of_the_last_event_id() -> None:
    async def updates(last_event_id: str | None) -> AsyncIterator[str]:
        yield "1"

    sse_response(updates)
    sse_response(lambda last_event_id: [])
    sse_response([], keepalive=None)


# --- llm_stream ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *KEEPALIVE_CASES,
        *HEADER_CASES,
        *SEND_TIMEOUT_CASES,
        *IDLE_TIMEOUT_CASES,
        *LIMITER_CASES,
        *REQUEST_CASES,
        case("format", "xml", ValueError),
        case("format", None, ValueError),
        case("format", ["sse"], ValueError),
        case("on_complete", 5, TypeError),
        case("on_complete", lambda: None, TypeError),
        case("on_complete", lambda a, b: None, TypeError),
        case("model", "", ValueError),
        case("model", 4, TypeError),
    ],
)
def test_llm_stream_rejects_a_bad_argument_naming_it(
    name: str, value: Any, error: type[Exception]
) -> None:
    source = RecordingSource()
    with pytest.raises(error) as caught:
        llm_stream(source, **{name: value})
    assert_names(caught, name)
    assert source.seen == []


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(5, id="int"),
        pytest.param(None, id="None"),
        pytest.param(object(), id="object"),
        pytest.param("text", id="str"),
        pytest.param(b"text", id="bytes"),
        pytest.param(numbers, id="generator-function"),
        pytest.param(anumbers, id="async-generator-function"),
        pytest.param(create, id="coroutine-function"),
    ],
)
def test_llm_stream_rejects_a_source_that_is_no_stream(source: Any) -> None:
    with pytest.raises(TypeError) as caught:
        llm_stream(source)
    assert_names(caught, "source")


# --- s3_stream -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *HEADER_CASES,
        *SEND_TIMEOUT_CASES,
        *LIMITER_CASES,
        *REQUEST_CASES,
        case("idle_timeout", 0, ValueError),
        case("idle_timeout", "60", TypeError),
        case("bucket", "", ValueError),
        case("bucket", None, TypeError),
        case("key", "", ValueError),
        case("key", 5, TypeError),
        case("chunk_bytes", 0, ValueError),
        case("chunk_bytes", -1, ValueError),
        case("chunk_bytes", 1.5, TypeError),
        case("chunk_bytes", "1", TypeError),
        case("media_type", "", ValueError),
        case("media_type", 5, TypeError),
        case("media_type", "video/mp4\nx: y", ValueError),
        case("filename", 5, TypeError),
        case("disposition", "form-data", ValueError),
        case("disposition", None, ValueError),
        case("cache_control", 5, TypeError),
        case("cache_control", "no-cache\r\nx: y", ValueError),
        case("extra_args", [("VersionId", "1")], TypeError),
        case("extra_args", {1: "x"}, TypeError),
        case("extra_args", {"Bucket": "other"}, ValueError),
        case("extra_args", {"Key": "other"}, ValueError),
    ],
)
def test_s3_stream_rejects_a_bad_argument_before_touching_the_client(
    name: str, value: Any, error: type[Exception]
) -> None:
    client = RecordingClient()
    arguments: dict[str, Any] = {"bucket": "media", "key": "a.mp4", name: value}
    with pytest.raises(error) as caught:
        s3_stream(client, **arguments)
    assert_names(caught, name)
    assert client.seen == []


@pytest.mark.parametrize("client", [None, "s3", 5, object()], ids=["None", "str", "int", "object"])
def test_s3_stream_rejects_something_that_is_no_s3_client(client: Any) -> None:
    with pytest.raises(TypeError) as caught:
        s3_stream(client, "media", "a.mp4")
    assert_names(caught, "client")


# --- upstream_stream -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *SEND_TIMEOUT_CASES,
        *REQUEST_CASES,
        case("headers", 5, TypeError),
        case("headers", {"x-a": 1}, TypeError),
        case("headers", {"x-a": "1\r\nx-b: 2"}, ValueError),
        case("headers", [("x-a",)], TypeError),
        case("headers", [("bad name", "1")], ValueError),
        case("method", "", ValueError),
        case("method", "GET /admin", ValueError),
        case("method", 5, TypeError),
        case("url", "", ValueError),
        case("url", 5, TypeError),
        case("url", "http://upstream/\r\nx: y", ValueError),
        case("params", 5, TypeError),
        case("params", b"a=1", TypeError),
        case("content", 5, TypeError),
        case("content", iter([b"x"]), TypeError),
        case("content", anumbers, TypeError),
        case("forward_cookies", "yes", TypeError),
        case("forward_cookies", 1, TypeError),
        case("forward_authorization", None, TypeError),
        case("forwarded_headers", "no", TypeError),
        case("header_filter", 5, TypeError),
        case("header_filter", lambda direction, name: None, TypeError),
        case("connect_timeout", 0, ValueError),
        case("connect_timeout", "10", TypeError),
        case("read_timeout", -1, ValueError),
        case("read_timeout", float("nan"), ValueError),
        case("idle_timeout", 0, ValueError),
        case("idle_timeout", "60", TypeError),
    ],
)
def test_upstream_stream_rejects_a_bad_argument_before_touching_the_client(
    name: str, value: Any, error: type[Exception]
) -> None:
    client = RecordingClient()
    arguments: dict[str, Any] = {"method": "GET", "url": "http://upstream/x", name: value}
    with pytest.raises(error) as caught:
        upstream_stream(client, **arguments)
    assert_names(caught, name)
    assert client.seen == []


@pytest.mark.parametrize(
    "client",
    [None, "http://upstream", object(), httpx.Client()],
    ids=["None", "str", "object", "sync-httpx-Client"],
)
def test_upstream_stream_rejects_something_that_is_no_async_http_client(client: Any) -> None:
    with pytest.raises(TypeError) as caught:
        upstream_stream(client, "GET", "http://127.0.0.1:9/never")
    assert_names(caught, "client")


# --- ResumableStreams ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        case("prefix", 5, TypeError),
        case("prefix", None, TypeError),
        case("ttl_seconds", 0, ValueError),
        case("ttl_seconds", -1, ValueError),
        case("ttl_seconds", float("nan"), ValueError),
        case("ttl_seconds", "3600", TypeError),
        case("heartbeat_seconds", 0, ValueError),
        case("heartbeat_seconds", "2", TypeError),
        case("shutdown_grace_seconds", -1, ValueError),
        case("shutdown_grace_seconds", None, TypeError),
        case("max_events", 0, ValueError),
        case("max_events", -5, ValueError),
        case("max_events", "1000", TypeError),
        case("max_events", 1000.0, TypeError),
        case("max_events", True, TypeError),
    ],
)
def test_resumable_streams_rejects_a_bad_argument_before_touching_redis(
    name: str, value: Any, error: type[Exception]
) -> None:
    redis = RecordingClient()
    with pytest.raises(error) as caught:
        ResumableStreams(redis, **{name: value})
    assert_names(caught, name)
    assert redis.seen == []


def test_resumable_streams_rejects_something_that_is_no_async_redis_client() -> None:
    import redis as redis_py

    for redis in (None, "redis://127.0.0.1", redis_py.Redis()):
        with pytest.raises(TypeError) as caught:
            ResumableStreams(redis)
        assert_names(caught, "redis")


@pytest.fixture
def streams() -> tuple[ResumableStreams, RecordingClient]:
    redis = RecordingClient()
    streams = ResumableStreams(redis)
    redis.seen.clear()  # the constructor looked at its methods; from here on, nothing may
    return streams, redis


KEY_CASES = [case("key", "", ValueError), case("key", 5, TypeError), case("key", None, TypeError)]


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *KEY_CASES,
        case("producer", 5, TypeError),
        case("producer", "text", TypeError),
        case("producer", numbers, TypeError),
        case("llm", "yes", TypeError),
    ],
)
def test_resumable_start_rejects_a_bad_argument_before_touching_redis(
    streams: tuple[ResumableStreams, RecordingClient],
    name: str,
    value: Any,
    error: type[Exception],
) -> None:
    resumable, redis = streams
    source = RecordingSource()
    arguments: dict[str, Any] = {"key": "answer", "producer": source, name: value}
    with pytest.raises(error) as caught:
        asyncio.run(resumable.start(**arguments))
    assert_names(caught, name)
    assert redis.seen == []
    assert source.seen == []


@pytest.mark.parametrize(
    "producer",
    [5, "text", lambda model: None],
    ids=["int", "str", "function-of-one-argument"],
)
def test_resumable_start_rejects_a_bad_llm_producer(
    streams: tuple[ResumableStreams, RecordingClient], producer: Any
) -> None:
    resumable, redis = streams
    with pytest.raises(TypeError) as caught:
        asyncio.run(resumable.start("answer", producer, llm=True))
    assert_names(caught, "producer")
    assert redis.seen == []


@pytest.mark.parametrize(("name", "value", "error"), KEY_CASES)
def test_resumable_cancel_rejects_a_bad_key_before_touching_redis(
    streams: tuple[ResumableStreams, RecordingClient],
    name: str,
    value: Any,
    error: type[Exception],
) -> None:
    resumable, redis = streams
    with pytest.raises(error) as caught:
        asyncio.run(resumable.cancel(value))
    assert_names(caught, name)
    assert redis.seen == []


@pytest.mark.parametrize(("name", "value", "error"), [*KEY_CASES, case("after", 5, TypeError)])
def test_resumable_entries_reject_a_bad_argument_before_touching_redis(
    streams: tuple[ResumableStreams, RecordingClient],
    name: str,
    value: Any,
    error: type[Exception],
) -> None:
    resumable, redis = streams
    arguments: dict[str, Any] = {"key": "answer", "after": None, name: value}

    async def first_entry() -> None:
        await resumable.entries(**arguments).__anext__()

    with pytest.raises(error) as caught:
        asyncio.run(first_entry())
    assert_names(caught, name)
    assert redis.seen == []


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *KEY_CASES,
        *KEEPALIVE_CASES,
        *SEND_TIMEOUT_CASES,
        *IDLE_TIMEOUT_CASES,
        *HEADER_CASES,
        *LIMITER_CASES,
        *REQUEST_CASES,
        case("producer", 5, TypeError),
        case("producer", anumbers, TypeError),
        case("retry", -1, ValueError),
    ],
)
def test_resumable_sse_response_rejects_a_bad_argument_naming_it(
    streams: tuple[ResumableStreams, RecordingClient],
    name: str,
    value: Any,
    error: type[Exception],
) -> None:
    resumable, redis = streams
    source = RecordingSource()
    arguments: dict[str, Any] = {"key": "answer", "producer": source, name: value}
    with pytest.raises(error) as caught:
        resumable.sse_response(**arguments)
    assert_names(caught, name)
    assert redis.seen == []
    assert source.seen == []


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *KEY_CASES,
        *KEEPALIVE_CASES,
        *SEND_TIMEOUT_CASES,
        *IDLE_TIMEOUT_CASES,
        *HEADER_CASES,
        *LIMITER_CASES,
        *REQUEST_CASES,
        case("source", 5, TypeError),
        case("source", lambda model: None, TypeError),
        case("format", "text", ValueError),
        case("format", "xml", ValueError),
        case("on_complete", 5, TypeError),
        case("retry", -1, ValueError),
    ],
)
def test_resumable_llm_response_rejects_a_bad_argument_naming_it(
    streams: tuple[ResumableStreams, RecordingClient],
    name: str,
    value: Any,
    error: type[Exception],
) -> None:
    resumable, redis = streams
    source = RecordingSource()
    arguments: dict[str, Any] = {"key": "answer", "source": source, name: value}
    with pytest.raises(error) as caught:
        resumable.llm_response(**arguments)
    assert_names(caught, name)
    assert redis.seen == []
    assert source.seen == []


# --- faststream_kit.testing ------------------------------------------------------------------

READER_CASES = [
    case("url", "", ValueError),
    case("url", 5, TypeError),
    case("method", "", ValueError),
    case("method", "GET /", ValueError),
    case("headers", {"x-a": 1}, TypeError),
    case("headers", {"x-a": "1\r\n"}, ValueError),
    case("content", 5, TypeError),
    case("http2", "yes", TypeError),
    case("timeout", 0, ValueError),
    case("timeout", "30", TypeError),
]


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        *READER_CASES,
        case("stop_after_chunks", 0, ValueError),
        case("stop_after_chunks", "1", TypeError),
    ],
)
def test_record_chunks_rejects_a_bad_argument_before_touching_the_client(
    name: str, value: Any, error: type[Exception]
) -> None:
    client = RecordingClient()
    arguments: dict[str, Any] = {"url": "http://127.0.0.1:9/", "client": client, name: value}
    with pytest.raises(error) as caught:
        record_chunks(**arguments)
    assert_names(caught, name)
    assert client.seen == []


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [*READER_CASES, case("stop_after_chunks", -1, ValueError)],
)
def test_arecord_chunks_rejects_a_bad_argument_before_touching_the_client(
    name: str, value: Any, error: type[Exception]
) -> None:
    client = RecordingClient()
    arguments: dict[str, Any] = {"url": "http://127.0.0.1:9/", "client": client, name: value}
    with pytest.raises(error) as caught:
        asyncio.run(arecord_chunks(**arguments))
    assert_names(caught, name)
    assert client.seen == []


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [*READER_CASES, case("stop_after_events", 0, ValueError)],
)
def test_read_sse_rejects_a_bad_argument_before_touching_the_client(
    name: str, value: Any, error: type[Exception]
) -> None:
    client = RecordingClient()
    arguments: dict[str, Any] = {"url": "http://127.0.0.1:9/", "client": client, name: value}
    with pytest.raises(error) as caught:
        read_sse(**arguments)
    assert_names(caught, name)
    assert client.seen == []


@pytest.mark.parametrize("reader", [record_chunks, read_sse])
def test_readers_reject_a_client_that_cannot_stream(reader: Callable[..., Any]) -> None:
    with pytest.raises(TypeError) as caught:
        reader("http://127.0.0.1:9/", client=object())
    assert_names(caught, "client")


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        case("app", 5, TypeError),
        case("app", None, TypeError),
        case("server", "gunicorn", ValueError),
        case("host", "", ValueError),
        case("host", 5, TypeError),
        case("shutdown_grace_seconds", -1, ValueError),
        case("shutdown_grace_seconds", "2", TypeError),
        case("log_level", "loud", ValueError),
        case("uvicorn_options", [("http", "h11")], TypeError),
    ],
)
def test_live_server_rejects_a_bad_argument_naming_it(
    name: str, value: Any, error: type[Exception]
) -> None:
    app = RecordingApp()
    arguments: dict[str, Any] = {"app": app, name: value}
    with pytest.raises(error) as caught:
        LiveServer(**arguments)
    assert_names(caught, name)
    assert app.seen == []


def test_sse_parsers_reject_text_naming_the_parameter() -> None:
    with pytest.raises(TypeError) as caught:
        SSEParser().feed("data: x\n\n")  # type: ignore[arg-type]
    assert_names(caught, "chunk")
    with pytest.raises(TypeError) as caught:
        parse_events("data: x\n\n")  # type: ignore[arg-type]
    assert_names(caught, "data")


# --- the recorders notice use ----------------------------------------------------------------


async def start(response: Response) -> None:
    """Start ``response`` as an ASGI server would, for a client that sends no body."""

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "GET", "headers": [], "path": "/", "query_string": b""}
    await response(scope, receive, send)


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")  # the recorder's answers
def test_the_recorders_see_a_valid_call() -> None:
    """Without this, "the recorder saw nothing" could hold for a recorder that sees nothing."""
    s3 = RecordingClient()
    with pytest.raises(TypeError):  # the recorder returns None, not a GetObject answer
        asyncio.run(start(s3_stream(s3, "media", "a.mp4")))
    assert "get_object()" in s3.seen

    upstream = RecordingClient()
    with pytest.raises(AttributeError):  # its send() answers None, not a response
        asyncio.run(start(upstream_stream(upstream, "GET", "http://upstream/x")))
    assert "send()" in upstream.seen
    gc.collect()  # its build_request() made a coroutine nobody awaits: warn here, not later

    redis = RecordingClient()
    asyncio.run(ResumableStreams(redis).cancel("answer"))
    assert "set()" in redis.seen

    source = RecordingSource()

    async def drain() -> None:
        async for _ in iterate_in_thread(source):
            pass

    anyio.run(drain)
    assert "__iter__" in source.seen


# --- live: a bad argument in a route reaches no peer -----------------------------------------

S3_BUCKET = "faststream-kit-validation"
S3_KEY = "hello.txt"


@pytest.fixture(scope="module")
def s3_with_object(moto_s3: S3Peer) -> S3Peer:
    client = moto_s3.sync_client()
    with suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=S3_BUCKET)
    client.put_object(Bucket=S3_BUCKET, Key=S3_KEY, Body=b"hello")
    client.close()
    return moto_s3


def s3_app(peer: S3Peer, kind: ClientKind, sent: SentRequests) -> FastAPI:
    """``/good/{key}`` serves the object; ``/bad/{key}`` passes ``send_timeout=0``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if kind == "aiobotocore":
            async with peer.async_client() as client:
                client.meta.events.register("before-send.s3", sent.record)
                app.state.s3 = client
                yield
        else:
            client = peer.sync_client()
            client.meta.events.register("before-send.s3", sent.record)
            app.state.s3 = client
            yield
            client.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/good/{key}")
    async def good(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.s3, S3_BUCKET, key)

    @app.get("/bad/{key}")
    async def bad(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.s3, S3_BUCKET, key, send_timeout=0)

    return app


@pytest.mark.parametrize("kind", ["aiobotocore", "boto3"])
def test_s3_stream_with_a_bad_argument_sends_nothing_to_s3(
    s3_with_object: S3Peer, kind: ClientKind
) -> None:
    sent = SentRequests()
    with (
        LiveServer(s3_app(s3_with_object, kind, sent), log_level="critical") as server,
        httpx.Client(timeout=15) as client,
    ):
        # A fresh connection: uvicorn closes the one on which the app raised.
        bad = client.get(f"{server.url}/bad/{S3_KEY}", headers={"connection": "close"})
        assert bad.status_code == 500  # a programming error in the route
        assert sent.take() == [], "a GetObject went out before the bad argument was noticed"
        good = client.get(f"{server.url}/good/{S3_KEY}")
        assert (good.status_code, good.content) == (200, b"hello")
        assert sent.take() == [("GetObject", None)]  # the hook does see what goes out


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    with LiveServer(app, log_level="critical") as live:
        yield app, live.url


def bad_proxy_app(upstream_url: str) -> FastAPI:
    """The proxy of ``test_upstream.py`` (``/{kind}/headers?id=`` reaches the upstream), plus
    ``/bad-{kind}?id=``, which passes ``send_timeout=0``. Each of its clients holds at most
    ``POOL_SIZE`` connections, so a response left open shows."""
    app = proxy_app(upstream_url)

    @app.get("/bad-{kind}")
    async def bad(kind: str, id: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        url = f"{upstream_url}/headers?id={id}"
        return upstream_stream(client, "GET", url, send_timeout=0)

    return app


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_upstream_stream_with_a_bad_argument_sends_nothing_upstream(
    upstream: tuple[Upstream, str], kind: str
) -> None:
    peer, upstream_url = upstream
    run = f"{kind}-{time.monotonic_ns()}"
    bad_ids = [f"bad-{run}-{i}" for i in range(POOL_SIZE + 1)]
    with (
        LiveServer(bad_proxy_app(upstream_url), log_level="critical") as proxy,
        httpx.Client(timeout=15) as client,
    ):
        for request_id in bad_ids:
            # A fresh connection each: uvicorn closes the one on which the app raised.
            bad = client.get(
                f"{proxy.url}/bad-{kind}",
                params={"id": request_id},
                headers={"connection": "close"},
            )
            assert bad.status_code == 500  # a programming error in the route
        # Every request the upstream receives records its headers (a client always sends Host).
        assert [peer.log.get(request_id).headers for request_id in bad_ids] == [[]] * len(bad_ids)
        # More bad requests than the pool has connections, and it still serves: none is held.
        good = client.get(f"{proxy.url}/{kind}/headers", params={"id": f"good-{run}"})
        assert (good.status_code, good.text) == (200, "headers recorded")
        assert peer.log.get(f"good-{run}").headers != []


def test_sse_factory_returning_no_iterable_is_a_json_500_naming_events_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()

    @app.get("/events")
    async def events() -> Response:
        return sse_response(lambda last_event_id: 5)  # type: ignore[arg-type, return-value]

    with (
        caplog.at_level(logging.ERROR, logger="faststream_kit"),
        LiveServer(app, log_level="critical") as server,
    ):
        response = httpx.get(f"{server.url}/events", timeout=15)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert "error" in response.json()
    assert "Traceback" not in response.text
    assert "events" not in response.text  # the diagnosis is for the log, not the client
    logged = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert any(
        isinstance(exc, TypeError) and str(exc).startswith("events must return") for exc in logged
    ), caplog.text

"""``StreamResponse``: the one path every faststream-kit stream goes through.

Headers, disconnect handling, keepalives, the error contract and thread handling are written
here once; the helpers (SSE, LLM, S3, upstream) only produce bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from contextvars import ContextVar
from time import monotonic
from typing import Any, Literal, Self

import anyio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from . import _shutdown
from ._eager import EagerIterator
from ._errors import ErrorReport, library_error, report_error
from ._formats import ErrorFrame, default_error_frame, default_keepalive_frame
from ._hop_by_hop import HOP_BY_HOP
from ._names import KEEPALIVE, SEND_TIMEOUT, FormatKeepalive
from ._otel import Outcome, StreamTelemetry, start_stream_telemetry
from ._threads import DEFAULT_READ_AHEAD, ThreadIterator, iterate_in_thread
from ._validate import (
    check_background,
    check_bytes,
    check_callable,
    check_headers,
    check_limiter,
    check_media_type,
    check_request,
    check_status_code,
    optional_positive_seconds,
    positive_int,
    source_factory,
    stream_source,
)

__all__ = ["StreamResponse", "stream_response"]

logger = logging.getLogger("faststream_kit")

Content = AsyncIterable[Any] | Iterable[Any]
SourceFactory = Callable[[Scope], Content]
"""Opens the source when the response starts, given the ASGI scope (e.g. for headers)."""
Encoder = Callable[[Any], bytes]

# RFC 9113 §8.2.2: connection-specific header fields are malformed in HTTP/2, and they are
# meaningless on an ASGI response anyway (the server owns the connection).
_CONNECTION_HEADERS = frozenset(name.encode() for name in HOP_BY_HOP)

DEFAULT_CACHE_CONTROL = "no-cache, no-transform"
"""What a stream says to caches unless told otherwise: store nothing, transform nothing."""

_COALESCE_BELOW_BYTES = 16 * 1024
"""Chunks smaller than this take the items already produced after them into the same write.
Measured (``bench/core.py``): joining 64 KiB chunks made 256 MiB take 1.8-2.4x a raw ASGI
loop; 32-byte items gain ~3x from joining."""

_CHECKPOINT_BYTES = 1 << 20
_WRITE_WEIGHT_BYTES = 32 << 10
"""The pump gives the event loop a turn after about a MiB of writes, a write counting at
least 32 KiB (so every 32 small writes). A source that never awaits (rows already in
memory, a client library with data buffered) and writes the server does not suspend would
otherwise keep the loop from ever seeing the client leave: the whole body would go into a
closed socket."""

_CLOSE_SOURCE_SECONDS = 5.0
"""How long a closing source may take before we stop waiting for it."""


def _join_encoded(data: bytes, ready: list[Any], encode: Encoder) -> tuple[bytes, Exception | None]:
    """``data`` and the ``ready`` items encoded, as one write, up to an item that fails.

    The items before the failing one are written and its error is raised after them, as if
    it had been produced later: whether a source awaited between its items (or its worker
    thread ran ahead) must not change what the client gets. An encoder may keep state (the
    LLM formats do), so nothing is encoded twice.
    """
    parts = [data]
    try:
        # list.extend() keeps what it appended before the iterator raised (CPython appends
        # one by one; tests/test_encode_failures.py fails if not); a loop of append() calls
        # costs ~1.5x per item on this path.
        parts.extend(map(encode, ready))
    except Exception as exc:
        return b"".join(parts), exc
    return b"".join(parts), None


class _ClientGone(Exception):
    """The client disconnected, or stopped reading for longer than ``send_timeout``."""


class StreamResponse(StreamingResponse):
    """A ``StreamingResponse`` that reaches the client chunk by chunk, and cleans up.

    Compared with Starlette's ``StreamingResponse`` it:

    * sends ``X-Content-Type-Options: nosniff`` (browsers otherwise hold ``text/plain``
      until ~1 KiB arrived to sniff it), ``Cache-Control: no-cache, no-transform`` unless you
      set one, ``X-Accel-Buffering: no`` (nginx) and ``Content-Encoding: identity`` unless you
      set an encoding, which ``GZipMiddleware`` and nginx's gzip respect by leaving the body
      alone; it drops ``Connection`` and the other headers HTTP/2 forbids;
    * owns ``receive()`` to notice a client that leaves, on every ASGI version, and then
      closes the source at once (``aclose()``, or ``close()`` in the worker thread for a
      sync generator); body messages it receives are handed on to ``request`` if given;
    * runs a sync iterable in one worker thread (:func:`iterate_in_thread`) on its own
      capacity limiter; small items (under 16 KiB) that a source, sync or async, has
      already produced go out in one write, with those an async source produces within a
      few loop turns (up to 1 ms), and nothing waits for more;
    * sends the headers with the first chunk, or with the first keepalive if that is due
      earlier, so an exception before either becomes a real HTTP error (JSON body);
      after that, formats with an error frame (SSE, NDJSON) end with it, and the others
      abort the connection so a truncated body never looks complete;
    * sends the format's keepalive after ``keepalive`` idle seconds (15 by default, for
      formats that have keepalive bytes: SSE, NDJSON; plain text and bytes need your
      ``keepalive_frame``), gives up on a client that does not read for ``send_timeout``
      seconds (30 by default; the connection is aborted), and on a source that produces
      nothing for ``idle_timeout`` seconds (off by default; a 504 before the first chunk,
      the error frame or an abort after it);
    * answers ``HEAD`` with the headers only, without touching the source;
    * with OpenTelemetry configured, records a span ``stream <route>`` and metrics for the
      stream (docs/observability.md).
    """

    span_attributes: Mapping[str, Any] | None = None
    """Attributes a helper puts on the stream's span when it starts (an object's size)."""

    def __init__(
        self,
        content: Content | SourceFactory,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        keepalive: float | None = KEEPALIVE,
        keepalive_frame: bytes | None = None,
        send_timeout: float | None = SEND_TIMEOUT,
        error_frame: ErrorFrame | None = None,
        request: Request | None = None,
        thread_limiter: anyio.CapacityLimiter | None = None,
        read_ahead: int = DEFAULT_READ_AHEAD,
        encode: Encoder | None = None,
        preamble: bytes = b"",
        shutdown_frame: bytes | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        check_status_code("status_code", status_code)
        check_headers("headers", headers)
        check_media_type("media_type", media_type)
        check_background("background", background)
        optional_positive_seconds("keepalive", keepalive)
        check_bytes("keepalive_frame", keepalive_frame, optional=True)
        optional_positive_seconds("send_timeout", send_timeout)
        optional_positive_seconds("idle_timeout", idle_timeout)
        check_callable("error_frame", error_frame)
        check_request("request", request)
        check_limiter("thread_limiter", thread_limiter)
        positive_int("read_ahead", read_ahead)
        check_callable("encode", encode)
        check_bytes("preamble", preamble)
        check_bytes("shutdown_frame", shutdown_frame, optional=True)
        self._open: SourceFactory | None = None
        source: Content | None = None
        if isinstance(content, AsyncIterable | Iterable) and not isinstance(
            content, str | bytes | bytearray | memoryview
        ):
            source = content
        elif callable(content):
            self._open = source_factory("content", content, "the ASGI scope")
        else:
            stream_source("content", content)  # raises, saying what is wrong with it
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self._thread_limiter = thread_limiter
        self._read_ahead = read_ahead
        if source is not None:
            self.body_iterator = self._as_async(source)
        self.init_headers(headers)
        self._prepare_headers()
        self.keepalive_frame = (
            keepalive_frame
            if keepalive_frame is not None
            else default_keepalive_frame(self.media_type)
        )
        if keepalive is not None and not self.keepalive_frame:
            if not isinstance(keepalive, FormatKeepalive):
                raise ValueError(
                    f"keepalive needs keepalive_frame: media type {self.media_type!r} has no "
                    "keepalive bytes a reader would ignore; pass keepalive_frame=... or "
                    "keepalive=None"
                )
            keepalive = None  # the default: only formats with keepalive bytes send one
        self.keepalive = None if keepalive is None else float(keepalive)
        self.send_timeout = send_timeout
        self.idle_timeout = idle_timeout
        self.error_frame = (
            error_frame if error_frame is not None else default_error_frame(self.media_type)
        )
        self._request = request
        self._encode: Encoder = encode or self._encode_text
        self._preamble = preamble
        self.shutdown_frame = shutdown_frame

    def _as_async(self, content: Content) -> AsyncIterable[Any]:
        if isinstance(content, AsyncIterable):
            return content
        return iterate_in_thread(
            content, thread_limiter=self._thread_limiter, read_ahead=self._read_ahead
        )

    def _ready_source(self) -> ThreadIterator[Any] | EagerIterator[Any]:
        """The source as an iterator that can also hand over what is already produced."""
        source = self.body_iterator
        if not isinstance(source, ThreadIterator | EagerIterator):
            source = self.body_iterator = EagerIterator(source)
        return source

    def _encode_text(self, chunk: Any) -> bytes:
        if type(chunk) is bytes:
            return chunk
        if isinstance(chunk, str):
            return chunk.encode(self.charset)
        if isinstance(chunk, bytes | bytearray | memoryview):
            return bytes(chunk)
        raise TypeError(f"stream items must be bytes or str, got {type(chunk).__name__}")

    def _prepare_headers(self) -> None:
        raw = [(k, v) for k, v in self.raw_headers if k not in _CONNECTION_HEADERS]
        names = {k for k, _ in raw}
        raw.append((b"x-content-type-options", b"nosniff"))
        if b"cache-control" not in names:
            raw.append((b"cache-control", DEFAULT_CACHE_CONTROL.encode()))
        raw.append((b"x-accel-buffering", b"no"))
        if b"content-encoding" not in names:
            # The one signal Starlette's GZipMiddleware and nginx's gzip both honour: a body
            # that already has an encoding is passed through, chunk by chunk, untouched.
            raw.append((b"content-encoding", b"identity"))
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            await self._answer_head(send)
            return
        wire = _Wire(self, send)
        wire.telemetry = telemetry = start_stream_telemetry(scope, self.span_attributes)
        failure: BaseException | None = None
        try:
            failure = await self._stream(scope, receive, wire)
            if failure is not None and not wire.gone:
                await self._fail(wire, failure)  # the error goes out first; closing may be slow
            elif (
                wire.shutting_down
                and not (wire.gone or wire.ended)
                and self.shutdown_frame is not None
            ):
                await wire.send_last(self.shutdown_frame)
        except BaseException as exc:
            failure = failure or exc
            raise
        finally:
            await self._close_source()
            if telemetry is not None:
                _end_telemetry(telemetry, wire, failure)
        if wire.timed_out:
            raise TimeoutError(f"client did not read for {self.send_timeout} s; connection aborted")
        if failure is None and self.background is not None:
            await self.background()

    async def _stream(self, scope: Scope, receive: Receive, wire: _Wire) -> BaseException | None:
        """Run the pump beside the client watch; return the source's exception, if any.

        The pump runs in the response's own task; the watch is one plain asyncio task and the
        timers one loop timer (:class:`_Clock`). No task group and no timeout scope: an idle
        stream holds a few hundred bytes for this machinery instead of several KiB.
        """
        pump_task = asyncio.current_task()
        assert pump_task is not None
        stop = wire.stop_pump = _PumpStop(pump_task)
        relay = _BodyRelay(self._request) if self._request is not None else None
        shutdown_watch = None
        if self.shutdown_frame is not None:

            def stop_for_shutdown() -> None:
                wire.shutting_down = True
                stop()

            shutdown_watch = _shutdown.register(stop_for_shutdown)
        watch = asyncio.get_running_loop().create_task(self._watch_client(receive, wire, relay))
        timed = self.keepalive or self.idle_timeout or self.send_timeout
        clock = _Clock(self, wire) if timed else None
        failure: BaseException | None = None
        try:
            try:
                failure = await self._pump(scope, wire, stop)
            finally:
                stopped = stop.disarm()
        except asyncio.CancelledError:
            if not stopped or _cancelled_by_others(pump_task):
                raise
        finally:
            del shutdown_watch
            await _stop_watching(watch, clock)
        if wire.stop_reason == "idle_timeout":
            failure = library_error(
                "timeout", f"the stream produced nothing for {self.idle_timeout:g} s"
            )
        return failure

    async def _pump(self, scope: Scope, wire: _Wire, stop: _PumpStop) -> BaseException | None:
        """Copy the source to the client; return the source's exception, if any.

        ``stop`` cancels this task where it waits, which is usually in the source. A source
        may drop that cancellation and go on (pyreqwest's ``read_chunk()`` does); after a
        disconnect the server's ``send()`` returns at once, so nothing else would end the
        loop before the source does: every write checks whether a stop was requested.
        """
        try:
            if self._open is not None:
                self.body_iterator = self._as_async(self._open(scope))
        except Exception as exc:
            return exc
        source = self._ready_source()
        take_ready = source.take_ready
        eager = source if isinstance(source, EagerIterator) else None
        read_ahead = self._read_ahead
        encode = self._encode
        preamble = self._preamble
        plain_bytes = encode == self._encode_text  # bytes pass through untouched
        track_idle = self.idle_timeout is not None
        token = _current_wire.set(wire)
        unencodable: Exception | None = None
        items = unchecked = 0
        try:
            async for chunk in source:
                items += 1
                data = chunk if type(chunk) is bytes and plain_bytes else encode(chunk)
                # Small items already produced go out in the same write, and those a kept
                # step produces within a few loop turns (EagerIterator.take_soon); nothing
                # waits for more. A large chunk is a write of its own: joining it would only
                # copy it.
                if len(data) < _COALESCE_BELOW_BYTES:
                    ready = take_ready(read_ahead)
                    if not ready and eager is not None and eager.pending:
                        ready = await eager.take_soon(read_ahead)
                    if ready:
                        items += len(ready)
                        data, unencodable = _join_encoded(data, ready, encode)
                if preamble:
                    data, preamble = preamble + data, b""
                if data:
                    size = len(data)  # per chunk: no max() call
                    unchecked += size if size > _WRITE_WEIGHT_BYTES else _WRITE_WEIGHT_BYTES
                    try:
                        await wire.send_body(data)
                        if stop.requested:
                            raise asyncio.CancelledError  # the source dropped our cancellation
                        if unchecked >= _CHECKPOINT_BYTES:
                            unchecked = 0
                            await asyncio.sleep(0)
                    except asyncio.CancelledError as cancelled:
                        # Maybe the source's own timeout, set in a step take_ready kept: it
                        # cancels this task wherever it waits. The step sees it first.
                        if eager is None or not eager.pending:
                            raise
                        await eager.throw_into_pending(cancelled)
                if track_idle:
                    wire.last_item = monotonic()  # the wait for the next item starts now
                if unencodable is not None:
                    raise unencodable  # after the items before it, as if it came later
            if preamble:
                await wire.send_body(preamble)
            await wire.send_end()
        except _ClientGone:
            return None
        except Exception as exc:
            return exc
        finally:
            wire.items = items
            _current_wire.reset(token)
        return None

    async def _watch_client(self, receive: Receive, wire: _Wire, relay: _BodyRelay | None) -> None:
        """Wait for ``http.disconnect``, handing request-body messages on to ``relay``."""
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    wire.gone = True
                    if relay is not None:
                        relay.put(message)
                    wire.stop("disconnect")
                    return
                if relay is not None:
                    await relay.put_waiting(message)
        except Exception:
            wire.stop_pump()  # nobody would notice the client leaving: stop, then raise
            raise

    async def _close_source(self) -> None:
        source = getattr(self, "body_iterator", None)
        if source is None:
            # The factory never ran (a HEAD): it may hold what it was given (a coroutine not
            # awaited yet), so a factory with a ``close()`` is told it never will run.
            close = getattr(self._open, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    logger.exception("closing the stream source failed")
            return
        if isinstance(source, EagerIterator) and source.pending:
            # The kept step may sit inside the source's own cancel scopes: close it before
            # entering ours, so that they exit in order (asyncio.timeout is no anyio scope).
            try:
                async with asyncio.timeout(_CLOSE_SOURCE_SECONDS):
                    await source.close_pending()
            except Exception:
                logger.exception("closing the stream source failed")
        aclose = getattr(source, "aclose", None)
        if aclose is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_SOURCE_SECONDS):
            try:
                await aclose()
            except Exception:
                logger.exception("closing the stream source failed")

    async def _fail(self, wire: _Wire, exc: BaseException) -> None:
        """Apply the error contract to a source that raised ``exc``."""
        report = report_error(exc)
        if not wire.started:
            if not report.expected:
                logger.error("stream failed before its first chunk", exc_info=exc)
            await wire.send_error_response(report)
            return
        if self.error_frame is not None:
            if not report.expected:
                logger.error("stream failed after its headers were sent", exc_info=exc)
            await wire.send_last(self.error_frame(exc))
            return
        # No way to say "failed" in this format: abort, so the body is visibly incomplete.
        raise exc

    async def _answer_head(self, send: Send) -> None:
        await self._close_source()
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()

    @classmethod
    def with_options(cls, **options: Any) -> type[Self]:
        """This class with ``options`` as its defaults, for FastAPI's ``response_class=``.

        FastAPI builds the response of a ``yield`` path operation from the class alone, so
        per-route options travel in a class: any keyword argument of the constructor except
        ``content`` and ``request``. They are checked now, as the constructor checks them;
        the same options give the same class; an argument given when the response is built
        wins (``headers`` are merged, the call's last).

        ```python
        @app.get("/events", response_class=EventSourceResponse.with_options(keepalive=5))
        async def events() -> AsyncIterator[Tick]: ...
        ```
        """
        from ._configured import configured_class

        return configured_class(cls, options)


StopReason = Literal["disconnect", "idle_timeout", "send_timeout"]

_current_wire: ContextVar[_Wire | None] = ContextVar("faststream_kit_wire", default=None)


def stop_reason() -> StopReason | None:
    """Why the response is stopping the source it is running, if it is.

    For a source's ``finally`` or ``except`` block: a cancellation there means the client
    left (``"disconnect"``), stopped reading (``"send_timeout"``), or the source was silent
    for too long (``"idle_timeout"``).
    """
    wire = _current_wire.get()
    return wire.stop_reason if wire is not None else None


class _Wire:
    """The response side of one ASGI connection: headers-once, keepalives, timeouts."""

    __slots__ = (
        "_idle_tracked",
        "_keepalive_done",
        "_response",
        "_send",
        "_timed_sends",
        "busy",
        "busy_since",
        "ended",
        "gone",
        "items",
        "last_item",
        "last_send",
        "sent_bytes",
        "shutting_down",
        "started",
        "stop_pump",
        "stop_reason",
        "telemetry",
        "timed_out",
    )

    def __init__(self, response: StreamResponse, send: Send) -> None:
        self._response = response
        self._send = send
        self.started = False
        self.ended = False  # the last body message went out: nothing more may follow
        self.busy = False  # a write by the pump is in flight
        self.gone = False
        self.timed_out = False
        self.shutting_down = False
        self.stop_reason: StopReason | None = None
        self.stop_pump: Callable[[], None] = _nothing_to_stop
        self.telemetry: StreamTelemetry | None = None
        self.items = self.sent_bytes = 0  # for telemetry: items of the source, body bytes
        self.last_send = self.last_item = self.busy_since = monotonic()
        self._keepalive_done: anyio.Event | None = None
        self._timed_sends = response.send_timeout is not None
        self._idle_tracked = response.keepalive is not None

    def stop(self, reason: StopReason) -> None:
        """Stop the pump for ``reason``: the client left, or a timer ran out."""
        if self.stop_reason is None:
            self.stop_reason = reason
            if reason == "send_timeout":
                self.gone = self.timed_out = True
        self.stop_pump()

    async def _write(self, message: Message) -> None:
        if self._timed_sends:
            self.busy_since = monotonic()
        try:
            await self._send(message)
        except OSError as exc:  # ASGI 2.4: send() raises once the client is gone
            self.gone = True
            raise _ClientGone from exc

    async def _start(self) -> None:
        self.started = True
        if self.telemetry is not None:
            self.telemetry.byte_sent()
        response = self._response
        await self._write(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )

    async def send_body(self, data: bytes) -> None:
        if self._keepalive_done is not None:
            await self._keepalive_done.wait()
        self.busy = True
        try:
            if not self.started:
                await self._start()
            # _write() inlined: this is the per-chunk path.
            if self._timed_sends:
                self.busy_since = monotonic()
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except OSError as exc:  # ASGI 2.4: send() raises once the client is gone
            self.gone = True
            raise _ClientGone from exc
        finally:
            self.busy = False
        self.sent_bytes += len(data)
        if self._idle_tracked:
            self.last_send = monotonic()

    async def send_end(self) -> None:
        if self._keepalive_done is not None:
            await self._keepalive_done.wait()
        self.busy = True  # no keepalive may be scheduled after the last message
        if not self.started:
            await self._start()
        await self._write({"type": "http.response.body", "body": b"", "more_body": False})
        self.ended = True

    async def send_last(self, frame: bytes) -> None:
        """Send a final frame and end the body, unless the client is already gone."""
        try:
            await self.send_body(frame)
            await self.send_end()
        except _ClientGone:
            pass

    def keepalive_due(self) -> None:
        """The clock is starting a keepalive: from now on, writes wait until it is out.

        Set when the keepalive task is created, not when it first runs: in between, the pump
        could otherwise start a write of its own beside it.
        """
        self._keepalive_done = anyio.Event()

    def keepalive_finished(self) -> None:
        done, self._keepalive_done = self._keepalive_done, None
        if done is not None:
            done.set()

    async def send_keepalive(self) -> None:
        frame = self._response.keepalive_frame
        assert frame is not None
        try:
            if not self.started:
                await self._start()
            await self._write({"type": "http.response.body", "body": frame, "more_body": True})
            if self.telemetry is not None:
                self.telemetry.keepalives += 1
        finally:
            self.keepalive_finished()
        self.last_send = monotonic()

    async def send_error_response(self, report: ErrorReport) -> None:
        status, body = report.status_code, report.json_body()
        if self.telemetry is not None:
            self.telemetry.byte_sent()
        try:
            await self._write(
                {"type": "http.response.start", "status": status, "headers": report.raw_headers()}
            )
            await self._write({"type": "http.response.body", "body": body, "more_body": False})
        except _ClientGone:
            pass


def _end_telemetry(telemetry: StreamTelemetry, wire: _Wire, failure: BaseException | None) -> None:
    """End the stream's span with its outcome (see docs/observability.md)."""
    error_type = None
    outcome: Outcome
    if wire.stop_reason == "send_timeout":
        outcome = "send_timeout"
    elif wire.stop_reason == "idle_timeout":
        outcome, error_type = "idle_timeout", "timeout"
    elif wire.shutting_down:
        outcome = "shutdown"
    elif wire.gone or wire.stop_reason == "disconnect":
        outcome = "client_disconnected"
    elif failure is not None and not isinstance(failure, asyncio.CancelledError):
        outcome, error_type = "error", report_error(failure).type
    elif failure is not None:
        outcome = "client_disconnected"  # the server cancelled the request: nobody is reading
    else:
        outcome = "completed"
    try:
        telemetry.finish(
            outcome, sent_bytes=wire.sent_bytes, chunks=wire.items, error_type=error_type
        )
    except Exception:
        logger.exception("recording the stream's telemetry failed")


def current_telemetry() -> StreamTelemetry | None:
    """The telemetry of the response running the current source, for a helper to annotate."""
    wire = _current_wire.get()
    return wire.telemetry if wire is not None else None


def _nothing_to_stop() -> None:
    pass


def _cancelled_by_others(task: asyncio.Task[Any]) -> bool:
    """Whether someone besides :class:`_PumpStop` is cancelling ``task`` (Python 3.11+)."""
    cancelling = getattr(task, "cancelling", None)
    return cancelling is not None and cancelling() > 0


class _PumpStop:
    """Stops the pump, the response's own task, by cancelling it where it waits; at most once.

    Only ever called from the event loop (the watch task, the clock's timer, the shutdown
    callback), so the cancellation always lands on an ``await`` of the pump.
    """

    __slots__ = ("_armed", "_task", "requested")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self._armed = True
        self.requested = False

    def __call__(self) -> None:
        if self._armed and not self.requested:
            self.requested = True
            self._task.cancel()

    def disarm(self) -> bool:
        """Stop nothing from now on; return whether a stop was requested (and take it back)."""
        self._armed = False
        if self.requested:
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
        return self.requested


class _Clock:
    """A response's timers on one event-loop timer: keepalive, ``idle_timeout``, ``send_timeout``.

    Each tick acts on what is due and schedules the next, so the per-chunk path carries no
    timeout scope and an idle stream holds one timer handle. A due keepalive is sent by a
    short-lived task of its own.
    """

    __slots__ = ("_handle", "_keepalive", "_loop", "_response", "_wire", "failure")

    def __init__(self, response: StreamResponse, wire: _Wire) -> None:
        self._response = response
        self._wire = wire
        self._loop = asyncio.get_running_loop()
        self._keepalive: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._tick()

    def _tick(self) -> None:
        self._handle = None
        wire, response = self._wire, self._response
        if wire.stop_reason is not None:
            return
        now = monotonic()
        waits = [60.0]
        sending = wire.busy or self._keepalive is not None
        send_timeout = response.send_timeout
        if send_timeout is not None:
            if sending and now - wire.busy_since >= send_timeout:
                wire.stop("send_timeout")
                return
            # A write may start at any moment: look again within half the timeout.
            waits.append(wire.busy_since + send_timeout - now if sending else send_timeout / 2)
        idle_timeout = response.idle_timeout
        if idle_timeout is not None:
            # The source is not idle while the pump writes: that is the client's time.
            remaining = idle_timeout if wire.busy else wire.last_item + idle_timeout - now
            if remaining <= 0:
                wire.stop("idle_timeout")
                return
            waits.append(remaining)
        keepalive = response.keepalive
        if keepalive is not None:
            remaining = keepalive if sending else wire.last_send + keepalive - now
            if remaining <= 0:
                wire.keepalive_due()
                self._keepalive = self._loop.create_task(self._send_keepalive())
                remaining = keepalive
            waits.append(remaining)
        self._handle = self._loop.call_later(max(min(waits), 0.001), self._tick)

    async def _send_keepalive(self) -> None:
        try:
            await self._wire.send_keepalive()
        except _ClientGone:
            self._wire.stop("disconnect")
        except Exception as exc:
            self.failure = exc
            self._wire.stop_pump()
        finally:
            self._keepalive = None

    def wire_released(self) -> None:
        """After the keepalive task ended: release the writes waiting for it, also when it
        was cancelled before it ever ran (its ``finally`` never executed then)."""
        self._wire.keepalive_finished()

    def cancel(self) -> asyncio.Task[None] | None:
        """Stop ticking; return the keepalive task still in flight, cancelled, if any."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        keepalive = self._keepalive
        if keepalive is not None:
            keepalive.cancel()
        return keepalive


async def _stop_watching(watch: asyncio.Task[None], clock: _Clock | None) -> None:
    """Cancel the watch and the clock, wait for them, and raise what failed in them."""
    watch.cancel()
    tasks = {watch}
    if clock is not None:
        keepalive = clock.cancel()
        if keepalive is not None:
            tasks.add(keepalive)
    await asyncio.wait(tasks)
    if clock is not None:
        clock.wire_released()
    if clock is not None and clock.failure is not None:
        raise clock.failure
    if not watch.cancelled() and watch.exception() is not None:
        raise watch.exception()  # type: ignore[misc]


class _BodyRelay:
    """Hands request-body messages that the disconnect watch received on to the request.

    Only one task may call the server's ``receive()`` without losing messages, so while a
    response streams, the watch is that task and the request reads from here instead.
    """

    _LIMIT = 8  # messages held before the watch waits for the reader (backpressure)

    def __init__(self, request: Request) -> None:
        self._messages: deque[Message] = deque()
        self._arrived = anyio.Event()
        self._taken = anyio.Event()
        request._receive = self.receive

    def put(self, message: Message) -> None:
        self._messages.append(message)
        self._arrived.set()

    async def put_waiting(self, message: Message) -> None:
        while len(self._messages) >= self._LIMIT:
            self._taken = anyio.Event()
            await self._taken.wait()
        self.put(message)

    async def receive(self) -> Message:
        while not self._messages:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        message = self._messages.popleft()
        self._taken.set()
        return message


def stream_response(
    content: Content,
    *,
    media_type: str | None = "text/plain",
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    background: BackgroundTask | None = None,
    keepalive: float | None = KEEPALIVE,
    keepalive_frame: bytes | None = None,
    send_timeout: float | None = SEND_TIMEOUT,
    idle_timeout: float | None = None,
    error_frame: ErrorFrame | None = None,
    request: Request | None = None,
    thread_limiter: anyio.CapacityLimiter | None = None,
    read_ahead: int = DEFAULT_READ_AHEAD,
) -> StreamResponse:
    """Stream ``content`` (a sync or async iterable of ``bytes``/``str``) to the client.

    ```python
    @app.get("/count")
    async def count():
        async def numbers():
            for i in range(10):
                yield f"{i}\\n"
                await anyio.sleep(0.2)
        return stream_response(numbers())
    ```

    Pass ``request`` when the source reads the request body while the response streams
    (``request.stream()``); see :class:`StreamResponse` for everything else.
    """
    # Not a factory: content is the iterable itself. StreamResponse checks the rest, under
    # the same parameter names as here.
    stream_source("content", content)
    return StreamResponse(
        content,
        status_code=status_code,
        headers=headers,
        media_type=media_type,
        background=background,
        keepalive=keepalive,
        keepalive_frame=keepalive_frame,
        send_timeout=send_timeout,
        idle_timeout=idle_timeout,
        error_frame=error_frame,
        request=request,
        thread_limiter=thread_limiter,
        read_ahead=read_ahead,
    )

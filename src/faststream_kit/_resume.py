"""Resumable streams on Redis: produce once, read from any worker, resume after a drop.

A stream is a Redis Stream (``XADD``) named after a key the app chooses. The producer runs
exactly once, in a task of the :class:`ResumableStreams` task group (not in the request that
started it), and appends every event; its end and its failure are appended as markers. A
reader on any worker replays the entries after the ``Last-Event-ID`` it was given (Redis
entry ids are the SSE ids) and then follows live with ``XREAD BLOCK``: one loop does both.

Every key has a TTL from the moment it exists. A producer keeps an owner key alive with a
heartbeat; a reader that sees neither new entries nor a live owner ends with an ``error``
event instead of waiting forever.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Unpack

import anyio
from starlette.requests import Request
from starlette.types import Scope

from ._errors import ERRORS, StreamError, library_error, report_error
from ._llm import (
    FORMATS,
    Finish,
    LLMEvent,
    LLMSource,
    OnComplete,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    check_source,
    format_response,
    llm_events,
)
from ._names import (
    KEEPALIVE,
    LLM_IDLE_TIMEOUT,
    SEND_TIMEOUT,
    OldKeepalive,
    keepalive_argument,
)
from ._response import StreamResponse
from ._sse import ServerSentEvent, compact_json, data_text, sse_frame, with_id
from ._sse_response import SHUTDOWN_EVENT, Events, encode_event, last_event_id, sse_response
from ._threads import iterate_in_thread
from ._validate import (
    check_bool,
    check_callable,
    check_client,
    check_headers,
    check_limiter,
    check_request,
    check_str,
    non_empty_str,
    non_negative_seconds,
    one_of,
    optional_positive_seconds,
    positive_seconds,
    stream_source,
)

__all__ = ["ResumableStreams"]

logger = logging.getLogger("faststream_kit")

_ENTRY_ID = re.compile(r"^\d+-\d+$")

# Entry kinds in the Redis Stream.
_EVENT, _LLM, _END, _ERROR, _START = b"e", b"l", b"end", b"err", b"start"


# KEYS: events, owner. ARGV: owner token, owner TTL, events TTL. Returns 1 if claimed.
_CLAIM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('XADD', KEYS[1], '*', 'k', 'start')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


_REDIS = "a redis.asyncio.Redis or RedisCluster client"
_EVENTS = "a sync or async iterable of events"
_LLM_SOURCE = (
    "what llm_stream accepts (an OpenAI Stream, an awaitable returning one, an iterable of "
    "str), or a function of no arguments returning it"
)


def _check_redis(redis: Any) -> None:
    """``redis`` is an asyncio client: a sync one would fail at the first request instead."""
    check_client("redis", redis, ("eval", "xadd", "xread", "exists", "pipeline"), _REDIS)
    if not inspect.iscoroutinefunction(getattr(redis, "execute_command", None)):
        raise TypeError(f"redis must be {_REDIS}, got the sync {type(redis).__name__}")


def _check_producer(producer: Any, *, llm: bool, name: str = "producer") -> None:
    """What :meth:`ResumableStreams.start` can run: the checks of ``sse_response`` or
    ``llm_stream``, plus (``llm``) a function that makes the source only when needed."""
    if not llm:
        stream_source(name, producer, what=_EVENTS)
    elif callable(producer) and not isinstance(producer, AsyncIterable | Iterable):
        # Called with no argument when the stream starts (so the model is only asked then);
        # what it returns is checked there, by llm_stream's own reader.
        check_callable(name, producer, optional=False, arguments=0)
    else:
        check_source(name, producer, what=_LLM_SOURCE)


def _unavailable(exc: BaseException) -> StreamError:
    return library_error("unavailable", "the stream store (Redis) is unavailable")


def _is_redis_error(exc: BaseException) -> bool:
    return any(cls.__module__.startswith("redis") for cls in type(exc).__mro__) or isinstance(
        exc, ConnectionError | OSError
    )


class ResumableStreams:
    """Streams that survive dropped connections, worker restarts and load balancers.

    Use it as an async context manager for the life of the app (its task group runs the
    producers):

    ```python
    @asynccontextmanager
    async def lifespan(app):
        async with ResumableStreams(redis.asyncio.Redis()) as streams:
            app.state.streams = streams
            yield
    ```

    ``ttl_seconds`` is how long a stream stays resumable after its last event;
    ``heartbeat_seconds`` how often a producer proves it is alive (a reader gives up on a
    producer silent for three heartbeats); ``shutdown_grace_seconds`` how long leaving the
    context waits for running producers before cancelling them.
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "faststream-kit:",
        ttl_seconds: float = 3600.0,
        heartbeat_seconds: float = 2.0,
        shutdown_grace_seconds: float = 30.0,
    ) -> None:
        check_str("prefix", prefix)
        positive_seconds("ttl_seconds", ttl_seconds)
        positive_seconds("heartbeat_seconds", heartbeat_seconds)
        non_negative_seconds("shutdown_grace_seconds", shutdown_grace_seconds)
        _check_redis(redis)
        self.redis = redis
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self._idle = anyio.Event()  # no producer running in this process
        self._idle.set()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._local: dict[str, anyio.CancelScope] = {}
        self._token = secrets.token_hex(8)

    async def __aenter__(self) -> ResumableStreams:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        # Let running answers finish (their readers may already be reconnecting elsewhere),
        # then cancel what is left: each records a "cancelled" error for its readers.
        with anyio.move_on_after(self.shutdown_grace_seconds):
            await self._idle.wait()
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._task_group = None

    def _keys(self, key: str) -> tuple[str, str, str]:
        # The braces are a Redis Cluster hash tag: a stream's keys share one slot, so the
        # transactions over them also work on a cluster.
        base = self.prefix + "{" + key + "}"
        return base + ":events", base + ":owner", base + ":cancel"

    # Producing ---------------------------------------------------------------------------

    async def start(
        self,
        key: str,
        producer: LLMSource | Callable[[], LLMSource],
        *,
        llm: bool = False,
        thread_limiter: anyio.CapacityLimiter | None = None,
    ) -> bool:
        """Run ``producer`` for ``key`` once, in the background; False if it already ran.

        ``producer`` is a sync or async iterable of events (what ``sse_response`` accepts),
        or with ``llm=True`` anything ``llm_stream`` accepts, or a function of no arguments
        returning it. A sync producer runs in a worker thread of ``thread_limiter``.
        Raises :class:`StreamError` (503) when Redis is unavailable.
        """
        non_empty_str("key", key)
        check_bool("llm", llm)
        _check_producer(producer, llm=llm)
        check_limiter("thread_limiter", thread_limiter)
        if self._task_group is None:
            raise RuntimeError("use ResumableStreams as an async context manager (app lifespan)")
        if llm and not isinstance(producer, _LazyLLMEvents):
            producer = _LazyLLMEvents(producer, on_complete=None, thread_limiter=thread_limiter)
        events_key, owner_key, _ = self._keys(key)
        try:
            # One atomic step, so no reader on another worker can see an owner without
            # events (a 404) or two workers both start the producer.
            claimed = await self.redis.eval(
                _CLAIM_SCRIPT, 2, events_key, owner_key, self._token, self._owner_ttl(), self._ttl()
            )
        except Exception as exc:
            if _is_redis_error(exc):
                raise _unavailable(exc) from exc
            raise
        if not claimed:
            _close_quietly(producer)
            return False
        scope = anyio.CancelScope()
        self._local[key] = scope
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._task_group.start_soon(self._produce, key, producer, llm, scope, thread_limiter)
        return True

    async def cancel(self, key: str) -> None:
        """Stop the producer of ``key``, on whichever worker runs it."""
        non_empty_str("key", key)
        _, _, cancel_key = self._keys(key)
        await self.redis.set(cancel_key, b"1", ex=self._ttl())
        scope = self._local.get(key)
        if scope is not None:
            scope.cancel()

    def _ttl(self) -> int:
        return max(1, round(self.ttl_seconds))

    def _owner_ttl(self) -> int:
        return max(1, round(self.heartbeat_seconds * 3))

    async def _produce(
        self,
        key: str,
        producer: Any,
        llm: bool,
        scope: anyio.CancelScope,
        thread_limiter: anyio.CapacityLimiter | None,
    ) -> None:
        events_key, owner_key, cancel_key = self._keys(key)
        final: dict[bytes, bytes] = {b"k": _END}
        try:
            failure: Exception | None = None
            with scope:
                async with anyio.create_task_group() as heartbeat_group:
                    heartbeat_group.start_soon(self._heartbeat, key, scope)
                    try:
                        async for fields in _entries(producer, llm, thread_limiter):
                            await self.redis.xadd(events_key, fields)
                    except Exception as exc:
                        failure = exc  # raised below, outside the group, unwrapped
                    finally:
                        heartbeat_group.cancel_scope.cancel()
            if failure is not None:
                raise failure
            if scope.cancelled_caught:
                final = _error_fields(
                    "cancelled", "the stream was cancelled", ERRORS["cancelled"][0]
                )
        except Exception as exc:
            if _is_redis_error(exc):
                logger.warning("resumable stream %r lost Redis: %s", key, exc)
                return
            if not (isinstance(exc, StreamError)):
                logger.error("resumable stream %r failed", key, exc_info=exc)
            report = report_error(exc)
            final = _error_fields(
                report.type, report.message, report.status_code, report.headers, report.code
            )
        finally:
            self._local.pop(key, None)
            if not self._local:
                self._idle.set()
        with anyio.CancelScope(shield=True):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(events_key, final)
                    pipe.expire(events_key, self._ttl())
                    pipe.delete(owner_key, cancel_key)
                    await pipe.execute()
            except Exception as exc:
                logger.warning("resumable stream %r could not record its end: %s", key, exc)

    async def _heartbeat(self, key: str, scope: anyio.CancelScope) -> None:
        events_key, owner_key, cancel_key = self._keys(key)
        while True:
            await anyio.sleep(self.heartbeat_seconds)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.expire(owner_key, self._owner_ttl())
                pipe.expire(events_key, self._ttl())
                pipe.exists(cancel_key)
                try:
                    *_, cancelled = await pipe.execute()
                except Exception as exc:
                    if _is_redis_error(exc):
                        return  # the producer's own next write reports it
                    raise
            if cancelled:
                scope.cancel()
                return

    # Reading -----------------------------------------------------------------------------

    async def entries(
        self, key: str, after: str | None = None
    ) -> AsyncIterator[tuple[str, dict[bytes, bytes]]]:
        """Replay the entries after ``after`` (an entry id), then follow live until the end.

        Raises :class:`StreamError`: 404 for an unknown key (before anything is read), the
        producer's error after its events, 503 when Redis fails.
        """
        non_empty_str("key", key)
        check_str("after", after, optional=True)
        events_key, owner_key, _ = self._keys(key)
        cursor = after if after and _ENTRY_ID.match(after) else "0-0"
        block_ms = max(100, round(self.heartbeat_seconds * 1000))
        try:
            if not await self.redis.exists(events_key):
                raise library_error("not_found", f"no stream {key!r}")
            while True:
                batch = await self.redis.xread({events_key: cursor}, count=256, block=block_ms)
                if not batch:
                    # No new entries and nobody producing them: the producer is gone.
                    producer_gone = not await self.redis.exists(owner_key)
                    if producer_gone and not await self.redis.xread({events_key: cursor}):
                        raise library_error(
                            "producer_lost", "the stream's producer stopped without finishing"
                        )
                    continue
                for raw_id, fields in batch[0][1]:
                    cursor = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    kind = fields.get(b"k")
                    if kind == _START:
                        continue
                    if kind == _END:
                        return
                    if kind == _ERROR:
                        raise _stored_error(fields)
                    yield cursor, fields
        except StreamError:
            raise
        except Exception as exc:
            if _is_redis_error(exc):
                raise _unavailable(exc) from exc
            raise

    def sse_response(
        self,
        key: str,
        *,
        producer: Events | None = None,
        keepalive: float | None = KEEPALIVE,
        retry: int | None = None,
        send_timeout: float | None = SEND_TIMEOUT,
        idle_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        request: Request | None = None,
        thread_limiter: anyio.CapacityLimiter | None = None,
        **deprecated: Unpack[OldKeepalive],
    ) -> StreamResponse:
        """Serve ``key`` as Server-Sent Events, resuming after the request's ``Last-Event-ID``.

        With ``producer``, the stream is started first if it has not been (once across all
        workers; a sync one in a worker thread of ``thread_limiter``). Each event's ``id`` is
        its Redis entry id. The other options are those of ``sse_response``.
        """
        non_empty_str("key", key)
        if producer is not None:
            _check_producer(producer, llm=False)
        keepalive = keepalive_argument("ResumableStreams.sse_response", keepalive, deprecated)
        check_limiter("thread_limiter", thread_limiter)
        # The rest: sse_response checks them under these same names.

        async def follow(last_id: str | None) -> AsyncIterator[ServerSentEvent]:
            if producer is not None:
                await self.start(key, producer, thread_limiter=thread_limiter)
            async for entry_id, fields in self.entries(key, last_id):
                event = fields.get(b"event", b"").decode() or None
                yield ServerSentEvent(data=fields[b"data"].decode(), event=event, id=entry_id)

        return sse_response(
            follow,
            keepalive=keepalive,
            retry=retry,
            send_timeout=send_timeout,
            idle_timeout=idle_timeout,
            headers=headers,
            request=request,
        )

    def llm_response(
        self,
        key: str,
        *,
        source: LLMSource | Callable[[], LLMSource] | None = None,
        format: Literal["sse", "ui"] = "sse",
        on_complete: OnComplete | None = None,
        keepalive: float | None = KEEPALIVE,
        retry: int | None = None,
        send_timeout: float | None = SEND_TIMEOUT,
        idle_timeout: float | None = LLM_IDLE_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        request: Request | None = None,
        thread_limiter: anyio.CapacityLimiter | None = None,
        **deprecated: Unpack[OldKeepalive],
    ) -> StreamResponse:
        """Serve an LLM answer stored under ``key`` in the ``sse`` or ``ui`` format.

        ``source`` (anything ``llm_stream`` accepts) is started once, in the background, if
        the stream does not exist yet. ``sse`` resumes after ``Last-Event-ID``; ``ui``
        replays the whole answer, which is how the AI SDK resumes a stream. ``retry`` (ms,
        ``sse`` only) tells ``EventSource`` how soon to reconnect. On server shutdown the
        body ends (``sse``: after a ``shutdown`` event), so clients reconnect to another
        worker and resume; the answer keeps being produced wherever its producer runs.
        ``idle_timeout`` ends this reader when no part of the answer arrived for that long.
        The other options are those of ``llm_stream``.
        """
        non_empty_str("key", key)
        if source is not None:
            _check_producer(source, llm=True, name="source")
        one_of("format", format, ("sse", "ui"))
        check_callable("on_complete", on_complete, arguments=1)
        keepalive = keepalive_argument("ResumableStreams.llm_response", keepalive, deprecated)
        if retry is not None:
            ServerSentEvent(retry=retry)  # validates with the field's name in the message
        optional_positive_seconds("send_timeout", send_timeout)
        optional_positive_seconds("idle_timeout", idle_timeout)
        check_headers("headers", headers)
        check_request("request", request)
        check_limiter("thread_limiter", thread_limiter)
        spec = FORMATS[format]
        encoder = spec.make_encoder(None)
        producer = (
            None
            if source is None
            else _LazyLLMEvents(source, on_complete=on_complete, thread_limiter=thread_limiter)
        )

        return format_response(
            _OpenFrames(self, key, producer, encoder, with_ids=format == "sse"),
            spec,
            encoder,
            encode=_pass_frames,
            keepalive=keepalive,
            send_timeout=send_timeout,
            idle_timeout=idle_timeout,
            headers=headers,
            request=request,
            preamble=sse_frame(retry=retry) if retry is not None else b"",
            shutdown_frame=SHUTDOWN_EVENT.encode() if format == "sse" else b"",
        )

    async def _llm_frames(
        self, key: str, producer: Any, encoder: Any, after: str | None, *, with_ids: bool
    ) -> AsyncIterator[bytes]:
        if producer is not None:
            await self.start(key, producer, llm=True)  # its thread limiter is its own
        async for entry_id, fields in self.entries(key, after):
            frame: bytes = encoder.encode(_decode_llm_event(fields[b"v"]))
            yield with_id(frame, entry_id) if with_ids else frame


def _stored_error(fields: dict[bytes, bytes]) -> StreamError:
    """The producer's error as it recorded it: status, type, message, ``Retry-After``."""
    retry_after = fields.get(b"retry_after")
    status = fields.get(b"status", b"")
    code = fields.get(b"code")
    return StreamError(
        fields.get(b"message", b"").decode(),
        # An entry written by an older version may lack a status, or hold another one.
        status_code=int(status) if status.isdigit() and 400 <= int(status) <= 599 else 502,
        type=fields.get(b"type", b"upstream_error").decode() or "upstream_error",
        headers={"Retry-After": retry_after.decode()} if retry_after else None,
        code=code.decode() if code else None,
    )


def _pass_frames(frame: bytes) -> bytes:
    return frame  # already encoded by the format's encoder, with its id


def _error_fields(
    kind: str, message: str, status_code: int, headers: Any = None, code: str | None = None
) -> dict[bytes, bytes]:
    fields = {
        b"k": _ERROR,
        b"type": kind.encode(),
        b"message": message.encode(),
        b"status": str(status_code).encode(),
    }
    if code is not None:
        fields[b"code"] = code.encode()
    retry_after = (headers or {}).get("Retry-After")
    if retry_after:
        fields[b"retry_after"] = str(retry_after).encode()
    return fields


async def _entries(
    producer: Any, llm: bool, thread_limiter: anyio.CapacityLimiter | None
) -> AsyncIterator[dict[bytes, bytes]]:
    """The producer's items as Redis Stream fields."""
    items: AsyncIterable[Any]
    if isinstance(producer, AsyncIterable):
        items = producer
    elif isinstance(producer, Iterable):
        items = iterate_in_thread(producer, thread_limiter=thread_limiter)
    else:
        raise TypeError(f"a producer must be an (async) iterable, got {type(producer).__name__}")
    async for item in items:
        if llm:
            yield {b"k": _LLM, b"v": _encode_llm_event(item)}
        else:
            yield _sse_fields(item)


def _sse_fields(item: Any) -> dict[bytes, bytes]:
    """Keep the text ``sse_frame`` would send as ``data`` and the event name.

    The item's own ``id`` is replaced by the Redis entry id, which is what makes resuming
    exact.
    """
    if isinstance(item, ServerSentEvent):
        data, event = item.data, item.event
    elif isinstance(item, dict):
        encode_event(item)  # validates the field names
        data, event = item.get("data"), item.get("event")
    else:
        data, event = item, None
    fields = {b"k": _EVENT, b"data": data_text(data).encode()}
    if event:
        fields[b"event"] = event.encode()
    return fields


def _encode_llm_event(event: LLMEvent) -> bytes:
    if type(event) is TextDelta:
        record: dict[str, Any] = {"t": "text", "x": event.text}
    elif type(event) is ReasoningDelta:
        record = {"t": "reasoning", "x": event.text}
    elif type(event) is ToolCallDelta:
        record = {
            "t": "tool",
            "i": event.index,
            "id": event.id,
            "n": event.name,
            "a": event.arguments,
        }
    else:
        assert type(event) is Finish
        record = {"t": "finish", "r": event.finish_reason, "u": event.usage}
    return compact_json(record).encode()


def _decode_llm_event(raw: bytes) -> LLMEvent:
    record = json.loads(raw)
    kind = record["t"]
    if kind == "text":
        return TextDelta(record["x"])
    if kind == "reasoning":
        return ReasoningDelta(record["x"])
    if kind == "tool":
        return ToolCallDelta(record["i"], record["id"], record["n"], record["a"])
    return Finish(record["r"], record["u"])


class _OpenFrames:
    """Opens a resumable LLM stream's frames when the response starts; on a ``HEAD``, which
    never starts it, ``close()`` closes the source the caller gave (no request, no warning)."""

    def __init__(
        self,
        streams: ResumableStreams,
        key: str,
        producer: Any,
        encoder: Any,
        *,
        with_ids: bool,
    ) -> None:
        self._streams, self._key, self._producer = streams, key, producer
        self._encoder, self._with_ids = encoder, with_ids

    def __call__(self, scope: Scope) -> AsyncIterator[bytes]:
        after = last_event_id(scope) if self._with_ids else None
        return self._streams._llm_frames(
            self._key, self._producer, self._encoder, after, with_ids=self._with_ids
        )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()


class _LazyLLMEvents:
    """``llm_stream`` events, made only when the stream really starts.

    ``source`` may be a zero-argument function returning the source, so that the model is
    not even called when the stream already exists.
    """

    def __init__(
        self,
        source: Any,
        *,
        on_complete: OnComplete | None,
        thread_limiter: anyio.CapacityLimiter | None,
    ) -> None:
        self.source = source
        self.on_complete = on_complete
        self.thread_limiter = thread_limiter

    def __aiter__(self) -> AsyncIterator[LLMEvent]:
        source = self.source
        if callable(source) and not isinstance(source, AsyncIterable | Iterable):
            source = source()
        events = llm_events(
            source, on_complete=self.on_complete, thread_limiter=self.thread_limiter
        )
        return aiter(events)

    def close(self) -> None:
        _close_quietly(self.source)


def _close_quietly(producer: Any) -> None:
    if inspect.iscoroutine(producer):
        producer.close()  # never awaited: the stream existed already
        return
    close = getattr(producer, "close", None)
    if close is not None and not hasattr(producer, "aclose"):
        try:
            close()
        except Exception:
            logger.debug("closing an unused producer failed", exc_info=True)

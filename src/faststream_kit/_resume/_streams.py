"""``ResumableStreams``: produce once on any worker, read from every worker, resume exactly.

A stream is a Redis Stream named after a key the app chooses. The producer runs exactly once,
in a task of the :class:`ResumableStreams` task group (not in the request that started it);
the worker's shared writer appends its events in batches (``_writer.py``), then its end or
error marker. A reader on any worker replays the entries after its ``Last-Event-ID`` in large
reads, then follows live through the worker's shared reads (``_follow.py``).

Every key has a TTL from the moment it exists. A producer keeps an owner key alive with a
heartbeat; when the owner key expires without an end marker, the readers' worker records
``producer_lost`` in the stream, so every reader ends with that error.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Unpack

import anyio
from starlette.requests import Request
from starlette.types import Scope

from .._errors import StreamError, library_error, report_error
from .._llm import (
    FORMATS,
    LLMEvent,
    LLMSource,
    OnComplete,
    check_source,
    format_response,
    llm_events,
    run_ids_for,
)
from .._names import KEEPALIVE, LLM_IDLE_TIMEOUT, SEND_TIMEOUT, OldKeepalive, keepalive_argument
from .._response import StreamResponse
from .._sse import PING_FRAME, ServerSentEvent, sse_frame, with_id, with_trusted_id
from .._sse_response import SHUTDOWN_EVENT, Events, last_event_id
from .._threads import iterate_in_thread
from .._validate import (
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
    optional_positive_int,
    optional_positive_seconds,
    positive_seconds,
    stream_source,
)
from ._follow import Follower
from ._keys import EntryId, StreamKeys, format_id, parse_id, resume_after, stream_keys
from ._records import (
    END,
    ERROR,
    LLM,
    SSE,
    decode_llm_event,
    encode_llm_event,
    error_fields,
    events_after,
    split_events,
    sse_event_frame,
    stored_error,
)
from ._writer import BatchWriter, WriteFailed

__all__ = ["ResumableStreams"]

logger = logging.getLogger("faststream_kit")

REPLAY_ENTRIES = 128
"""Entries per replay read (each a batch of up to 512 events)."""

COMMAND_CONNECTIONS = 48
"""Commands of this worker's producers and readers in flight at once, besides the shared
writer and reads: redis-py's async pool raises "Too many connections" past its limit (100 by
default) instead of waiting, so a burst of new streams must queue here, not fail there."""

SHUTDOWN_MARKER_SECONDS = 5.0
"""How long leaving the context waits for the producers it stops to record their end."""

# KEYS: events, owner. ARGV: owner token, owner TTL (ms), events TTL (s).
# Returns the start entry's id if this call claimed the stream, else nil.
_CLAIM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local id = redis.call('XADD', KEYS[1], '*', 'k', 'start')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return id
"""

# KEYS: events. Returns nil when the stream does not exist, else the id of the last entry its
# producer trimmed (max_events; "0-0" when none was, or on Redis < 7, which has no
# max-deleted-entry-id). Sent right after a replay's XREAD, in the same round trip: the mark
# only grows, so one that is not past the cursor now was not when the XREAD ran, and the
# entries read have no gap.
_TRIMMED_SCRIPT = """
local info = redis.pcall('XINFO', 'STREAM', KEYS[1])
if type(info) ~= 'table' or info.err then return false end
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then return info[i + 1] end
end
return '0-0'
"""

TRIMMED_MESSAGE = (
    "the stream no longer keeps the events after this Last-Event-ID (it keeps its most "
    "recent events only): read it again from the start"
)

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


def _unavailable() -> StreamError:
    return library_error("unavailable", "the stream store (Redis) is unavailable")


class _Producer:
    """A running producer: its cancel scope and, once stopped, why."""

    __slots__ = ("scope", "stopped_because")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.stopped_because: StreamError | None = None

    def stop(self, because: StreamError) -> None:
        if self.stopped_because is None:
            self.stopped_because = because
        self.scope.cancel()


class ResumableStreams:
    """Streams that survive dropped connections, worker restarts and load balancers.

    Use it as an async context manager for the life of the app (its task group runs the
    producers, the worker's shared writer and its shared reads):

    ```python
    @asynccontextmanager
    async def lifespan(app):
        async with ResumableStreams(redis.asyncio.Redis()) as streams:
            app.state.streams = streams
            yield
    ```

    ``redis`` is a ``redis.asyncio.Redis`` or ``RedisCluster`` client (without
    ``decode_responses``). ``ttl_seconds`` is how long a stream stays resumable after its
    last event; ``heartbeat_seconds`` how often a producer proves it is alive (readers get
    ``producer_lost`` within three heartbeats of its process dying); ``shutdown_grace_seconds``
    how long leaving the context waits for running producers before stopping them, each with
    a ``cancelled`` error its readers see. ``max_events`` (default: no limit) bounds each
    stream this worker produces to about its most recent ``max_events`` events (Redis drops
    older ones as new ones come); a reader resuming from before them gets a 410 ``gone``.
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "faststream-kit:",
        ttl_seconds: float = 3600.0,
        heartbeat_seconds: float = 2.0,
        shutdown_grace_seconds: float = 30.0,
        max_events: int | None = None,
    ) -> None:
        check_str("prefix", prefix)
        positive_seconds("ttl_seconds", ttl_seconds)
        positive_seconds("heartbeat_seconds", heartbeat_seconds)
        non_negative_seconds("shutdown_grace_seconds", shutdown_grace_seconds)
        optional_positive_int("max_events", max_events)
        _check_redis(redis)
        self.redis = redis
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.max_events = max_events
        self._idle = anyio.Event()  # no producer running in this process
        self._idle.set()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._local: dict[str, _Producer] = {}
        self._local_events: set[bytes] = set()  # the events keys of self._local
        self._token = secrets.token_hex(8)
        self._writer = BatchWriter(redis, self._ttl(), heartbeat_seconds, max_events)
        self._follower: Follower | None = None
        self._connections = asyncio.Semaphore(COMMAND_CONNECTIONS)

    async def __aenter__(self) -> ResumableStreams:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._writer.run)
        self._task_group.start_soon(self._writer.heartbeat)
        self._follower = Follower(
            self.redis,
            prefix=self.prefix,
            token=self._token,
            heartbeat_seconds=self.heartbeat_seconds,
            spawn=self._task_group.start_soon,
            produced_here=self._local_events,
        )
        self._writer.written = self._follower.written_here
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        # Let running answers finish (their readers may already be reconnecting elsewhere),
        # then stop what is left: each records a "cancelled" error for its readers, through
        # the shared writer, which is stopped only after that.
        with anyio.move_on_after(self.shutdown_grace_seconds):
            await self._idle.wait()
        shutdown = library_error("cancelled", "the server shut down before the stream finished")
        for producer in list(self._local.values()):
            producer.stop(shutdown)
        with anyio.move_on_after(SHUTDOWN_MARKER_SECONDS):
            await self._idle.wait()
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._task_group = None
            self._follower = None
            self._writer.written = None

    def _keys(self, key: str) -> StreamKeys:
        return stream_keys(self.prefix, key)

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
            producer = _LazyLLMEvents(
                producer, on_complete=None, thread_limiter=thread_limiter, idle_timeout=None
            )
        keys = self._keys(key)
        try:
            # One atomic step, so no reader on another worker can see an owner without
            # events (a 404) or two workers both start the producer.
            async with self._connections:
                started = await self.redis.eval(
                    _CLAIM_SCRIPT, 2, keys.events, keys.owner, self._token, self._writer.owner_ms,
                    self._ttl(),
                )  # fmt: skip
        except Exception as exc:
            raise _unavailable() from exc
        if not started:
            _close_quietly(producer)
            return False
        running = _Producer()
        self._local[key] = running
        self._local_events.add(keys.events)
        if self._idle.is_set():
            self._idle = anyio.Event()
        writer = self._writer.open(
            keys,
            LLM if llm else SSE,
            parse_id(started),
            lambda: running.stop(library_error("cancelled", "the stream was cancelled")),
        )
        self._task_group.start_soon(self._produce, key, producer, running, writer, thread_limiter)
        return True

    async def cancel(self, key: str) -> None:
        """Stop the producer of ``key``, on whichever worker runs it."""
        non_empty_str("key", key)
        keys = self._keys(key)
        async with self._connections:
            await self.redis.set(keys.cancel, b"1", ex=self._ttl())
        running = self._local.get(key)
        if running is not None:
            running.stop(library_error("cancelled", "the stream was cancelled"))

    def _ttl(self) -> int:
        return max(1, round(self.ttl_seconds))

    async def _produce(
        self,
        key: str,
        producer: Any,
        running: _Producer,
        writer: Any,
        thread_limiter: anyio.CapacityLimiter | None,
    ) -> None:
        final: Mapping[bytes, bytes] = {b"k": END}
        failure: Exception | None = None
        try:
            with running.scope:
                async with anyio.create_task_group() as watchers:
                    idle_timeout = getattr(producer, "idle_timeout", None)
                    if idle_timeout is not None:
                        watchers.start_soon(_watch_idle, writer, running, idle_timeout)
                    try:
                        await _write_items(producer, writer, thread_limiter)
                    except Exception as exc:
                        failure = exc  # handled below, outside the group, unwrapped
                    finally:
                        watchers.cancel_scope.cancel()
            if isinstance(failure, WriteFailed):
                logger.warning("resumable stream %r lost Redis: %s", key, failure)
                return
            if running.stopped_because is not None:
                failure = running.stopped_because
            if failure is not None:
                if not isinstance(failure, StreamError):
                    logger.error("resumable stream %r failed", key, exc_info=failure)
                report = report_error(failure)
                final = error_fields(
                    report.type, report.message, report.status_code, report.headers, report.code
                )
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_MARKER_SECONDS):
                try:
                    await writer.finish(final)
                except WriteFailed as exc:
                    logger.warning("resumable stream %r could not record its end: %s", key, exc)
        finally:
            self._writer.close(writer)
            self._local.pop(key, None)
            self._local_events.discard(writer.keys.events)
            if self._follower is not None:
                self._follower.producer_gone(writer.keys)
            if not self._local:
                self._idle.set()

    # Reading -----------------------------------------------------------------------------

    async def _batches(
        self, keys: StreamKeys, cursor: EntryId, *, whole: bool = False
    ) -> AsyncIterator[list[tuple[EntryId, dict[bytes, bytes]]]]:
        """Every entry after ``cursor``, a list at a time (what one read or one wake
        brought): replayed in large reads, then followed live through the worker's shared
        read. 404 before anything if the stream does not exist; 410 if its producer trimmed
        events after ``cursor`` (``whole``: any event)."""
        follower = self._follower
        if follower is None:
            raise RuntimeError("use ResumableStreams as an async context manager (app lifespan)")
        cursor_box = [cursor]
        async for batch in self._replay(keys, cursor_box, must_exist=True, whole=whole):
            yield batch
        while True:
            subscription, ahead = follower.subscribe(keys, format_id(cursor_box[0]).encode())
            try:
                if ahead is not None:
                    # The shared read is past us: read up to it ourselves, subscribed, so
                    # nothing after it is missed.
                    async for batch in self._replay(keys, cursor_box):
                        yield batch
                while True:
                    # The per-event path: a bare future, no coroutine frame in between.
                    while (waiter := subscription.waiter()) is not None:
                        await waiter
                    try:
                        live = subscription.take_now()
                    except StreamError:
                        raise
                    except Exception as exc:
                        raise _unavailable() from exc
                    if live is None:
                        break  # fell too far behind: replay from Redis, then follow again
                    # The shared read and this worker's writer may both hand on an entry
                    # (a read in flight when the write came back): keep each once, in order.
                    cursor = cursor_box[0]
                    if len(live) == 1:
                        if live[0][0] <= cursor:
                            continue
                        cursor = live[0][0]
                    else:
                        fresh = []
                        for entry in live:
                            if entry[0] > cursor:
                                cursor = entry[0]
                                fresh.append(entry)
                        if not fresh:
                            continue
                        live = fresh
                    cursor_box[0] = cursor
                    yield live
            finally:
                follower.unsubscribe(keys, subscription)
            async for batch in self._replay(keys, cursor_box):
                yield batch

    async def _replay(
        self,
        keys: StreamKeys,
        cursor_box: list[EntryId],
        *,
        must_exist: bool = False,
        whole: bool = False,
    ) -> AsyncIterator[list[tuple[EntryId, dict[bytes, bytes]]]]:
        """Reads from ``cursor_box[0]`` on, until one comes back short (one list a read).

        A reader resuming from an event id (or, ``whole``, from the start) must not skip the
        events the producer trimmed (``max_events``) after it: that is a 410 ``gone``, before
        the response starts or, when the producer trims past a slow replay, as its error
        event. A new reader (no ``Last-Event-ID``) starts after the last trimmed entry, not
        at whatever older entries Redis still holds ("~" trims whole nodes): so every event
        it gets is one it can resume from.
        """
        while True:
            cursor = cursor_box[0]
            try:
                async with self._connections, self.redis.pipeline(transaction=False) as pipe:
                    pipe.xread({keys.events: format_id(cursor)}, count=REPLAY_ENTRIES)
                    pipe.eval(_TRIMMED_SCRIPT, 1, keys.events)
                    result, trimmed = await pipe.execute()
            except Exception as exc:
                raise _unavailable() from exc
            if trimmed is None:
                if must_exist:
                    raise library_error("not_found", "no such resumable stream")
                return  # expired meanwhile
            must_exist = False
            entries = result[0][1] if result else []
            floor = parse_id(trimmed)
            if floor > cursor:
                if whole or cursor != (0, 0):
                    raise library_error("gone", TRIMMED_MESSAGE)
                cursor_box[0] = floor
            batch = []
            for raw_id, fields in entries:
                entry_id = parse_id(raw_id)
                if entry_id > cursor_box[0]:
                    cursor_box[0] = entry_id
                    batch.append((entry_id, fields))
            if batch:
                yield batch
            if len(entries) < REPLAY_ENTRIES:
                return

    async def _payload_batches(
        self, key: str, after: EntryId, *, whole: bool = False
    ) -> AsyncIterator[list[tuple[EntryId, dict[bytes, bytes], bytes]]]:
        """The stream's batches of events after ``after``, each ``(entry id, fields,
        payload)``, a list at a time; ends after the end marker, raises the producer's error
        (after the events before it)."""
        resuming = after != (0, 0)  # the first entry may hold events up to ``after``
        async for batch in self._batches(self._keys(key), after, whole=whole):
            payloads = []
            for entry_id, fields in batch:
                kind = fields.get(b"k")
                if kind in (SSE, LLM):
                    if resuming:
                        resuming = False
                        payloads.append((entry_id, fields, events_after(fields, entry_id, after)))
                    else:
                        payloads.append((entry_id, fields, fields[b"d"]))
                elif kind in (END, ERROR):
                    if payloads:
                        yield payloads
                    if kind == ERROR:
                        raise stored_error(fields)
                    return
                else:
                    resuming = False  # START and unknown kinds carry no events
            if payloads:
                yield payloads

    async def entries(self, key: str, after: str | None = None) -> AsyncIterator[tuple[str, bytes]]:
        """Replay the events after ``after`` (an event id), then follow live until the end.

        Yields ``(event id, event)``: the event's SSE frame (``id`` line included) for a
        stream of ``sse_response`` events, or its JSON record for an LLM answer. Raises
        :class:`StreamError`: 404 for an unknown key (before anything is read), 400 for an
        ``after`` that is no event id, the producer's error after its events, 503 when Redis
        fails.
        """
        non_empty_str("key", key)
        check_str("after", after, optional=True)
        async for batch in self._payload_batches(key, resume_after(after)):
            for (milliseconds, last), fields, payload in batch:
                events = split_events(fields, payload)
                for offset, event in enumerate(events, start=last - len(events) + 1):
                    yield format_id((milliseconds, offset)), event

    async def _sse_frames(
        self,
        key: str,
        producer: Events | None,
        thread_limiter: anyio.CapacityLimiter | None,
        after: str | None,
    ) -> AsyncIterator[bytes]:
        cursor = resume_after(after)
        if producer is not None:
            await self.start(key, producer, thread_limiter=thread_limiter)
        async for batch in self._payload_batches(key, cursor):
            # The stored frames, ids included: nothing to encode.
            yield batch[0][2] if len(batch) == 1 else b"".join(entry[2] for entry in batch)

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
        the stream's own (``<ms>-<seq>``). A ``Last-Event-ID`` that is no such id is a 400.
        The other options are those of ``sse_response``.
        """
        non_empty_str("key", key)
        if producer is not None:
            _check_producer(producer, llm=False)
        keepalive = keepalive_argument("ResumableStreams.sse_response", keepalive, deprecated)
        if retry is not None:
            ServerSentEvent(retry=retry)  # validates with the field's name in the message
        optional_positive_seconds("send_timeout", send_timeout)
        optional_positive_seconds("idle_timeout", idle_timeout)
        check_headers("headers", headers)
        check_request("request", request)
        check_limiter("thread_limiter", thread_limiter)

        return StreamResponse(
            _OpenStream(
                lambda after: self._sse_frames(key, producer, thread_limiter, after),
                producer,
                with_ids=True,
            ),
            media_type="text/event-stream",
            headers=headers,
            keepalive=keepalive,
            keepalive_frame=PING_FRAME,
            send_timeout=send_timeout,
            idle_timeout=idle_timeout,
            encode=_pass_frames,
            preamble=sse_frame(retry=retry) if retry is not None else b"",
            shutdown_frame=SHUTDOWN_EVENT.encode(),
            request=request,
        )

    def llm_response(
        self,
        key: str,
        *,
        source: LLMSource | Callable[[], LLMSource] | None = None,
        format: Literal["sse", "ui", "ag-ui"] = "sse",
        on_complete: OnComplete | None = None,
        keepalive: float | None = KEEPALIVE,
        retry: int | None = None,
        send_timeout: float | None = SEND_TIMEOUT,
        idle_timeout: float | None = LLM_IDLE_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        request: Request | None = None,
        thread_limiter: anyio.CapacityLimiter | None = None,
        thread_id: str | None = None,
        run_id: str | None = None,
        **deprecated: Unpack[OldKeepalive],
    ) -> StreamResponse:
        """Serve an LLM answer stored under ``key`` in the ``sse``, ``ui`` or ``ag-ui`` format.

        ``source`` (anything ``llm_stream`` accepts) is started once, in the background, if
        the stream does not exist yet. ``sse`` resumes after ``Last-Event-ID``; ``ui``
        replays the whole answer, which is how the AI SDK resumes a stream; so does ``ag-ui``
        (one run, ``thread_id`` and ``run_id`` as for ``llm_stream``). ``retry`` (ms,
        ``sse`` only) tells ``EventSource`` how soon to reconnect. On server shutdown the
        body ends (``sse``: after a ``shutdown`` event), so clients reconnect to another
        worker and resume; the answer keeps being produced wherever its producer runs.
        ``idle_timeout`` stops the producer when the model sends nothing for that long: the
        answer then ends with a ``timeout`` error for every reader. The other options are
        those of ``llm_stream``.
        """
        non_empty_str("key", key)
        if source is not None:
            _check_producer(source, llm=True, name="source")
        one_of("format", format, ("sse", "ui", "ag-ui"))
        run_ids = run_ids_for(format, thread_id=thread_id, run_id=run_id)
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
        encoder = spec.make_encoder(None, **run_ids)
        producer = (
            None
            if source is None
            else _LazyLLMEvents(
                source,
                on_complete=on_complete,
                thread_limiter=thread_limiter,
                idle_timeout=idle_timeout,
            )
        )
        with_ids = format == "sse"

        return format_response(
            _OpenStream(
                lambda after: self._llm_frames(key, producer, encoder, after, with_ids=with_ids),
                producer,
                with_ids=with_ids,
            ),
            spec,
            encoder,
            encode=_pass_frames,
            keepalive=keepalive,
            send_timeout=send_timeout,
            # The producer enforces idle_timeout (for every reader, recorded in the stream);
            # a reader also gives up on its own if the stream stays silent a little longer.
            idle_timeout=None if idle_timeout is None else idle_timeout + self.heartbeat_seconds,
            headers=headers,
            request=request,
            preamble=sse_frame(retry=retry) if retry is not None else b"",
            shutdown_frame=SHUTDOWN_EVENT.encode() if with_ids else b"",
        )

    async def _llm_frames(
        self, key: str, producer: Any, encoder: Any, after: str | None, *, with_ids: bool
    ) -> AsyncIterator[bytes]:
        cursor = resume_after(after) if with_ids else (0, 0)
        if producer is not None:
            await self.start(key, producer, llm=True)  # its thread limiter is its own
        # ui and ag-ui replay the whole answer: one that lost its first events is gone too.
        whole = not with_ids
        async for batch in self._payload_batches(key, cursor, whole=whole):
            frames = []
            for (milliseconds, last), fields, payload in batch:
                records = split_events(fields, payload)
                for sequence, record in enumerate(records, start=last - len(records) + 1):
                    frame: bytes = encoder.encode(decode_llm_event(record))
                    if with_ids:
                        frame = with_id(frame, f"{milliseconds}-{sequence}")
                    frames.append(frame)
            yield b"".join(frames)


async def _write_items(
    producer: Any, writer: Any, thread_limiter: anyio.CapacityLimiter | None
) -> None:
    """Append the producer's items to its writer; wait only when too many are unwritten."""
    items: AsyncIterable[Any]
    if isinstance(producer, AsyncIterable):
        items = producer
    elif isinstance(producer, Iterable):
        items = iterate_in_thread(producer, thread_limiter=thread_limiter)
    else:
        raise TypeError(f"a producer must be an (async) iterable, got {type(producer).__name__}")
    llm = isinstance(producer, _LazyLLMEvents)
    next_id, append = writer.next_id, writer.append
    iterator = aiter(items)
    try:
        async for item in iterator:
            if llm:
                writer.last_item = time.monotonic()
                payload = encode_llm_event(item)
                next_id()
            else:
                payload = with_trusted_id(sse_event_frame(item), next_id())
            append(payload)
            if writer.backlogged:
                await writer.drained()
    finally:
        # Stopped (cancel, idle timeout, shutdown) or done: close the source now, so the
        # model stops generating, even inside a cancelled scope.
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_MARKER_SECONDS):
                await aclose()


async def _watch_idle(writer: Any, running: _Producer, idle_timeout: float) -> None:
    """Stop a producer whose source has been silent for ``idle_timeout`` seconds."""
    writer.last_item = time.monotonic()
    while True:
        remaining = writer.last_item + idle_timeout - time.monotonic()
        if remaining <= 0:
            running.stop(library_error("timeout", f"the model sent nothing for {idle_timeout:g} s"))
            return
        await anyio.sleep(remaining)


def _pass_frames(frame: bytes) -> bytes:
    return frame  # already encoded, ids included


class _OpenStream:
    """Opens a resumable stream's frames when the response starts; on a ``HEAD``, which
    never starts it, ``close()`` closes the source the caller gave (no request, no warning)."""

    def __init__(
        self, open_frames: Callable[[str | None], AsyncIterator[bytes]], producer: Any, *,
        with_ids: bool,
    ) -> None:  # fmt: skip
        self._open_frames, self._producer, self._with_ids = open_frames, producer, with_ids

    def __call__(self, scope: Scope) -> AsyncIterator[bytes]:
        return self._open_frames(last_event_id(scope) if self._with_ids else None)

    def close(self) -> None:
        if self._producer is not None:
            _close_quietly(self._producer)


class _LazyLLMEvents:
    """``llm_stream`` events, made only when the stream really starts.

    ``source`` may be a zero-argument function returning the source, so that the model is
    not even called when the stream already exists. ``idle_timeout`` is enforced by the
    producer that iterates it.
    """

    def __init__(
        self,
        source: Any,
        *,
        on_complete: OnComplete | None,
        thread_limiter: anyio.CapacityLimiter | None,
        idle_timeout: float | None,
    ) -> None:
        self.source = source
        self.on_complete = on_complete
        self.thread_limiter = thread_limiter
        self.idle_timeout = idle_timeout

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
    if isinstance(producer, _LazyLLMEvents):
        producer = producer.source
    if inspect.iscoroutine(producer):
        producer.close()  # never awaited: the stream existed already
        return
    close = getattr(producer, "close", None)
    if close is not None and not hasattr(producer, "aclose"):
        try:
            close()
        except Exception:
            logger.debug("closing an unused producer failed", exc_info=True)

"""The producers' side: one shared writer per worker, batching every stream's new events.

A producer appends its events to its :class:`StreamWriter` without waiting. The
:class:`BatchWriter` task sends what every producer has queued in one pipelined round trip
(one script call per bucket, which adds one entry per stream), and while that round trip is in
flight the next events queue up: a slow producer's event goes out at once, a fast producer's
events go out together, and no timer ever holds an event back.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ._keys import EntryId, StreamKeys, format_id

__all__ = ["BatchWriter", "StreamWriter", "WriteFailed"]

ACTIVITY_ENTRIES = 2_000
"""How much history a bucket's activity stream keeps (a worker reads it as it comes)."""

INLINE_BYTES = 2048
"""An entry up to this size is copied into the activity stream too."""

ROUNDS_IN_FLIGHT = 4
"""Round trips of the shared writer at once (each on its own pooled connection)."""

MAX_EVENTS_PER_ENTRY = 1024
"""A batch larger than this becomes several entries, so one entry stays a few KiB to a MiB."""

BACKLOG_EVENTS = 8192
"""A producer with this many events not yet written waits for the writer (backpressure)."""

# KEYS: events and owner key of each stream, then the activity streams of their buckets (one
# call per bucket on a cluster, where a script stays in one slot; one for every bucket on a
# single server: a round is one command, however many buckets it writes to).
# ARGV: the owner TTL (ms), the activity stream's TTL (s), then the entries in one string (one
# argument, not six per entry: packing arguments is what a round trip costs redis-py), then
# how many activity streams KEYS ends with. Per entry: the index of its events key in KEYS,
# the position of its bucket's activity stream among those, the id of the stream's entry
# before it, its id, kind, trim point, last trimmed id, event count and payload,
# length-prefixed (see _pack_entry). A write renews the owner key (a busy producer is alive).
# NOMKSTREAM: a stream that expired is not brought back without a TTL. With a trim point
# (max_events), the XADD also drops whole nodes of entries before it (MINID ~, cheap), and
# the last trimmed id is recorded as the stream's max-deleted-entry-id (XSETID, Redis 7),
# which readers compare to their Last-Event-ID: the window is the same whatever "~" happened
# to keep. One activity entry says what was written: per entry "key LF previous id LF id LF
# kind LF count LF" then "1" and the payload when it is small (a worker following the stream
# from the previous id needs no read of its own), else "0". Returns the failed entries as
# {index, error} pairs.
_APPEND_SCRIPT = """
local failed = {}
local activities = {}
local data = ARGV[3]
local base = #KEYS - tonumber(ARGV[4])
local pos = 1
while pos <= #data do
  local index, bucket, plen, ilen, klen, mlen, tlen, count, dlen
  index, bucket, plen, ilen, klen, mlen, tlen, count, dlen, pos =
    struct.unpack('>I2I2I1I1I1I1I1I4I4', data, pos)
  local previous = string.sub(data, pos, pos + plen - 1)
  pos = pos + plen
  local id = string.sub(data, pos, pos + ilen - 1)
  pos = pos + ilen
  local kind = string.sub(data, pos, pos + klen - 1)
  pos = pos + klen
  local minid = string.sub(data, pos, pos + mlen - 1)
  pos = pos + mlen
  local trimmed = string.sub(data, pos, pos + tlen - 1)
  pos = pos + tlen
  local payload = string.sub(data, pos, pos + dlen - 1)
  pos = pos + dlen
  local r
  if mlen > 0 then
    r = redis.pcall('XADD', KEYS[index], 'NOMKSTREAM', 'MINID', '~', minid, id,
                    'k', kind, 'n', tostring(count), 'd', payload)
  else
    r = redis.pcall('XADD', KEYS[index], 'NOMKSTREAM', id,
                    'k', kind, 'n', tostring(count), 'd', payload)
  end
  if tlen > 0 and type(r) == 'string' then
    redis.pcall('XSETID', KEYS[index], id, 'MAXDELETEDID', trimmed)
  end
  if type(r) == 'table' and r.err then
    table.insert(failed, index); table.insert(failed, r.err)
  elseif not r then
    table.insert(failed, index); table.insert(failed, 'the stream expired')
  else
    redis.call('PEXPIRE', KEYS[index + 1], ARGV[1])
    local inline = '0'
    if dlen <= INLINE_BYTES then inline = '1' .. payload end
    local activity = activities[bucket]
    if not activity then
      activity = {}
      activities[bucket] = activity
    end
    table.insert(activity, tostring(#activity / 2))
    table.insert(activity, table.concat({KEYS[index], previous, id, kind, tostring(count),
                                         inline}, '\\n'))
  end
end
for bucket, activity in pairs(activities) do
  redis.call('XADD', KEYS[base + bucket], 'MAXLEN', '~', 'ACTIVITY_ENTRIES', '*',
             unpack(activity))
  redis.call('EXPIRE', KEYS[base + bucket], ARGV[2])
end
return failed
""".replace("INLINE_BYTES", str(INLINE_BYTES)).replace("ACTIVITY_ENTRIES", str(ACTIVITY_ENTRIES))

_APPEND_SHA = hashlib.sha1(_APPEND_SCRIPT.encode()).hexdigest()
"""Rounds send the script's SHA1 (``EVALSHA``), not its 2 KiB text per bucket per round: a
Redis that does not know it (restarted, flushed, a new cluster node) gets ``EVAL`` once."""

# KEYS: events, owner and cancel key of each live stream of one bucket. ARGV: owner TTL (ms),
# events TTL (s). Returns the (1-based) positions of the streams someone cancelled.
_HEARTBEAT_SCRIPT = """
local cancelled = {}
for i = 1, #KEYS, 3 do
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
  if redis.call('EXISTS', KEYS[i + 2]) == 1 then table.insert(cancelled, (i + 2) / 3) end
end
return cancelled
"""


class WriteFailed(Exception):
    """Redis refused or lost a write: the stream store failed, not the producer's source."""


class StreamWriter:
    """One producer's queue: events with their ids, waiting for the next round trip."""

    __slots__ = (
        "_drained",
        "_kept",
        "_kept_events",
        "_last",
        "_writer",
        "cancelled",
        "failure",
        "final",
        "in_flight",
        "keys",
        "kind",
        "last_item",
        "pending",
        "queued",
        "trimmed",
        "written",
    )

    def __init__(
        self,
        writer: BatchWriter,
        keys: StreamKeys,
        kind: bytes,
        last: EntryId,
        cancelled: Callable[[], object],
    ) -> None:
        self._writer = writer
        self.cancelled = cancelled  # called when the heartbeat finds the stream cancelled
        self.keys = keys
        self.kind = kind
        self._last = last
        self.pending: list[bytes] = []
        self.final: Mapping[bytes, bytes] | None = None
        self.queued = False
        self.in_flight = False  # in a round trip: its next entries wait for it (order)
        self.failure: BaseException | None = None
        self._drained: asyncio.Event | None = None
        self.last_item = 0.0  # monotonic time of the last event (for idle_timeout)
        self.written = format_id(last)  # the id of the last entry sent
        # With max_events: the entries in the window, (id, event count), oldest first, and
        # the id of the last entry dropped from it.
        self._kept: deque[tuple[str, int]] = deque()
        self._kept_events = 0
        self.trimmed: str | None = None

    def next_id(self) -> str:
        """The id of the event about to be appended.

        Ids only grow: ``<ms>-<seq>`` with ``ms`` this worker's clock (or the last id's, if
        the clock is behind Redis's or went back) and the events of one batch share ``ms``.
        """
        if self.failure is not None:
            raise WriteFailed(str(self.failure)) from self.failure
        milliseconds, sequence = self._last
        if not self.pending:
            now = time.time_ns() // 1_000_000
            if now > milliseconds:
                milliseconds, sequence = now, -1
        self._last = (milliseconds, sequence + 1)
        return format_id(self._last)

    def append(self, payload: bytes) -> None:
        """Queue one event (its id from :meth:`next_id`); it is written without waiting."""
        self.pending.append(payload)
        if not self.queued:
            self.queued = True
            self._writer.enqueue(self)

    @property
    def backlogged(self) -> bool:
        return len(self.pending) >= BACKLOG_EVENTS

    async def drained(self) -> None:
        """Wait until the queued events are written (or the writes failed)."""
        while self.pending and self.failure is None:
            if self._drained is None:
                self._drained = asyncio.Event()
            await self._drained.wait()
        if self.failure is not None:
            raise WriteFailed(str(self.failure)) from self.failure

    async def finish(self, final: Mapping[bytes, bytes]) -> None:
        """Write the queued events, then ``final`` (the end or error marker); wait for it."""
        self.final = dict(final)
        if not self.queued:
            self.queued = True
            self._writer.enqueue(self)
        while (self.final is not None or self.pending) and self.failure is None:
            if self._drained is None:
                self._drained = asyncio.Event()
            await self._drained.wait()
        if self.failure is not None:
            raise WriteFailed(str(self.failure)) from self.failure

    def take(self) -> tuple[list[tuple[str, str, int, bytes]], dict[bytes, bytes] | None]:
        """The entries to write now, ``(previous id, id, event count, payload)``, and the
        final marker (see :meth:`trim_point` for what the window lost meanwhile)."""
        events, self.pending = self.pending, []
        self.queued = False
        entries = []
        milliseconds, last = self._last
        end = len(events)
        # The events are numbered back from the last id: ids of one batch are consecutive.
        for start in range(0, end, MAX_EVENTS_PER_ENTRY):
            stop = min(end, start + MAX_EVENTS_PER_ENTRY)
            entry_id = f"{milliseconds}-{last - (end - stop)}"
            entries.append((self.written, entry_id, stop - start, b"".join(events[start:stop])))
            self.written = entry_id
        final = None
        if self.final is not None and entries:
            # The marker goes in the next round: in this one, the entries' script call may
            # come back NOSCRIPT (see _APPEND_SHA) after the marker, with its greater id, was
            # already written, and their XADD would then be refused.
            self.queued = True
            self._writer.enqueue(self)
        elif self.final is not None:
            final, self.final = dict(self.final), None
            final_id = (milliseconds, last + 1)
            self._last = final_id
            final[b"id"] = format_id(final_id).encode()
            self.written = format_id(final_id)
        return entries, final

    def trim_point(self, entries: list[tuple[str, str, int, bytes]], max_events: int) -> str:
        """Add ``entries`` to the window of the last ``max_events`` events; return the id of
        its oldest entry (the ``MINID``) and move :attr:`trimmed` to the entry before it."""
        kept = self._kept
        for _, entry_id, count, _ in entries:
            kept.append((entry_id, count))
            self._kept_events += count
        while self._kept_events - kept[0][1] >= max_events:
            self.trimmed, count = kept.popleft()
            self._kept_events -= count
        return kept[0][0]

    def done(self, failure: BaseException | None) -> None:
        if failure is not None and self.failure is None:
            self.failure = failure
        if self._drained is not None:
            self._drained.set()
            self._drained = None


class BatchWriter:
    """Writes every producer's queued events, one pipelined round trip at a time."""

    def __init__(
        self, redis: Any, ttl_seconds: int, heartbeat_seconds: float, max_events: int | None
    ) -> None:
        self.redis = redis
        self._cluster = callable(getattr(redis, "get_node_from_key", None))  # see _is_cluster
        self.max_events = max_events
        self.ttl_seconds = ttl_seconds
        self.heartbeat_seconds = heartbeat_seconds
        # Two heartbeats: one late heartbeat is forgiven, and a reader still learns of a
        # dead producer within three (see Follower._watch_producers).
        self.owner_ms = max(1, round(heartbeat_seconds * 2000))
        self._queue: list[StreamWriter] = []
        self._wakeup = asyncio.Event()
        self._live: dict[StreamWriter, None] = {}  # insertion-ordered set
        # Told of every entry written, so this worker's readers get it without a read.
        self.written: Callable[[StreamKeys, bytes, list[Any], Any], None] | None = None

    def open(
        self, keys: StreamKeys, kind: bytes, last: EntryId, cancelled: Callable[[], object]
    ) -> StreamWriter:
        writer = StreamWriter(self, keys, kind, last, cancelled)
        self._live[writer] = None
        return writer

    def close(self, writer: StreamWriter) -> None:
        self._live.pop(writer, None)

    async def heartbeat(self) -> None:
        """Every half heartbeat, renew the owner and events keys of every live producer of
        this worker (one script call per bucket) and find the ones cancelled elsewhere."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds / 2)
            by_bucket: dict[int, list[StreamWriter]] = {}
            for writer in self._live:
                by_bucket.setdefault(writer.keys.bucket, []).append(writer)
            if not by_bucket:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for writers in by_bucket.values():
                        keys = [k for w in writers for k in w.keys[:3]]
                        pipe.eval(_HEARTBEAT_SCRIPT, len(keys), *keys, self.owner_ms,
                                  self.ttl_seconds)  # fmt: skip
                    results = await pipe.execute(raise_on_error=False)
            except Exception:
                continue  # the producers' next writes report it
            for writers, result in zip(by_bucket.values(), results, strict=True):
                if isinstance(result, list):
                    for position in result:
                        writers[int(position) - 1].cancelled()

    def enqueue(self, writer: StreamWriter) -> None:
        self._queue.append(writer)
        self._wakeup.set()

    async def run(self) -> None:
        """The writer task: for the life of the :class:`ResumableStreams`.

        Up to :data:`ROUNDS_IN_FLIGHT` round trips at once, each with the producers that
        have no round in flight (so each stream's entries still reach Redis in order): a
        slow round trip holds back only the streams it carries.
        """
        rounds = asyncio.Semaphore(ROUNDS_IN_FLIGHT)
        async with anyio.create_task_group() as group:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                await rounds.acquire()
                ready = [writer for writer in self._queue if not writer.in_flight]
                self._queue = [writer for writer in self._queue if writer.in_flight]
                if not ready:
                    rounds.release()
                    continue
                for writer in ready:
                    writer.in_flight = True
                group.start_soon(self._round, ready, rounds)

    async def _round(self, writers: list[StreamWriter], rounds: asyncio.Semaphore) -> None:
        try:
            await self._write(writers)
        finally:
            for writer in writers:
                writer.in_flight = False
            rounds.release()
            if self._queue:
                self._wakeup.set()  # writers that waited for this round

    async def _write(self, writers: list[StreamWriter]) -> None:
        # One script call per bucket on a cluster, one in all on a single server: the keys,
        # packed entries, writers and activity streams (with their positions) of each call.
        by_call: dict[
            int, tuple[list[bytes], list[bytes], list[StreamWriter], dict[bytes, int]]
        ] = {}
        finals: list[tuple[StreamWriter, dict[bytes, bytes]]] = []
        sent: list[tuple[StreamWriter, list[Any], Any]] = []
        for writer in writers:
            previous = writer.written
            entries, final = writer.take()
            if final is not None:
                own = final[b"id"].decode()
                previous = entries[-1][1] if entries else previous
                fields = {name: value for name, value in final.items() if name != b"id"}
                sent.append((writer, entries, (previous, own, None, fields)))
            else:
                sent.append((writer, entries, None))
            if entries:
                keys, arguments, owners, activities = by_call.setdefault(
                    writer.keys.bucket if self._cluster else 0, ([], [], [], {})
                )
                index = len(keys) + 1
                bucket = activities.setdefault(writer.keys.activity, len(activities) + 1)
                keys += (writer.keys.events, writer.keys.owner)
                owners.append(writer)
                minid, trimmed = b"", b""
                if self.max_events is not None:
                    before = writer.trimmed
                    minid = writer.trim_point(entries, self.max_events).encode()
                    if writer.trimmed != before and writer.trimmed is not None:
                        trimmed = writer.trimmed.encode()
                last = len(entries) - 1
                for n, (previous, entry_id, count, payload) in enumerate(entries):
                    trim = (minid, trimmed) if n == last else (b"", b"")
                    arguments.append(
                        _pack_entry(
                            index, bucket, previous, entry_id, writer.kind, count, payload, *trim
                        )
                    )
            if final is not None:
                finals.append((writer, final))
        pipe = self.redis.pipeline(transaction=False)
        calls = []
        for keys, arguments, _, activities in by_call.values():
            call = (len(keys) + len(activities), *keys, *activities, self.owner_ms,
                    self.ttl_seconds, b"".join(arguments), len(activities))  # fmt: skip
            calls.append(call)
            pipe.evalsha(_APPEND_SHA, *call)
        for writer, final in finals:
            stream = writer.keys
            entry_id = final.pop(b"id").decode()
            pipe.xadd(stream.events, final, id=entry_id, nomkstream=True)
            pipe.expire(stream.events, self.ttl_seconds)
            pipe.delete(stream.owner, stream.cancel)
            pipe.xadd(
                stream.activity, {b"k": stream.events}, maxlen=ACTIVITY_ENTRIES
            )  # a name only
            pipe.expire(stream.activity, self.ttl_seconds)
        try:
            results = await pipe.execute(raise_on_error=False)
            unknown = [n for n, result in enumerate(results[: len(calls)]) if _no_script(result)]
            if unknown:
                # This Redis lost the script (or never had it): EVAL sends it, and caches it
                # for the next rounds. NOSCRIPT ran nothing: the entries are written once.
                async with self.redis.pipeline(transaction=False) as retry:
                    for n in unknown:
                        retry.eval(_APPEND_SCRIPT, *calls[n])
                    retried = await retry.execute(raise_on_error=False)
                for n, result in zip(unknown, retried, strict=True):
                    results[n] = result
        except BaseException as exc:
            for writer in writers:
                writer.done(exc)
            if not isinstance(exc, Exception):
                raise
            return
        failed: dict[int, BaseException] = {}
        for (_, _, owners, _), result in zip(by_call.values(), results, strict=False):
            if isinstance(result, Exception):
                for writer in owners:
                    failed[id(writer)] = result
                continue
            for position in range(0, len(result), 2):
                writer = owners[(int(result[position]) - 1) // 2]
                failed[id(writer)] = WriteFailed(_text(result[position + 1]))
        for position, (writer, _) in enumerate(finals):
            offset = len(by_call) + 5 * position
            for result in results[offset : offset + 5]:
                if isinstance(result, Exception):
                    failed.setdefault(id(writer), result)
        for writer in writers:
            writer.done(failed.get(id(writer)))
        if self.written is not None:
            for writer, entries, final_entry in sent:
                if (entries or final_entry) and id(writer) not in failed:
                    self.written(writer.keys, writer.kind, entries, final_entry)


_ENTRY_HEADER = struct.Struct(">HHBBBBBII")  # Lua: struct.unpack('>I2I2I1I1I1I1I1I4I4')


def _pack_entry(
    index: int,
    bucket: int,
    previous: str,
    entry_id: str,
    kind: bytes,
    count: int,
    payload: bytes,
    minid: bytes = b"",
    trimmed: bytes = b"",
) -> bytes:
    before, own = previous.encode(), entry_id.encode()
    header = _ENTRY_HEADER.pack(
        index, bucket, len(before), len(own), len(kind), len(minid), len(trimmed), count,
        len(payload),
    )  # fmt: skip
    return b"".join((header, before, own, kind, minid, trimmed, payload))


def _no_script(result: Any) -> bool:
    # redis-py's NoScriptError (a ResponseError), matched by name like _follow._timed_out.
    return isinstance(result, Exception) and type(result).__name__ == "NoScriptError"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

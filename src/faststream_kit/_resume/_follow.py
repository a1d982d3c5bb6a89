"""The readers' side: every stream one worker follows, read by a few shared reads and fanned
out in-process.

The shared writer (``_writer.py``) appends, with every round trip, one entry to its bucket's
*activity* stream naming the streams it wrote to. A worker blocks on the activity streams
only (one ``XREAD`` over the 16 of them on a single server; one per bucket on a cluster,
where a command stays in one slot), then reads the new entries of just the streams that
changed and that it follows, from each one's own cursor. So the blocking read is small
however many streams a worker follows, a busy worker sends commands in proportion to what
changed, and it holds at most one blocking connection per bucket: the number of live
streams is not bounded by the connection pool.

A reader replays on its own (non-blocking reads), then subscribes here at the id it reached.
A watch task asks Redis about streams that have been silent for a heartbeat, and records
``producer_lost`` for those whose producer's owner key is gone (the producer's process died):
every reader, now or later, gets that error after the last event the producer wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from .._errors import library_error
from ._keys import BUCKETS, EntryId, StreamKeys, activity_key, parse_id, wake_key

__all__ = ["Follower", "Subscription"]

logger = logging.getLogger("faststream_kit")

READ_COUNT = 256
"""Entries per stream per read; an entry holds a batch of events."""

ACTIVITY_COUNT = 1024
"""Activity entries per blocking read."""

TIMEOUTS_FORGIVEN = 3
"""Socket timeouts in a row that the shared read retries before it ends its readers."""

QUEUE_ENTRIES = 4096
"""A subscriber further behind than this reads from Redis again instead (a slow client)."""

# KEYS: events, owner, activity. ARGV: the message. 1: loss recorded; 0: the producer is
# alive or finished; -1: the stream is gone (expired).
_RECORD_LOSS_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return -1 end
local kind = last[1][2][2]
if kind == 'end' or kind == 'err' then return 0 end
redis.call('XADD', KEYS[1], '*', 'k', 'err', 'type', 'producer_lost', 'message', ARGV[1],
           'status', '502')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '1000', '*', 'k', KEYS[1])
return 1
"""

LOST_MESSAGE = "the stream's producer stopped without finishing"

Entries = list[tuple[EntryId, dict[bytes, bytes]]]
"""Entries as a reader gets them: each id parsed once, by the shared read or writer."""


class Subscription:
    """One reader's share of its stream: the entries read for it since it last looked."""

    __slots__ = ("_waiter", "entries", "failure", "overflowed")

    def __init__(self) -> None:
        self.entries: Entries = []
        self.failure: BaseException | None = None
        self.overflowed = False
        # A bare future, not an asyncio.Event: one wake per delivery is the per-event path.
        self._waiter: asyncio.Future[None] | None = None

    def deliver(self, entries: Entries) -> None:
        if len(self.entries) > QUEUE_ENTRIES:
            self.overflowed = True
            self.entries = []
        elif not self.overflowed:
            self.entries.extend(entries)
        self._wake()

    def fail(self, failure: BaseException) -> None:
        self.failure = failure
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None] | None:
        """A future to await before :meth:`take_now` has something; None if it has now."""
        if self.entries or self.failure is not None or self.overflowed:
            return None
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def take_now(self) -> Entries | None:
        """The entries delivered (call once :meth:`waiter` is None); None when the reader
        fell too far behind (it reads from Redis again); raises when the shared read failed."""
        if self.entries:
            entries, self.entries = self.entries, []
            return entries
        if self.failure is not None:
            raise self.failure
        return None

    async def take(self) -> Entries | None:
        """The next entries, waiting for them (see :meth:`take_now`)."""
        while (waiter := self.waiter()) is not None:
            await waiter
        return self.take_now()


class _Followed:
    __slots__ = ("active_at", "checked_at", "cursor", "keys", "subscribers")

    def __init__(self, keys: StreamKeys, cursor: bytes) -> None:
        self.keys = keys
        self.cursor = cursor
        self.subscribers: set[Subscription] = set()
        self.active_at = self.checked_at = time.monotonic()


class _Group:
    """The buckets one blocking read covers: all of them, or one on a cluster."""

    __slots__ = (
        "activity",
        "changed",
        "dirty",
        "follows",
        "reading",
        "running",
        "wake_cursor",
        "wake_key",
        "wake_sent",
    )

    def __init__(self, activity: dict[bytes, bytes], wake: bytes) -> None:
        self.activity = activity  # activity stream -> the last id read ("0-0": all, once)
        self.follows: dict[bytes, _Followed] = {}
        self.dirty: set[bytes] = set()  # followed streams to read whatever the activity says
        self.changed = asyncio.Event()  # set when the read loop has something new to do
        self.wake_key = wake
        # Not "$": a wake written before the blocking read reaches Redis must still end it.
        self.wake_cursor = b"0-0"
        self.reading = self.running = self.wake_sent = False


class Follower:
    """The shared reads of one :class:`ResumableStreams` (one worker)."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        token: str,
        heartbeat_seconds: float,
        spawn: Callable[..., object],
        produced_here: set[bytes],
    ) -> None:
        self.redis = redis
        self._spawn = spawn
        self._heartbeat = heartbeat_seconds
        # The events keys of this worker's running producers: alive, whatever their owner
        # key says after this worker's event loop stalled for a while.
        self._produced_here = produced_here
        self._block_ms = max(100, round(heartbeat_seconds * 1000))
        activity = [activity_key(prefix, n) for n in range(BUCKETS)]
        if _is_cluster(redis):
            self._groups = [
                _Group({activity[n]: b"0-0"}, wake_key(prefix, n, token)) for n in range(BUCKETS)
            ]
        else:
            group = _Group(dict.fromkeys(activity, b"0-0"), wake_key(prefix, 0, token))
            self._groups = [group] * BUCKETS
        self._watching = False

    def subscribe(self, keys: StreamKeys, cursor: bytes) -> tuple[Subscription, bytes | None]:
        """Follow ``keys`` from ``cursor`` on; also return the id the shared read is at when
        it is already past ``cursor`` (the reader reads up to there itself)."""
        group = self._groups[keys.bucket]
        followed = group.follows.get(keys.events)
        ahead = None
        if followed is None:
            followed = group.follows[keys.events] = _Followed(keys, cursor)
            group.dirty.add(keys.events)
            self._poke(group)
        elif parse_id(followed.cursor) > parse_id(cursor):
            ahead = followed.cursor
        subscription = Subscription()
        followed.subscribers.add(subscription)
        if not group.running:
            group.running = True
            self._spawn(self._read, group)
        if not self._watching:
            self._watching = True
            self._spawn(self._watch_producers)
        return subscription, ahead

    def unsubscribe(self, keys: StreamKeys, subscription: Subscription) -> None:
        followed = self._groups[keys.bucket].follows.get(keys.events)
        if followed is not None:
            followed.subscribers.discard(subscription)
            # The key itself is dropped by the read loop, between two reads: a read in
            # flight still counts on its cursor.

    async def _read(self, group: _Group) -> None:
        timeouts = 0
        changed: set[bytes] = set()
        try:
            while True:
                for events_key in [k for k, f in group.follows.items() if not f.subscribers]:
                    del group.follows[events_key]
                    group.dirty.discard(events_key)
                if not group.follows:
                    return
                try:
                    if group.dirty:
                        changed, group.dirty = group.dirty, set()
                        await self._read_streams(group, changed)
                        changed, timeouts = set(), 0
                        continue  # new readers may have come meanwhile
                    if all(key in self._produced_here for key in group.follows):
                        # Every stream followed here is produced here: its writes and its
                        # end come from this worker's writer, so no need to read (and parse)
                        # every worker's activity until a stream from elsewhere is followed.
                        group.changed.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(group.changed.wait(), self._block_ms / 1000)
                        continue
                    streams = {**group.activity, group.wake_key: group.wake_cursor}
                    group.reading, group.wake_sent = True, False
                    try:
                        result = await self.redis.xread(
                            streams, count=ACTIVITY_COUNT, block=self._block_ms
                        )
                    finally:
                        group.reading = False
                    for activity, entries in result or ():
                        if activity == group.wake_key and entries:
                            group.wake_cursor = entries[-1][0]
                        elif activity in group.activity and entries:
                            group.activity[activity] = entries[-1][0]
                            self._take_activity(group, entries)
                    timeouts = 0
                except Exception as exc:
                    if _timed_out(exc) and timeouts < TIMEOUTS_FORGIVEN:
                        # A socket timeout while this worker's event loop lagged (a CPU-bound
                        # app): read again, the same streams, rather than end every reader.
                        timeouts += 1
                        group.dirty |= changed
                        logger.warning("resumable streams: the shared read timed out: %r", exc)
                        continue
                    logger.warning("resumable streams: the shared read failed: %r", exc)
                    for followed in group.follows.values():
                        for subscription in followed.subscribers:
                            subscription.fail(exc)
                    group.follows.clear()
                    group.dirty.clear()
                    return
        finally:
            group.running = False

    def _take_activity(self, group: _Group, entries: Entries) -> None:
        """Hand on the entries an activity stream carries for a stream followed from just
        before them; mark the other followed streams it names to be read."""
        now = time.monotonic()
        follows, dirty = group.follows, group.dirty
        for _, fields in entries:
            for value in fields.values():
                if value.count(b"\n") < 5:  # names only (an end, an error): read them
                    dirty.update(k for k in value.split(b"\n") if k in follows)
                    continue
                events_key, previous, entry_id, kind, count, inline = value.split(b"\n", 5)
                followed = follows.get(events_key)
                if followed is None:
                    continue
                if followed.cursor == previous and inline[:1] == b"1" and events_key not in dirty:
                    followed.cursor = entry_id
                    followed.active_at = now
                    stored = {b"k": kind, b"n": count, b"d": inline[1:]}
                    delivered = [(parse_id(entry_id), stored)]
                    for subscription in followed.subscribers:
                        subscription.deliver(delivered)
                elif parse_id(entry_id) > parse_id(followed.cursor):
                    dirty.add(events_key)  # a gap, or too large to carry: read it

    def _poke(self, group: _Group) -> None:
        """Make the group's read loop look at its dirty streams now."""
        group.changed.set()
        if group.reading and not group.wake_sent:
            group.wake_sent = True
            self._spawn(self._wake, group)

    def producer_gone(self, keys: StreamKeys) -> None:
        """This worker's producer of ``keys`` stopped: read the stream from Redis (its end,
        or the failure that kept it from being written)."""
        group = self._groups[keys.bucket]
        if keys.events in group.follows:
            group.dirty.add(keys.events)
            self._poke(group)

    def written_here(
        self, keys: StreamKeys, kind: bytes, entries: list[Any], final: Any = None
    ) -> None:
        """Entries this worker's writer just wrote, and its end or error (``final``: the
        previous id, the id, the fields): its readers get them without asking Redis (the
        activity stream's copy is then skipped as already read)."""
        group = self._groups[keys.bucket]
        followed = group.follows.get(keys.events)
        if followed is None:
            return
        if final is not None:
            entries = [*entries, final]
        delivered: Entries = []
        cursor = followed.cursor
        gap = keys.events in group.dirty
        for previous, entry_id, count, payload in entries:
            if gap or cursor != previous.encode():
                gap = True  # read it from Redis instead, from the last entry handed on
                break
            cursor = entry_id.encode()
            fields = (
                payload  # the final marker's own fields
                if count is None
                else {b"k": kind, b"n": str(count).encode(), b"d": payload}
            )
            delivered.append((parse_id(entry_id), fields))
        if delivered:
            followed.cursor = cursor
            followed.active_at = time.monotonic()
            for subscription in followed.subscribers:
                subscription.deliver(delivered)
        if gap:
            group.dirty.add(keys.events)
            self._poke(group)

    async def _read_streams(self, group: _Group, changed: set[bytes]) -> None:
        """Read the new entries of ``changed`` followed streams; hand them to the readers."""
        streams = {k: group.follows[k].cursor for k in changed if k in group.follows}
        if not streams:
            return
        result = await self.redis.xread(streams, count=READ_COUNT)
        now = time.monotonic()
        for events_key, entries in result or ():
            followed = group.follows.get(events_key)
            if followed is None or not entries:
                continue
            followed.cursor = entries[-1][0]
            followed.active_at = now
            delivered = [(parse_id(raw_id), fields) for raw_id, fields in entries]
            for subscription in followed.subscribers:
                subscription.deliver(delivered)
            if len(entries) == READ_COUNT:
                group.dirty.add(events_key)  # more to read

    async def _wake(self, group: _Group) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(group.wake_key, {b"w": b"1"}, maxlen=1, approximate=False)
                pipe.expire(group.wake_key, 60)
                await pipe.execute()
        except Exception:
            group.wake_sent = False  # the read itself reports trouble with Redis

    def _all_follows(self) -> list[_Followed]:
        groups = {id(group): group for group in self._groups}.values()
        return [followed for group in groups for followed in group.follows.values()]

    async def _watch_producers(self) -> None:
        """Every quarter heartbeat, ask about streams silent for a heartbeat (at most every
        half heartbeat each): an owner key that expired (2 heartbeats after its producer's
        last sign of life) becomes a ``producer_lost`` entry within 2.5 heartbeats."""
        try:
            while True:
                follows = self._all_follows()
                if not follows:
                    return
                await asyncio.sleep(self._heartbeat / 4)
                now = time.monotonic()
                silent = [
                    followed
                    for followed in follows
                    if followed.subscribers
                    and followed.keys.events not in self._produced_here
                    and now - followed.active_at >= self._heartbeat
                    and now - followed.checked_at >= self._heartbeat / 2
                ]
                if silent:
                    await self._record_losses(silent, now)
        finally:
            self._watching = False

    async def _record_losses(self, silent: list[_Followed], now: float) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for followed in silent:
                    followed.checked_at = now
                    keys = followed.keys
                    pipe.eval(
                        _RECORD_LOSS_SCRIPT, 3, keys.events, keys.owner, keys.activity,
                        LOST_MESSAGE,
                    )  # fmt: skip
                results = await pipe.execute(raise_on_error=False)
        except Exception:
            return  # the shared read reports trouble with Redis
        for followed, result in zip(silent, results, strict=True):
            if result == -1:  # expired: nothing left to read, nobody will write
                lost = library_error("producer_lost", LOST_MESSAGE)
                for subscription in followed.subscribers:
                    subscription.fail(lost)
                continue
            # Read it again whatever the activity said: an activity entry trimmed before
            # this worker read it must not leave a reader waiting for an end it missed.
            group = self._groups[followed.keys.bucket]
            group.dirty.add(followed.keys.events)
            self._poke(group)


def _timed_out(exc: BaseException) -> bool:
    # redis-py's TimeoutError is its own class, not the builtin one.
    return any(cls.__name__ == "TimeoutError" for cls in type(exc).__mro__)


def _is_cluster(redis: Any) -> bool:
    # RedisCluster routes each command by its keys' slot; a multi-key command must stay in one.
    return callable(getattr(redis, "get_node_from_key", None))

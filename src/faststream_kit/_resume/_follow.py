"""The readers' side: every stream one worker follows, read by one blocking ``XREAD`` per
bucket and fanned out in-process.

A reader replays on its own (short, non-blocking reads), then subscribes here at the id it
reached. However many readers and streams a worker has, it holds at most one blocking
connection per bucket, so the number of live streams is not bounded by the connection pool.
A watch task asks Redis about streams that have been silent for a heartbeat, and records
``producer_lost`` for those whose producer's owner key is gone (the producer's process died):
every reader, now or later, gets that error after the last event the producer wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .._errors import library_error
from ._keys import BUCKETS, StreamKeys, parse_id, wake_key

__all__ = ["Follower", "Subscription"]

READ_COUNT = 256
"""Entries per stream per ``XREAD``; an entry holds a batch of events."""

QUEUE_ENTRIES = 4096
"""A subscriber further behind than this reads from Redis again instead (a slow client)."""

# KEYS: events, owner. ARGV: the message. 1: loss recorded; 0: the producer is alive or
# finished; -1: the stream is gone (expired).
_RECORD_LOSS_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return -1 end
local kind = last[1][2][2]
if kind == 'end' or kind == 'err' then return 0 end
redis.call('XADD', KEYS[1], '*', 'k', 'err', 'type', 'producer_lost', 'message', ARGV[1],
           'status', '502')
return 1
"""

LOST_MESSAGE = "the stream's producer stopped without finishing"

Entries = list[tuple[bytes, dict[bytes, bytes]]]


class Subscription:
    """One reader's share of its stream: the entries read for it since it last looked."""

    __slots__ = ("_ready", "entries", "failure", "overflowed")

    def __init__(self) -> None:
        self.entries: Entries = []
        self.failure: BaseException | None = None
        self.overflowed = False
        self._ready = asyncio.Event()

    def deliver(self, entries: Entries) -> None:
        if len(self.entries) > QUEUE_ENTRIES:
            self.overflowed = True
            self.entries = []
        elif not self.overflowed:
            self.entries.extend(entries)
        self._ready.set()

    def fail(self, failure: BaseException) -> None:
        self.failure = failure
        self._ready.set()

    async def take(self) -> Entries | None:
        """The next entries; None when the reader fell too far behind (it reads from Redis
        again); raises when the shared read failed."""
        while not self.entries and self.failure is None and not self.overflowed:
            self._ready.clear()
            await self._ready.wait()
        if self.entries:
            entries, self.entries = self.entries, []
            return entries
        if self.failure is not None:
            raise self.failure
        return None


class _Followed:
    __slots__ = ("active_at", "checked_at", "cursor", "keys", "subscribers")

    def __init__(self, keys: StreamKeys, cursor: bytes) -> None:
        self.keys = keys
        self.cursor = cursor
        self.subscribers: set[Subscription] = set()
        self.active_at = self.checked_at = time.monotonic()


class _Bucket:
    __slots__ = ("follows", "reading", "running", "wake_key", "wake_sent")

    def __init__(self, wake: bytes) -> None:
        self.follows: dict[bytes, _Followed] = {}
        self.wake_key = wake
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
        # The events keys of this worker's running producers: alive, whatever their owner
        # key says after this worker's event loop stalled for a while.
        self._produced_here = produced_here
        self._spawn = spawn
        self._heartbeat = heartbeat_seconds
        self._block_ms = max(100, round(heartbeat_seconds * 1000))
        self._buckets = [_Bucket(wake_key(prefix, n, token)) for n in range(BUCKETS)]
        self._watching = False

    def subscribe(self, keys: StreamKeys, cursor: bytes) -> tuple[Subscription, bytes | None]:
        """Follow ``keys`` from ``cursor`` on; also return the id the shared read is at when
        it is already past ``cursor`` (the reader reads up to there itself)."""
        bucket = self._buckets[keys.bucket]
        followed = bucket.follows.get(keys.events)
        ahead = None
        if followed is None:
            followed = bucket.follows[keys.events] = _Followed(keys, cursor)
            if bucket.reading and not bucket.wake_sent:
                bucket.wake_sent = True
                self._spawn(self._wake, bucket)
        elif parse_id(followed.cursor) > parse_id(cursor):
            ahead = followed.cursor
        subscription = Subscription()
        followed.subscribers.add(subscription)
        if not bucket.running:
            bucket.running = True
            self._spawn(self._read, bucket)
        if not self._watching:
            self._watching = True
            self._spawn(self._watch_producers)
        return subscription, ahead

    def unsubscribe(self, keys: StreamKeys, subscription: Subscription) -> None:
        followed = self._buckets[keys.bucket].follows.get(keys.events)
        if followed is not None:
            followed.subscribers.discard(subscription)
            # The key itself is dropped by the read loop, between two reads: a read in
            # flight still counts on its cursor.

    async def _read(self, bucket: _Bucket) -> None:
        try:
            while True:
                for events_key in [k for k, f in bucket.follows.items() if not f.subscribers]:
                    del bucket.follows[events_key]
                if not bucket.follows:
                    return
                streams: dict[bytes, bytes] = {k: f.cursor for k, f in bucket.follows.items()}
                streams[bucket.wake_key] = b"$"
                bucket.reading, bucket.wake_sent = True, False
                try:
                    result = await self.redis.xread(streams, count=READ_COUNT, block=self._block_ms)
                except Exception as exc:
                    for followed in bucket.follows.values():
                        for subscription in followed.subscribers:
                            subscription.fail(exc)
                    bucket.follows.clear()
                    return
                finally:
                    bucket.reading = False
                self._dispatch(bucket, result)
        finally:
            bucket.running = False

    def _dispatch(self, bucket: _Bucket, result: Any) -> None:
        if not result:
            return
        now = time.monotonic()
        for events_key, entries in result:
            followed = bucket.follows.get(events_key)
            if followed is None or not entries:
                continue
            followed.cursor = entries[-1][0]
            followed.active_at = now
            for subscription in followed.subscribers:
                subscription.deliver(entries)

    async def _wake(self, bucket: _Bucket) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(bucket.wake_key, {b"w": b"1"}, maxlen=1, approximate=False)
                pipe.expire(bucket.wake_key, 60)
                await pipe.execute()
        except Exception:
            bucket.wake_sent = False  # the read itself reports trouble with Redis

    async def _watch_producers(self) -> None:
        """Every quarter heartbeat, ask about streams silent for a heartbeat (at most every
        half heartbeat each): an owner key that expired (2 heartbeats after its producer's
        last sign of life) becomes a ``producer_lost`` entry within 2.5 heartbeats."""
        try:
            while any(bucket.follows for bucket in self._buckets):
                await asyncio.sleep(self._heartbeat / 4)
                now = time.monotonic()
                silent = [
                    followed
                    for bucket in self._buckets
                    for followed in bucket.follows.values()
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
                    pipe.eval(_RECORD_LOSS_SCRIPT, 2, keys.events, keys.owner, LOST_MESSAGE)
                results = await pipe.execute(raise_on_error=False)
        except Exception:
            return  # the shared read reports trouble with Redis
        for followed, result in zip(silent, results, strict=True):
            if result == -1:  # expired: nothing left to read, nobody will write
                lost = library_error("producer_lost", LOST_MESSAGE)
                for subscription in followed.subscribers:
                    subscription.fail(lost)

"""The sync-to-async engine: drive a blocking iterator in one worker thread.

Starlette's ``iterate_in_threadpool`` pays a thread round trip for every item and borrows a
token from the default 40-token limiter that every ``def`` endpoint shares. Here one worker
thread runs the whole iterator and hands items to the event loop through a small bounded
buffer: the loop is woken only when it is actually waiting, and the thread blocks when the
buffer is full (backpressure), so a fast producer never runs ahead of a slow client.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from functools import partial
from typing import Generic, TypedDict, TypeVar, Unpack

import anyio
import anyio.lowlevel

from ._names import NOT_GIVEN, old_name
from ._validate import check_limiter, positive_int, stream_source

__all__ = [
    "OldThreadLimiter",
    "ThreadIterator",
    "default_thread_limiter",
    "iterate_in_thread",
]

T = TypeVar("T")

DEFAULT_READ_AHEAD = 1024
"""Items the worker may produce before the consumer takes them. Each time a full buffer is
taken costs two thread switches (~50-150 µs each on a busy virtual machine): 20,000 items
of 32 B took ~3x an async generator at 32 items, 1.2-2.7x at 256, 1.0-1.2x at 1,024
(``bench/core.py``, ``small``)."""

READ_AHEAD_BYTES = 256 * 1024
"""And at most this many bytes of ``bytes``/``str`` items (a slow client's backlog stays
small however large the items are); one larger item is always let through."""


def _size(item: object) -> int:
    return len(item) if type(item) is bytes or type(item) is str else 0


DEFAULT_THREAD_TOKENS = 256
"""Concurrent sync sources per event loop on the default limiter."""

_default_limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
    "faststream_kit_thread_limiter"
)


def default_thread_limiter() -> anyio.CapacityLimiter:
    """The capacity limiter sync sources use unless given another one.

    It belongs to faststream-kit alone (one per event loop), so long-running streams never
    take tokens from anyio's default limiter that ``def`` endpoints and ``run_in_threadpool``
    rely on. Change ``default_thread_limiter().total_tokens`` to resize it.
    """
    try:
        return _default_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(DEFAULT_THREAD_TOKENS)
        _default_limiter.set(limiter)
        return limiter


def _trio_call_soon() -> Callable[[Callable[[], object]], object]:  # pragma: no cover - trio
    """A non-blocking way for a worker thread to run a callback in this trio run."""
    import trio

    token = trio.lowlevel.current_trio_token()
    run_sync_soon: Callable[[Callable[[], object]], object] = token.run_sync_soon
    return run_sync_soon


class ThreadIterator(AsyncIterator[T], Generic[T]):
    """An async iterator over a sync iterable that runs in one dedicated worker thread.

    Made by :func:`iterate_in_thread`. Besides the async-iterator protocol it offers
    :meth:`take_ready`, which returns the items already produced without waiting, so a
    consumer can coalesce them into one write.
    """

    def __init__(
        self,
        iterable: Iterable[T],
        *,
        thread_limiter: anyio.CapacityLimiter | None = None,
        read_ahead: int = DEFAULT_READ_AHEAD,
        read_ahead_bytes: int = READ_AHEAD_BYTES,
    ) -> None:
        # The names are those of iterate_in_thread(), which is this constructor.
        stream_source("iterable", iterable, what="a sync iterable", asynchronous=False)
        check_limiter("thread_limiter", thread_limiter)
        positive_int("read_ahead", read_ahead)
        positive_int("read_ahead_bytes", read_ahead_bytes)
        self._iterable = iterable
        self._limiter = thread_limiter
        self._read_ahead = read_ahead
        self._read_ahead_bytes = read_ahead_bytes
        self._buffer: deque[T] = deque()
        self._buffered_bytes = 0
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._error: BaseException | None = None
        self._finished = False  # the worker will add nothing more
        self._stopping = False  # the consumer asked the worker to stop
        self._started = False
        self._closed = False
        # Set while the consumer waits for items: the call that wakes it.
        self._waiting: Callable[[], object] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # None under trio
        self._done = anyio.Event()  # the worker thread has returned
        self._call_soon: Callable[[Callable[[], object]], object] | None = None

    def __aiter__(self) -> ThreadIterator[T]:
        return self

    async def _start(self) -> None:
        limiter = self._limiter or default_thread_limiter()
        await limiter.acquire_on_behalf_of(self)
        self._limiter = limiter
        try:
            self._loop = asyncio.get_running_loop()
            self._call_soon = self._loop.call_soon_threadsafe
        except RuntimeError:  # pragma: no cover - trio
            self._call_soon = _trio_call_soon()
        self._started = True
        thread = threading.Thread(target=self._run, name="faststream-kit-source", daemon=True)
        thread.start()

    def _run(self) -> None:
        """The worker thread: pull items until done, full-stop, or asked to stop."""
        iterator: Iterator[T] | None = None
        try:
            iterator = iter(self._iterable)
            # Locals: this loop runs once per item, so it reads no attribute it can avoid.
            lock, buffer = self._lock, self._buffer
            read_ahead, read_ahead_bytes = self._read_ahead, self._read_ahead_bytes
            for item in iterator:
                size = _size(item)
                with lock:
                    while not self._stopping and (
                        len(buffer) >= read_ahead or self._buffered_bytes >= read_ahead_bytes
                    ):
                        self._space.wait()
                    if self._stopping:
                        break
                    buffer.append(item)
                    self._buffered_bytes += size
                    if self._waiting is not None:
                        self._wake_consumer()
        except BaseException as exc:
            with self._lock:
                self._error = exc
        finally:
            # Close the generator here, in its own thread, so its ``finally`` blocks run
            # where they expect to (thread-local sessions, file handles, SDK bodies).
            # The iterable too, when iter() returned another object: an SDK stream such as
            # openai's ``Stream`` closes its HTTP response only in its own close().
            closers = [getattr(iterator, "close", None)]
            if self._iterable is not iterator:
                closers.append(getattr(self._iterable, "close", None))
            for close in closers:
                if close is None:
                    continue
                try:
                    close()
                except BaseException as exc:
                    with self._lock:
                        self._error = self._error or exc
            with self._lock:
                self._finished = True
                self._wake_consumer()
            assert self._call_soon is not None
            self._call_soon(self._on_thread_done)

    def _wake_consumer(self) -> None:
        # Called with the lock held. Only a waiting consumer needs a cross-thread wake-up,
        # which is what makes a burst of items cost one loop wake-up instead of one each.
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            assert self._call_soon is not None
            self._call_soon(waiting)

    def _on_thread_done(self) -> None:
        assert self._limiter is not None
        self._limiter.release_on_behalf_of(self)
        self._done.set()

    async def __anext__(self) -> T:
        if not self._started:
            if self._closed:
                raise StopAsyncIteration
            await self._start()
        while True:
            with self._lock:
                if self._buffer:
                    item = self._buffer.popleft()
                    self._buffered_bytes -= _size(item)
                    self._space.notify()
                    return item
                if self._finished:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    raise StopAsyncIteration
                waiter = self._wait_for_items()
            try:
                await waiter
            except BaseException:
                with self._lock:
                    self._waiting = None
                raise

    def _wait_for_items(self) -> Awaitable[object]:
        """Arm the wake-up the worker calls for the next item (with the lock held).

        Under asyncio a bare future: the consumer waits once per item whenever the source is
        slower than the client (LLM tokens), and an anyio ``Event`` costs ~8 µs there
        against ~0.3 µs.
        """
        if self._loop is None:  # pragma: no cover - trio
            event = anyio.Event()
            self._waiting = event.set
            return event.wait()
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiting = partial(_resolve, future)
        return future

    def take_ready(self, limit: int) -> list[T]:
        """Return up to ``limit`` items that are already produced, without waiting."""
        with self._lock:
            count = min(limit, len(self._buffer))
            items = [self._buffer.popleft() for _ in range(count)]
            if count:
                self._buffered_bytes -= sum(map(_size, items))
                self._space.notify()
            return items

    def stop(self) -> None:
        """Ask the worker to stop and close the iterator in its thread; do not wait.

        The worker notices after its current ``next()`` returns. An iterable that was never
        started is closed here: a generator's code does not run then, while an SDK body or
        stream gives back its pooled connection.
        """
        if not self._started:
            if not self._closed:
                self._closed = True
                close = getattr(self._iterable, "close", None)
                if close is not None:
                    close()
            return
        self._closed = True
        with self._lock:
            self._stopping = True
            self._buffer.clear()
            self._buffered_bytes = 0
            self._space.notify_all()

    async def aclose(self) -> None:
        """Stop the worker, close the sync iterator in its thread, and wait for it.

        An iterable that was never started (a ``HEAD`` request) has no thread yet: it is
        closed in a worker thread of the limiter, since a generator the caller already
        started runs its ``finally`` then, which may block like the rest of it.
        """
        if not self._started and not self._closed:
            self._closed = True
            close = getattr(self._iterable, "close", None)
            if close is not None:
                limiter = self._limiter or default_thread_limiter()
                await anyio.to_thread.run_sync(close, limiter=limiter)
            return
        self.stop()
        if self._started:
            await self._done.wait()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled wait leaves a cancelled future behind
        future.set_result(None)


class OldThreadLimiter(TypedDict, total=False):
    """The old name of ``thread_limiter``, accepted for one release with a warning."""

    limiter: anyio.CapacityLimiter | None


def iterate_in_thread(
    iterable: Iterable[T],
    *,
    thread_limiter: anyio.CapacityLimiter | None = None,
    read_ahead: int = DEFAULT_READ_AHEAD,
    read_ahead_bytes: int = READ_AHEAD_BYTES,
    **deprecated: Unpack[OldThreadLimiter],
) -> ThreadIterator[T]:
    """Iterate a blocking (sync) iterable from async code without blocking the event loop.

    One worker thread runs the whole iterable; items cross to the event loop through a
    buffer of at most ``read_ahead`` items and ``read_ahead_bytes`` of ``bytes``/``str`` items
    (the thread blocks when it is full; one larger item always gets through). The thread
    holds one token of ``thread_limiter`` (by default :func:`default_thread_limiter`, not
    anyio's shared default) for as long as it runs. ``await iterator.aclose()`` stops the thread
    and calls the iterable's ``close()`` in that thread, so a generator's ``finally`` runs
    where it was written to run. The iterable is not touched until the first item is
    requested.

    ```python
    async for line in iterate_in_thread(open("big.log")):
        ...
    ```
    """
    limiter = old_name(
        "iterate_in_thread",
        deprecated,
        "limiter",
        "thread_limiter",
        new_given=thread_limiter is not None,
    )
    if limiter is not NOT_GIVEN:
        thread_limiter = check_limiter("limiter", limiter)
    return ThreadIterator(
        iterable,
        thread_limiter=thread_limiter,
        read_ahead=read_ahead,
        read_ahead_bytes=read_ahead_bytes,
    )

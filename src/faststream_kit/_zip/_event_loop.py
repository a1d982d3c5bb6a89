"""The worker thread's link to the event loop: reads run there, and a stop cancels them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import (
    AsyncIterator,
    Coroutine,
    Iterator,
)
from concurrent.futures import CancelledError, Future
from typing import Any, TypeVar

T = TypeVar("T")


class _Stopped(Exception):
    """The response stopped (the client left, a timeout): the archive ends where it is."""


class _EventLoop:
    """The worker thread's link to the response: its event loop, and whether it stopped.

    Reads (``GetObject``, a body's next pieces, the next member) are *stoppable*: a stop
    cancels them. Closing is not, so a body is closed even after a stop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stopping = threading.Event()
        self._reads: set[asyncio.Task[Any]] = set()  # used on the event loop's thread only

    def stop(self) -> None:
        """Stop the archive (called on the event loop): cancel the reads it waits for."""
        self._stopping.set()
        for task in list(self._reads):
            task.cancel()

    def check(self) -> None:
        """Raise :class:`_Stopped` once the response has stopped."""
        if self._stopping.is_set():
            raise _Stopped

    def run(self, coroutine: Coroutine[Any, Any, T], *, stoppable: bool = True) -> T:
        """Run ``coroutine`` on the response's event loop and wait for its result."""
        return self._result(self._submit(coroutine, stoppable=stoppable))

    def _submit(self, coroutine: Coroutine[Any, Any, T], *, stoppable: bool) -> Future[T]:
        if stoppable:
            coroutine = self._read(coroutine)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _read(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._stopping.is_set():  # stopped while this was on its way to the loop
            coroutine.close()
            raise _Stopped
        task = asyncio.current_task()
        assert task is not None
        self._reads.add(task)
        try:
            return await coroutine
        finally:
            self._reads.discard(task)

    def _result(self, future: Future[T]) -> T:
        try:
            return future.result()
        except CancelledError:
            if self._stopping.is_set():
                raise _Stopped from None
            raise

    async def _cancel_reads(self) -> None:
        reads = list(self._reads)
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)

    def read(self, iterator: AsyncIterator[T], size: int) -> Iterator[list[T]]:
        """The items of ``iterator`` in lists of about ``size`` bytes, one visit to the event
        loop each.

        One visit costs two thread switches; aiohttp hands an S3 body over in the pieces that
        arrived (often 64 KiB), so reading them one visit each took twice the CPU.
        """
        # The next read is asked for before this one's items are handed on: the event loop
        # reads while this thread checksums and compresses, instead of taking turns.
        reading: Future[tuple[list[T], bool]] | None = self._submit(
            _read_at_least(iterator, size), stoppable=True
        )
        try:
            while reading is not None:
                items, ended = self._result(reading)
                reading = None
                if not ended:
                    self.check()
                    reading = self._submit(_read_at_least(iterator, size), stoppable=True)
                yield items
        finally:
            if reading is not None and not reading.done():
                # Closed early: the read asked for ahead ends before the iterator is closed
                # (an async generator cannot be closed while it runs).
                self.run(self._cancel_reads(), stoppable=False)


async def _next(step: Any) -> Any:
    return await step()


async def _read_at_least(iterator: AsyncIterator[T], size: int) -> tuple[list[T], bool]:
    """Items of ``iterator`` until they hold ``size`` bytes; and whether it ended."""
    items: list[T] = []
    held = 0
    while held < size:
        try:
            item = await iterator.__anext__()
        except StopAsyncIteration:
            return items, True
        items.append(item)
        held += len(item) if isinstance(item, bytes | bytearray | memoryview) else 1
    return items, False

"""Take the items an async iterator has already produced, without waiting for more.

An async generator that yields several items between two real waits (a network read that
brought ten SSE events, a replay from a cursor, a loop that never awaits) is read one
``send()`` per item by Starlette. Here the response asks :meth:`EagerIterator.take_ready`
for what is available *now* and writes it in one go.

"Available now" is decided by running the next step of ``__anext__()`` once: if it
finishes without suspending, its item was ready; if it suspends, the step is kept and the
response awaits it next, exactly where it stopped (the same protocol ``await`` uses, so the
event loop and cancellation see nothing unusual).

Some sources never have an item ready without a loop turn, although its bytes are already
read: each item is awaited through a task (``asyncio.wait_for``, as LangChain's default
``stream_chunk_timeout`` does). :meth:`EagerIterator.take_soon` gives such a kept step a few
loop turns to finish, so those items too go out in one write instead of one each.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Generator
from time import monotonic
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["EagerIterator"]

T = TypeVar("T")

_POLL_SECONDS = 0.001
"""Taking more items (ready ones, or those produced within a few loop turns) may delay the
first of them by at most this much, plus one loop turn."""

_CHECKPOINTS_PER_STEP = 4
"""Bare checkpoints (``sleep(0)``) passed through while taking one ready item."""

_TURNS_PER_ITEM = 4
"""Loop turns :meth:`EagerIterator.take_soon` gives a kept step's future to be done before it
stops waiting for more; ``asyncio.wait_for`` needs two (its task runs, then its waiter is
released), a read whose bytes are in the socket's buffer a few."""

_MAX_CHANCES_SKIPPED = 63
"""After misses in a row (:meth:`EagerIterator.take_ready` found nothing), at most this many of
its next calls return nothing at once: 0 after the first miss, then 1, 3, 7, ... up to this."""


@types.coroutine
def _finish(step: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Await a step that was started by hand and suspended, yielding ``yielded``."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # cancellation and friends go to where it waits
            try:
                yielded = step.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            yielded = step.send(sent)
        except StopIteration as stop:
            return stop.value


@types.coroutine
def _next_turn() -> Generator[None, None, None]:
    """One turn of the event loop, and no more: ``asyncio.sleep(0)`` without its coroutine."""
    yield


class EagerIterator(AsyncIterator[T], Generic[T]):
    """Wraps an async iterator; :meth:`take_ready` returns what it can give without waiting."""

    __slots__ = ("_done", "_error", "_iterable", "_misses", "_pending", "_skip", "_source")

    def __init__(self, iterable: AsyncIterable[T]) -> None:
        self._iterable = iterable
        self._source = aiter(iterable)
        self._pending: tuple[Any, Any] | None = None  # a started, suspended __anext__ step
        self._done = False
        self._error: Exception | None = None
        self._misses = 0  # take_ready calls in a row that found nothing ready
        self._skip = 0  # its next calls that return nothing without trying

    def __aiter__(self) -> EagerIterator[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        # Not a coroutine: with nothing kept, the source's own awaitable is handed out, so
        # the per-item path costs no extra coroutine frame.
        if self._pending is None and self._error is None and not self._done:
            return self._source.__anext__()
        return self._next_kept()

    async def _next_kept(self) -> T:
        if self._pending is not None:
            step, yielded = self._pending
            self._pending = None
            result: T = await _finish(step, yielded)
            return result
        if self._error is not None:
            error, self._error = self._error, None
            try:
                raise error
            finally:
                del error  # no cycle through this frame (see throw_into_pending)
        raise StopAsyncIteration

    def take_ready(self, limit: int) -> list[T]:
        """Up to ``limit`` items that the source produces without suspending.

        A source that never has an item ready is not asked every time: trying costs a step
        kept and finished by hand (two frames more on each resume), for nothing. After misses
        in a row the next calls skip trying, twice as many (plus one) at each further miss, up
        to :data:`_MAX_CHANCES_SKIPPED`; a hit (here or in :meth:`take_soon`) starts again
        from zero. A source whose step waits for the network misses every time; one that
        batches (ten SSE events in one network read) misses only when its buffer is drained,
        and hits again at the next call.
        """
        if self._skip:
            self._skip -= 1
            return []
        items: list[T] = []
        deadline = monotonic() + _POLL_SECONDS
        while len(items) < limit and self._pending is None:
            if self._done or self._error is not None:
                break
            self._advance(self._source.__anext__().__await__(), items)
            if monotonic() > deadline:
                break
        if items:
            self._misses = 0
        elif self._pending is not None:
            self._skip = min((1 << self._misses) - 1, _MAX_CHANCES_SKIPPED)
            self._misses = min(self._misses + 1, 8)
        return items

    async def take_soon(self, limit: int) -> list[T]:
        """Up to ``limit`` items the source produces within the next few loop turns.

        For after :meth:`take_ready` found nothing and kept a step. The step waits on a
        future; this gives the loop a turn (``sleep(0)``: no timer) and, once the future is
        done, resumes the step here, as the task would have, and starts the next one. It
        stops when a step's future is not done after :data:`_TURNS_PER_ITEM` turns (the
        source waits for the network: its item would come later anyway), and after
        :data:`_POLL_SECONDS` in all: what is taken is delayed by that much at most, plus one
        loop turn. A cancellation meanwhile goes where the kept step waits
        (:meth:`throw_into_pending`); an error the source makes of it (its own timeout) is
        raised after the items taken before it.
        """
        items: list[T] = []
        deadline = monotonic() + _POLL_SECONDS
        turns = 0
        while len(items) < limit and self._pending is not None:
            step, yielded = self._pending
            done = None if yielded is None else getattr(yielded, "done", None)
            if yielded is not None and not callable(done):
                break  # not an asyncio future: only the task knows how to wait for it
            if turns == _TURNS_PER_ITEM or monotonic() > deadline:
                break
            turns += 1
            try:
                await _next_turn()
            except asyncio.CancelledError as cancelled:
                try:
                    await self.throw_into_pending(cancelled)
                except Exception as exc:
                    self._error = exc
                    break
            if done is not None and not done():
                continue
            self._pending = None
            turns = 0
            self._advance(step, items)
            while len(items) < limit and self._pending is None:
                if self._done or self._error is not None or monotonic() > deadline:
                    break
                self._advance(self._source.__anext__().__await__(), items)
        if items:
            self._misses = self._skip = 0
        return items

    def _advance(self, step: Any, items: list[T]) -> None:
        """Run ``step`` (an ``__anext__()`` step, new or kept) until it finishes or waits."""
        try:
            yielded = step.send(None)
            # A bare yield is a checkpoint (asyncio.sleep(0), anyio.sleep(0)), which the
            # loop resumes on its next turn without waiting for anything: resume it here,
            # so a source that checkpoints after every item (FastAPI's wrapper around a
            # `yield` path operation does) still hands over what it has. Bounded, so a
            # source that polls with sleep(0) is kept as pending, as without this.
            checkpoints = 0
            while yielded is None and checkpoints < _CHECKPOINTS_PER_STEP:
                checkpoints += 1
                yielded = step.send(None)
        except StopIteration as stop:
            items.append(stop.value)
        except StopAsyncIteration:
            self._done = True
        except Exception as exc:
            self._error = exc  # raised after the items produced before it
        else:
            self._pending = (step, yielded)

    @property
    def pending(self) -> bool:
        """Whether a step of the source is kept, suspended where the source waits.

        That step may have entered the source's own timeouts or cancel scopes (httpx reads
        inside anyio's ``fail_after``), which belong to the task that took it: whatever that
        task awaits meanwhile can receive their cancellation. See :meth:`throw_into_pending`.
        """
        return self._pending is not None

    async def throw_into_pending(self, exc: BaseException) -> None:
        """Deliver ``exc`` (a cancellation) where the kept step waits; raise what comes out.

        A timeout of the source that expired while the task waited elsewhere turns the
        cancellation into its own ``TimeoutError`` here, as it would have had the task been
        waiting in the source. A step that recovers and yields an item has the item dropped and
        the cancellation raised again: the task was cancelled either way.
        """
        assert self._pending is not None
        step, _ = self._pending
        self._pending = None
        try:
            try:
                yielded = step.throw(exc)
            except StopIteration:
                raise exc from None
            await _finish(step, yielded)
            raise exc
        finally:
            # exc's traceback holds this frame: were exc still one of its locals, the two
            # would keep each other, and the source's frames with whatever they hold (a
            # generator they iterate, not closed), alive until the garbage collector runs.
            del exc

    async def close_pending(self) -> None:
        """Close a kept step: a cancellation where the source waits, so its ``finally``
        blocks run (and may await), as they would had the task been cancelled there.

        Not ``GeneratorExit``: the step waits inside the source's awaits (a database
        driver's read, SQLAlchemy's greenlet bridge), which handle a cancellation and may
        await their cleanup, while a coroutine that awaits after ``GeneratorExit`` is an
        error ("coroutine ignored GeneratorExit"), leaving the connection half-used.

        Call it with no cancel scope entered since the step was taken, so that the source's
        own scopes exit in the order they were entered.
        """
        if self._pending is None:
            return
        step, _ = self._pending
        self._pending = None
        stop = anyio.get_cancelled_exc_class()()
        try:
            try:
                yielded = step.throw(stop)
            except (StopIteration, StopAsyncIteration, GeneratorExit):
                return
            await _finish(step, yielded)
        except (StopAsyncIteration, GeneratorExit):
            pass
        except BaseException as exc:
            if exc is not stop:  # only ours ends here; a real cancellation goes on
                raise
        finally:
            del stop  # its traceback holds this frame (see throw_into_pending)

    async def aclose(self) -> None:
        await self.close_pending()
        # The iterator, and the iterable too when __aiter__ returned another object: it may
        # own what must be closed (an SDK stream, an upstream response).
        for closeable in (self._source, self._iterable):
            aclose = getattr(closeable, "aclose", None)
            if aclose is not None:
                await aclose()
            if self._iterable is self._source:
                break

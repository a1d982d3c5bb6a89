"""Coalescing what an async source has already produced, without waiting for more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from faststream_kit import _eager
from faststream_kit._eager import EagerIterator


@pytest.fixture(autouse=True)
def patient_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ready items are taken within ``_POLL_SECONDS``; on a busy machine 1 ms can pass between
    two of them, which would split the batches these tests expect."""
    monkeypatch.setattr(_eager, "_POLL_SECONDS", 10.0)


async def burst_then_wait(log: list[str]) -> AsyncIterator[int]:
    try:
        for i in range(3):
            yield i  # produced without suspending
        await anyio.sleep(0.01)
        yield 3
        await anyio.sleep(0.01)
        raise KeyError("after four")
    finally:
        log.append("closed")


def test_ready_items_are_taken_and_a_suspension_is_awaited_where_it_stopped() -> None:
    log: list[str] = []

    async def main() -> list[list[int]]:
        items = EagerIterator(burst_then_wait(log))
        batches = [[await items.__anext__(), *items.take_ready(32)]]
        batches.append([await items.__anext__(), *items.take_ready(32)])
        with pytest.raises(KeyError):
            await items.__anext__()
        return batches

    assert anyio.run(main) == [[0, 1, 2], [3]]
    assert log == ["closed"]


def test_an_error_comes_after_the_items_produced_before_it() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise ValueError("boom")

    async def main() -> list[int]:
        items = EagerIterator(source())
        seen = [await items.__anext__(), *items.take_ready(32)]
        with pytest.raises(ValueError, match="boom"):
            await items.__anext__()
        return seen

    assert anyio.run(main) == [1, 2]


def test_closing_with_a_suspended_step_runs_the_source_finally() -> None:
    log: list[str] = []

    async def main() -> list[str]:
        items = EagerIterator(burst_then_wait(log))
        await items.__anext__()
        assert items.take_ready(32) == [1, 2]  # and the next step is suspended in the sleep
        await items.aclose()
        # Checked here: once the loop ends, asyncio would finalize the generator anyway.
        return list(log)

    assert anyio.run(main) == ["closed"]


def test_cancelling_a_resumed_step_reaches_the_source() -> None:
    log: list[str] = []

    async def source() -> AsyncIterator[int]:
        try:
            yield 0
            await anyio.sleep(30)
            yield 1
        except anyio.get_cancelled_exc_class():
            log.append("cancelled")
            raise

    async def main() -> None:
        items = EagerIterator(source())
        await items.__anext__()
        assert items.take_ready(32) == []
        with anyio.move_on_after(0.05):
            await items.__anext__()

    anyio.run(main)
    assert log == ["cancelled"]


def test_limit_bounds_a_batch() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(100):
            yield i

    async def main() -> list[int]:
        items = EagerIterator(numbers())
        return [await items.__anext__(), *items.take_ready(5)]

    assert anyio.run(main) == [0, 1, 2, 3, 4, 5]


async def read_with_its_own_timeout(log: list[str]) -> AsyncIterator[str]:
    """Like an httpx read: the wait for the next item sits inside anyio's ``fail_after``."""
    try:
        yield "first"
        with anyio.fail_after(0.05):
            await anyio.sleep(30)
        yield "never"
    finally:
        log.append("closed")


def test_a_kept_step_inside_the_source_timeout_closes_cleanly() -> None:
    log: list[str] = []

    async def main() -> list[str]:
        items = EagerIterator(read_with_its_own_timeout(log))
        await items.__anext__()
        assert items.take_ready(32) == []
        assert items.pending
        await items.close_pending()  # no "cancel scope that isn't the current" RuntimeError
        return list(log)

    assert anyio.run(main) == ["closed"]


def test_the_source_timeout_expiring_elsewhere_reaches_the_source_as_its_timeout() -> None:
    log: list[str] = []

    async def main() -> None:
        items = EagerIterator(read_with_its_own_timeout(log))
        await items.__anext__()
        items.take_ready(32)
        try:
            await anyio.sleep(1)  # the consumer writing to a slow client meanwhile
        except anyio.get_cancelled_exc_class() as cancelled:
            await items.throw_into_pending(cancelled)
        raise AssertionError("the source's timeout did not cancel the waiting task")

    with pytest.raises(TimeoutError):
        anyio.run(main)
    assert log == ["closed"]


def test_a_checkpoint_after_each_item_does_not_split_the_batch() -> None:
    # FastAPI wraps the generator of a `yield` path operation in one that awaits
    # anyio.sleep(0) after every item; a checkpoint waits for nothing.
    async def checkpointing() -> AsyncIterator[int]:
        for i in range(5):
            yield i
            await anyio.sleep(0)
        await anyio.sleep(0.01)  # a real wait: the batch ends here
        yield 5

    async def main() -> list[list[int]]:
        items = EagerIterator(checkpointing())
        first = [await items.__anext__(), *items.take_ready(32)]
        return [first, [await items.__anext__(), *items.take_ready(32)]]

    assert anyio.run(main) == [[0, 1, 2, 3, 4], [5]]


def test_a_source_that_polls_with_checkpoints_is_kept_waiting() -> None:
    flag = {"set": False, "polls": 0}

    async def polling() -> AsyncIterator[str]:
        yield "first"
        while not flag["set"]:  # set by another task: only the loop can get it there
            flag["polls"] += 1
            await anyio.sleep(0)
        yield "second"

    async def main() -> list[list[str]]:
        items = EagerIterator(polling())
        first = [await items.__anext__(), *items.take_ready(32)]
        assert items.pending  # passed a few checkpoints, then kept where it waits
        assert flag["polls"] <= 8  # not spinning on the loop's behalf
        flag["set"] = True
        return [first, [await items.__anext__(), *items.take_ready(32)]]

    assert anyio.run(main) == [["first"], ["second"]]


@pytest.mark.usefixtures("without_gc")
def test_a_cancellation_thrown_into_a_kept_step_leaves_the_source_to_reference_counting() -> None:
    # FastAPI's shape: a wrapper that waits after each item of the path operation's generator.
    # The cancellation ends the wrapper where it waits; the generator, suspended at its
    # yield, is then released and closed by the event loop, unless a reference cycle (an
    # exception holding its own traceback's frame) keeps the wrapper's frame alive.
    log: list[str] = []

    async def path_operation() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            log.append("closed")

    async def wrapper(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for item in items:
            yield item
            await anyio.sleep(0.01)

    async def main() -> None:
        items = EagerIterator(wrapper(path_operation()))
        assert [await items.__anext__(), *items.take_ready(32)] == [0]
        assert items.pending
        with pytest.raises(asyncio.CancelledError):
            await items.throw_into_pending(asyncio.CancelledError())
        for _ in range(3):
            await asyncio.sleep(0)  # the loop's async generator finalizer closes it
        assert log == ["closed"]  # now, not when the loop shuts down

    anyio.run(main)


def test_a_source_that_is_never_ready_is_tried_less_and_less_until_it_is() -> None:
    # Every item waits on a future a loop turn completes (asyncio.wait_for's task, as
    # LangChain's default stream_chunk_timeout awaits each chunk): each try finds nothing.
    ready_after = 40

    async def source() -> AsyncIterator[int]:
        for i in range(ready_after):
            await asyncio.sleep(0.0001)
            yield i
        for i in range(ready_after, ready_after + 3):
            yield i  # from here on, produced without suspending

    async def main() -> tuple[list[bool], list[int]]:
        items = EagerIterator(source())
        tried = []
        for _ in range(ready_after):
            await items.__anext__()
            items.take_ready(32)
            tried.append(items.pending)  # a step was started and kept: it was tried
        rest = []
        while len(rest) < 3:  # a skipped chance costs one item read alone, no more
            rest += [await items.__anext__(), *items.take_ready(32)]
        return tried, rest

    tried, rest = anyio.run(main)
    assert tried[:4] == [True, True, False, True]  # misses in a row: skip 0, then 1, then 3
    assert sum(tried) < 10
    assert rest == [40, 41, 42]


async def at_once(value: int) -> int:
    return value


async def through_a_task_each(count: int) -> AsyncIterator[int]:
    """LangChain's default stream_chunk_timeout: every item is awaited through
    ``asyncio.wait_for``, a task of its own, so none is ready without a loop turn."""
    for i in range(count):
        yield await asyncio.wait_for(at_once(i), 10)


def test_items_awaited_through_a_task_each_are_taken_within_a_few_loop_turns() -> None:
    async def main() -> tuple[list[int], list[int]]:
        items = EagerIterator(through_a_task_each(5))
        first = [await items.__anext__(), *items.take_ready(32)]
        assert items.pending  # nothing ready: the next item waits for its task
        return first, await items.take_soon(32)

    assert anyio.run(main) == ([0], [1, 2, 3, 4])


def test_taking_soon_leaves_a_step_that_waits_for_something_else() -> None:
    # What the source waits for comes later than a few loop turns (the network, or the client:
    # tests/test_streaming.py's echo waits for the request body): take_soon must not wait for
    # it, or the item before would be held back.
    async def main() -> tuple[list[str], bool, str]:
        arrived = asyncio.Event()

        async def source() -> AsyncIterator[str]:
            yield "first"
            await arrived.wait()
            yield "second"

        async def arrive_after_many_turns() -> None:
            for _ in range(50):
                await asyncio.sleep(0)
            arrived.set()

        items = EagerIterator(source())
        await items.__anext__()
        assert items.take_ready(32) == []
        setter = asyncio.create_task(arrive_after_many_turns())
        taken = await items.take_soon(32)
        came_first = not arrived.is_set()
        second = await items.__anext__()
        await setter
        return taken, came_first, second

    assert anyio.run(main) == ([], True, "second")


def test_a_cancellation_while_taking_soon_reaches_the_source() -> None:
    log: list[str] = []

    async def source() -> AsyncIterator[int]:
        try:
            yield 0
            await asyncio.Event().wait()  # never set
            yield 1
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async def take(items: EagerIterator[int]) -> list[int]:
        await items.__anext__()
        items.take_ready(32)
        return await items.take_soon(32)

    async def main() -> list[str]:
        taking = asyncio.create_task(take(EagerIterator(source())))
        await asyncio.sleep(0)  # it runs up to take_soon's first loop turn
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking
        # Checked here: once the loop ends, asyncio would cancel the source's wait anyway.
        return list(log)

    assert anyio.run(main) == ["cancelled"]


def test_the_source_timeout_expiring_while_taking_soon_comes_after_the_items_taken() -> None:
    async def source() -> AsyncIterator[int]:
        yield 0
        yield await asyncio.wait_for(at_once(1), 10)
        with anyio.fail_after(0):  # expired: delivered at the next loop turn
            await anyio.sleep(30)
        yield 2

    async def main() -> list[int]:
        items = EagerIterator(source())
        seen = [await items.__anext__(), *items.take_ready(32)]
        seen += await items.take_soon(32)
        with pytest.raises(TimeoutError):
            await items.__anext__()
        return seen

    assert anyio.run(main) == [0, 1]

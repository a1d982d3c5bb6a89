"""Building the archive in the core's worker thread: stream-zip runs there, async sources are
read on the event loop through :class:`_EventLoop`."""

from __future__ import annotations

from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
)
from datetime import UTC, datetime
from typing import Any

import anyio

from .._s3 import (
    BODY_READ_AHEAD_BYTES,
)
from .._threads import ThreadIterator
from ._bodies import _FILE_MODE, _method, _modified, _open_body, _Opened
from ._event_loop import _EventLoop, _next
from ._members import ZipMembers, _next_member, _Options
from ._stored import _stored_blocks, _stream_zip


class _ArchiveThread(ThreadIterator[bytes]):
    """The core's worker thread for the archive, which also tells the archive to stop.

    The core's worker notices a stop only when its current item is done, and one piece of
    the archive can take a long time: deflate turns a GiB of zeros into one MiB, and an
    async body may never send its next piece. So a stop also cancels what the archive is
    waiting for on the event loop, and the archive checks for it after every piece.
    """

    def __init__(
        self,
        archive: Iterable[bytes],
        loop: _EventLoop,
        *,
        thread_limiter: anyio.CapacityLimiter | None,
    ) -> None:
        super().__init__(
            archive, thread_limiter=thread_limiter, read_ahead_bytes=BODY_READ_AHEAD_BYTES
        )
        self._archive_loop = loop

    def stop(self) -> None:
        self._archive_loop.stop()
        super().stop()


def _archive(members: ZipMembers, options: _Options, loop: _EventLoop) -> Iterator[bytes]:
    """The archive's bytes, in ``chunk_bytes`` pieces; runs in the core's worker thread."""
    stream_zip = _stream_zip().stream_zip
    written = _Written()
    opened = _open_members(members, options, loop, written)
    write_bytes = options.write_bytes
    try:
        for chunk in stream_zip(
            opened, chunk_size=write_bytes, get_compressobj=_stored_blocks(write_bytes)
        ):
            written.bytes += len(chunk)
            yield chunk
    finally:
        # Closed here, not left to the garbage collector: this closes the member being
        # read (an S3 body holds a pooled connection) and the caller's iterable.
        opened.close()


class _Written:
    bytes = 0


def _open_members(
    members: ZipMembers, options: _Options, loop: _EventLoop, written: _Written
) -> Generator[tuple[str, datetime, int, Any, Iterable[Any]], None, None]:
    """stream-zip's member tuples, each opened when stream-zip asks for it.

    A member's pieces are ``bytes`` or ``memoryview`` values (stream-zip's annotations say
    ``bytes``; it only takes their length, CRC-32 and slices, and hands them to the
    compressor, all of which take any bytes-like value)."""
    started = datetime.now(UTC).replace(microsecond=0)
    source = _sync_items(members, loop)
    seen: set[str] = set()
    current: _Opened | None = None
    pieces: Generator[bytes | memoryview, None, None] | None = None
    try:
        for index, item in enumerate(source):
            member = _next_member(index, item, seen, options)
            current = _open_body(member.body, loop, options.chunk_bytes)
            method = _method(current, member.compress, options.compress_level, written.bytes, index)
            pieces = current.chunks()
            yield member.name, _modified(member, current, started), _FILE_MODE, method, pieces
            current.close()
            current = pieces = None
    finally:
        try:
            if pieces is not None:
                pieces.close()  # first: it may be waiting for a read it asked for ahead
            if current is not None:
                current.close()
        finally:
            source.close()


class _SyncItems:
    """The caller's member iterable as a sync iterator in the worker thread."""

    def __init__(self, members: ZipMembers, loop: _EventLoop) -> None:
        self._members = members
        self._loop = loop
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if isinstance(members, AsyncIterable):
            self._async = aiter(members)
        else:
            self._sync = iter(members)

    def __iter__(self) -> _SyncItems:
        return self

    def __next__(self) -> Any:
        self._loop.check()
        if self._sync is not None:
            return next(self._sync)
        assert self._async is not None
        try:
            return self._loop.run(_next(self._async.__anext__))
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        if self._sync is not None:
            close = getattr(self._sync, "close", None)
            if close is not None:
                close()
            return
        aclose = getattr(self._async, "aclose", None)
        if aclose is not None:
            self._loop.run(aclose(), stoppable=False)


def _sync_items(members: ZipMembers, loop: _EventLoop) -> _SyncItems:
    return _SyncItems(members, loop)

"""Building the archive on the event loop (:class:`_LoopArchive`): no worker thread, for
members with ``compress=False`` whose bytes are read there."""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Iterator,
    Mapping,
)
from datetime import UTC, datetime
from typing import Any

from .._s3 import (
    _AsyncObjectBody,
    _S3Calls,
)
from ._bodies import (
    _FILE_MODE,
    _checked,
    _get_failure,
    _get_params,
    _method,
    _modified,
    _object_details,
    _Opened,
    _pieces,
)
from ._members import S3Object, ZipBody, _as_member, _next_member, _Options
from ._stored import _PIECE_BYTES, _stored_blocks, _stream_zip

_LOOP_BYTES_MAX = 1 << 20
"""A ``bytes`` member larger than this keeps the archive in the worker thread."""


def _fits_the_loop(members: list[Any] | tuple[Any, ...]) -> bool:
    """Whether building the archive takes no CPU-heavy or blocking work: every member has
    ``compress=False`` and its bytes come from the event loop (an aiobotocore object, an
    async iterable) or are ``bytes`` of at most 1 MiB. Then the archive is built on the event loop
    (:class:`_LoopArchive`), with no worker thread and no hand-over of its pieces."""
    for index, item in enumerate(members):
        member = _as_member(item, f"members[{index}] ")
        body = member.body
        if member.compress:
            return False  # deflate: about 10 ms of CPU per 100 KiB+, in the worker thread
        if isinstance(body, S3Object):
            if not _S3Calls(body.client, None).is_async:
                return False  # boto3 blocks: its reads stay in the worker thread
        elif isinstance(body, bytes | bytearray | memoryview):
            if len(body) > _LOOP_BYTES_MAX:
                return False  # its CRC-32, computed at once, would hold the event loop up
        elif not isinstance(body, AsyncIterable):
            return False  # a sync iterable may block
    return True


class _End:
    """Marks the end of a member's pieces, or of the members."""


_END = _End()

_READY_MARGIN_BYTES = 3 * _PIECE_BYTES
"""What :class:`_LoopArchive` relies on: stream-zip takes the archive's pieces from
:class:`_StoredBlocks`, which holds back at most one 64 KiB block and hands out exactly
``write_bytes``, so one ``next()`` of stream-zip pulls at most ``write_bytes + 2 *
_PIECE_BYTES`` of input (a stored ``bytes`` member: ``write_bytes + _PIECE_BYTES``); and
the step that pulls a member ends with its local header, before its first piece.
tests/test_private_apis.py checks both on the installed stream-zip."""


class _LoopArchive:
    """The archive built on the event loop: stream-zip's generator is advanced here.

    stream-zip pulls members and pieces from sync iterators, which cannot wait for a read.
    So before each ``next()`` of stream-zip, :meth:`chunks` reads until more input is ready
    than that step can pull (``write_bytes + _READY_MARGIN_BYTES``) or the current body
    ends; then it closes the body and opens the next member (one body open at a time, as
    in the worker thread), whose bytes are read only once stream-zip has pulled it and
    written its local header. Should stream-zip ever pull more than it was given, the
    archive fails loudly (:meth:`_take` raises) rather than write a wrong member.
    """

    def __init__(self, members: list[Any] | tuple[Any, ...], options: _Options) -> None:
        self._members = enumerate(members)
        self._options = options
        self._started = datetime.now(UTC).replace(microsecond=0)
        self._seen: set[str] = set()
        self._entries: deque[Any] = deque()  # member tuples stream-zip has not pulled yet
        self._pieces: deque[Any] = deque()  # the pieces read of the last member opened
        self._ready = 0  # bytes read that stream-zip has not pulled yet
        self._body: _LoopBody | None = None  # the body being read, if not yet at its end
        self._opened_all = False
        self._written = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The archive's bytes, in pieces of ``write_bytes``."""
        stream_zip = _stream_zip().stream_zip
        write_bytes = self._options.write_bytes
        zipped = iter(
            stream_zip(
                self._entries_for_stream_zip(),
                chunk_size=write_bytes,
                get_compressobj=_stored_blocks(write_bytes),
            )
        )
        enough = write_bytes + _READY_MARGIN_BYTES
        try:
            while True:
                # A member stream-zip has not pulled yet is not read: the step that pulls
                # it ends with its local header (sent before its first byte is read).
                while self._ready < enough and not (self._entries or self._opened_all):
                    await self._read_more()
                chunk = next(zipped, None)
                if chunk is None:
                    return
                self._written += len(chunk)
                yield chunk
        finally:
            body, self._body = self._body, None
            if body is not None:  # failed, cancelled (the client left) or closed early
                await body.aclose()

    async def _read_more(self) -> None:
        """The next piece of the current body; past its end, close it and open the next."""
        body = self._body
        if body is None:
            await self._open_next()
            return
        chunk = await body.read()
        if chunk is None:
            self._body = None
            self._pieces.append(_END)
            await body.aclose()
            return
        self._pieces.extend(_pieces(chunk))
        self._ready += len(chunk)

    async def _open_next(self) -> None:
        entry = next(self._members, None)
        if entry is None:
            self._opened_all = True
            self._entries.append(_END)
            return
        index, item = entry
        options = self._options
        member = _next_member(index, item, self._seen, options)
        body = self._body = await _open_on_loop(member.body, options.chunk_bytes)
        written = self._written + self._ready  # stream-zip's offset is at most this
        method = _method(body, member.compress, options.compress_level, written, index)
        pieces = self._pieces = deque()
        modified = _modified(member, body, self._started)
        self._entries.append((member.name, modified, _FILE_MODE, method, self._take(pieces)))

    def _entries_for_stream_zip(self) -> Iterator[Any]:
        return _prepared(self._entries)

    def _take(self, pieces: deque[Any]) -> Iterator[bytes | memoryview]:
        for piece in _prepared(pieces):
            self._ready -= len(piece)
            yield piece


def _prepared(queue: deque[Any]) -> Iterator[Any]:
    """What was put in ``queue``, up to ``_END``; an empty queue means that stream-zip pulled
    further than :class:`_LoopArchive` prepared for it."""
    while True:
        if not queue:
            raise RuntimeError(_PULLED_TOO_FAR)
        item = queue.popleft()
        if item is _END:
            return
        yield item


_PULLED_TOO_FAR = (
    "stream-zip pulled more input in one step than faststream-kit prepared "
    "(_READY_MARGIN_BYTES): its behaviour changed; see tests/test_private_apis.py"
)


class _LoopBody(_Opened):
    """A member body read on the event loop by :class:`_LoopArchive`."""

    async def read(self) -> bytes | None:
        """The next piece, or ``None`` at the end."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Idempotent; called once its last piece is read, or when the archive stops."""


async def _open_on_loop(body: ZipBody, chunk_bytes: int) -> _LoopBody:
    if isinstance(body, S3Object):
        return await _LoopS3Object.get(body, chunk_bytes)
    if isinstance(body, bytes | bytearray | memoryview):
        return _LoopBytes(bytes(body))
    assert isinstance(body, AsyncIterable)  # _fits_the_loop let nothing else through
    return _LoopAsyncIterable(body)


class _LoopBytes(_LoopBody):
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)
        self.crc32 = zlib.crc32(data)

    async def read(self) -> bytes | None:
        data, self._data = self._data, b""
        return data or None


class _LoopAsyncIterable(_LoopBody):
    def __init__(self, iterable: AsyncIterable[bytes]) -> None:
        self._iterator: AsyncIterator[bytes] = aiter(iterable)
        self._closed = False

    async def read(self) -> bytes | None:
        try:
            return _checked(await self._iterator.__anext__())
        except StopAsyncIteration:
            return None

    async def aclose(self) -> None:
        aclose = getattr(self._iterator, "aclose", None)
        if not self._closed and aclose is not None:
            self._closed = True
            await aclose()


class _LoopS3Object(_LoopBody):
    """An aiobotocore object, read through ``s3_stream``'s reader (see
    :class:`_OpenedS3Object`)."""

    def __init__(self, found: Mapping[str, Any], key: str, chunk_bytes: int) -> None:
        self.size, self.modified = _object_details(found)
        self._reader = _AsyncObjectBody(found["Body"], chunk_bytes, self.size, key)

    @classmethod
    async def get(cls, target: S3Object, chunk_bytes: int) -> _LoopS3Object:
        try:
            found = await _S3Calls(target.client, None)("get_object", _get_params(target))
        except Exception as exc:
            raise _get_failure(exc, target) from exc
        return cls(found, target.key, chunk_bytes)

    async def read(self) -> bytes | None:
        try:
            return await self._reader.__anext__()
        except StopAsyncIteration:
            return None

    async def aclose(self) -> None:
        await self._reader.aclose()

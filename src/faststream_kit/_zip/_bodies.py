"""Member bodies, opened when the archive reaches them: what both ways of building the
archive share (:class:`_Opened`, its pieces, its date and its stream-zip method, the
``GetObject`` call), and the bodies read in the worker thread."""

from __future__ import annotations

import stat
import zlib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from datetime import datetime
from typing import Any

from .._s3 import (
    _AsyncObjectBody,
    _S3Calls,
    _SyncObjectBody,
    is_programming_error,
    object_failure,
)
from ._event_loop import _EventLoop
from ._members import _MAX_MODIFIED, _MIN_MODIFIED, S3Object, ZipBody, ZipMember, _as_utc
from ._stored import _PIECE_BYTES, _stream_zip

_FILE_MODE = stat.S_IFREG | 0o644
"""A regular file, readable by all, writable by its owner, once extracted (Unix tools)."""


_ZIP32_LIMIT = 0xFFFFFFFF
_UNKNOWN_SIZE = 2**63
"""The size stream-zip is told for a member whose size is not known before its last byte:
larger than any ZIP32 field, so the member gets ZIP64 sizes in its data descriptor."""


# ---------------------------------------------------------------------------------------------
# Opened bodies


class _Opened:
    """An opened member body: its pieces, what is known of it, and how to close it."""

    size: int | None = None
    crc32: int | None = None
    modified: datetime | None = None

    def chunks(self) -> Generator[bytes | memoryview, None, None]:
        raise NotImplementedError

    def close(self) -> None:
        """Idempotent; called once its pieces are read, or when the archive stops."""


def _modified(member: ZipMember, opened: _Opened, started: datetime) -> datetime:
    modified = _as_utc(member.modified or opened.modified or started)
    return min(max(modified, _MIN_MODIFIED), _MAX_MODIFIED)


def _method(opened: _Opened, compress: bool, level: int, written: int, index: int) -> Any:
    zip_ = _stream_zip()  # the methods of the module that writes the archive

    # ZIP32 while the member surely ends below 4 GiB (stream-zip's offset runs ahead of
    # ``written`` by at most one chunk) and the central directory can still count it; these
    # methods do not upgrade the central directory to ZIP64 on their own, ZIP_AUTO does.
    small = (
        opened.size is not None
        and index < _ZIP32_MAX_ENTRIES
        and written + 2 * opened.size + 2**20 < _ZIP32_LIMIT
    )
    if compress:
        size = _UNKNOWN_SIZE if opened.size is None else opened.size
        return zip_.ZIP_AUTO(size, level=level)
    if opened.crc32 is not None and opened.size is not None:
        # Stored (method 0) needs its CRC-32 in the local header for readers that stream,
        # so only bytes in memory are stored.
        stored = zip_.NO_COMPRESSION_32 if small else zip_.NO_COMPRESSION_64
        return stored(opened.size, opened.crc32)
    # A streamed member's CRC-32 is known only at its end: uncompressed, it is deflate made
    # of stored blocks (5 bytes per 64 KiB), which every reader streams. ZIP_32 and ZIP_64
    # take their deflater from stream_zip's ``get_compressobj``: :class:`_StoredBlocks`.
    return zip_.ZIP_32 if small else zip_.ZIP_64


_ZIP32_MAX_ENTRIES = 0xFFFF - 1
"""The central directory of a ZIP32 archive counts its entries in 16 bits."""


def _pieces(chunk: bytes) -> Iterator[bytes | memoryview]:
    """``chunk`` as views of at most ``_PIECE_BYTES`` (one stored block each, at most),
    which also bounds what one step of stream-zip pulls (``_READY_MARGIN_BYTES``)."""
    if len(chunk) <= _PIECE_BYTES:
        yield chunk
        return
    view = memoryview(chunk)
    for start in range(0, len(view), _PIECE_BYTES):
        yield view[start : start + _PIECE_BYTES]


def _checked(chunk: object) -> bytes:
    if type(chunk) is bytes:
        return chunk
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"a member body must yield bytes, got {type(chunk).__name__}")


def _get_failure(exc: Exception, target: S3Object) -> Exception:
    """What a failed ``GetObject`` raises: a programming error as it is, else 404/403/502."""
    return exc if is_programming_error(exc) else object_failure(exc, target.key)


def _get_params(target: S3Object) -> dict[str, Any]:
    return {"Bucket": target.bucket, "Key": target.key, **(target.extra_args or {})}


def _object_details(found: Mapping[str, Any]) -> tuple[int | None, datetime | None]:
    """A ``GetObject`` answer's size and date, when the SDK gave them."""
    length = found.get("ContentLength")
    modified = found.get("LastModified")
    return (
        length if isinstance(length, int) else None,
        modified if isinstance(modified, datetime) else None,
    )


# ---------------------------------------------------------------------------------------------
# Opening members (in the worker thread)


def _open_body(body: ZipBody, loop: _EventLoop, chunk_bytes: int) -> _Opened:
    if isinstance(body, S3Object):
        return _OpenedS3Object(body, loop, chunk_bytes)
    if isinstance(body, bytes | bytearray | memoryview):
        return _OpenedBytes(bytes(body))
    if isinstance(body, AsyncIterable):
        return _OpenedAsyncIterable(body, loop, chunk_bytes)
    return _OpenedIterable(body, loop)


class _OpenedBytes(_Opened):
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)
        self.crc32 = zlib.crc32(data)

    def chunks(self) -> Generator[bytes | memoryview, None, None]:
        if self._data:
            yield self._data


class _OpenedIterable(_Opened):
    def __init__(self, iterable: Iterable[bytes], loop: _EventLoop) -> None:
        self._iterable = iterable
        self._loop = loop
        self._iterator: Iterator[bytes] | None = None

    def chunks(self) -> Generator[bytes | memoryview, None, None]:
        self._iterator = iter(self._iterable)
        for chunk in self._iterator:
            self._loop.check()
            yield from _pieces(_checked(chunk))

    def close(self) -> None:
        for closing in (self._iterator, self._iterable):
            close = getattr(closing, "close", None)
            if close is not None:
                close()
                return


class _OpenedAsyncIterable(_Opened):
    def __init__(self, iterable: AsyncIterable[bytes], loop: _EventLoop, chunk_bytes: int) -> None:
        self._iterator: AsyncIterator[bytes] = aiter(iterable)
        self._loop = loop
        self._chunk_bytes = chunk_bytes
        self._closed = False

    def chunks(self) -> Generator[bytes | memoryview, None, None]:
        for chunks in self._loop.read(self._iterator, self._chunk_bytes):
            for chunk in chunks:
                yield from _pieces(_checked(chunk))

    def close(self) -> None:
        aclose = getattr(self._iterator, "aclose", None)
        if not self._closed and aclose is not None:
            self._closed = True
            self._loop.run(aclose(), stoppable=False)


class _OpenedS3Object(_Opened):
    """``GetObject`` now (so a missing first object is a 404 before any byte), then the
    body through ``s3_stream``'s own readers, which close it and hold its last piece back
    until the SDK has checked the object's checksum."""

    def __init__(self, target: S3Object, loop: _EventLoop, chunk_bytes: int) -> None:
        self._loop = loop
        self._chunk_bytes = chunk_bytes
        calls = _S3Calls(target.client, None)
        params = _get_params(target)
        try:
            if calls.is_async:
                found = loop.run(calls("get_object", params))
            else:  # already in a worker thread: call the SDK here, not in yet another one
                found = dict(target.client.get_object(**params))
        except Exception as exc:
            raise _get_failure(exc, target) from exc
        self.size, self.modified = _object_details(found)
        self._reader: _AsyncObjectBody | _SyncObjectBody
        if calls.is_async:
            self._reader = _AsyncObjectBody(found["Body"], chunk_bytes, self.size, target.key)
        else:
            self._reader = _SyncObjectBody(found["Body"], chunk_bytes, self.size, target.key)

    def chunks(self) -> Generator[bytes | memoryview, None, None]:
        reader = self._reader
        if isinstance(reader, _SyncObjectBody):
            for chunk in reader:
                self._loop.check()
                yield from _pieces(chunk)
            return
        for chunks in self._loop.read(reader, self._chunk_bytes):
            for chunk in chunks:
                yield from _pieces(chunk)

    def close(self) -> None:
        reader = self._reader
        if isinstance(reader, _SyncObjectBody):
            reader.close()
        else:
            self._loop.run(reader.aclose(), stoppable=False)  # nothing once closed

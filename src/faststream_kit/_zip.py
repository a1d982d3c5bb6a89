"""``zip_stream``: many files, or S3 objects, as one ZIP archive built while it is sent.

The ZIP format itself is written by stream-zip (``docs/zip.md`` says why that library). It
pulls members and their bytes from sync iterators and yields the archive. When every member
has ``compress=False`` and is read on the event loop (aiobotocore objects, async iterables,
small ``bytes``), its generator is advanced on the event loop (:class:`_LoopArchive`);
otherwise it runs in one worker thread of the core (:func:`iterate_in_thread`), which hands
the archive to the event loop with bounded read-ahead and reads async sources there, one
call per piece. A member is opened only when the archive reaches it (one ``GetObject`` at a
time), its bytes are read in ``chunk_bytes`` pieces and handed to stream-zip as views of at
most 64 KiB, and it is closed when its last byte is read, when the archive fails and when
the client leaves. A member with ``compress=False`` whose CRC-32 is not known before its
bytes is deflate made of stored blocks, written by :class:`_StoredBlocks` rather than zlib.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import stat
import struct
import threading
import types
import zlib
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.types import Scope

from ._crc import crc32
from ._errors import library_error
from ._http_fields import content_disposition
from ._names import SEND_TIMEOUT
from ._response import StreamResponse
from ._s3 import (
    BODY_READ_AHEAD_BYTES,
    DEFAULT_CHUNK_BYTES,
    _AsyncObjectBody,
    _S3Calls,
    _SyncObjectBody,
    is_programming_error,
    object_failure,
)
from ._threads import ThreadIterator
from ._validate import (
    check_bool,
    check_client,
    check_headers,
    check_limiter,
    check_mapping,
    check_request,
    int_between,
    non_empty_str,
    optional_positive_seconds,
    positive_int,
    stream_source,
)

__all__ = ["S3Object", "ZipBody", "ZipMember", "ZipMembers", "zip_stream"]

logger = logging.getLogger("faststream_kit")

T = TypeVar("T")

_MIN_MODIFIED = datetime(1980, 1, 1, tzinfo=UTC)
_MAX_MODIFIED = datetime(2107, 12, 31, 23, 59, 58, tzinfo=UTC)
"""The range an MS-DOS date in a ZIP header can hold (APPNOTE 4.4.6)."""

_FILE_MODE = stat.S_IFREG | 0o644
"""A regular file, readable by all, writable by its owner, once extracted (Unix tools)."""

_ZIP32_LIMIT = 0xFFFFFFFF
_UNKNOWN_SIZE = 2**63
"""The size stream-zip is told for a member whose size is not known before its last byte:
larger than any ZIP32 field, so the member gets ZIP64 sizes in its data descriptor."""

_MAX_NAME_BYTES = 0xFFFF  # the name length is a 16-bit field (APPNOTE 4.4.10)

DEFAULT_COMPRESS_LEVEL = 6
"""zlib's own default: most of level 9's ratio at a fraction of its time."""


# ---------------------------------------------------------------------------------------------
# What the caller gives


@dataclass(frozen=True)
class S3Object:
    """An S3 object to put in an archive, read like :func:`s3_stream` reads one.

    ``client`` is an aiobotocore or boto3/botocore S3 client; ``extra_args`` go to
    ``GetObject`` as they are (``VersionId``, ``SSECustomerKey``, ...). Nothing is fetched
    until the archive reaches this member; its ``LastModified`` becomes the member's date.
    """

    client: Any
    bucket: str
    key: str
    extra_args: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        non_empty_str("bucket", self.bucket)
        non_empty_str("key", self.key)
        check_mapping("extra_args", self.extra_args)
        if self.extra_args and not self.extra_args.keys().isdisjoint(("Bucket", "Key")):
            raise ValueError("extra_args must not set Bucket or Key: pass them as bucket and key")
        check_client("client", self.client, ("get_object",), _CLIENT)  # last: touches it


_CLIENT = "an aiobotocore or boto3/botocore S3 client"

ZipBody = bytes | Iterable[bytes] | AsyncIterable[bytes] | S3Object
"""A member's bytes: ``bytes``, a sync or async iterable of ``bytes``, or an :class:`S3Object`."""


@dataclass(frozen=True)
class ZipMember:
    """One file of a :func:`zip_stream` archive.

    ``name`` is the path inside the archive (``"photos/2024/cat.jpg"``), checked by
    :func:`zip_stream`. ``modified`` is the date shown when it is extracted: by default the
    S3 object's ``LastModified``, else the time the archive started; a naive datetime is
    taken as UTC. ``compress=False`` spends no time compressing (for JPEG, video, archives).
    """

    name: str
    body: ZipBody
    modified: datetime | None = None
    compress: bool = True

    def __post_init__(self) -> None:
        _check_member_fields("", self.name, self.body, self.modified)
        check_bool("compress", self.compress)


ZipMembers = (
    Iterable[ZipMember | tuple[str, ZipBody]] | AsyncIterable[ZipMember | tuple[str, ZipBody]]
)
"""What :func:`zip_stream` takes: :class:`ZipMember` values or ``(name, body)`` tuples."""


def _check_member_fields(where: str, name: Any, body: Any, modified: Any) -> None:
    """The types of a member's fields; ``where`` prefixes the field names in the messages."""
    if not isinstance(name, str):
        raise TypeError(f"{where}name must be a str, got {type(name).__name__}")
    if isinstance(body, str):
        raise TypeError(f"{where}body must be bytes, not str: encode the text (text.encode())")
    if not isinstance(body, bytes | bytearray | memoryview | S3Object):
        stream_source(
            f"{where}body",
            body,
            what="bytes, a sync or async iterable of bytes, or an S3Object",
        )
    if modified is not None:
        if not isinstance(modified, datetime):
            raise TypeError(f"{where}modified must be a datetime or None, got {type(modified)}")
        if not _MIN_MODIFIED <= _as_utc(modified) <= _MAX_MODIFIED:
            raise ValueError(
                f"{where}modified must lie between 1980 and 2107 (the ZIP date range), "
                f"got {modified.isoformat()}"
            )


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Member names


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a member's path, or ``None``.

    An extracting tool joins the name to its target directory, so a name must stay inside
    it: no absolute path (``/etc/passwd``, ``C:/x``), no ``..`` segment. APPNOTE 4.4.17
    also asks for forward slashes only, where Windows tools treat ``\\`` as a separator,
    so a backslash could hide a ``..``. The name is written as UTF-8 with the UTF-8 flag
    (APPNOTE appendix D); a ``str`` with lone surrogates (undecodable bytes kept by
    ``surrogateescape``) has no UTF-8 form.
    """
    if not name:
        return "is empty"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (it holds a lone surrogate)"
    if len(encoded) > _MAX_NAME_BYTES:
        return f"is longer than {_MAX_NAME_BYTES} bytes in UTF-8"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash (ZIP paths use '/')"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        return "is an absolute path"
    segments = name.split("/")
    if ".." in segments:
        return "contains a '..' segment"
    if "." in segments or "" in segments:
        return "contains an empty or '.' segment (or ends with '/')"
    return None


def _problem_in_archive(name: str, seen: set[str]) -> str | None:
    """:func:`name_problem`, or a name already used: extracting would overwrite a file."""
    return name_problem(name) or ("is a duplicate" if name in seen else None)


def _name_error(where: str, name: str, problem: str, *, untrusted: bool) -> Exception:
    if untrusted:
        return library_error("bad_request", f"The archive member name {name!r} {problem}.")
    return ValueError(f"{where}name {name!r} {problem}")


# ---------------------------------------------------------------------------------------------
# The public function


def zip_stream(
    members: ZipMembers,
    *,
    filename: str,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
    untrusted_names: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    headers: Mapping[str, str] | None = None,
    request: Request | None = None,
    send_timeout: float | None = SEND_TIMEOUT,
    idle_timeout: float | None = None,
    thread_limiter: anyio.CapacityLimiter | None = None,
) -> StreamResponse:
    """Stream a ZIP archive of ``members``, built while it is sent.

    ```python notest
    @app.get("/album.zip")
    async def album():
        keys = ["2024/cat.jpg", "2024/dog.jpg"]
        return zip_stream(
            [ZipMember(key, S3Object(s3, "photos", key), compress=False) for key in keys],
            filename="album.zip",
        )
    ```

    ``members`` is a sync or async iterable of :class:`ZipMember` values or ``(name,
    body)`` tuples. Members are read one at a time, in order, each when the archive reaches
    it; nothing is written to disk and memory stays bounded whatever the archive's size.
    Members whose size is not known in advance, and archives past 4 GiB, use ZIP64.

    Names are checked (no absolute path, no ``..`` segment, no backslash or control
    character, valid UTF-8, no duplicate). For members given as a list or tuple every name
    is checked in this call: a bad one is a ``ValueError`` naming ``members``, raised here.
    With ``untrusted_names=True`` (the names come from the request) it is instead a ``400``
    with the library's JSON error (``bad_request``), sent before any byte of the archive.
    A lazy iterable's names are checked as it yields them (the first one before the first
    byte).

    ``compress_level`` (0-9) is the deflate level of members with ``compress=True``. A
    failure before the first byte (the first object missing: ``404``) is a JSON error
    response; after it, the connection is aborted so the archive is visibly incomplete. The
    response is ``application/zip`` with ``Content-Disposition: attachment`` for
    ``filename`` (RFC 6266). ``headers``, ``request``, ``send_timeout``, ``idle_timeout``
    and ``thread_limiter`` are the core's (see :class:`StreamResponse`). The archive is
    built on the event loop when ``members`` is a list or tuple whose members all have
    ``compress=False`` and are read there (aiobotocore objects, async iterables, ``bytes``
    of at most 1 MiB), else in one worker thread of ``thread_limiter``.
    """
    non_empty_str("filename", filename)
    int_between("compress_level", compress_level, 0, 9)
    check_bool("untrusted_names", untrusted_names)
    positive_int("chunk_bytes", chunk_bytes)
    check_headers("headers", headers)
    check_request("request", request)
    optional_positive_seconds("send_timeout", send_timeout)
    optional_positive_seconds("idle_timeout", idle_timeout)
    check_limiter("thread_limiter", thread_limiter)
    stream_source("members", members, what="a sync or async iterable of ZipMember or (name, body)")
    refused: Exception | None = None
    if isinstance(members, list | tuple):
        refused = _check_listed_members(members, untrusted=untrusted_names)
    options = _Options(compress_level, untrusted_names, chunk_bytes)
    on_the_loop = refused is None and isinstance(members, list | tuple) and _fits_the_loop(members)

    def open_archive(scope: Scope) -> _ArchiveThread | AsyncIterator[bytes]:
        if refused is not None:
            raise refused  # before the first byte: the JSON 400
        if on_the_loop:
            assert isinstance(members, list | tuple)
            return _LoopArchive(members, options).chunks()
        loop = _EventLoop(asyncio.get_running_loop())
        return _ArchiveThread(_archive(members, options, loop), loop, thread_limiter=thread_limiter)

    return StreamResponse(
        open_archive,
        media_type="application/zip",
        headers={"content-disposition": content_disposition("attachment", filename)}
        | dict(headers or {}),
        request=request,
        send_timeout=send_timeout,
        idle_timeout=idle_timeout,
        thread_limiter=thread_limiter,
    )


def _check_listed_members(
    members: list[Any] | tuple[Any, ...], *, untrusted: bool
) -> Exception | None:
    """Check a list's members now; raise for the caller's mistakes, return a request's."""
    seen: set[str] = set()
    for index, item in enumerate(members):
        where = f"members[{index}] "
        name = _as_member(item, where).name
        problem = _problem_in_archive(name, seen)
        if problem is not None:
            error = _name_error(where, name, problem, untrusted=untrusted)
            if not untrusted:
                raise error
            return error
        seen.add(name)
    return None


def _as_member(item: Any, where: str) -> ZipMember:
    if isinstance(item, ZipMember):
        return item
    if not (isinstance(item, tuple) and len(item) == 2):
        raise TypeError(
            f"{where.strip()} must be a ZipMember or a (name, body) tuple, "
            f"got {type(item).__name__}"
        )
    name, body = item
    _check_member_fields(where, name, body, None)
    return ZipMember(name, body)


# ---------------------------------------------------------------------------------------------
# Building the archive (in the worker thread)


@dataclass(frozen=True)
class _Options:
    compress_level: int
    untrusted_names: bool
    chunk_bytes: int

    @property
    def write_bytes(self) -> int:
        """The size of the archive's pieces (see ``_WRITE_BYTES``)."""
        return min(self.chunk_bytes, _WRITE_BYTES)


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


@cache
def _stream_zip() -> types.ModuleType:
    """stream-zip, computing CRC-32 with ISA-L or zlib-ng when one is installed.

    stream-zip computes the CRC-32 of every byte with ``zlib.crc32``, about 30-45 ms per
    100 MiB with the zlib CPython links (1.2.13); ISA-L's and zlib-ng's take about 10 ms.
    stream-zip looks ``zlib`` up in its module at each call, so a copy of the module of our
    own (not the one in ``sys.modules``: nothing else in the process changes) whose ``zlib``
    has that ``crc32`` computes the same CRC faster. Without either package, or if loading
    the copy fails, it is stream-zip itself.
    """
    import stream_zip

    fast = crc32()
    if fast is zlib.crc32:
        return stream_zip
    try:
        return stream_zip_with_crc32(fast)
    except Exception:  # pragma: no cover - an installation we cannot load twice
        logger.warning("faststream-kit: using stream-zip's own CRC-32", exc_info=True)
        return stream_zip


def stream_zip_with_crc32(crc32: Callable[[Any, int], int]) -> types.ModuleType:
    """A copy of the stream-zip module whose ``zlib.crc32`` is ``crc32``."""
    spec = importlib.util.find_spec("stream_zip")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shim = types.ModuleType("zlib")
    shim.__dict__.update(vars(zlib))
    shim.crc32 = crc32  # type: ignore[attr-defined]
    module.zlib = shim  # type: ignore[attr-defined]
    return module


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


def _next_member(index: int, item: Any, seen: set[str], options: _Options) -> ZipMember:
    """The ``index``-th item as a member, its name checked."""
    where = f"members[{index}] "
    member = _as_member(item, where)
    problem = _problem_in_archive(member.name, seen)
    if problem is not None:
        raise _name_error(where, member.name, problem, untrusted=options.untrusted_names)
    seen.add(member.name)
    return member


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

_STORED_BLOCK_MAX = 0xFFFF
_STORED_HEADER = struct.Struct("<BHH")


class _StoredBlocks:
    """A deflate "compressor" that does not compress: stored blocks (RFC 1951, 3.2.4).

    zlib at level 0 writes the same blocks, but copies every byte through its window and
    Python's growing output buffer: measured, that cost 3-4x the CRC-32 of the same bytes.
    Here the pieces are kept as views and copied once, into the output. Blocks are 64 KiB
    whatever the pieces' sizes (5 bytes of framing each), and the output comes in pieces of
    exactly ``write_bytes``: stream-zip writes such a piece as it is, where it would
    otherwise copy every byte again to cut its own pieces of that size.
    """

    def __init__(self, write_bytes: int) -> None:
        self._write_bytes = write_bytes
        self._block: list[memoryview] = []  # the data of the block being filled
        self._block_bytes = 0
        self._out: deque[bytes | memoryview] = deque()  # finished blocks not handed out yet
        self._out_bytes = 0

    def compress(self, data: bytes) -> bytes:
        view = memoryview(data)
        start, size = 0, len(view)
        while start < size:
            take = min(_STORED_BLOCK_MAX - self._block_bytes, size - start)
            self._block.append(view[start : start + take] if take < size else view)
            self._block_bytes += take
            start += take
            if self._block_bytes == _STORED_BLOCK_MAX:
                self._end_block(final=False)
        whole = self._out_bytes - self._out_bytes % self._write_bytes
        return self._take(whole) if whole else b""

    def flush(self) -> bytes:
        self._end_block(final=True)
        return self._take(self._out_bytes)

    def _end_block(self, *, final: bool) -> None:
        self._out.append(_stored_header(self._block_bytes, final=final))
        self._out.extend(self._block)
        self._out_bytes += _STORED_HEADER.size + self._block_bytes
        self._block = []
        self._block_bytes = 0

    def _take(self, size: int) -> bytes:
        """The first ``size`` bytes of the finished blocks, in one copy."""
        out = self._out
        parts: list[bytes | memoryview] = []
        left = size
        while left:
            part = out[0]
            if len(part) > left:
                parts.append(part[:left])
                out[0] = part[left:]
                break
            parts.append(out.popleft())
            left -= len(part)
        self._out_bytes -= size
        return b"".join(parts)


def _stored_blocks(write_bytes: int) -> Any:
    """stream-zip's ``get_compressobj`` (typed as returning zlib's compressor)."""
    return partial(_StoredBlocks, write_bytes)


def _stored_header(size: int, *, final: bool = False) -> bytes:
    # BFINAL, then BTYPE 00 (stored) and the rest of the byte; LEN and its complement.
    return _STORED_HEADER.pack(1 if final else 0, size, size ^ 0xFFFF)


# ---------------------------------------------------------------------------------------------
# Opening members (in the worker thread)


class _Opened:
    """An opened member body: its pieces, what is known of it, and how to close it."""

    size: int | None = None
    crc32: int | None = None
    modified: datetime | None = None

    def chunks(self) -> Generator[bytes | memoryview, None, None]:
        raise NotImplementedError

    def close(self) -> None:
        """Idempotent; called once its pieces are read, or when the archive stops."""


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


_PIECE_BYTES = 64 * 1024
_WRITE_BYTES = 256 * 1024
"""The archive's bytes go to stream-zip in pieces of at most ``_PIECE_BYTES`` (views of what
was read, not copies) and come out in pieces of ``min(chunk_bytes, _WRITE_BYTES)``.

Measured on 100 MiB of S3 objects (``bench/zip.py`` and the worker thread's CPU): every
buffer of a MiB made in the worker (joining what a read returned, or stream-zip's output
piece) cost about as much again in page faults as the copy itself, since the allocator
hands such buffers back to the kernel when they are freed. Pieces of 64-256 KiB are reused
from the heap; joining 64 KiB reads into one MiB took the worker ~1.6x the CPU of passing
them through. Below 256 KiB per write, the event loop's cost per write grows instead."""


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
# Building the archive on the event loop


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

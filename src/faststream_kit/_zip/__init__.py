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

The package, one module per concern: ``_members`` (what the caller gives, name checks),
``_stored`` (stream-zip and its stored blocks), ``_bodies`` (opened member bodies),
``_event_loop`` (the worker thread's link to the event loop), and the two ways of building
the archive, ``_thread`` and ``_loop``; a variant imports the shared modules, never the reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import anyio
from starlette.requests import Request
from starlette.types import Scope

from .._http_fields import content_disposition
from .._names import SEND_TIMEOUT
from .._response import StreamResponse
from .._s3 import DEFAULT_CHUNK_BYTES
from .._validate import (
    check_bool,
    check_headers,
    check_limiter,
    check_request,
    int_between,
    non_empty_str,
    optional_positive_seconds,
    positive_int,
    stream_source,
)
from ._event_loop import _EventLoop
from ._loop import _READY_MARGIN_BYTES as _READY_MARGIN_BYTES
from ._loop import _fits_the_loop, _LoopArchive
from ._members import (
    DEFAULT_COMPRESS_LEVEL,
    S3Object,
    ZipBody,
    ZipMember,
    ZipMembers,
    _check_listed_members,
    _Options,
)
from ._members import name_problem as name_problem
from ._stored import _PIECE_BYTES as _PIECE_BYTES
from ._stored import _stored_blocks as _stored_blocks
from ._stored import _stream_zip as _stream_zip
from ._stored import stream_zip_with_crc32 as stream_zip_with_crc32
from ._thread import _archive, _ArchiveThread

__all__ = ["S3Object", "ZipBody", "ZipMember", "ZipMembers", "zip_stream"]


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

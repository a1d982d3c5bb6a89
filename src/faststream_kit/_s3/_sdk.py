"""The SDK side: ``GetObject``/``HeadObject`` through an aiobotocore or boto3 client, and
its body read in ``chunk_bytes`` pieces (``_AsyncObjectBody``, ``_SyncObjectBody``).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from .._threads import (
    default_thread_limiter,
)
from ._failures import _body_failure

DEFAULT_CHUNK_BYTES = 1024 * 1024
"""Bytes per body read. Measured on 100 MiB from SeaweedFS (``bench/s3.py``): 64 KiB reads
took ~1.8x a direct boto3 download with either SDK, 1 MiB reads 0.7-1.7x. aiobotocore's
``read(n)`` returns what has arrived (up to ``n``), so a large ``n`` adds no latency."""

BODY_READ_AHEAD_BYTES = 2 * 1024 * 1024
"""At most this much of a boto3 body is read ahead of a slow client (in whole chunks)."""


class _S3Calls:
    """Calls an aiobotocore client directly, and a botocore one in a worker thread."""

    def __init__(self, client: Any, limiter: anyio.CapacityLimiter | None) -> None:
        self.client = client
        self.limiter = limiter
        # aiobotocore's generated methods are plain functions that return coroutines; its
        # ``_make_api_call`` is what is declared ``async``.
        self.is_async = inspect.iscoroutinefunction(client.get_object) or (
            inspect.iscoroutinefunction(getattr(client, "_make_api_call", None))
        )

    async def __call__(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        method = partial(getattr(self.client, operation), **params)
        if self.is_async:
            result: Any = await method()
        else:
            limiter = self.limiter or default_thread_limiter()
            result = await anyio.to_thread.run_sync(method, limiter=limiter)
            if inspect.isawaitable(result):
                result = await result
        return dict(result)


async def _close_body(body: Any) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None and inspect.iscoroutinefunction(aclose):
        await aclose()
        return
    result = body.close()
    if inspect.isawaitable(result):
        await result


# Both readers hold the last piece of the body back until a read has returned the end. That
# read is where botocore checks the object's checksum: a mismatch then stops the response one
# piece short of its ``Content-Length``, which every client notices, instead of after the
# last byte, which none can.


class _ObjectPieces:
    """What both readers keep: the body, and how much of the promised length is still due."""

    def __init__(self, body: Any, chunk_bytes: int, length: int | None, key: str) -> None:
        self._body = body
        self._chunk_bytes = chunk_bytes
        self._unread = sys.maxsize if length is None else length
        self._key = key
        self._at_end = False  # a read returned the end (and the SDK checked the sum)
        self._closed = False

    def _is_last(self, chunk: bytes) -> bool:
        """Count ``chunk``; true when it completes the promised length."""
        self._unread -= len(chunk)
        return self._unread <= 0


class _AsyncObjectBody(_ObjectPieces):
    """An aiobotocore body as ``chunk_bytes`` pieces; ``aclose()`` closes it, read or not."""

    _filled = False  # the first piece has been read up to chunk_bytes

    def __aiter__(self) -> _AsyncObjectBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = b"" if self._at_end else await self._read(self._chunk_bytes)
        if not chunk:
            await self.aclose()
            raise StopAsyncIteration
        if not self._filled:
            chunk = await self._fill(chunk)
        if self._is_last(chunk) and not self._at_end:
            rest = await self._read(self._chunk_bytes)
            self._at_end = not rest
            chunk += rest
        return chunk

    async def _fill(self, chunk: bytes) -> bytes:
        """The first piece, read up to ``chunk_bytes`` or the end of the body.

        aiohttp's ``read(n)`` returns what has arrived, often 64 KiB; botocore's fills ``n``.
        Filling the first piece means that an object of up to ``chunk_bytes`` is read whole,
        and its checksum checked, before any byte goes out: a mismatch is then a ``502``.
        """
        self._filled = True
        pieces = [chunk]
        size = len(chunk)
        while size < min(self._chunk_bytes, self._unread):
            more = await self._read(self._chunk_bytes - size)
            if not more:
                self._at_end = True
                break
            pieces.append(more)
            size += len(more)
        return b"".join(pieces) if len(pieces) > 1 else chunk

    async def _read(self, size: int) -> bytes:
        try:
            chunk: bytes = await self._body.read(size)
        except Exception as exc:
            raise _body_failure(exc, self._key) from exc
        return chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await _close_body(self._body)


class _SyncObjectBody(_ObjectPieces):
    """A botocore body as ``chunk_bytes`` pieces, read (and closed) in the worker thread."""

    def __iter__(self) -> _SyncObjectBody:
        return self

    def __next__(self) -> bytes:
        chunk = b"" if self._at_end else self._read()
        if not chunk:
            self.close()
            raise StopIteration
        if self._is_last(chunk):
            rest = self._read()
            self._at_end = not rest
            chunk += rest
        return chunk

    def _read(self) -> bytes:
        try:
            chunk: bytes = self._body.read(self._chunk_bytes)
        except Exception as exc:
            raise _body_failure(exc, self._key) from exc
        return chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._body.close()

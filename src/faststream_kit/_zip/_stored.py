"""stream-zip, and the stored deflate blocks it writes for members that are not compressed.

The archive's pieces going in and out of stream-zip, its module copy with a fast CRC-32
(:func:`_stream_zip`), and :class:`_StoredBlocks`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import struct
import types
import zlib
from collections import deque
from collections.abc import (
    Callable,
)
from functools import cache, partial
from typing import Any

from .._crc import crc32

logger = logging.getLogger("faststream_kit")

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

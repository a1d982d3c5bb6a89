"""The fast path: the SDK's own signed ``GetObject``, sent and read by a pyreqwest client."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any, Literal

from .._http_fields import (
    parse_http_date,
)
from ._checksum import _ObjectChecksum
from ._sdk import _S3Calls

logger = logging.getLogger("faststream_kit")


_SIGNING_ONLY: ContextVar[bool] = ContextVar("faststream_kit_s3_signing_only", default=False)
_SIGNING_HOOK = "faststream-kit-s3-fast-path"


class _Signed(Exception):
    """Raised by our ``before-send`` hook: the SDK's request, signed, that it did not send."""

    def __init__(self, url: str, headers: list[tuple[str, str]]) -> None:
        super().__init__(url)
        self.url = url
        self.headers = headers


def _stop_after_signing(request: Any, event_name: str = "", **_: Any) -> None:
    """botocore's ``before-send`` hook: for our own calls only, take the request it built and
    signed (every header, ``x-amz-checksum-mode`` and SSE-C keys included) instead of letting
    it go out. botocore hands an exception from the hook back up as the call's error."""
    if _SIGNING_ONLY.get() and event_name.endswith(".GetObject"):
        headers = [
            (name, value.decode("latin-1") if isinstance(value, bytes) else str(value))
            for name, value in request.headers.items()
        ]
        raise _Signed(str(request.url), headers)


def _check_http_client(name: str, value: Any) -> None:
    """A pyreqwest async ``Client`` (or anything shaped like one), or ``None``."""
    if value is None:
        return
    if not callable(getattr(value, "request", None)) or not hasattr(value, "__aenter__"):
        raise TypeError(
            f"{name} must be a pyreqwest.client.Client (async) or None, got {type(value).__name__}"
        )


class _FastPrecondition(Exception):
    """S3 answered the fast GET with 304 or 412: no body, and no need to ask the SDK."""

    def __init__(self, status: Literal[304, 412], etag: str | None) -> None:
        super().__init__(status)
        self.status: Literal[304, 412] = status
        self.etag = etag


class _FastGet:
    """``GetObject`` built and signed by the SDK, sent and read by the fast client."""

    def __init__(self, http_client: Any, calls: _S3Calls, chunk_bytes: int) -> None:
        self.http_client = http_client
        self.calls = calls
        self.chunk_bytes = chunk_bytes

    async def get_object(self, params: dict[str, Any]) -> dict[str, Any]:
        signed = await self._sign(params)
        try:
            return await self._fetch(signed.url, signed.headers)
        except _FastPrecondition:
            raise
        except Exception as exc:
            # S3's error (a 404, a 403, a 416), or the fast client could not reach it: the SDK
            # sends the request itself and raises its own ClientError, so every error is
            # answered as without the fast path. An SDK that then succeeds means the fast
            # path is broken here: worth a warning.
            found = await self.calls("get_object", params)
            logger.warning("the fast path failed for %s, the SDK did not (%r)", params["Key"], exc)
            return found

    async def _sign(self, params: dict[str, Any]) -> _Signed:
        """The SDK's own ``GetObject`` request for ``params``, signed, not sent."""
        # Last, at the service level: a hook of the caller's on before-send.s3 (one that
        # records or changes requests) still sees the request first. unique_id: registered
        # once per client, whatever the number of calls.
        events = self.calls.client.meta.events
        events.register_last("before-send.s3", _stop_after_signing, unique_id=_SIGNING_HOOK)
        # Only this call is stopped: the flag is ours (a worker thread gets a copy of it).
        token = _SIGNING_ONLY.set(True)
        try:
            await self.calls("get_object", params)
        except _Signed as signed:
            # Without its traceback: the SDK's frames hold the exception they raised, a cycle
            # of ~50-75 objects per request left for the cyclic GC.
            return signed.with_traceback(None)
        finally:
            _SIGNING_ONLY.reset(token)
        raise RuntimeError("the SDK answered GetObject without sending it")  # another hook did

    async def _fetch(self, url: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
        # pyreqwest reads streamed_read_buffer_limit bytes before it returns the headers and
        # then hands the body over in batches of that size: chunk_bytes, what s3_stream reads
        # at a time anyway (an S3 object is a known length, sent as fast as it can be).
        builder = self.http_client.request("GET", url).headers(headers)
        request = builder.streamed_read_buffer_limit(self.chunk_bytes).build_streamed()
        response = await request.__aenter__()
        try:
            status = response.status
            if status in (200, 206):
                return _found_from_headers(request, response)
            etag = response.get_header("etag")
        except BaseException:
            await request.__aexit__(None, None, None)
            raise
        await request.__aexit__(None, None, None)
        if status in (304, 412):
            raise _FastPrecondition(status, etag)
        raise RuntimeError(f"S3 answered the fast GET with {status}")


def _found_from_headers(request: Any, response: Any) -> dict[str, Any]:
    """What ``GetObject`` would have returned, from the response's own header fields."""
    get = response.get_header
    length = get("content-length")
    found: dict[str, Any] = {
        "ContentLength": int(length) if length is not None and length.isdigit() else None,
        "ETag": get("etag"),
        "LastModified": parse_http_date(get("last-modified")),
        "ContentRange": get("content-range"),
        "ContentType": get("content-type"),
        "ContentEncoding": get("content-encoding"),
        "CacheControl": get("cache-control"),
    }
    # A range has no checksum of its own (S3 sends the whole object's, if any).
    checksum = _ObjectChecksum.of(response) if response.status == 200 else None
    found["Body"] = _FastObjectBody(request, response, checksum)
    return {name: value for name, value in found.items() if value is not None}


class _FastObjectBody:
    """The fast client's response body with the SDK body's two methods: ``read(n)`` (which
    fills ``n`` unless the body ends, as botocore's does) and ``aclose()``."""

    def __init__(self, request: Any, response: Any, checksum: _ObjectChecksum | None) -> None:
        self._request = request
        self._reader = response.body_reader
        self._checksum = checksum
        self._rest: Any = None  # the part of a chunk beyond the last read
        self._ended = False
        self._closed = False

    async def read(self, amount: int) -> bytes:
        """``amount`` bytes (fewer at the end of the body), ``b""`` at the end.

        pyreqwest hands the body over as the chunks hyper read (~400 KiB each here), views of
        its own buffers; they are summed and joined straight into the ``bytes`` an ASGI body
        must be: the one copy this path makes. (pyreqwest's own ``read(n)`` would first copy
        them into a buffer of ``n`` bytes: a second copy, on the event loop thread.)
        """
        parts: list[Any] = []
        size = 0
        while size < amount:
            chunk = self._rest if self._rest is not None else await self._next_chunk()
            self._rest = None
            if chunk is None:
                break
            if size + len(chunk) > amount:
                cut = amount - size
                chunk, self._rest = chunk[:cut], chunk[cut:]  # views, not copies
            if self._checksum is not None:
                self._checksum.update(chunk)
            parts.append(chunk)
            size += len(chunk)
        if not parts:
            if self._checksum is not None:
                self._checksum.verify()  # the end: the whole body was summed
            return b""
        return b"".join(parts)

    async def _next_chunk(self) -> Any:
        if self._ended:
            return None
        chunk = await self._reader.read_chunk()
        self._ended = chunk is None
        return chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            # A fully read connection goes back to pyreqwest's pool; any other is dropped.
            await self._request.__aexit__(None, None, None)

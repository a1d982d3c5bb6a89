"""Per-format bytes the core needs: how to say "still here" and how to say "failed".

The keepalive belongs to the format: an SSE comment is invisible to ``EventSource``, an empty
line is skipped by NDJSON readers, and plain text has no byte a reader would not see, so it
gets none unless the caller brings its own.
"""

from __future__ import annotations

from collections.abc import Callable

from ._errors import report_error
from ._sse import PING_FRAME, compact_json, sse_frame

__all__ = [
    "NDJSON_KEEPALIVE",
    "ErrorFrame",
    "default_error_frame",
    "default_keepalive_frame",
    "ndjson_error_frame",
    "sse_error_frame",
]

ErrorFrame = Callable[[BaseException], bytes]
"""Turns the exception that ended a stream after its headers into the stream's last bytes."""

NDJSON_KEEPALIVE = b"\n"
"""An empty line: JSON Lines readers skip blank lines, so it keeps the connection alive."""

_NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines"})


def _base_type(media_type: str | None) -> str:
    return (media_type or "").partition(";")[0].strip().lower()


def sse_error_frame(exc: BaseException) -> bytes:
    """``event: error`` with a JSON body of the error's public type and message."""
    return sse_frame(report_error(exc).as_dict(), event="error")


def ndjson_error_frame(exc: BaseException) -> bytes:
    """One NDJSON line ``{"type": "error", "error": {"type": ..., "message": ...}}``.

    The same line in every NDJSON stream: a reader that switches on ``type`` (the LLM
    format) and one that looks for an ``error`` key (any other stream) both recognise it.
    """
    return compact_json({"type": "error", "error": report_error(exc).as_dict()}).encode() + b"\n"


def default_keepalive_frame(media_type: str | None) -> bytes | None:
    base = _base_type(media_type)
    if base == "text/event-stream":
        return PING_FRAME
    if base in _NDJSON_TYPES:
        return NDJSON_KEEPALIVE
    return None


def default_error_frame(media_type: str | None) -> ErrorFrame | None:
    base = _base_type(media_type)
    if base == "text/event-stream":
        return sse_error_frame
    if base in _NDJSON_TYPES:
        return ndjson_error_frame
    return None

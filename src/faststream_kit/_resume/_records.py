"""What a resumable stream's entries hold, and how a reader turns them back into events.

An entry is a batch: every event the producer made since its previous write, ``n`` of them,
with consecutive ids ``<ms>-<seq - n + 1>`` ... ``<ms>-<seq>`` where ``<ms>-<seq>`` is the
entry's own id. The producer picks the ids itself (it is the stream's only writer), so an SSE
stream stores finished frames, ``id:`` line included, and a reader passes them through; a
reader resuming after an event in the middle of a batch drops the events up to it.

Kinds (field ``k``): ``start`` (written with the owner key), ``s`` (SSE frames, each ending
with a blank line), ``l`` (LLM events, one compact JSON record a line), ``end``, ``err``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._errors import StreamError
from .._llm import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from .._sse import ServerSentEvent, compact_json, sse_frame
from .._sse_response import encode_event
from ._keys import EntryId

__all__ = [
    "END",
    "ERROR",
    "LLM",
    "SSE",
    "START",
    "decode_llm_event",
    "encode_llm_event",
    "error_fields",
    "events_after",
    "sse_event_frame",
    "stored_error",
]

START, SSE, LLM, END, ERROR = b"start", b"s", b"l", b"end", b"err"

_FRAME_END = b"\n\n"  # every SSE frame ends with its only blank line (WHATWG "dispatch")
_RECORD_END = b"\n"  # compact JSON never holds a raw newline


def sse_event_frame(item: Any) -> bytes:
    """The frame ``sse_response`` would send for ``item``, without its ``id``: only
    ``data`` and ``event`` are kept; the id is the stream's own, which makes resuming exact."""
    if type(item) is str:
        return sse_frame(item)  # the common case, first
    if isinstance(item, ServerSentEvent):
        data, event = item.data, item.event
    elif isinstance(item, dict):
        encode_event(item)  # validates the field names
        data, event = item.get("data"), item.get("event")
    else:
        data, event = item, None
    return sse_frame(data, event=event)


def events_after(fields: Mapping[bytes, bytes], entry_id: EntryId, cursor: EntryId) -> bytes:
    """The batch's payload from the first event after ``cursor`` on (all of it, usually)."""
    payload = fields[b"d"]
    count = int(fields[b"n"])
    first = entry_id[1] - count + 1
    if cursor[0] != entry_id[0] or cursor[1] < first:
        return payload
    skip = cursor[1] - first + 1
    separator = _FRAME_END if fields[b"k"] == SSE else _RECORD_END
    parts = payload.split(separator)
    return separator.join(parts[skip:])


def split_events(fields: Mapping[bytes, bytes], payload: bytes) -> list[bytes]:
    """One item per event of a (possibly trimmed) payload."""
    if fields[b"k"] == SSE:
        return [frame + _FRAME_END for frame in payload.split(_FRAME_END)[:-1]]
    return payload.split(_RECORD_END)[:-1]


def error_fields(
    kind: str,
    message: str,
    status_code: int,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> dict[bytes, bytes]:
    fields = {
        b"k": ERROR,
        b"type": kind.encode(),
        b"message": message.encode(),
        b"status": str(status_code).encode(),
    }
    if code is not None:
        fields[b"code"] = code.encode()
    retry_after = (headers or {}).get("Retry-After")
    if retry_after:
        fields[b"retry_after"] = str(retry_after).encode()
    return fields


def stored_error(fields: Mapping[bytes, bytes]) -> StreamError:
    """The producer's error as it recorded it: status, type, message, ``Retry-After``."""
    retry_after = fields.get(b"retry_after")
    status = fields.get(b"status", b"")
    code = fields.get(b"code")
    return StreamError(
        fields.get(b"message", b"").decode(),
        # An entry written by an older version may lack a status, or hold another one.
        status_code=int(status) if status.isdigit() and 400 <= int(status) <= 599 else 502,
        type=fields.get(b"type", b"upstream_error").decode() or "upstream_error",
        headers={"Retry-After": retry_after.decode()} if retry_after else None,
        code=code.decode() if code else None,
    )


def encode_llm_event(event: LLMEvent) -> bytes:
    if type(event) is TextDelta:
        record: dict[str, Any] = {"t": "text", "x": event.text}
    elif type(event) is ReasoningDelta:
        record = {"t": "reasoning", "x": event.text}
    elif type(event) is ToolCallDelta:
        record = {
            "t": "tool",
            "i": event.index,
            "id": event.id,
            "n": event.name,
            "a": event.arguments,
        }
    else:
        assert type(event) is Finish
        record = {"t": "finish", "r": event.finish_reason, "u": event.usage}
    return compact_json(record).encode() + _RECORD_END


def decode_llm_event(raw: bytes) -> LLMEvent:
    record = json.loads(raw)
    kind = record["t"]
    if kind == "text":
        return TextDelta(record["x"])
    if kind == "reasoning":
        return ReasoningDelta(record["x"])
    if kind == "tool":
        return ToolCallDelta(record["i"], record["id"], record["n"], record["a"])
    return Finish(record["r"], record["u"])

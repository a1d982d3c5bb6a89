"""Server-Sent Events wire format: turn one event into ``text/event-stream`` bytes.

Pure functions, no I/O. The rules come from the WHATWG HTML Standard, section 9.2
"Server-sent events" (https://html.spec.whatwg.org/multipage/server-sent-events.html).
The matching strict parser lives in :mod:`faststream_kit.testing._sse_parser`.
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
from collections.abc import Callable
from typing import Any

__all__ = [
    "DONE_FRAME",
    "PING_FRAME",
    "ServerSentEvent",
    "json_data_frame",
    "json_event",
    "sse_frame",
    "with_id",
]

#: A keepalive: "Legacy proxy servers are known to, in certain cases, drop HTTP connections
#: after a short timeout. To protect against such proxy servers, authors can include a comment
#: line (one starting with a ':' character) every 15 seconds or so." A comment dispatches
#: nothing, so clients never see it as an event.
PING_FRAME = b": ping\n\n"

#: The end marker of OpenAI's chat completion streams, which the AI SDK UI message stream
#: took over: an event whose data is ``[DONE]``, not JSON.
DONE_FRAME = b"data: [DONE]\n\n"


def sse_frame(
    data: object = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """Encode one event in the ``text/event-stream`` format, UTF-8 encoded.

    The frame is, in this order: one ``: text`` line per line of ``comment``, then ``event:``,
    ``id:``, ``retry:``, one ``data:`` line per line of ``data``, then the blank line that
    dispatches the event ("If the line is empty (a blank line): Dispatch the event").

    Each field is written as ``field: value``. The single space is optional on the wire, but
    the parser removes exactly one ("If value starts with a U+0020 SPACE character, remove it
    from value"), so writing it keeps values that begin with a space intact. An empty value is
    written as a bare ``field:``.

    ``data``:

    - ``str`` is sent as is. The spec ends a line on "a U+000D CARRIAGE RETURN U+000A LINE FEED
      (CRLF) character pair, a single U+000A LINE FEED (LF) character, or a single U+000D
      CARRIAGE RETURN (CR) character", so the text is split on exactly those into ``data:``
      lines; the client joins them with LF, so CR and CRLF arrive as LF. A newline in ``data``
      can never end the event early.
    - ``""`` is one empty ``data:`` line, so the event still dispatches, with empty data.
    - ``bytes`` must be valid UTF-8 ("Event streams are always decoded as UTF-8") and are then
      treated as ``str``.
    - ``dict``, ``list``, ``tuple``, dataclass instances, pydantic models (anything with
      ``model_dump_json()``), numbers and booleans become compact JSON.
    - ``None`` writes no ``data:`` line. The frame then only carries its comment, ``event``,
      ``id`` and ``retry``: "If the data buffer is an empty string, set the data buffer and the
      event type buffer to the empty string and return", so the client dispatches no event but
      does remember the ``id`` and ``retry``.

    Raises:
        ValueError: naming the field and the rule it breaks: CR or LF in ``event`` or ``id``
            (either would end the field's line), NUL in ``id`` ("If the field value does not
            contain U+0000 NULL, then set the last event ID buffer"; otherwise a client ignores
            it), ``retry`` that is not a non-negative ``int`` ("If the field value consists of
            only ASCII digits"), text that is not valid Unicode (a lone surrogate cannot be
            encoded as UTF-8), or ``data`` that cannot be turned into JSON.
    """
    # The per-token path: plain text, no other field. One concatenation and one encode.
    if (
        type(data) is str
        and event is None
        and id is None
        and retry is None
        and comment is None
        and "\n" not in data
        and "\r" not in data
    ):
        text = "data: " + data + "\n\n" if data else "data:\n\n"
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(_NOT_UNICODE.format(field="data")) from None

    # The per-event JSON path: a dict or list as data, no other field. JSON text never
    # contains a raw CR or LF (json escapes them), so it is always a single data line.
    if (
        type(data) in (dict, list)
        and event is None
        and id is None
        and retry is None
        and comment is None
    ):
        try:
            return ("data: " + compact_json(data) + "\n\n").encode("utf-8")
        except (TypeError, ValueError):
            pass  # the general path below names the problem

    parts: list[str] = []
    if comment is not None:
        _require_str(comment, "comment")
        # A comment line is any line starting with ':'; the rest of it is free text.
        parts.extend(": " + line if line else ":" for line in _split_lines(comment))
    if event is not None:
        _check_single_line(event, "event")
        parts.append("event: " + event if event else "event:")
    if id is not None:
        _check_single_line(id, "id")
        if "\0" in id:
            raise ValueError("id must not contain NUL (U+0000); clients ignore such an id")
        parts.append("id: " + id if id else "id:")
    if retry is not None:
        _check_retry(retry)
        parts.append("retry: " + str(retry))
    if data is not None:
        parts.extend("data: " + line if line else "data:" for line in _split_lines(data_text(data)))
    parts.append("\n")
    text = "\n".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(_NOT_UNICODE.format(field=_first_unencodable(parts))) from None


def json_event(json_text: str, event: str | None = None) -> bytes:
    """One event whose ``data`` is compact JSON text: the hot path of the LLM formats.

    Equal to ``sse_frame(json_text, event=event)`` without its checks: JSON text never holds
    a raw CR or LF (JSON escapes them), so it is one ``data:`` line, and ``event`` is one of
    the format's own names. Only a lone surrogate can still fail, as in :func:`sse_frame`.
    """
    text = (
        "data: " + json_text + "\n\n"
        if event is None
        else ("event: " + event + "\ndata: " + json_text + "\n\n")
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(_NOT_UNICODE.format(field="data")) from None


def json_data_frame(json_bytes: bytes) -> bytes:
    """One event whose ``data`` is compact JSON, already UTF-8 (pydantic's ``dump_json()``).

    :func:`json_event` without the text round trip: compact JSON holds no raw CR or LF, so
    it is one ``data:`` line.
    """
    return b"data: " + json_bytes + b"\n\n"


def with_id(frame: bytes, id: str) -> bytes:
    """``frame`` (one or more encoded events) preceded by an ``id:`` line.

    The id is the "last event ID buffer" of every event in ``frame``: the client keeps it
    until another ``id`` field arrives, so a reconnect resumes after the whole frame.
    """
    _check_single_line(id, "id")
    if "\0" in id:
        raise ValueError("id must not contain NUL (U+0000); clients ignore such an id")
    return with_trusted_id(frame, id)


def with_trusted_id(frame: bytes, id: str) -> bytes:
    """:func:`with_id` for an id the library made itself (ASCII digits and a dash), unchecked:
    the resumable producer prefixes one to every event."""
    return b"id: " + id.encode("utf-8") + b"\n" + frame


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One Server-Sent Event, checked when it is built.

    The fields and their rules are those of :func:`sse_frame`; building an invalid event raises
    the same ``ValueError``, so an event that exists can always be sent. The wire bytes are
    computed once, at construction: treat a ``dict`` or ``list`` given as ``data`` as frozen.
    """

    data: object = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None
    _frame: bytes = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Encoding is the validation (JSON-ability and UTF-8 can only be checked by doing it),
        # so keep the result instead of encoding twice.
        frame = sse_frame(
            self.data, event=self.event, id=self.id, retry=self.retry, comment=self.comment
        )
        object.__setattr__(self, "_frame", frame)

    def encode(self) -> bytes:
        """Return the event in the ``text/event-stream`` wire format (see :func:`sse_frame`)."""
        return self._frame


_NOT_UNICODE = "{field} must be valid Unicode text (it contains a lone surrogate)"


def _split_lines(text: str) -> list[str]:
    # Only CR, LF and CRLF end a line in an event stream; str.splitlines() would also split
    # on VT, FF, U+2028 and others, which a client keeps as ordinary characters.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def data_text(data: object) -> str:
    """The text an event's ``data`` is sent as: ``str`` as is, UTF-8 ``bytes``, else JSON."""
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"data bytes must be valid UTF-8 ({exc.reason} at {exc.start})"
            ) from None
    model_dump_json = getattr(data, "model_dump_json", None)
    if callable(model_dump_json) and not isinstance(data, type):
        # pydantic v2 writes compact JSON itself, with its own rules for dates, enums, ...
        text = model_dump_json()
        if not isinstance(text, str):
            raise ValueError("data.model_dump_json() must return str")
        return text
    try:
        return compact_json(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data must be str, bytes or JSON-serialisable: {exc}") from None


def _json_default(value: object) -> Any:
    # Called by the JSON encoder for what it cannot encode: the top-level value or a nested one.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        return model_dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _compact_json_encoder(
    default: Callable[[object], Any] = _json_default,
) -> Callable[[object], str]:
    """Compact JSON text, from the standard library's C encoder built once.

    ``default`` converts what JSON has no type for (``_table.py`` adds database values).

    ``JSONEncoder.encode()`` builds a new C encoder on every call, about half of its time for
    a small dict; this one is built once and reused. It runs without the circular-reference
    table (shared between calls and threads, stale entries could report false cycles), so a
    cyclic value ends in ``RecursionError``, reported as the ``ValueError`` json would raise.
    """
    encoder = json.JSONEncoder(
        separators=(",", ":"),
        ensure_ascii=False,
        # NaN and Infinity are not JSON; a client's JSON.parse() would throw.
        allow_nan=False,
        default=default,
    )
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # pragma: no cover - no C accelerator (PyPy)
        return encoder.encode
    c_encode = make_encoder(
        None,  # markers: no circular-reference table
        encoder.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )

    def encode(value: object) -> str:
        try:
            return "".join(c_encode(value, 0))
        except RecursionError:
            raise ValueError("Circular reference detected (or data nested too deeply)") from None

    return encode


compact_json = _compact_json_encoder()
"""Compact JSON text (UTF-8 as is, no NaN), as every format of ours writes it."""


def _require_str(value: object, field: str) -> str:
    # The annotations say str, but callers pass whatever their framework hands them.
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a str, not {type(value).__name__}")
    return value


def _check_single_line(value: object, field: str) -> None:
    value = _require_str(value, field)
    if "\n" in value or "\r" in value:
        raise ValueError(f"{field} must not contain CR or LF: a line break would end the field")


def _check_retry(retry: object) -> None:
    # bool is an int subclass, but retry=True is a bug, not one millisecond.
    if not isinstance(retry, int) or isinstance(retry, bool):
        raise ValueError(f"retry must be an int number of milliseconds, not {type(retry).__name__}")
    if retry < 0:
        raise ValueError("retry must not be negative: the field only accepts ASCII digits")


def _first_unencodable(parts: list[str]) -> str:
    # Only reached on error: find which field's line holds the surrogate, by its prefix.
    for line in parts:
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            return line.partition(":")[0] or "comment"
    return "data"  # pragma: no cover - some line must have failed

"""A strict, incremental ``text/event-stream`` parser for tests.

It follows the WHATWG HTML Standard, section 9.2.6 "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
step by step, so a test sees exactly what a browser's ``EventSource`` would see, whatever
the chunk boundaries were.
"""

from __future__ import annotations

import codecs
import dataclasses
import re

__all__ = ["ParsedEvent", "SSEParser", "parse_events"]

# "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF)
# character pair, a single U+000A LINE FEED (LF) character, or a single U+000D CARRIAGE
# RETURN (CR) character." Nothing else (VT, FF, U+2028, ...) ends a line.
_LINE_END = re.compile(r"\r\n?|\n")


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One dispatched event, as ``EventSource`` would deliver it.

    ``id`` is the last event ID buffer at dispatch, which carries over from earlier events
    ("the last event ID buffer ... is not reset"); ``None`` when the stream has had no ``id``
    field yet. ``retry`` is the reconnection time set by a ``retry`` field in this event's own
    block, if any.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed bytes as they arrive; get back the events they complete.

    Attributes:
        last_event_id: the last event ID buffer; ``None`` until an ``id`` field is seen.
        retry: the reconnection time in milliseconds from the latest valid ``retry`` field.
        comments: the text of every comment line, in order, with one leading space removed
            like a field value (the spec gives comments no value; this is for tests).
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.comments: list[str] = []
        # "Streams must be decoded using the UTF-8 decode algorithm": invalid bytes become
        # U+FFFD, and a character split across chunks waits for its remaining bytes.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_stream_start = True
        self._pending_line = ""
        # A CR that ended the previous chunk already ended a line; an LF right after it
        # belongs to the same CRLF pair and must not end a second (empty) line.
        self._skip_lf = False
        self._data: list[str] = []
        self._event_type = ""
        self._block_retry: int | None = None
        self._closed = False

    def feed(self, chunk: bytes) -> list[ParsedEvent]:
        """Parse the next chunk of the stream; return the events it dispatched."""
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"chunk must be bytes (the raw stream), got {type(chunk).__name__}")
        if self._closed:
            raise RuntimeError("SSEParser.feed() called after close()")
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[ParsedEvent]:
        """End the stream.

        "Once the end of the file is reached, any pending data must be discarded. (If the file
        ends in the middle of an event, before the final empty line, the incomplete event is
        not dispatched.)" Truncated UTF-8 at the very end becomes U+FFFD and is discarded too.
        """
        if self._closed:
            return []
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._closed = True
        self._pending_line = ""
        self._data = []
        self._event_type = ""
        self._block_retry = None
        return events

    def _feed_text(self, text: str) -> list[ParsedEvent]:
        if not text:
            return []
        if self._at_stream_start:
            # "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
            self._at_stream_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        buffer = self._pending_line + text
        events: list[ParsedEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            event = self._process_line(buffer[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._pending_line = buffer[start:]
        # Only a lone CR can be the chunk's last character after a full match; its LF may
        # still be on the way.
        if start == len(buffer) and buffer.endswith("\r"):
            self._skip_lf = True
        return events

    def _process_line(self, line: str) -> ParsedEvent | None:
        if not line:
            # "If the line is empty (a blank line): Dispatch the event."
            return self._dispatch()
        if line[0] == ":":
            # "If the line starts with a U+003A COLON character (:): Ignore the line."
            comment = line[1:]
            self.comments.append(comment[1:] if comment[:1] == " " else comment)
            return None
        # "If the line contains a U+003A COLON character: Collect the characters on the line
        # before the first colon, and let field be that string. Collect the characters on the
        # line after the first colon, and let value be that string. If value starts with a
        # U+0020 SPACE character, remove it from value." Otherwise "using the whole line as
        # the field name, and the empty string as the field value."
        field, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if field == "event":
            self._event_type = value
        elif field == "data":
            # "Append the field value to the data buffer, then append a single U+000A LINE
            # FEED (LF) character to the data buffer." Kept as a list, joined at dispatch.
            self._data.append(value)
        elif field == "id":
            # "If the field value does not contain U+0000 NULL, then set the last event ID
            # buffer to the field value. Otherwise, ignore the field."
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            # "If the field value consists of only ASCII digits, then interpret the field value
            # as an integer in base ten ... Otherwise, ignore the field." (str.isdigit() alone
            # would also accept non-ASCII digits.)
            self.retry = self._block_retry = int(value)
        # "Otherwise: The field is ignored."
        return None

    def _dispatch(self) -> ParsedEvent | None:
        data, event_type, retry = self._data, self._event_type, self._block_retry
        self._data = []
        self._event_type = ""
        self._block_retry = None
        # "If the data buffer is an empty string, set the data buffer and the event type
        # buffer to the empty string and return." A `data:` line makes the buffer "\n", so it
        # counts; no `data` field at all dispatches nothing.
        if not data:
            return None
        # Joining with LF is the buffer with its final LF removed ("If the data buffer's
        # last character is a U+000A LINE FEED (LF) character, then remove the last character").
        return ParsedEvent(
            data="\n".join(data),
            event=event_type or "message",
            id=self.last_event_id,
            retry=retry,
        )


def parse_events(data: bytes) -> list[ParsedEvent]:
    """Parse a complete event stream; an unfinished last event is discarded."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes (the raw stream), got {type(data).__name__}")
    parser = SSEParser()
    return parser.feed(data) + parser.close()

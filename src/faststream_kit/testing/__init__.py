"""Test your own streaming routes over a real socket.

``LiveServer`` serves an app on loopback (uvicorn, or hypercorn for HTTP/2);
``record_chunks`` reads an endpoint and records when each chunk arrived, so a test can
assert that a response streamed instead of arriving in one burst; ``read_sse`` does
the same for Server-Sent Events through a strict WHATWG parser. The pytest plugin adds a
``live_server`` fixture.
"""

from ._client import (
    Chunk,
    Recording,
    SSERecording,
    TimedEvent,
    arecord_chunks,
    read_sse,
    record_chunks,
)
from ._server import LiveServer, ServerName
from ._sse_parser import ParsedEvent, SSEParser, parse_events

__all__ = [
    "Chunk",
    "LiveServer",
    "ParsedEvent",
    "Recording",
    "SSEParser",
    "SSERecording",
    "ServerName",
    "TimedEvent",
    "arecord_chunks",
    "parse_events",
    "read_sse",
    "record_chunks",
]

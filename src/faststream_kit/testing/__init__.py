"""Test your own streaming routes over a real socket.

``LiveServer`` serves an app on loopback (uvicorn, or hypercorn for HTTP/2);
``record_chunks`` reads an endpoint and records when each chunk arrived, so a test can
assert that a response streamed instead of arriving in one burst. The pytest plugin adds a
``live_server`` fixture.
"""

from ._client import Chunk, Recording, arecord_chunks, record_chunks
from ._server import LiveServer

__all__ = ["Chunk", "LiveServer", "Recording", "arecord_chunks", "record_chunks"]

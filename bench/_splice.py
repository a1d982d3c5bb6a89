"""The cheapest proxy process there is: copy bytes between two sockets, parse nothing.

    python bench/_splice.py PORT UPSTREAM_URL [--crc]

A reference for ``bench/upstream.py``: for each connection it reads the request line, opens a
connection to the upstream, sends ``GET <path>`` there with ``Connection: close`` and copies
the upstream's response bytes (status line, headers, chunked framing and all) to the client
as they arrive, pausing the upstream while the client's socket is full. No HTTP parsing, no
header filtering, no ASGI, no Python per byte: what is left is the event loop and the kernel's
two socket copies, the toll any proxy process pays on top of a direct download.

With ``--crc`` it also computes the CRC-32 of every byte it copies (as ``s3_stream`` does, with
the same function: zlib-ng's or ISA-L's when installed, else zlib's), and checks nothing: the
floor of any route that verifies an object's CRC-32 on its way through.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # the bench still runs, on the stdlib loop
    uvloop = None


class UpstreamSide(asyncio.Protocol):
    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.client.upstream = self

    def data_received(self, data: bytes) -> None:
        if self.client.crc is not None:
            self.client.sum = self.client.crc(data, self.client.sum)
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class ClientSide(asyncio.Protocol):
    def __init__(self, upstream: tuple[str, int], crc: Callable[[bytes, int], int] | None) -> None:
        self.address = upstream
        self.crc = crc
        self.sum = 0
        self.upstream: UpstreamSide | None = None
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.upstream is not None or b"\r\n\r\n" in self.head:
            return  # a GET has no body; anything after the head is ignored
        self.head += data
        if b"\r\n\r\n" in self.head:
            path = self.head.split(b" ", 2)[1]
            asyncio.get_running_loop().create_task(self.connect(path))

    async def connect(self, path: bytes) -> None:
        host, port = self.address
        transport, _ = await asyncio.get_running_loop().create_connection(
            lambda: UpstreamSide(self), host, port
        )
        request = b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
        transport.write(request % (path, host.encode(), port))

    # Backpressure: a full client socket pauses reading from the upstream.
    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


async def serve(port: int, upstream_url: str, crc: Callable[[bytes, int], int] | None) -> None:
    parts = urlsplit(upstream_url)
    upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
    server = await asyncio.get_running_loop().create_server(
        lambda: ClientSide(upstream, crc), "127.0.0.1", port
    )
    await server.serve_forever()


def main() -> None:
    port, upstream_url = int(sys.argv[1]), sys.argv[2]
    crc = None
    if sys.argv[3:] == ["--crc"]:
        from faststream_kit._crc import crc32

        crc = crc32()
    (uvloop.run if uvloop is not None else asyncio.run)(serve(port, upstream_url, crc))


if __name__ == "__main__":
    main()

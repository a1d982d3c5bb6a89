"""A fast HTTP/1.1 reader for the benchmarks, run as its own process.

    python bench/_client.py PORT PATH [TIMEOUT_SECONDS]

Sends one ``GET`` with ``Connection: close`` to 127.0.0.1, reads with ``recv_into`` into a
1 MiB buffer until the server closes, decodes the chunked framing to count body bytes, and
prints ``<status> <body bytes> <seconds>`` (from connect to the last byte), like curl's
``-w '%{http_code} %{size_download} %{time_total}'``. curl reads in 16 KiB pieces, which on a
two-core machine makes the client, not the server, the bottleneck of a bulk transfer.
"""

from __future__ import annotations

import socket
import sys
import time

BUFFER_BYTES = 1 << 20


class ChunkedCounter:
    """Counts the body bytes of an ``Transfer-Encoding: chunked`` body fed in pieces."""

    def __init__(self) -> None:
        self.body_bytes = 0
        self.done = False
        self._skip = 0  # bytes of chunk data (plus its CRLF) still to pass over
        self._pending = b""  # an unfinished chunk-size line

    def feed(self, data: memoryview) -> None:
        position, end = 0, len(data)
        while position < end and not self.done:
            if self._skip:
                step = min(self._skip, end - position)
                self._skip -= step
                position += step
                continue
            newline = bytes(data[position : min(end, position + 64)]).find(b"\n")
            if newline < 0:
                self._pending += bytes(data[position:end])
                if len(self._pending) > 64:
                    raise ValueError("chunk-size line too long")
                return
            line = self._pending + bytes(data[position : position + newline])
            self._pending = b""
            position += newline + 1
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                self.done = True  # trailers (none here) and the final CRLF follow
                return
            self.body_bytes += size
            self._skip = size + 2


def fetch(port: int, path: str, timeout_seconds: float) -> tuple[int, int, float]:
    buffer = bytearray(BUFFER_BYTES)
    view = memoryview(buffer)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_seconds) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head:
            received = sock.recv_into(buffer)
            if not received:
                raise ConnectionError("closed before the response headers")
            head += bytes(view[:received])
            if len(head) > 65536 and b"\r\n\r\n" not in head[:65536]:
                raise ValueError("response headers too long")
        head, _, rest = head.partition(b"\r\n\r\n")
        status = int(head.split(None, 2)[1])
        chunked = b"transfer-encoding: chunked" in head.lower()
        counter = ChunkedCounter()
        plain_bytes = len(rest)
        if chunked:
            counter.feed(memoryview(rest))
        while received := sock.recv_into(buffer):
            if chunked:
                counter.feed(view[:received])
            else:
                plain_bytes += received
    elapsed = time.perf_counter() - started
    if chunked and not counter.done:
        raise ConnectionError(f"body ended before its last chunk ({counter.body_bytes} bytes)")
    return status, counter.body_bytes if chunked else plain_bytes, elapsed


def main() -> int:
    port, path = int(sys.argv[1]), sys.argv[2]
    timeout_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    status, body_bytes, elapsed = fetch(port, path, timeout_seconds)
    print(f"{status} {body_bytes} {elapsed:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

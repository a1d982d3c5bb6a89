"""upstream_stream(): a real upstream uvicorn app, proxied through FastAPI, read by httpx.

The proxy runs in uvicorn (HTTP/1.1) or hypercorn (HTTP/2 with prior knowledge) and reaches
the upstream with httpx or aiohttp; the upstream (``tests/upstream_peers.py``) writes down
what reached it, so every assertion about the upstream is about what it really saw.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faststream_kit.testing import LiveServer, record_chunks

from .conftest import free_port, need_peer, stop_process, wait_for_port
from .upstream_peers import CLIENT_KINDS, PAYLOAD, POOL_SIZE, Upstream, proxy_app

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20

# What must never cross a proxy, in either direction (RFC 9110 §7.6.1, RFC 9113 §8.2.2).
HOP_BY_HOP = {
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

kinds = pytest.mark.parametrize("kind", CLIENT_KINDS)
servers = pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    with LiveServer(app, log_level="critical") as live:
        yield app, live.url


@pytest.fixture(scope="module")
def proxies(upstream: tuple[Upstream, str]) -> Iterator[dict[str, str]]:
    """The proxy's base URL in each server; hypercorn's speaks HTTP/2 with prior knowledge."""
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with (
        LiveServer(proxy_app(upstream[1], down_url=down), log_level="critical") as uvicorn,
        LiveServer(
            proxy_app(upstream[1], down_url=down), server="hypercorn", log_level="critical"
        ) as hypercorn,
    ):
        yield {"uvicorn": uvicorn.url, "hypercorn": hypercorn.url}


def _client(server: str, **options: object) -> httpx.Client:
    if server == "hypercorn":
        try:
            import h2  # noqa: F401
        except ImportError:
            need_peer(False, "h2 is not installed (pip install 'httpx[http2]')")
        return httpx.Client(http1=False, http2=True, timeout=15, **options)  # type: ignore[arg-type]
    return httpx.Client(timeout=15, **options)  # type: ignore[arg-type]


def _request_id(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


# --- 1. an SSE upstream stays incremental --------------------------------------------------


@servers
@kinds
def test_sse_upstream_arrives_incrementally(
    proxies: dict[str, str], server: str, kind: str
) -> None:
    with _client(server) as client:
        recording = record_chunks(
            f"{proxies[server]}/{kind}/sse?n=10&interval=0.1&id={_request_id('sse')}",
            client=client,
        )

    assert recording.status_code == 200
    assert recording.complete
    assert recording.http_version == ("HTTP/2" if server == "hypercorn" else "HTTP/1.1")
    assert recording.body == b"".join(b"data: %d\n\n" % i for i in range(10))
    assert recording.headers["content-type"] == "text/event-stream"
    assert recording.headers["x-accel-buffering"] == "no"
    assert recording.headers["cache-control"] == "no-cache, no-transform"
    # 10 events produced 100 ms apart reach the client spread over ~0.9 s, not in one burst.
    assert len(recording.chunks) >= 8
    assert recording.chunks[0].at < 0.5
    assert recording.chunks[-1].at - recording.chunks[0].at > 0.7


# --- 2. hop-by-hop headers stripped both ways ----------------------------------------------


@kinds
def test_hop_by_hop_request_headers_do_not_reach_the_upstream(
    upstream: tuple[Upstream, str], proxies: dict[str, str], kind: str
) -> None:
    request_id = _request_id("hop")
    proxy = proxies["uvicorn"]
    sent = [
        ("Connection", "keep-alive, X-Client-Hop"),
        ("X-Client-Hop", "named in Connection"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "example/1"),
        ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
        ("Proxy-Connection", "keep-alive"),
        ("Cookie", "session=secret"),
        ("Authorization", "Bearer for-the-proxy"),
        ("X-Forwarded-Proto", "https-spoofed"),
        ("X-Custom", "end to end"),
    ]
    with httpx.Client(timeout=15) as client:
        response = client.get(f"{proxy}/{kind}/headers?id={request_id}", headers=sent)
    assert response.status_code == 200

    received = upstream[0].log.get(request_id).headers
    names = [name for name, _ in received]
    assert not HOP_BY_HOP & set(names), received
    assert "x-client-hop" not in names
    assert "cookie" not in names  # forward_cookies=False
    assert "authorization" not in names  # forward_authorization=False
    # The proxy's own client speaks for its own hop: httpx always sends "keep-alive", aiohttp
    # relies on HTTP/1.1's default and sends nothing. Nothing of the client's got through.
    own_hop = {"httpx": ["keep-alive"], "aiohttp": [], "pyreqwest": []}[kind]
    assert [value for name, value in received if name == "connection"] == own_hop, received
    assert [n for n, count in Counter(names).items() if count > 1] == []
    headers = dict(received)
    assert headers["host"] == upstream[1].removeprefix("http://")
    assert headers["x-custom"] == "end to end"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == proxy.removeprefix("http://")


@servers
@kinds
def test_hop_by_hop_response_headers_do_not_reach_the_client(
    proxies: dict[str, str], server: str, kind: str
) -> None:
    with _client(server) as client:
        response = client.get(f"{proxies[server]}/{kind}/headers?id={_request_id('resp')}")
    assert response.status_code == 200
    assert response.text == "headers recorded"

    names = [name.decode().lower() for name, _ in response.headers.raw]
    assert not (HOP_BY_HOP - {"transfer-encoding"}) & set(names), response.headers.raw
    assert "x-up-hop" not in names  # named in the upstream's Connection header
    assert "connection" not in names  # uvicorn keeps a connection open without saying so
    assert [n for n, count in Counter(names).items() if count > 1] == []  # one Date, one Server
    assert response.headers["x-end-to-end"] == "kept"
    assert response.headers["content-length"] == str(len("headers recorded"))


# --- 3. Content-Encoding is honest -----------------------------------------------------------


@kinds
def test_client_without_accept_encoding_gets_identity(
    upstream: tuple[Upstream, str], proxies: dict[str, str], kind: str
) -> None:
    request_id = _request_id("identity")
    with httpx.Client(timeout=15) as client:
        del client.headers["accept-encoding"]  # httpx would send "gzip, deflate"
        response = client.get(f"{proxies['uvicorn']}/{kind}/gzip?id={request_id}")

    assert dict(upstream[0].log.get(request_id).headers)["accept-encoding"] == "identity"
    # Said explicitly, so that a GZipMiddleware in front leaves the stream alone.
    assert response.headers.get_list("content-encoding") == ["identity"]
    assert response.content == PAYLOAD
    assert response.headers["content-length"] == str(len(PAYLOAD))


@kinds
def test_gzip_client_gets_the_gzip_body_passed_through(
    upstream: tuple[Upstream, str], proxies: dict[str, str], kind: str
) -> None:
    request_id = _request_id("gzip")
    with (
        httpx.Client(timeout=15) as client,
        client.stream(
            "GET",
            f"{proxies['uvicorn']}/{kind}/gzip?id={request_id}",
            headers={"accept-encoding": "gzip"},
        ) as response,
    ):
        raw = b"".join(response.iter_raw())  # the bytes as sent: still gzip

    assert dict(upstream[0].log.get(request_id).headers)["accept-encoding"] == "gzip"
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-length"] == str(len(raw))
    assert gzip.decompress(raw) == PAYLOAD


@kinds
def test_upstream_gzip_the_client_did_not_accept_is_decoded(
    proxies: dict[str, str], kind: str
) -> None:
    with httpx.Client(timeout=15) as client:
        del client.headers["accept-encoding"]
        with client.stream("GET", f"{proxies['uvicorn']}/{kind}/always-gzip") as response:
            raw = b"".join(response.iter_raw())

    assert response.headers.get_list("content-encoding") == ["identity"]
    assert "content-length" not in response.headers  # it described the compressed bytes
    assert raw == PAYLOAD


# --- 4. a 200 MiB upload streams through in bounded memory -----------------------------------


def _rss_bytes(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


@pytest.fixture(scope="module")
def proxy_process(upstream: tuple[Upstream, str]) -> Iterator[tuple[int, str]]:
    """The proxy in its own process, so its memory is its own: ``(pid, base URL)``."""
    need_peer(Path("/proc/self/status").exists(), "needs Linux /proc to read a process's RSS")
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.upstream_peers:proxy_from_env"]
    command += ["--factory", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "UPSTREAM_URL": upstream[1]},
    )
    try:
        wait_for_port(port, timeout=20)
        yield process.pid, f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


def _upload(url: str, total: int, chunk: int = MiB) -> httpx.Response:
    block = b"u" * chunk

    def body() -> Iterator[bytes]:
        for _ in range(total // chunk):
            yield block

    with httpx.Client(timeout=60) as client:
        return client.post(url, content=body())


@kinds
def test_200_mib_upload_streams_through_in_bounded_memory(
    upstream: tuple[Upstream, str], proxy_process: tuple[int, str], kind: str
) -> None:
    pid, proxy = proxy_process
    warm = _upload(f"{proxy}/{kind}/count?id={_request_id('warm')}", 4 * MiB)
    assert warm.json() == {"bytes": 4 * MiB}
    # Reset the peak-RSS mark (Linux: "5" > clear_refs), so VmHWM is the peak of this upload.
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _rss_bytes(pid)

    request_id = _request_id("upload")
    response = _upload(f"{proxy}/{kind}/count?id={request_id}", 200 * MiB)

    peak = _rss_bytes(pid, "VmHWM")
    assert response.status_code == 200
    assert response.json() == {"bytes": 200 * MiB}
    assert upstream[0].log.get(request_id).body_bytes == 200 * MiB
    assert peak - before <= 32 * MiB, f"proxy RSS grew by {(peak - before) / MiB:.1f} MiB"


# --- 5. errors: 502, 504, abort ---------------------------------------------------------------


@kinds
def test_upstream_down_is_a_502_json(proxies: dict[str, str], kind: str) -> None:
    response = httpx.get(f"{proxies['uvicorn']}/{kind}/down", timeout=15)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "upstream_unavailable"


@kinds
def test_upstream_slower_than_the_read_timeout_is_a_504_json(
    proxies: dict[str, str], kind: str
) -> None:
    started = time.monotonic()
    response = httpx.get(f"{proxies['uvicorn']}/{kind}/impatient/slow?seconds=5", timeout=15)
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "timeout"
    assert time.monotonic() - started < 3  # gave up after read_timeout=0.5, not 5 s


@servers
@kinds
def test_upstream_dying_mid_body_leaves_the_client_an_incomplete_body(
    proxies: dict[str, str], server: str, kind: str
) -> None:
    with _client(server) as client:
        recording = record_chunks(f"{proxies[server]}/{kind}/die", client=client)
    assert recording.status_code == 200
    assert recording.body.startswith(b"chunk 0\n")
    assert not recording.complete
    assert isinstance(recording.error, httpx.HTTPError)


# --- 6. client disconnect reaches the upstream ------------------------------------------------


def _read_then_leave(client: httpx.Client, url: str, chunks: int) -> float:
    """Read ``chunks`` chunks, then drop the connection; return when we dropped it."""
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        for seen, _ in enumerate(response.iter_raw(), start=1):
            if seen == chunks:
                break
        left_at = time.monotonic()
    client.close()  # the connection, not just the stream, like a closed tab
    return left_at


@servers
@kinds
@pytest.mark.usefixtures("without_gc")  # the proxy and the upstream are threads of this process
def test_client_disconnect_reaches_the_upstream_within_100_ms(
    upstream: tuple[Upstream, str], proxies: dict[str, str], server: str, kind: str
) -> None:
    request_id = _request_id("leave")
    url = f"{proxies[server]}/{kind}/sse?n=200&interval=0.05&id={request_id}"
    with _client(server) as client:
        left_at = _read_then_leave(client, url, chunks=3)
    seen = upstream[0].log.get(request_id)
    assert seen.disconnected.wait(timeout=5), "the upstream never saw the proxy hang up"
    assert seen.disconnected_at - left_at < 0.1


@kinds
def test_200_disconnects_leave_the_proxy_client_pool_usable(
    upstream: tuple[Upstream, str], proxies: dict[str, str], kind: str
) -> None:
    proxy = proxies["uvicorn"]
    log = upstream[0].log
    before = log.disconnects
    leaves = 200
    with httpx.Client(timeout=15) as client:
        for i in range(leaves):
            url = f"{proxy}/{kind}/sse?n=200&interval=0.05&id={_request_id(f'pool{i}')}"
            # Leaving a stream unread drops its HTTP/1.1 connection: a real disconnect each time.
            with client.stream("GET", url) as response:
                assert response.status_code == 200
                next(response.iter_raw())

    assert log.wait_for_disconnects(before + leaves, timeout=10), log.disconnects - before
    # The pool holds POOL_SIZE connections: a leaked one per disconnect would exhaust it.
    results: list[int] = []

    def fetch() -> None:
        with httpx.Client(timeout=15) as client:
            results.append(client.get(f"{proxy}/{kind}/gzip").status_code)

    threads = [threading.Thread(target=fetch) for _ in range(2 * POOL_SIZE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * (2 * POOL_SIZE)


# --- the small rules --------------------------------------------------------------------------


def test_upstream_post_body_and_head_pass_through(proxies: dict[str, str]) -> None:
    with httpx.Client(timeout=15) as client:
        posted = client.post(f"{proxies['uvicorn']}/httpx/count", content=b"x" * 1000)
        head = client.head(f"{proxies['uvicorn']}/httpx/gzip")
    assert json.loads(posted.content) == {"bytes": 1000}
    assert head.status_code == 200
    assert head.content == b""

"""Side-by-side benchmark of ``upstream_stream`` against a direct download and fastapi-proxy-lib.

    python bench/upstream.py            # 256 MiB, 5 rounds
    python bench/upstream.py --quick    # 64 MiB, 3 rounds

Four servers, each a uvicorn subprocess on 127.0.0.1 (``--http h11``/``httptools`` and
``--loop asyncio``/``uvloop`` as ``bench/core.py`` picks them):

=================  ==============================================================
``upstream``       a raw ASGI app sending ``total`` bytes in 64 KiB chunks
``ours_httpx``     FastAPI + ``upstream_stream(httpx.AsyncClient, ...)``
``ours_aiohttp``   FastAPI + ``upstream_stream(aiohttp.ClientSession, ...)``
``fastapi_proxy``  ``fastapi_proxy_lib.fastapi.app.reverse_http_app`` (if installed)
=================  ==============================================================

Each request is ``curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}'``,
every response is checked for status 200 and the full size, and the implementations run in
rounds in a rotating order so load from elsewhere hits all of them. The table shows median
seconds and each proxy's ratio to the direct download (target: ours ≤ 1.2×).

The same file is the server: ``python bench/upstream.py --serve NAME --port P --upstream URL``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request  # at module level: FastAPI resolves the annotations here

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
TARGET_RATIO = 1.2
CHUNK = b"x" * 65536


# --- the servers -----------------------------------------------------------------------------


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/bulk?total=N``: N bytes (a multiple of 64 KiB) in 64 KiB chunks."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    query = parse_qs(scope["query_string"].decode())
    total = int(query.get("total", [str(MiB)])[0])
    headers = [(b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(total // len(CHUNK)):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def ours_app(upstream: str, kind: str) -> Any:
    import aiohttp
    import httpx

    from faststream_kit import upstream_stream

    clients: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as client, aiohttp.ClientSession() as session:
            clients["httpx"], clients["aiohttp"] = client, session
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> str:
        return "ok"

    @app.get("/{path:path}")
    async def proxy(path: str, request: Request) -> Any:
        url = f"{upstream}/{path}?{request.url.query}"
        return await upstream_stream(clients[kind], "GET", url, request=request)

    return app


def fastapi_proxy_app(upstream: str) -> Any:
    from fastapi_proxy_lib.fastapi.app import reverse_http_app

    return reverse_http_app(base_url=upstream + "/")


def serve(name: str, port: int, upstream: str, http: str, loop: str) -> None:
    import uvicorn

    if name == "upstream":
        app: Any = upstream_app
    elif name == "fastapi_proxy":
        app = fastapi_proxy_app(upstream)
    else:
        app = ours_app(upstream, name.removeprefix("ours_"))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http=http,
        loop=loop,
    )


# --- the runner ------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flavour() -> tuple[str, str]:
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return http, loop


class Server:
    def __init__(self, name: str, upstream: str = "") -> None:
        self.name = name
        self.port = free_port()
        http, loop = flavour()
        command = [sys.executable, __file__, "--serve", name, "--port", str(self.port)]
        command += ["--upstream", upstream, "--http", http, "--loop", loop]
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", self.url + "/health"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout == "200":
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)  # polling a starting server; nothing to wait on instead
        self.stop()
        raise RuntimeError(f"server {name} did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def fetch(url: str, expected_bytes: int) -> float:
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    status, size, seconds = result.stdout.split()
    if status != "200" or int(size) != expected_bytes:
        raise RuntimeError(f"{url}: status {status}, {size} bytes (expected {expected_bytes})")
    return float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--mib", type=int, default=None, help="body size in MiB")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    parser.add_argument("--http", default="h11", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.upstream, args.http, args.loop)
        return
    if shutil.which("curl") is None:
        sys.exit("curl is needed (apt-get install curl)")

    total = (args.mib or (64 if args.quick else 256)) * MiB
    rounds = args.rounds or (3 if args.quick else 5)
    names = ["ours_httpx", "ours_aiohttp"]
    if importlib.util.find_spec("fastapi_proxy_lib"):
        names.append("fastapi_proxy")
    else:
        print("fastapi-proxy-lib is not installed (pip install fastapi-proxy-lib): left out")
    http, loop = flavour()
    print(f"{total // MiB} MiB, {rounds} rounds, uvicorn --http {http} --loop {loop}, "
          f"{os.cpu_count()} CPUs, client curl")  # fmt: skip

    upstream = Server("upstream")
    proxies: dict[str, Server] = {}
    try:
        for name in names:
            proxies[name] = Server(name, upstream.url)
        urls = {"direct": upstream.url} | {name: server.url for name, server in proxies.items()}
        path = f"/bulk?total={total}"
        for url in urls.values():  # warm up: imports, pools, first connection
            fetch(f"{url}/bulk?total={4 * MiB}", 4 * MiB)
        times: dict[str, list[float]] = {name: [] for name in urls}
        order = list(urls)
        for round_index in range(rounds):
            rotated = order[round_index % len(order) :] + order[: round_index % len(order)]
            for name in rotated:
                times[name].append(fetch(urls[name] + path, total))
    finally:
        for server in proxies.values():
            server.stop()
        upstream.stop()

    direct = statistics.median(times["direct"])
    print(f"\n{'implementation':<16}{'median s':>10}{'MiB/s':>9}{'× direct':>10}   verdict")
    for name, runs in times.items():
        median = statistics.median(runs)
        ratio = median / direct
        verdict = ""
        if name.startswith("ours"):
            verdict = "ok" if ratio <= TARGET_RATIO else f"over the {TARGET_RATIO}× target"
        rate = total / MiB / median
        print(f"{name:<16}{median:>10.3f}{rate:>9.0f}{ratio:>10.2f}   {verdict}")
    if "fastapi_proxy" in times:
        reference = statistics.median(times["fastapi_proxy"])
        for name in ("ours_httpx", "ours_aiohttp"):
            ratio = statistics.median(times[name]) / reference
            print(f"{name} / fastapi_proxy: {ratio:.2f}")


if __name__ == "__main__":
    main()

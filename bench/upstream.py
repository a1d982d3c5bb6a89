"""Side-by-side benchmark of ``upstream_stream`` against a direct download and other proxies.

    python bench/upstream.py            # 256 MiB, 5 rounds
    python bench/upstream.py --quick    # 64 MiB, 3 rounds

The servers, each a process on 127.0.0.1 (uvicorn ones with ``--http httptools --loop
uvloop`` when installed, as ``bench/core.py`` picks them):

=================  ==============================================================
``upstream``       a raw ASGI app sending ``total`` bytes in 64 KiB chunks, with its
                   ``Content-Length`` (``--chunked``: without, so every hop frames chunks)
``ours_pyreqwest`` FastAPI + ``upstream_stream(pyreqwest.client.Client, ...)``
``ours_httpx``     FastAPI + ``upstream_stream(httpx.AsyncClient, ...)``
``ours_aiohttp``   FastAPI + ``upstream_stream(aiohttp.ClientSession, ...)``
``fastapi_proxy``  ``fastapi_proxy_lib.fastapi.app.reverse_http_app`` (if installed)
``splice``         ``bench/_splice.py``: bytes copied between two sockets, nothing parsed
``nginx``          nginx, ``proxy_buffering off`` with a 256 KiB buffer (if installed)
``loop_pyreqwest`` raw ASGI: the shortest streaming proxy loop over a pyreqwest ``Client``
``loop_httpx``     raw ASGI: the shortest proxy loop over ``httpx.AsyncClient``
``loop_aiohttp``   raw ASGI: the same loop over ``aiohttp.ClientSession``
``loop_pyreqwest_64k`` the pyreqwest loop with pyreqwest's default 64 KiB read buffer,
                   which is faster but holds a stream back until 64 KiB arrived: no proxy
                   of token streams can use it (``docs/upstream.md``)
=================  ==============================================================

More rows are not proxies: ``read_<library>`` is a fresh Python process
that downloads straight from the upstream with that library, counting the bytes and sending
them nowhere. They are the floor of every proxy built on the library: it has to read the body
that way before it can send it on. ``loop_*`` is the floor of every such proxy served by
uvicorn: read, then ``send``, with no headers to filter and nothing to close early.

``splice`` and ``nginx`` are references, not competitors: what any proxy process costs on this
machine. On two cores a proxied download runs three processes (upstream, proxy, client)
where a direct one runs two, and the proxy pays two socket copies per byte: here the splice
measured 1.0–1.5× the direct download and nginx 1.0–1.4×.

Each download is a fresh ``curl -o /dev/null`` (``--client python``: ``bench/_client.py``, which
reads with ``recv_into`` into 1 MiB where curl reads 16 KiB at a time; the direct download then
runs at ~2.6 GB/s here and every proxy, splice and nginx included, measured 3× it or more),
every response is checked for status 200 and
the full size, and the implementations run in rounds in a rotating order so load from
elsewhere hits all of them. The table shows median seconds, each proxy's ratio of medians to
the direct download, and the *paired* ratio: the median over rounds of each round's own ratio
to the direct download of that round, which cancels load that lasts a round (the verdict uses
it; targets: the fast client ≤ 1.3×, aiohttp ≤ 1.6×). Results go to
``bench/results/upstream.json``.

The same file is the server: ``python bench/upstream.py --serve NAME --port P --upstream URL``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request  # at module level: FastAPI resolves the annotations here

from core import free_port, process_cpu_seconds, server_flavour

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "upstream.json"
sys.path.insert(0, str(ROOT))  # nginx comes with the tests' config: tests/conftest.py
MiB = 1 << 20
TARGETS = {"ours_pyreqwest": 1.3, "ours_aiohttp": 1.6, "ours_httpx": None}
"""Issue 17: the fast client within 1.3x a direct download, the aiohttp path within 1.6x."""
REFERENCES = ("splice", "nginx")
CHUNK = b"x" * 65536


# --- the servers -----------------------------------------------------------------------------


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/bulk?total=N``: N bytes (a multiple of 64 KiB) in 64 KiB chunks, with a
    ``Content-Length`` unless ``BENCH_UPSTREAM_CHUNKED`` is set (``--chunked``)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    query = parse_qs(scope["query_string"].decode())
    total = int(query.get("total", [str(MiB)])[0])
    headers = [(b"content-type", b"application/octet-stream")]
    if not os.environ.get("BENCH_UPSTREAM_CHUNKED"):
        headers.append((b"content-length", b"%d" % total))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(total // len(CHUNK)):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def pyreqwest_client(**options: Any) -> Any:
    """A pyreqwest ``Client`` built for proxying, as ``docs/upstream.md`` says."""
    from pyreqwest.client import ClientBuilder

    builder = ClientBuilder().follow_redirects(False)
    return builder.gzip(False).brotli(False).zstd(False).deflate(False).build()


def ours_app(upstream: str, kind: str) -> Any:
    from faststream_kit import upstream_stream

    clients: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients[kind] = _open_client(kind)
        yield
        await _close_client(clients[kind])

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> str:
        return "ok"

    @app.get("/{path:path}")
    async def proxy(path: str, request: Request) -> Any:
        url = f"{upstream}/{path}?{request.url.query}"
        return upstream_stream(clients[kind], "GET", url, request=request)

    return app


def _open_client(kind: str) -> Any:
    if kind.startswith("pyreqwest"):
        return pyreqwest_client()
    if kind == "httpx":
        import httpx

        return httpx.AsyncClient()
    import aiohttp

    return aiohttp.ClientSession()


async def _close_client(client: Any) -> None:
    close = getattr(client, "aclose", None) or client.close
    await close()


def loop_app(upstream: str, kind: str) -> Any:
    """The shortest proxy loop over the library, as raw ASGI: the floor of ``ours_<kind>``.

    It passes the upstream's ``Content-Length`` on, as ``upstream_stream`` does, so that
    uvicorn writes each chunk as it is instead of framing it (a copy of every chunk)."""
    clients: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # startup
            clients[kind] = _open_client(kind)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
            await _close_client(clients[kind])
            await send({"type": "lifespan.shutdown.complete"})
            return
        url = f"{upstream}{scope['path']}?{scope['query_string'].decode()}"
        client = clients[kind]

        def start(length: str | None) -> dict[str, Any]:
            headers = [] if length is None else [(b"content-length", length.encode())]
            return {"type": "http.response.start", "status": 200, "headers": headers}

        if kind.startswith("pyreqwest"):
            # 0: the headers at once and each chunk as it comes (what a streaming proxy
            # needs); pyreqwest's default reads 64 KiB before either (the _64k row).
            limit = 65536 if kind == "pyreqwest_64k" else 0
            request = client.get(url).streamed_read_buffer_limit(limit).build_streamed()
            async with request as response:
                await send(start(response.get_header("content-length")))
                reader = response.body_reader
                while (chunk := await reader.read_chunk()) is not None:
                    body = chunk.to_bytes()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        elif kind == "httpx":
            async with client.stream("GET", url) as response:
                await send(start(response.headers.get("content-length")))
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            async with client.get(url, auto_decompress=False) as response:
                await send(start(response.headers.get("content-length")))
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


READER = """
import asyncio, sys, time
library, base, path = sys.argv[1:4]
async def main():
    if library == "httpx":
        import httpx
        async with httpx.AsyncClient() as client:
            await client.get(base + "/health")  # connect before the clock starts
            started = time.perf_counter()
            async with client.stream("GET", base + path) as response:
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                status = response.status_code
    elif library == "pyreqwest":
        from pyreqwest.client import ClientBuilder
        async with ClientBuilder().gzip(False).build() as client:
            await (await client.get(base + "/health").build().send()).bytes()
            started = time.perf_counter()
            request = client.get(base + path).streamed_read_buffer_limit(0).build_streamed()
            async with request as response:
                size = 0
                reader = response.body_reader
                while (chunk := await reader.read_chunk()) is not None:
                    size += len(chunk)
                status = response.status
    elif library == "rnet":
        import rnet
        client = rnet.Client()
        await (await client.get(base + "/health")).bytes()
        started = time.perf_counter()
        response = await client.get(base + path)
        size = 0
        async with response.stream() as chunks:
            async for chunk in chunks:
                size += len(chunk)
        status = response.status_code.as_int()
    elif library == "curl_cffi":
        from curl_cffi.requests import AsyncSession
        async with AsyncSession() as session:
            await session.get(base + "/health")
            started = time.perf_counter()
            response = await session.get(base + path, stream=True)
            size = 0
            async for chunk in response.aiter_content():
                size += len(chunk)
            await response.aclose()
            status = response.status_code
    else:
        import aiohttp
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/health") as response:
                await response.read()
            started = time.perf_counter()
            async with session.get(base + path, auto_decompress=False) as response:
                size = 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                status = response.status
    print(status, size, time.perf_counter() - started)
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""
"""``read_<library>``: the library alone downloading from the upstream, on the servers' loop."""


def fastapi_proxy_app(upstream: str) -> Any:
    from fastapi_proxy_lib.fastapi.app import reverse_http_app

    return reverse_http_app(base_url=upstream + "/")


def serve(name: str, port: int, upstream: str, http: str, loop: str) -> None:
    import uvicorn

    if name == "upstream":
        app: Any = upstream_app
    elif name == "fastapi_proxy":
        app = fastapi_proxy_app(upstream)
    elif name.startswith("loop_"):
        app = loop_app(upstream, name.removeprefix("loop_"))
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

STREAMING_LOCATION = """proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_buffer_size 256k;
            proxy_buffers 4 256k;
            proxy_busy_buffers_size 256k;"""
"""The streaming setup people deploy (``proxy_buffering off``), with a 256 KiB buffer: with
the default 4 KiB one nginx measured 3× the direct download here."""


def nginx_command(tmp: Path, port: int, upstream: str) -> list[str]:
    """nginx in the foreground with the tests' config (tests/conftest.py) and our location."""
    from tests.conftest import NGINX_CONF, nginx_binary

    conf = tmp / "nginx.conf"
    template = NGINX_CONF.replace("proxy_pass {upstream};", STREAMING_LOCATION)
    conf.write_text(template.format(tmp=tmp, port=port, upstream=upstream))
    return [str(nginx_binary()), "-c", str(conf), "-e", str(tmp / "error.log")]


class Server:
    def __init__(
        self, name: str, upstream: str, workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.port = free_port()
        http, loop = server_flavour()
        if name == "splice":
            command = [sys.executable, str(ROOT / "bench" / "_splice.py"), str(self.port), upstream]
        elif name == "nginx":
            (workdir / "nginx").mkdir(exist_ok=True)
            command = nginx_command(workdir / "nginx", self.port, upstream)
        else:
            command = [sys.executable, __file__, "--serve", name, "--port", str(self.port)]
            command += ["--upstream", upstream, "--http", http, "--loop", loop]
        environment = {**os.environ, **(env or {})}
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, env=environment
        )
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


def fetch(client: str, port: int, path: str, expected_bytes: int) -> float:
    if client.startswith("read_"):
        library = client.removeprefix("read_")
        command = [sys.executable, "-c", READER, library, f"http://127.0.0.1:{port}", path]
    elif client == "curl":
        write_out = "%{http_code} %{size_download} %{time_total}"
        command = ["curl", "-s", "-o", "/dev/null", "-w", write_out]
        command.append(f"http://127.0.0.1:{port}{path}")
    else:
        command = [sys.executable, str(ROOT / "bench" / "_client.py"), str(port), path, "120"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    status, size, seconds = result.stdout.split()
    if status != "200" or int(size) != expected_bytes:
        raise RuntimeError(f"{path} on {port}: status {status}, {size} bytes "
                           f"(expected {expected_bytes})")  # fmt: skip
    return float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--mib", type=int, default=None, help="body size in MiB")
    parser.add_argument(
        "--client",
        choices=["python", "curl"],
        default="curl",
        help="curl (default), or bench/_client.py (recv_into 1 MiB)",
    )
    parser.add_argument(
        "--proxy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every Python proxy (ours, loop_*, fastapi-proxy-lib)",
    )
    parser.add_argument(
        "--chunked",
        action="store_true",
        help="the upstream sends no Content-Length, so every hop frames chunks",
    )
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
    names = ["ours_httpx", "ours_aiohttp", "loop_httpx", "loop_aiohttp"]
    readers = ["read_httpx", "read_aiohttp"]
    if importlib.util.find_spec("pyreqwest"):
        names[:0] = ["ours_pyreqwest", "loop_pyreqwest", "loop_pyreqwest_64k"]
        readers.insert(0, "read_pyreqwest")
    else:
        print("pyreqwest is not installed (pip install 'faststream-kit[pyreqwest]'): left out")
    # The other Rust/C clients we compared pyreqwest with (docs/upstream.md), reading alone.
    readers += [f"read_{lib}" for lib in ("rnet", "curl_cffi") if importlib.util.find_spec(lib)]
    if importlib.util.find_spec("fastapi_proxy_lib"):
        names.append("fastapi_proxy")
    else:
        print("fastapi-proxy-lib is not installed (pip install fastapi-proxy-lib): left out")
    names.append("splice")
    from tests.conftest import nginx_binary

    if nginx_binary():
        names.append("nginx")
    else:
        print("nginx is not installed (apt-get install nginx-light): left out")
    http, loop = server_flavour()
    client = "curl" if args.client == "curl" else "bench/_client.py"
    proxy_env = dict(item.split("=", 1) for item in args.proxy_env)
    tuning = "".join(f", {key}={value} for the Python proxies" for key, value in proxy_env.items())
    framing = "chunked" if args.chunked else "Content-Length"
    if args.chunked:
        os.environ["BENCH_UPSTREAM_CHUNKED"] = "1"  # the upstream process inherits it
    print(f"{total // MiB} MiB ({framing}), {rounds} rounds, uvicorn --http {http} --loop {loop}, "
          f"{os.cpu_count()} CPUs, client {client}{tuning}")  # fmt: skip

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
        upstream = Server("upstream", "", Path(workdir))
        proxies: dict[str, Server] = {}
        try:
            for name in names:
                env = None if name in REFERENCES else proxy_env
                proxies[name] = Server(name, upstream.url, Path(workdir), env)
            ports = {"direct": upstream.port} | {n: server.port for n, server in proxies.items()}
            ports |= {reader: upstream.port for reader in readers}
            path = f"/bulk?total={total}"
            for name, port in ports.items():  # warm up: imports, pools, first connection
                fetch(_reader(name, args.client), port, f"/bulk?total={4 * MiB}", 4 * MiB)
            times: dict[str, list[float]] = {name: [] for name in ports}
            proxy_cpu: dict[str, list[float]] = {name: [] for name in proxies}
            order = list(ports)
            for round_index in range(rounds):
                shift = round_index % len(order)
                for name in order[shift:] + order[:shift]:
                    pid = proxies[name].process.pid if name in proxies else None
                    before = process_cpu_seconds(pid) if pid else 0.0
                    times[name].append(fetch(_reader(name, args.client), ports[name], path, total))
                    if pid is not None:
                        proxy_cpu[name].append(process_cpu_seconds(pid) - before)
        finally:
            for server in proxies.values():
                server.stop()
            upstream.stop()
    server = f"uvicorn --http {http} --loop {loop}"
    report(times, proxy_cpu, total, rounds, server, client, proxy_env, load_before, framing)


def _reader(name: str, client: str) -> str:
    """Who downloads for row ``name``: the library itself for ``read_*``, else the client."""
    return name if name.startswith("read_") else client


def report(
    times: dict[str, list[float]],
    proxy_cpu: dict[str, list[float]],
    total: int,
    rounds: int,
    server: str,
    client: str,
    proxy_env: dict[str, str],
    load_before: tuple[float, ...],
    framing: str = "Content-Length",
) -> None:
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    direct = medians["direct"]
    rows: dict[str, dict[str, float]] = {}
    print(f"\n{'implementation':<20}{'median s':>10}{'MiB/s':>9}{'× direct':>10}{'paired':>8}"
          f"{'proxy CPU s':>13}   verdict")  # fmt: skip
    for name, median in medians.items():
        ratio = median / direct
        # Each round's own ratio to the direct download of that round, then their median.
        paired = statistics.median(
            run / base for run, base in zip(times[name], times["direct"], strict=True)
        )
        rows[name] = {
            "seconds": median,
            "mib_s": round(total / MiB / median),
            "ratio": ratio,
            "paired_ratio": paired,
        }
        cpu = ""
        if proxy_cpu.get(name):
            rows[name]["proxy_cpu"] = statistics.median(proxy_cpu[name])
            cpu = f"{rows[name]['proxy_cpu']:.2f}"
        verdict = ""
        target = TARGETS.get(name)
        if target is not None:
            verdict = "ok" if paired <= target else f"over the {target}× target"
        elif name in REFERENCES:
            verdict = "reference"
        elif name.startswith(("read_", "loop_")):
            verdict = "floor"
        print(f"{name:<20}{median:>10.3f}{total / MiB / median:>9.0f}{ratio:>10.2f}{paired:>8.2f}"
              f"{cpu:>13}   {verdict}")  # fmt: skip
    print("proxy CPU: CPU seconds of the process between the client and the upstream, per download")
    versus: dict[str, dict[str, float]] = {}
    ours = [name for name in medians if name.startswith("ours_")]
    for other in ("fastapi_proxy", *REFERENCES):
        if other in medians:
            versus[other] = {}
            for name in ours:
                versus[other][name] = statistics.median(
                    run / base for run, base in zip(times[name], times[other], strict=True)
                )
                print(f"{name} / {other} (paired): {versus[other][name]:.2f}")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "mib": total // MiB,
        "rounds": rounds,
        "framing": framing,
        "server": server,
        "client": client,
        "cpus": os.cpu_count(),
        "proxy_env": proxy_env,
        "runs": times,
        "proxy_cpu_runs": proxy_cpu,
        "rows": rows,
        "versus": versus,
        "targets": TARGETS,
        "load_before": load_before,
        "load_after": load_after,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()

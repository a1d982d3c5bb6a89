"""Real peers for the tests: servers, proxies and browsers on 127.0.0.1.

A peer missing on a developer's machine skips its tests with the reason; under ``CI=true`` a
missing peer fails them, so CI can never pass by skipping.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Apps served by subprocess workers, and the node validator: not test modules.
collect_ignore = ["apps", "ui_schema"]

CHROMIUM = os.environ.get("FASTSTREAM_KIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need_peer(available: bool, reason: str) -> None:
    """Skip (on a laptop) or fail (in CI) a test whose real peer is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"missing test peer in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


APPS = Path(__file__).parent / "apps"


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class ServedApp:
    url: str
    port: int
    process: subprocess.Popen[Any]


@contextmanager
def uvicorn_process(
    target: str, *, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[ServedApp]:
    """Serve ``tests/apps/<module>:<app>`` with uvicorn in a process of its own.

    For measurements the test process must not disturb (its GIL, its CPU) and for signals.
    """
    port = free_port()
    python_path = os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log", *args],
        env={**os.environ, "PYTHONPATH": python_path, **(env or {})},
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield ServedApp(f"http://127.0.0.1:{port}", port, process)
    finally:
        stop_process(process)


PINGS = 200
ROUNDS = 5
QUIET_STEAL = 0.05
"""A latency window counts when the hypervisor took at most this share of the CPU time."""
LATENCY_SECONDS = 90.0
"""How long a latency test may keep measuring windows (a round starts only if it can run
its ``ROUND_SECONDS`` before then); the load it measures under must outlive this."""
ROUND_SECONDS = 5.0
"""A round of pings starts no new ping after this, and a ping unanswered for this long ends
it: 200 pings take 1-3 s here, so a round that runs out measures a server that is stuck,
and its unanswered ping counts with the time it waited (a lower bound, and over any
millisecond limit)."""

# The server FastAPI's own install (``fastapi[standard]``) deploys: uvloop and httptools. The
# latency tests run under it because fifty threads share one GIL with the event loop there,
# and the pure-Python loop and parser take the GIL back after every socket call: on this
# 2-core machine their p99 then varies 3-15 ms run to run instead of 3-8 ms.
PRODUCTION_SERVER = ("--loop", "uvloop", "--http", "httptools")

# A bare socket client: httpx's own per-request work would be measured too, and on a busy
# 2-core machine it is the larger share of a millisecond-scale answer.
PING_CLIENT = """
import json, socket, sys, time
host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
request = f"GET /ping HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n".encode()
deadline = time.perf_counter() + seconds
sock = socket.create_connection((host, port), timeout=seconds)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def answer():
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\\r\\n\\r\\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(head.lower().split(b"content-length:")[1].split(b"\\r\\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(body)} of {length} body bytes")
        body += chunk
    assert json.loads(body) == {"ok": True}

latencies = []
started = time.perf_counter()
try:
    sock.sendall(request)
    answer()  # the keep-alive connection is open and the app has answered once
    first = time.perf_counter() - started
    for _ in range(count):
        started = time.perf_counter()
        if started > deadline:
            break
        sock.sendall(request)
        answer()
        latencies.append(time.perf_counter() - started)
    latencies = latencies or [first]  # the first answer took the whole round
except TimeoutError:
    latencies.append(time.perf_counter() - started)  # unanswered: at least this slow
print(json.dumps(latencies))
"""


def ping_latencies(port: int) -> list[float]:
    """Up to ``PINGS`` sequential requests to the ``def`` endpoint in up to ``ROUND_SECONDS``,
    sorted seconds.

    The client runs in its own process, so that nothing else in the test process (a
    scripted peer, a GC pass) holds the client's GIL while it measures.
    """
    result = subprocess.run(
        [sys.executable, "-c", PING_CLIENT, "127.0.0.1", str(port), str(PINGS), str(ROUND_SECONDS)],
        capture_output=True,
        text=True,
        timeout=2 * ROUND_SECONDS + 30,  # the client bounds itself; this is for a hung process
        check=True,
    )
    return sorted(json.loads(result.stdout))


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def host_cpu_ticks() -> tuple[int, int]:
    """(stolen, total) CPU ticks since boot, from ``/proc/stat``; (0, 0) where there is none.

    Steal is the time a virtual CPU was ready to run but the hypervisor ran something else.
    """
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return 0, 0
    # user nice system idle iowait irq softirq steal ...
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


@dataclass
class LatencyWindow:
    """Up to ``ROUNDS`` rounds of pings, judged by the median round, so one round a
    neighbour disturbs does not decide the outcome."""

    p50: float
    p99: float
    round_p99s: list[float]
    steal: float
    """The share of the machine's CPU time the hypervisor took while this window ran."""

    @property
    def quiet(self) -> bool:
        return self.steal <= QUIET_STEAL

    def __str__(self) -> str:
        rounds = ", ".join(f"{p99 * 1000:.1f}" for p99 in self.round_p99s)
        return (
            f"p99 {self.p99 * 1000:.1f} ms (rounds {rounds}), p50 {self.p50 * 1000:.1f} ms, "
            f"steal {self.steal:.0%}"
        )


def median_p99(port: int, deadline: float) -> LatencyWindow:
    """A window of ``ROUNDS`` rounds, or of those that fit before ``deadline`` (monotonic)."""
    stolen_before, total_before = host_cpu_ticks()
    rounds = [ping_latencies(port)]
    while len(rounds) < ROUNDS and time.monotonic() + ROUND_SECONDS <= deadline:
        rounds.append(ping_latencies(port))
    stolen_after, total_after = host_cpu_ticks()
    p50s = sorted(percentile(latencies, 0.50) for latencies in rounds)
    p99s = sorted(percentile(latencies, 0.99) for latencies in rounds)
    steal = (stolen_after - stolen_before) / max(1, total_after - total_before)
    return LatencyWindow(p50s[len(p50s) // 2], p99s[len(p99s) // 2], p99s, steal)


@dataclass
class Latency:
    windows: list[LatencyWindow]

    def judged(self, p99_limit: float) -> LatencyWindow | None:
        """A window within the limit, else the last quiet one; ``None`` if there is neither.

        Steal only adds latency, so a window within the limit passes however much the
        hypervisor took during it; one over the limit says something only if it was quiet.
        """
        within = [window for window in self.windows if window.p99 <= p99_limit]
        quiet = [window for window in self.windows if window.quiet]
        judged = within or quiet
        return judged[-1] if judged else None

    def __str__(self) -> str:
        return "; ".join(f"window {i}: {window}" for i, window in enumerate(self.windows, 1))


def latency_windows(port: int, p99_limit: float) -> Latency:
    """:func:`median_p99` windows until one's p99 is within ``p99_limit``.

    This 2-core VM shares its host. A window over the limit in which the hypervisor took more
    than ``QUIET_STEAL`` of the CPU time measures the host, not the server (for the same load,
    0 % steal gives a p99 of 3-5 ms here and 20-50 % steal 13-180 ms), so it is not judged.
    Contention that steal does not show (a busy neighbour on the same cores) slows a few
    windows in a row as well, so windows are measured for up to ``LATENCY_SECONDS`` (and a
    ping in flight then, up to ``ROUND_SECONDS`` more): the test asserts that the server
    meets the limit under its load when the host lets it, and a server that cannot, fails in
    every window.
    """
    latency = Latency([])
    deadline = time.monotonic() + LATENCY_SECONDS
    while not latency.windows or time.monotonic() + ROUND_SECONDS <= deadline:
        window = median_p99(port, deadline)
        latency.windows.append(window)
        if window.p99 <= p99_limit:
            break
    return latency


def assert_p99_within(latency: Latency, p99_limit: float) -> None:
    judged = latency.judged(p99_limit)
    if judged is None:
        # Nothing was measured but the host. On a laptop that is said, not hidden; in CI it
        # fails, so CI never passes a latency it could not measure.
        reason = (
            f"every window for {LATENCY_SECONDS:.0f} s was over {p99_limit * 1000:.0f} ms while "
            f"the hypervisor took over {QUIET_STEAL:.0%} of the CPU, so the latency could not "
            f"be measured: {latency}"
        )
        if IN_CI:
            pytest.fail(f"p99 not shown within {p99_limit * 1000:.0f} ms in CI: {reason}")
        pytest.skip(reason)
    assert judged.p99 <= p99_limit, f"p99 over {p99_limit * 1000:.0f} ms: {latency}"


@pytest.fixture
def request_id(request: pytest.FixtureRequest) -> str:
    """A name for the requests of one test, unique in the session.

    Servers that outlive a test record what happened per request id, so a callback that a
    previous test's request causes late is never taken for this test's, nor lost.
    """
    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every test module is imported: freeze that heap (the SDKs, the servers, the peers).

    A full collection otherwise walks those millions of objects again each time; after
    ``gc.freeze()`` it walks only what the tests have made since.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture
def without_gc() -> Iterator[None]:
    """Garbage collection off during a test that times a server running in this process.

    This process's heap holds what the whole suite left behind, and a full collection of it
    stalls every thread here, the server's included, for longer than some of the gaps the
    tests measure. A server in its own process never pays for this heap. (No collection
    before: with collection off none can start during the test, and a full one here cost
    each of these tests 0.3-0.5 s late in the suite.)
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def curl() -> str:
    path = shutil.which("curl")
    need_peer(path is not None, "curl is not installed (apt-get install curl)")
    assert path is not None
    return path


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
        }}
    }}
}}
"""


@pytest.fixture
def nginx_proxy(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start nginx in the foreground with the default proxy config (``proxy_pass`` only).

    Call it with the upstream base URL; it returns nginx's base URL.
    """
    binary = nginx_binary()
    need_peer(binary is not None, "nginx is not installed (apt-get install nginx-light)")
    assert binary is not None
    processes: list[subprocess.Popen[bytes]] = []

    def start(upstream: str) -> str:
        port = free_port()
        conf = tmp_path / f"nginx-{port}.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp_path, port=port, upstream=upstream))
        process = subprocess.Popen(
            [binary, "-c", str(conf), "-e", str(tmp_path / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        try:
            wait_for_port(port)
        except RuntimeError:
            process.kill()
            _, err = process.communicate()
            raise RuntimeError(f"nginx did not start: {err.decode(errors='replace')}") from None
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium driven by playwright-python (never ``playwright install``).

    Module-scoped: playwright's sync API keeps an event loop running in the main thread
    while it is open, which would stop later tests from calling ``anyio.run``.
    """
    need_peer(os.path.exists(CHROMIUM), f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need_peer(False, "playwright is not installed (pip install playwright)")
        raise
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()

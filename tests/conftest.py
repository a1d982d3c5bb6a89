"""Real peers for the tests: servers, proxies and browsers on 127.0.0.1.

A peer missing on a developer's machine skips its tests with the reason; under ``CI=true`` a
missing peer fails them, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
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


@pytest.fixture
def curl() -> str:
    path = shutil.which("curl")
    need_peer(path is not None, "curl is not installed (apt-get install curl)")
    assert path is not None
    return path


def _nginx_binary() -> str | None:
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
    binary = _nginx_binary()
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

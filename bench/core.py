"""Side-by-side benchmark of the core (``stream_response``) against its anchors, in one run.

    python bench/core.py            # full run, about two minutes
    python bench/core.py --quick    # smaller sizes, two rounds, well under 40 s

The server (uvicorn serving ``bench/_apps.py``) runs in its own process and the client
(``bench/_client.py``, or ``curl`` with ``--client curl``) in another, so on a two-core
machine each gets a core. Every scenario runs in
rounds; each round requests every implementation once, in an order that rotates from round to
round, so drift on a shared machine hits all of them alike. The table shows medians and the
ratios between implementations; ratios are what to compare across machines and runs. Results
go to ``bench/results/core.json``. See ``bench/README.md`` for how to read them.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "core.json"
CLIENT = ROOT / "bench" / "_client.py"

MiB = 1 << 20
SERVER_START_SECONDS = 20.0
REQUEST_TIMEOUT_SECONDS = 60.0
SYNC1K_BUDGET_SECONDS = {False: 12.0, True: 2.0}
"""How long one Starlette request of the sync-1 KiB scenario may take (full / quick)."""


@dataclass(frozen=True)
class Ratio:
    """``numerator`` median / ``denominator`` median, with an optional target."""

    label: str
    numerator: str
    denominator: str
    target: float | None = None
    at_most: bool = True  # the target is an upper bound (else a lower bound)
    aim: float | None = None

    def verdict(self, value: float) -> str:
        if self.target is None:
            return ""
        ok = value <= self.target if self.at_most else value >= self.target
        sign = "<=" if self.at_most else ">="
        aim = f", aim {self.aim}" if self.aim is not None else ""
        return f"{'ok  ' if ok else 'MISS'} (target {sign} {self.target}{aim})"


@dataclass
class Scenario:
    name: str
    title: str
    implementations: tuple[str, ...]
    params: dict[str, int]
    expected_bytes: int
    rounds: int
    ratios: tuple[Ratio, ...]
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def query(self, scale: float = 1.0) -> tuple[str, int]:
        """The query string and expected body size, the sizes multiplied by ``scale``."""
        params = dict(self.params)
        if "n" in params:
            params["n"] = max(1, int(params["n"] * scale))
            size = params["n"] * params["size"]
        else:
            count = max(1, int(params["total"] * scale) // params["chunk"])
            params["total"] = size = count * params["chunk"]
        return "&".join(f"{k}={v}" for k, v in params.items()), size


def build_scenarios(quick: bool, rounds: int | None = None) -> list[Scenario]:
    rounds = rounds or (2 if quick else 7)
    small_n = 10_000 if quick else 20_000
    bulk_total = (128 if quick else 256) * MiB
    sync1k_total = (8 if quick else 32) * MiB
    return [
        Scenario(
            name="small",
            title=f"{small_n:,} items of 32 B",
            implementations=("ours_async", "ours_sync", "starlette_async", "starlette_sync"),
            params={"n": small_n, "size": 32},
            expected_bytes=small_n * 32,
            rounds=rounds,
            ratios=(
                Ratio("ours sync / ours async", "ours_sync", "ours_async", 1.3, aim=1.2),
                Ratio("ours async / Starlette async", "ours_async", "starlette_async"),
                Ratio("ours sync / Starlette sync", "ours_sync", "starlette_sync"),
                Ratio("ours sync / Starlette async", "ours_sync", "starlette_async"),
            ),
        ),
        Scenario(
            name="bulk",
            title=f"{bulk_total // MiB} MiB in 64 KiB chunks, async generator",
            implementations=("ours", "raw_asgi", "starlette"),
            params={"total": bulk_total, "chunk": 64 << 10},
            expected_bytes=bulk_total,
            # One request takes a fraction of a second: more rounds cost little, steady the median.
            rounds=3 * rounds,
            ratios=(
                BULK_RATIO,
                Ratio("Starlette / raw ASGI", "starlette", "raw_asgi"),
                Ratio("ours / Starlette", "ours", "starlette"),
            ),
        ),
        Scenario(
            name="sync1k",
            title=f"{sync1k_total // MiB} MiB in 1 KiB chunks, sync generator",
            implementations=("ours", "starlette"),
            params={"total": sync1k_total, "chunk": 1 << 10},
            expected_bytes=sync1k_total,
            rounds=rounds,
            ratios=(
                Ratio("Starlette / ours (speed-up)", "starlette", "ours", 20.0, at_most=False),
            ),
        ),
    ]


BULK_RATIO = Ratio("ours / raw ASGI", "ours", "raw_asgi", 1.05)
ROUTE = {"raw_asgi": "raw"}  # implementation name -> path segment, where they differ


# --- the server process ---------------------------------------------------------------------


def server_flavour(http: str = "auto", loop: str = "auto") -> tuple[str, str]:
    """The fastest HTTP parser and event loop uvicorn can use here, unless one is asked for."""
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return http, loop


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all threads) so far, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # proc(5) 14, 15


def thread_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """Seconds on CPU of one thread (the process's main thread by default) so far, from the
    nanoseconds of ``/proc/<pid>/task/<tid>/schedstat``: finer than the 10 ms ticks of
    :func:`process_cpu_seconds`, and for an app it is the event loop's thread alone."""
    stat = Path(f"/proc/{pid}/task/{pid if tid is None else tid}/schedstat").read_text()
    return int(stat.split()[0]) / 1e9


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn <app>`` in a subprocess on 127.0.0.1; stopped on exit, always."""

    def __init__(
        self,
        http: str,
        loop: str,
        app: str = "bench._apps:app",
        env: dict[str, str] | None = None,
    ) -> None:
        self.http = http
        self.loop = loop
        self.app = app
        self.env = {**os.environ, **(env or {})}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._probe: http.client.HTTPConnection | None = None
        # Closed in __exit__; the server writes its warnings and tracebacks here.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115

    def __enter__(self) -> Server:
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            command = [
                sys.executable, "-m", "uvicorn", self.app, "--app-dir", str(ROOT),
                "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", "--no-access-log", "--lifespan", "off",
                "--http", self.http, "--loop", self.loop,
            ]  # fmt: skip
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
            )
            try:
                if self._wait_ready():
                    return self
            except BaseException:
                self.stop()
                raise
            self.stop()
        raise RuntimeError(f"{self.app} did not start:\n{self.log_tail()}")

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._log.close()

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def cpu_seconds(self) -> float:
        """CPU seconds the server process used so far, all its threads included.

        Asked over one kept-alive connection, so each probe costs the server the same few
        microseconds; far finer than the 10 ms ticks of ``/proc/<pid>/stat``.
        """
        for _attempt in range(2):
            if self._probe is None:
                self._probe = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self._probe.request("GET", "/cpu")
                return float(self._probe.getresponse().read())
            except (OSError, http.client.HTTPException):
                self._probe.close()
                self._probe = None
        raise RuntimeError(f"the server stopped answering:\n{self.log_tail()}")


# --- the client -------------------------------------------------------------------------------


def fetch(server: Server, path: str, expected_bytes: int, client: str) -> dict[str, float]:
    """One request; the wall time the client measured and the server's CPU time for it."""
    url = f"http://127.0.0.1:{server.port}{path}"
    timeout = str(REQUEST_TIMEOUT_SECONDS)
    if client == "curl":
        command = [
            "curl", "-s", "-N", "-o", "/dev/null", "--max-time", timeout,
            "-w", "%{http_code} %{size_download} %{time_total}", url,
        ]  # fmt: skip
    else:
        command = [sys.executable, str(CLIENT), str(server.port), path, timeout]
    cpu_before = server.cpu_seconds()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=REQUEST_TIMEOUT_SECONDS + 10, check=False
    )
    cpu_after = server.cpu_seconds()
    try:
        status, size, seconds = done.stdout.split()
    except ValueError:
        raise RuntimeError(f"{client} {url} failed ({done.returncode}): {done.stderr}") from None
    if status != "200" or int(size) != expected_bytes:
        raise RuntimeError(
            f"{url}: status {status}, {size} bytes (expected 200, {expected_bytes} bytes)\n"
            f"{server.log_tail()}"
        )
    return {"wall": float(seconds), "server_cpu": cpu_after - cpu_before}


# --- what one chunk costs, without the socket ------------------------------------------------

IN_PROCESS_CHUNKS = 100_000


def per_chunk_microseconds(loop: str, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` µs per 64 KiB chunk of the bulk routes, in this process, with a
    ``send`` that does nothing: what each implementation adds on top of the socket write.

    On two shared cores the bulk wall time swings by 3× between identical runs (the client
    and the server competing for a core, neighbours' steal time); with no socket and no
    second process this measurement repeats within a few percent.
    """
    import asyncio

    sys.path.insert(0, str(ROOT))
    from bench._apps import ROUTES

    async def measure() -> dict[str, float]:
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await never.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            return None

        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": "GET", "path": "/", "query_string": b"",
            "headers": [],
        }  # fmt: skip
        params = {"total": IN_PROCESS_CHUNKS << 16, "chunk": 1 << 16}
        best: dict[str, float] = {}
        for _ in range(repeats):
            for name in ("raw_asgi", "ours"):
                handler = ROUTES[f"/bulk/{ROUTE.get(name, name)}"]
                started = time.perf_counter()
                await handler(scope, receive, send, params)
                micros = (time.perf_counter() - started) / IN_PROCESS_CHUNKS * 1e6
                best[name] = min(best.get(name, micros), micros)
        return best

    if loop == "uvloop":
        import uvloop

        return uvloop.run(measure())
    return asyncio.run(measure())


def in_process_summary(bulk: dict[str, Any], loop: str) -> dict[str, Any]:
    """The bulk ratio projected from the per-chunk costs and the raw server's CPU per chunk."""
    costs = per_chunk_microseconds(loop)
    chunks = bulk["params"]["total"] // bulk["params"]["chunk"]
    raw_cpu = bulk["medians"]["raw_asgi"]["server_cpu"] / chunks * 1e6
    added = costs["ours"] - costs["raw_asgi"]
    projected = (raw_cpu + added) / raw_cpu
    return {
        "microseconds_per_chunk": costs,
        "raw_server_cpu_microseconds_per_chunk": raw_cpu,
        "added_microseconds_per_chunk": added,
        "projected_ratio": projected,
        "verdict": BULK_RATIO.verdict(projected),
    }


def print_in_process(found: dict[str, Any]) -> None:
    costs = found["microseconds_per_chunk"]
    added, raw_cpu = (
        found["added_microseconds_per_chunk"],
        found["raw_server_cpu_microseconds_per_chunk"],
    )
    print(
        f"  in process, no socket: ours {costs['ours']:.2f} µs/chunk, raw ASGI "
        f"{costs['raw_asgi']:.2f} µs/chunk; ours adds {added:.2f} µs to a chunk that costs the"
        f" raw server {raw_cpu:.1f} µs of CPU: {found['projected_ratio']:.3f}×  {found['verdict']}"
    )


# --- running and reporting --------------------------------------------------------------------


def path_for(scenario: Scenario, implementation: str, scale: float = 1.0) -> tuple[str, int]:
    query, size = scenario.query(scale)
    return f"/{scenario.name}/{ROUTE.get(implementation, implementation)}?{query}", size


def calibrate_sync1k(server: Server, scenario: Scenario, quick: bool, client: str) -> None:
    """Shrink the sync-1 KiB size if Starlette's thread hop per item makes it too slow here."""
    probe_scale = 1 / 8
    path, size = path_for(scenario, "starlette", probe_scale)
    seconds = fetch(server, path, size, client)["wall"]
    estimate = seconds / probe_scale
    budget = SYNC1K_BUDGET_SECONDS[quick]
    total = scenario.params["total"]
    while estimate > budget and total > MiB:
        total //= 2
        estimate /= 2
    if total != scenario.params["total"]:
        scenario.params["total"] = scenario.expected_bytes = total
        scenario.title = f"{total // MiB} MiB in 1 KiB chunks, sync generator (reduced)"


def run_scenario(server: Server, scenario: Scenario, client: str) -> None:
    # Warm up every implementation (imports, thread creation, first-request costs) uncounted.
    for implementation in scenario.implementations:
        fetch(server, *path_for(scenario, implementation, 1 / 8), client)
    scenario.runs = {name: [] for name in scenario.implementations}
    names = scenario.implementations
    for round_index in range(scenario.rounds):
        shift = round_index % len(names)
        for implementation in names[shift:] + names[:shift]:
            path, size = path_for(scenario, implementation)
            scenario.runs[implementation].append(fetch(server, path, size, client))
        print(".", end="", flush=True)


def summarize(scenario: Scenario) -> dict[str, Any]:
    medians = {
        name: {
            "wall": statistics.median(run["wall"] for run in runs),
            "wall_min": min(run["wall"] for run in runs),
            "server_cpu": statistics.median(run["server_cpu"] for run in runs),
        }
        for name, runs in scenario.runs.items()
    }
    ratios = []
    for ratio in scenario.ratios:
        top, bottom = scenario.runs[ratio.numerator], scenario.runs[ratio.denominator]
        wall = medians[ratio.numerator]["wall"] / medians[ratio.denominator]["wall"]
        # Same-round pairs cancel drift that lasts longer than a round.
        paired = statistics.median(a["wall"] / b["wall"] for a, b in zip(top, bottom, strict=True))
        cpu_bottom = medians[ratio.denominator]["server_cpu"]
        cpu = medians[ratio.numerator]["server_cpu"] / cpu_bottom if cpu_bottom > 0 else None
        ratios.append(
            {
                **asdict(ratio),
                "wall_ratio": wall,
                "paired_wall_ratio": paired,
                "server_cpu_ratio": cpu,
                "verdict": ratio.verdict(paired),
            }
        )
    return {
        "name": scenario.name,
        "title": scenario.title,
        "params": scenario.params,
        "expected_bytes": scenario.expected_bytes,
        "rounds": scenario.rounds,
        "medians": medians,
        "ratios": ratios,
        "runs": scenario.runs,
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\n{summary['name']}: {summary['title']}  ({summary['rounds']} rounds)")
    print(
        f"  {'implementation':<16} {'median s':>9} {'min s':>8} {'MiB/s':>8} {'server CPU s':>13}"
    )
    for name, median in summary["medians"].items():
        rate = summary["expected_bytes"] / MiB / median["wall"] if median["wall"] else 0.0
        print(
            f"  {name:<16} {median['wall']:>9.4f} {median['wall_min']:>8.4f} {rate:>8.1f}"
            f" {median['server_cpu']:>13.3f}"
        )
    print(f"  {'ratio':<32} {'wall':>7} {'paired':>7} {'CPU':>7}")
    for ratio in summary["ratios"]:
        cpu = ratio["server_cpu_ratio"]
        cpu_text = f"{cpu:>7.2f}" if cpu is not None else f"{'-':>7}"
        print(
            f"  {ratio['label']:<32} {ratio['wall_ratio']:>7.2f} {ratio['paired_wall_ratio']:>7.2f}"
            f" {cpu_text}  {ratio['verdict']}"
        )


def environment(http: str, loop: str, client: str) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "server": f"uvicorn {version('uvicorn')} --http {http} --loop {loop}",
        "client": "curl" if client == "curl" else "bench/_client.py (recv_into 1 MiB)",
        "versions": {
            name: version(name) for name in ("faststream-kit", "starlette", "anyio", "h11")
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 2 rounds (< 40 s)")
    parser.add_argument(
        "--only", choices=("small", "bulk", "sync1k"), action="append", help="run these only"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument(
        "--client", choices=("python", "curl"), default="python", help="the reading process"
    )
    parser.add_argument("--rounds", type=int, help="rounds per scenario (bulk runs 3 times more)")
    args = parser.parse_args(argv)
    if args.client == "curl" and shutil.which("curl") is None:
        print("curl is not installed; use --client python", file=sys.stderr)
        return 2
    if args.rounds is not None and not 1 <= args.rounds <= 50:
        parser.error("--rounds must be between 1 and 50")
    # Turn a polite kill into SystemExit, so the server is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    http, loop = server_flavour(args.http, args.loop)
    scenarios = [
        s for s in build_scenarios(args.quick, args.rounds) if not args.only or s.name in args.only
    ]
    env = environment(http, loop, args.client)
    print(f"server: {env['server']} (subprocess); client: {env['client']} (subprocess)")
    print(
        f"cpus: {env['cpus']}, load average: {' '.join(f'{x:.2f}' for x in env['loadavg_before'])}"
    )
    started = time.monotonic()
    summaries = []
    with Server(http, loop) as server:
        for scenario in scenarios:
            print(f"running {scenario.name} ", end="", flush=True)
            if scenario.name == "sync1k":
                calibrate_sync1k(server, scenario, args.quick, args.client)
            run_scenario(server, scenario, args.client)
            summaries.append(summarize(scenario))
            print()
    elapsed = time.monotonic() - started
    env["loadavg_after"] = os.getloadavg()
    for summary in summaries:
        if summary["name"] == "bulk":
            summary["in_process"] = in_process_summary(summary, loop)
    for summary in summaries:
        print_summary(summary)
        if "in_process" in summary:
            print_in_process(summary["in_process"])
    print(f"\ntotal {elapsed:.1f} s; load average after: {env['loadavg_after'][0]:.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {"quick": args.quick, "seconds": elapsed, "environment": env, "scenarios": summaries}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

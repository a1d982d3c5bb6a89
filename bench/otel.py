"""What OpenTelemetry costs a stream: the core's ``small`` and ``bulk`` routes, served by two
uvicorn processes in the same run, one plain and one with the SDK configured
(``bench/_otel_apps.py``: a span and metrics per stream, exported to nowhere).

    python bench/otel.py            # 7 rounds (bulk 21), about two minutes
    python bench/otel.py --quick    # 2 rounds, smaller sizes

Each round requests both servers in an order that alternates; the ratio is the median of
same-round pairs (with OpenTelemetry / without). Target: <= 1.03 for both. Results go to
``bench/results/otel.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core import (
    MiB,
    Server,
    environment,
    fetch,
    server_flavour,
)

RESULTS = Path(__file__).resolve().parent / "results" / "otel.json"
TARGET = 1.03


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--client", choices=("python", "curl"), default="curl")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 7)
    small_n = 10_000 if args.quick else 20_000
    bulk_total = (128 if args.quick else 256) * MiB
    scenarios = {
        "small": (f"/small/ours_async?n={small_n}&size=32", small_n * 32, rounds),
        "bulk": (f"/bulk/ours?total={bulk_total}&chunk=65536", bulk_total, 3 * rounds),
    }
    http, loop = server_flavour()
    results: dict[str, Any] = {"environment": environment(http, loop, args.client)}
    with (
        Server(http, loop) as plain,
        Server(http, loop, app="bench._otel_apps:app") as traced,
    ):
        servers = {"without": plain, "with_otel": traced}
        for name, (path, size, count) in scenarios.items():
            for server in servers.values():  # warm-up, uncounted
                fetch(server, path, size, args.client)
            runs: dict[str, list[dict[str, float]]] = {key: [] for key in servers}
            for round_index in range(count):
                order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                for key in order:
                    runs[key].append(fetch(servers[key], path, size, args.client))
                print(".", end="", flush=True)
            paired = statistics.median(
                a["wall"] / b["wall"]
                for a, b in zip(runs["with_otel"], runs["without"], strict=True)
            )
            cpu = statistics.median(r["server_cpu"] for r in runs["with_otel"]) / max(
                statistics.median(r["server_cpu"] for r in runs["without"]), 1e-9
            )
            verdict = "ok" if paired <= TARGET else f"MISSED (target <= {TARGET})"
            print(
                f"\n{name}: with OpenTelemetry / without = {paired:.3f} (paired wall median), "
                f"server CPU {cpu:.3f}  {verdict}"
            )
            results[name] = {"paired_wall_ratio": paired, "server_cpu_ratio": cpu, "runs": runs}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

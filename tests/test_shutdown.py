"""SIGTERM with open SSE streams: every client gets the final event, the server exits fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from faststream_kit.testing import SSEParser

from .conftest import free_port, wait_for_port

APPS = Path(__file__).parent / "apps"
STREAMS = 100


def server_command(name: str, port: int) -> list[str]:
    if name == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "sse_forever:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    if name == "daphne":
        return [
            sys.executable, "-m", "daphne", "sse_forever:app", "--bind", "127.0.0.1",
            "--port", str(port), "-v", "0",
        ]  # fmt: skip
    # --workers 0 serves in this process, which is the one that receives the signal; with
    # worker processes hypercorn's parent gets it and the workers only poll a flag.
    return [
        sys.executable, "-m", "hypercorn", "sse_forever:app", "--workers", "0",
        "--bind", f"127.0.0.1:{port}", "--log-level", "WARNING",
    ]  # fmt: skip


async def follow(url: str, connected: anyio.Event, counter: list[int]) -> tuple[list[str], bool]:
    """Read one stream until it ends; return the event types seen and whether it ended cleanly."""
    parser = SSEParser()
    kinds: list[str] = []
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url) as response,
    ):
        try:
            async for data in response.aiter_raw():
                for event in parser.feed(data):
                    if not kinds:
                        counter[0] += 1
                        if counter[0] == STREAMS:
                            connected.set()
                    kinds.append(event.event)
        except httpx.HTTPError:
            return kinds, False
    return kinds, True


@pytest.mark.parametrize("server_name", ["uvicorn", "hypercorn", "daphne"])
def test_sigterm_ends_100_open_streams_with_a_final_event_within_2s(server_name: str) -> None:
    port = free_port()
    # The apps first, then whatever the run put on the path (a source tree under test).
    python_path = os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        server_command(server_name, port), env={**os.environ, "PYTHONPATH": python_path}
    )
    try:
        wait_for_port(port)
        results: list[tuple[list[str], bool]] = []
        exited_after: list[float] = []

        async def main() -> None:
            connected = anyio.Event()
            counter = [0]

            async def run_one() -> None:
                results.append(await follow(f"http://127.0.0.1:{port}/forever", connected, counter))

            async with anyio.create_task_group() as group:
                for _ in range(STREAMS):
                    group.start_soon(run_one)
                with anyio.fail_after(20):
                    await connected.wait()
                sent = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(process.wait, 10)
                exited_after.append(time.monotonic() - sent)

        anyio.run(main)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert exited_after[0] < 2.0
    assert len(results) == STREAMS
    for kinds, clean in results:
        assert clean, "a stream was cut off instead of ending"
        assert kinds[-1] == "shutdown"
        assert kinds.count("shutdown") == 1


@pytest.mark.parametrize("fmt", ["ui", "ag-ui"])
def test_sigterm_lets_an_llm_answer_finish_instead_of_aborting_it(fmt: str) -> None:
    # llm_stream registers no shutdown frame: an answer is short and finite, so the server's
    # graceful shutdown waits for it, and the front end gets the whole answer and its finish
    # (never the ``abort`` part / a cancelled run).
    port = free_port()
    python_path = os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")]))
    command = server_command("uvicorn", port)
    command[command.index("sse_forever:app")] = "llm_answer:app"
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": python_path})
    try:
        wait_for_port(port)
        parser = SSEParser()
        data: list[str] = []
        with httpx.stream("GET", f"http://127.0.0.1:{port}/{fmt}", timeout=10) as response:
            for raw in response.iter_raw():
                data += [event.data for event in parser.feed(raw)]
                if len(data) == 4 and process.poll() is None:  # the answer has begun
                    sent = time.monotonic()
                    process.send_signal(signal.SIGTERM)
        finished_after = time.monotonic() - sent
        process.wait(10)  # and then the server exits (uvicorn re-raises the SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert finished_after > 0.6  # the rest of the answer took its time
    text = "".join(
        json.loads(item).get("delta", "")
        for item in data
        if item != "[DONE]" and json.loads(item)["type"] in ("text-delta", "TEXT_MESSAGE_CONTENT")
    )
    assert text == "one two three four five"
    last = [json.loads(item)["type"] for item in data if item != "[DONE]"][-1]
    assert last == {"ui": "finish", "ag-ui": "RUN_FINISHED"}[fmt]
    assert all('"abort"' not in item for item in data)

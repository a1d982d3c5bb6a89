"""One error vocabulary: the same failure has the same status, ``type`` and shape everywhere.

``docs/errors.md`` is the table users read; ``faststream_kit.ERRORS`` is the one the code
uses. These tests hold the two together, check that the library builds its errors only from
that table, and run the same failures through every helper over real sockets.
"""

from __future__ import annotations

import ast
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from faststream_kit import (
    ERRORS,
    StreamError,
    llm_stream,
    sse_response,
    stream_response,
    upstream_stream,
)
from faststream_kit.testing import LiveServer, parse_events

from .s3_peers import S3Peer, make_app
from .upstream_peers import http_clients

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "faststream_kit"


def documented_errors() -> dict[str, int]:
    text = (ROOT / "docs" / "errors.md").read_text()
    section = text.split("## The types", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$", section, flags=re.MULTILINE)
    return {name: int(status) for name, status, _ in rows}


def test_the_documented_table_is_the_table_the_code_uses() -> None:
    assert documented_errors() == {name: status for name, (status, _) in ERRORS.items()}


def test_the_documented_meanings_are_the_codes_meanings() -> None:
    text = (ROOT / "docs" / "errors.md").read_text()
    for name, (status, meaning) in ERRORS.items():
        assert f"| `{name}` | {status} | {meaning} |" in text


def library_modules() -> Iterator[Path]:
    for path in sorted(SOURCE.rglob("*.py")):
        # The demo app is an application of the library, with its own errors.
        if path != SOURCE / "_errors.py" and "_demo" not in path.parts:
            yield path


def calls_named(tree: ast.AST, name: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == name:
                yield node


def test_the_library_builds_every_error_from_the_table() -> None:
    seen: set[str] = set()
    for path in library_modules():
        tree = ast.parse(path.read_text())
        for call in calls_named(tree, "library_error"):
            first = call.args[0]
            assert isinstance(first, ast.Constant), f"{path.name}:{call.lineno}: a literal type"
            assert first.value in ERRORS, f"{path.name}:{call.lineno}: {first.value!r}"
            seen.add(first.value)
        for call in calls_named(tree, "StreamError"):
            # Only a resumable stream's reader rebuilds the error its producer stored.
            enclosing = path.name, _function_at(tree, call.lineno)
            assert enclosing == ("_records.py", "stored_error"), (
                f"{path.name}:{call.lineno} builds a StreamError outside the table; "
                "use library_error(type, message)"
            )
    # Every row of the table is produced somewhere (client_error and server_error come
    # from report_error; cancelled from the resume producer).
    assert set(ERRORS) - seen <= {"client_error", "server_error", "bad_request", "cancelled"}


def _function_at(tree: ast.AST, line: int) -> str | None:
    for node in ast.walk(tree):
        is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        if is_function and node.lineno <= line <= (node.end_lineno or node.lineno):
            return node.name
    return None


@pytest.mark.parametrize("status", [100, 200, 204, 302, 399, 600])
def test_a_stream_error_is_an_error_status(status: int) -> None:
    with pytest.raises(ValueError, match=r"^status_code must be an int from 400 to 599"):
        StreamError("fine", status_code=status)


def test_a_stream_error_with_a_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^headers\['Retry-After'\]"):
        StreamError("no", status_code=429, headers={"Retry-After": "1\r\nSet-Cookie: x=1"})


# Live: one failure, every helper ------------------------------------------------------------


@pytest.fixture(scope="module")
def refused_url() -> str:
    """An address where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def refused_apps(refused_url: str) -> FastAPI:
    app = FastAPI(lifespan=http_clients)
    chat = openai.AsyncOpenAI(base_url=refused_url + "/v1", api_key="sk-test", max_retries=0)

    @app.get("/llm")
    async def llm() -> Response:
        return llm_stream(
            chat.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )

    @app.get("/upstream/httpx")
    async def via_httpx(request: Request) -> Response:
        client = request.app.state.clients["httpx"]
        return upstream_stream(client, "GET", refused_url + "/x", request=request)

    @app.get("/upstream/aiohttp")
    async def via_aiohttp(request: Request) -> Response:
        session = request.app.state.clients["aiohttp"]
        return upstream_stream(session, "GET", refused_url + "/x", request=request)

    return app


@pytest.mark.parametrize(
    "route",
    ["/llm", "/upstream/httpx", "/upstream/aiohttp", "/s3/aiobotocore", "/s3/boto3"],
)
def test_a_refused_connection_is_the_same_error_in_every_helper(
    refused_url: str, route: str
) -> None:
    if route.startswith("/s3/"):
        dead = S3Peer("nothing", endpoint_url=refused_url)
        app: Any = make_app(dead, route.removeprefix("/s3/"))  # type: ignore[arg-type]
        path = "/objects/clip.mp4"
    else:
        app, path = refused_apps(refused_url), route
    with LiveServer(app) as server:
        response = httpx.get(server.url + path, timeout=30)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "upstream_unavailable"
    assert set(response.json()["error"]) == {"type", "message"}
    assert refused_url.rsplit(":", 1)[1] not in response.text  # no address leaks


# Live: one failure after the first chunk, every format ---------------------------------------


async def one_then_fail() -> AsyncIterator[str]:
    yield "one"
    raise StreamError("the source gave up", status_code=503, type="unavailable")


EXPECTED = {"type": "unavailable", "message": "the source gave up"}


@pytest.fixture(scope="module")
def failing_server() -> Iterator[LiveServer]:
    app = FastAPI()

    @app.get("/ndjson")
    async def ndjson() -> Response:
        async def lines() -> AsyncIterator[str]:
            async for text in one_then_fail():
                yield json.dumps({"text": text}) + "\n"

        return stream_response(lines(), media_type="application/x-ndjson")

    @app.get("/sse")
    async def sse() -> Response:
        return sse_response(one_then_fail())

    @app.get("/llm/{format}")
    async def llm(format: str) -> Response:
        return llm_stream(one_then_fail(), format=format)  # type: ignore[arg-type]

    with LiveServer(app) as server:
        yield server


@pytest.mark.parametrize("route", ["/ndjson", "/llm/ndjson"])
def test_an_ndjson_error_line_has_one_shape(failing_server: LiveServer, route: str) -> None:
    lines = httpx.get(failing_server.url + route).text.splitlines()
    assert json.loads(lines[-1]) == {"type": "error", "error": EXPECTED}


@pytest.mark.parametrize("route", ["/sse", "/llm/sse"])
def test_an_sse_error_frame_has_one_shape(failing_server: LiveServer, route: str) -> None:
    events = parse_events(httpx.get(failing_server.url + route).content)
    assert events[-1].event == "error"
    assert json.loads(events[-1].data) == EXPECTED


def test_the_openai_format_error_carries_the_same_object(failing_server: LiveServer) -> None:
    events = parse_events(httpx.get(failing_server.url + "/llm/openai").content)
    assert json.loads(events[-1].data) == {"error": EXPECTED}


def test_the_ag_ui_format_error_carries_the_type_as_its_code(failing_server: LiveServer) -> None:
    events = parse_events(httpx.get(failing_server.url + "/llm/ag-ui").content)
    assert json.loads(events[-1].data) == {
        "type": "RUN_ERROR",
        "message": EXPECTED["message"],
        "code": EXPECTED["type"],
    }

"""The private APIs of our dependencies that faststream-kit relies on, each on its real path.

``docs/design.md`` ("Private APIs we rely on") lists them. Most have a fallback that keeps the
library working, more slowly or less exactly, when the dependency changes; nothing a user
would notice at once. So each test here runs the real dependency (no mocks) through the path
that uses the private API and asserts that path was taken: when an upgrade removes or renames
the attribute, these tests fail and say which one and where it is documented.
"""

from __future__ import annotations

import dis
import inspect
import itertools
import json
import logging
import platform
import socket
import subprocess
import sys
import types
import typing
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiobotocore.session
import anthropic
import anyio
import fastapi
import httpx
import openai
import pytest
from anthropic import Anthropic, AsyncAnthropic
from fastapi import FastAPI, Request
from google import genai
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionChunk
from starlette.types import Message

import faststream_kit._llm._providers.anthropic
import faststream_kit._llm._providers.openai
from faststream_kit import (
    EventSourceResponse,
    StreamResponse,
    document_streams,
    llm_stream,
    stream_response,
)
from faststream_kit._llm._providers import gemini, langchain
from faststream_kit._llm._providers._base import http_response_in_chain
from faststream_kit._llm._providers.anthropic import _payloads as anthropic_payloads
from faststream_kit._llm._providers.openai import Payload, _reasoning_of, sdk_payloads
from faststream_kit._s3 import _S3Calls
from faststream_kit._sse import compact_json
from faststream_kit.testing import LiveServer

from .anthropic_peer import Script as AnthropicScript
from .anthropic_peer import ScriptedAnthropic
from .gemini_peer import Script as GeminiScript
from .gemini_peer import ScriptedGemini
from .openai_peer import Script, ScriptedOpenAI

TOKENS = ["Private", " APIs", " are", " watched"]
MESSAGES = [{"role": "user", "content": "hi"}]


def changed(dependency: str, attribute: str, consequence: str) -> str:
    return (
        f"{dependency} changed {attribute}, an internal API faststream-kit relies on: "
        f"{consequence}. Update the code that uses it and docs/design.md "
        '("Private APIs we rely on").'
    )


# ------------------------------------------------------------------ openai: Stream._iter_events


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI(Script(tokens=TOKENS)) as scripted:
        yield scripted


def text_of(payloads: list[Any]) -> str:
    return "".join(p.choices[0].delta.content or "" for p in payloads if p.choices)


ITER_EVENTS_GONE = changed(
    f"openai {openai.__version__}",
    "Stream._iter_events",
    "llm_stream now reads every chunk through the SDK's pydantic models, about 5x the CPU "
    "per token",
)


def test_a_sync_openai_stream_is_read_from_the_sdks_sse_decoder(peer: ScriptedOpenAI) -> None:
    client = OpenAI(base_url=peer.base_url, api_key="sk-test", max_retries=0)
    with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        payloads = sdk_payloads(stream)
        assert payloads is not None, ITER_EVENTS_GONE
        read = list(payloads)  # type: ignore[arg-type]
    assert all(type(payload) is Payload for payload in read)
    assert text_of(read) == "".join(TOKENS)


def test_an_async_openai_stream_is_read_from_the_sdks_sse_decoder(peer: ScriptedOpenAI) -> None:
    async def read() -> list[Any]:
        client = AsyncOpenAI(base_url=peer.base_url, api_key="sk-test", max_retries=0)
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        async with stream:
            payloads = sdk_payloads(stream)
            assert payloads is not None, ITER_EVENTS_GONE
            return [payload async for payload in payloads]  # type: ignore[union-attr]

    read_payloads = anyio.run(read)
    assert all(type(payload) is Payload for payload in read_payloads)
    assert text_of(read_payloads) == "".join(TOKENS)


OPTIONS_WE_READ = {("_options", "stream_mode"), ("_options", "synthesize_event_and_data")}
"""What ``sdk_payloads`` reads from an SDK stream to leave event streams to the SDK."""


def options_read_by(cls: type) -> set[tuple[str, str]]:
    """Every ``<obj>.<attribute>.<name>`` the class's own code reads where the attribute is
    ``_options`` or the name is one we read (from its bytecode: what runs is what is checked)."""
    names = {name for _, name in OPTIONS_WE_READ}
    codes = [f.__code__ for f in vars(cls).values() if isinstance(f, types.FunctionType)]
    read: set[tuple[str, str]] = set()
    while codes:
        code = codes.pop()
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        ops = [op for op in dis.get_instructions(code) if op.opname != "CACHE"]
        read.update(
            (before.argval, after.argval)
            for before, after in itertools.pairwise(ops)
            if before.opname == after.opname == "LOAD_ATTR"
            if before.argval == "_options" or after.argval in names
        )
    return read


@pytest.mark.parametrize("stream_class", [openai.Stream, openai.AsyncStream])
def test_the_sdk_decides_by_the_stream_options_we_read(
    peer: ScriptedOpenAI, stream_class: type
) -> None:
    """Between its decoder and its models, the SDK reshapes some streams (Assistants, agents)
    according to ``self._options``; ``sdk_payloads`` leaves those to it by reading the same
    options. Older SDKs (1.40) have no ``_options`` and read none."""
    read = options_read_by(stream_class)
    assert read <= OPTIONS_WE_READ, changed(
        f"openai {openai.__version__}",
        f"Stream._options (the SDK reads {sorted(read)}, we read {sorted(OPTIONS_WE_READ)})",
        "llm_stream may read an event stream that the SDK reshapes (agents, Assistants) as "
        "chat chunks",
    )
    client = OpenAI(base_url=peer.base_url, api_key="sk-test", max_retries=0)
    with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        if read:
            assert stream._options.stream_mode == "legacy"
        assert sdk_payloads(stream) is not None, ITER_EVENTS_GONE


def test_llm_stream_reads_a_real_openai_stream_through_the_fast_path(
    peer: ScriptedOpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole route: ``llm_stream`` hands the SDK stream to ``sdk_payloads`` and uses what
    it returns, for a sync and an async client, and logs no "SDK changed" warning."""
    taken: list[str] = []
    original = faststream_kit._llm._providers.openai.sdk_payloads

    def recording_sdk_payloads(stream: Any) -> Any:
        payloads = original(stream)
        taken.append("fast" if payloads is not None else "sdk models")
        return payloads

    monkeypatch.setattr(
        faststream_kit._llm._providers.openai, "sdk_payloads", recording_sdk_payloads
    )
    sync_client = OpenAI(base_url=peer.base_url, api_key="sk-test", max_retries=0)
    async_client = AsyncOpenAI(base_url=peer.base_url, api_key="sk-test", max_retries=0)
    app = FastAPI()

    @app.get("/sync")
    def sync_chat() -> StreamResponse:
        return llm_stream(
            sync_client.chat.completions.create(model="m", messages=MESSAGES, stream=True),
            format="text",
        )

    @app.get("/async")
    async def async_chat() -> StreamResponse:
        return llm_stream(
            async_client.chat.completions.create(model="m", messages=MESSAGES, stream=True),
            format="text",
        )

    caplog.set_level(logging.WARNING, logger="faststream_kit")
    with LiveServer(app) as server:
        answers = [httpx.get(server.url + path, timeout=10) for path in ("/sync", "/async")]
    assert [answer.text for answer in answers] == ["".join(TOKENS)] * 2
    assert taken == ["fast", "fast"], ITER_EVENTS_GONE
    assert not [r for r in caplog.records if r.name == "faststream_kit"], caplog.text


# ---------------------------------------- anthropic: _iter_events, MessageStream._raw_stream


@pytest.fixture(scope="module")
def anthropic_peer() -> Iterator[ScriptedAnthropic]:
    with ScriptedAnthropic(AnthropicScript(tokens=TOKENS)) as scripted:
        yield scripted


ANTHROPIC_FAST_PATH_GONE = changed(
    f"anthropic {anthropic.__version__}",
    "Stream._iter_events or MessageStream._raw_stream",
    "llm_stream now reads every Anthropic event through the SDK's pydantic models, more CPU "
    "per token",
)


def anthropic_text(payloads: list[Any]) -> str:
    return "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta")


@pytest.mark.parametrize("kind", ["create", "stream"])
def test_a_sync_anthropic_stream_is_read_from_the_sdks_sse_decoder(
    anthropic_peer: ScriptedAnthropic, kind: str
) -> None:
    client = Anthropic(base_url=anthropic_peer.base_url, api_key="sk-ant", max_retries=0)
    if kind == "create":
        opened: Any = client.messages.create(
            model="m", max_tokens=8, messages=MESSAGES, stream=True
        )
    else:
        opened = client.messages.stream(model="m", max_tokens=8, messages=MESSAGES)
    with opened as stream:
        payloads = anthropic_payloads(stream)
        assert payloads is not None, ANTHROPIC_FAST_PATH_GONE
        assert anthropic_text(list(payloads)) == "".join(TOKENS)


@pytest.mark.parametrize("kind", ["create", "stream"])
def test_an_async_anthropic_stream_is_read_from_the_sdks_sse_decoder(
    anthropic_peer: ScriptedAnthropic, kind: str
) -> None:
    async def read() -> str:
        client = AsyncAnthropic(base_url=anthropic_peer.base_url, api_key="sk-ant", max_retries=0)
        if kind == "create":
            opened: Any = await client.messages.create(
                model="m", max_tokens=8, messages=MESSAGES, stream=True
            )
        else:
            opened = client.messages.stream(model="m", max_tokens=8, messages=MESSAGES)
        async with opened as stream:
            payloads = anthropic_payloads(stream)
            assert payloads is not None, ANTHROPIC_FAST_PATH_GONE
            return anthropic_text([payload async for payload in payloads])

    assert anyio.run(read) == "".join(TOKENS)


def test_an_async_anthropic_stream_manager_holds_its_request_as_a_coroutine(
    anthropic_peer: ScriptedAnthropic,
) -> None:
    """A manager never entered (a ``HEAD``) has its request coroutine closed, found among the
    manager's attributes; otherwise Python warns that it was never awaited."""
    client = AsyncAnthropic(base_url=anthropic_peer.base_url, api_key="sk-ant", max_retries=0)
    manager = client.messages.stream(model="m", max_tokens=8, messages=MESSAGES)
    pending = [value for value in vars(manager).values() if inspect.iscoroutine(value)]
    for coroutine in pending:
        coroutine.close()
    assert len(pending) == 1, changed(
        f"anthropic {anthropic.__version__}",
        "AsyncMessageStreamManager (its request is no longer one coroutine attribute)",
        "a HEAD of an llm_stream of messages.stream(...) logs 'coroutine was never awaited'",
    )


def test_llm_stream_reads_a_real_anthropic_stream_through_the_fast_path(
    anthropic_peer: ScriptedAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The whole route, for every kind of Anthropic source, logging no "SDK changed"."""
    taken: list[str] = []
    original = faststream_kit._llm._providers.anthropic._payloads

    def recording_payloads(stream: Any) -> Any:
        payloads = original(stream)
        taken.append("fast" if payloads is not None else "sdk models")
        return payloads

    monkeypatch.setattr(faststream_kit._llm._providers.anthropic, "_payloads", recording_payloads)
    sync_client = Anthropic(base_url=anthropic_peer.base_url, api_key="sk-ant", max_retries=0)
    async_client = AsyncAnthropic(base_url=anthropic_peer.base_url, api_key="sk-ant", max_retries=0)
    options: dict[str, Any] = {"model": "m", "max_tokens": 8, "messages": MESSAGES}
    app = FastAPI()

    @app.get("/sync-create")
    def sync_create() -> StreamResponse:
        return llm_stream(sync_client.messages.create(**options, stream=True), format="text")

    @app.get("/sync-stream")
    def sync_stream() -> StreamResponse:
        return llm_stream(sync_client.messages.stream(**options), format="text")

    @app.get("/async-create")
    async def async_create() -> StreamResponse:
        return llm_stream(async_client.messages.create(**options, stream=True), format="text")

    @app.get("/async-stream")
    async def async_stream() -> StreamResponse:
        return llm_stream(async_client.messages.stream(**options), format="text")

    caplog.set_level(logging.WARNING, logger="faststream_kit")
    paths = ("/sync-create", "/sync-stream", "/async-create", "/async-stream")
    with LiveServer(app) as server:
        answers = [httpx.get(server.url + path, timeout=10) for path in paths]
    assert [answer.text for answer in answers] == ["".join(TOKENS)] * 4
    assert taken == ["fast"] * 4, ANTHROPIC_FAST_PATH_GONE
    assert not [r for r in caplog.records if r.name == "faststream_kit"], caplog.text


# ------------------------------------------------------------- pydantic: __pydantic_extra__


def test_reasoning_is_read_from_the_sdk_models_extra_fields() -> None:
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"reasoning_content": "thinking"}}],
        }
    )
    delta = chunk.choices[0].delta
    extra = getattr(delta, "__pydantic_extra__", None)
    assert isinstance(extra, dict), changed(
        "pydantic (through the openai SDK's models)",
        "BaseModel.__pydantic_extra__",
        "reasoning deltas of SDK chunks are found by two failing attribute lookups per token",
    )
    assert extra.get("reasoning_content") == "thinking"
    assert _reasoning_of(delta) == "thinking"


# -------------------------------------------------------------------- starlette: _receive


def test_a_request_body_arrives_through_the_relay_while_the_response_streams() -> None:
    """With ``request=``, the disconnect watch owns the server's ``receive()`` and hands body
    messages on by replacing ``Request._receive``, which ``Request.stream()`` reads."""

    async def server_receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    request = Request({"type": "http", "method": "POST", "headers": []}, server_receive)
    assert getattr(request, "_receive", None) is server_receive, changed(
        "starlette",
        "Request._receive",
        "stream_response(..., request=request) raises TypeError, so a route cannot read its "
        "request body while it streams",
    )
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> StreamResponse:
        async def sizes() -> AsyncIterator[str]:
            yield "started\n"  # the response (and so the watch) is running from here
            async for chunk in request.stream():
                if chunk:
                    yield f"{len(chunk)}\n"

        return stream_response(sizes(), request=request)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 1000
            await anyio.sleep(0.05)

    async def post(url: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, content=body())

    with LiveServer(app) as server:
        response = anyio.run(post, server.url + "/upload")
    assert response.status_code == 200, response.text
    lines = response.text.splitlines()
    assert lines[0] == "started"
    assert sum(int(line) for line in lines[1:]) == 3000


# ---------------------------------------------------------- aiobotocore: _make_api_call


def test_an_aiobotocore_client_is_called_without_a_worker_thread() -> None:
    """aiobotocore's operation methods are botocore's plain functions that return the
    coroutine of its ``async def _make_api_call``; that is how ``s3_stream`` tells the async
    client from boto3's (which it calls in worker threads, reading bodies with ``read()``)."""

    async def recognised() -> bool:
        session = aiobotocore.session.get_session()
        async with session.create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",  # never contacted
            aws_access_key_id="example",
            aws_secret_access_key="example",
        ) as client:
            return _S3Calls(client, None).is_async

    assert anyio.run(recognised), changed(
        f"aiobotocore {aiobotocore.__version__}",
        "AioBaseClient._make_api_call (no longer an async def)",
        "s3_stream takes an aiobotocore client for a boto3 one: calls in worker threads and "
        "a body whose read() returns a coroutine",
    )


# -------------------------------------------------------- CPython: json.encoder.c_make_encoder


@pytest.mark.skipif(
    platform.python_implementation() != "CPython",
    reason="only CPython has the C JSON encoder; elsewhere JSONEncoder.encode is the path",
)
def test_compact_json_uses_the_c_encoder_built_once() -> None:
    assert getattr(json.encoder, "c_make_encoder", None) is not None, changed(
        f"CPython {platform.python_version()}",
        "json.encoder.c_make_encoder",
        "every JSON payload (SSE data, LLM frames, error bodies) is encoded by "
        "JSONEncoder.encode, which builds a new C encoder per call",
    )
    assert not inspect.ismethod(compact_json), "compact_json fell back to JSONEncoder.encode"
    assert compact_json({"text": "é", "n": [1, 2.5, None]}) == '{"text":"é","n":[1,2.5,null]}'
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="Circular reference"):
        compact_json(cyclic)


# ---------------------------- uvicorn: Server.started, should_exit, main_loop and on_tick


def test_live_server_sees_uvicorn_start_and_stops_it() -> None:
    """``LiveServer`` waits for ``uvicorn.Server.started`` and stops it by setting
    ``should_exit``, waking its ``main_loop`` (which calls ``on_tick``) at once: public names,
    but undocumented."""
    import uvicorn

    for attribute in ("main_loop", "on_tick"):
        assert hasattr(uvicorn.Server, attribute), changed(
            "uvicorn", f"Server.{attribute}", "LiveServer.stop() waits for uvicorn's 0.1 s tick"
        )
    app = FastAPI()

    @app.get("/")
    def root() -> dict[str, bool]:
        return {"ok": True}

    server = LiveServer(app)
    server.start()
    try:
        assert httpx.get(server.url + "/", timeout=5).json() == {"ok": True}
    finally:
        server.stop()
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    except ConnectionRefusedError:
        return
    pytest.fail(
        changed(
            "uvicorn",
            "Server.should_exit",
            "LiveServer.stop() no longer stops uvicorn, whose thread keeps serving",
        )
    )


# ------------------------------------- FastAPI: the raw streaming branch, routes, OpenAPI


class _Recorded(StreamResponse):
    """A foreign response class that notes how FastAPI built it and what the scope held."""

    media_type = "text/plain"
    built: typing.ClassVar[list[dict[str, Any]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _Recorded.built.append({"args": args, "kwargs": kwargs})
        super().__init__(*args, **kwargs)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        _Recorded.built[-1]["route"] = scope.get("route")
        await super().__call__(scope, receive, send)


def test_fastapi_hands_a_yield_routes_generator_to_a_foreign_response_class() -> None:
    app = FastAPI()

    @app.get("/lines", response_class=_Recorded, status_code=201)
    async def lines() -> AsyncIterator[str]:
        yield "one\n"

    _Recorded.built.clear()
    with LiveServer(app) as server:
        response = httpx.get(server.url + "/lines")
    consequence = (
        "EventSourceResponse and NDJSONResponse on yield routes stop working or stop "
        "validating items (FastAPI's get_request_handler, raw streaming branch)"
    )
    assert response.status_code == 201, changed(
        f"fastapi {fastapi.__version__}", "status_code", consequence
    )
    [built] = _Recorded.built
    assert not built["args"], changed(
        f"fastapi {fastapi.__version__}", "how it builds the response class", consequence
    )
    assert isinstance(built["kwargs"].get("content"), typing.AsyncIterator), changed(
        f"fastapi {fastapi.__version__}", "the content it passes", consequence
    )
    route = built["route"]
    assert getattr(route, "endpoint", None) is lines, changed(
        f"fastapi {fastapi.__version__}", 'scope["route"].endpoint', consequence
    )
    assert getattr(route, "response_model_by_alias", None) is True, changed(
        f"fastapi {fastapi.__version__}", 'scope["route"].response_model_*', consequence
    )


def test_fastapi_documents_a_foreign_stream_class_with_a_string_placeholder() -> None:
    app = FastAPI()

    @app.get("/events", response_class=EventSourceResponse)
    async def events() -> AsyncIterator[int]:
        yield 1

    content = app.openapi()["paths"]["/events"]["get"]["responses"]["200"]["content"]
    assert content == {"text/event-stream": {"schema": {"type": "string"}}}, changed(
        f"fastapi {fastapi.__version__}",
        "what its OpenAPI writes for a response class it does not know",
        "document_streams() no longer finds the entry it replaces, and the item schemas "
        "of stream routes are missing from the document",
    )


def test_document_streams_walks_included_routers() -> None:
    from fastapi import APIRouter

    app, router = FastAPI(), APIRouter(prefix="/nested")

    @router.get("/events", response_class=EventSourceResponse)
    async def events() -> AsyncIterator[int]:
        yield 1

    app.include_router(router)
    document_streams(app)
    content = app.openapi()["paths"]["/nested/events"]["get"]["responses"]["200"]["content"]
    assert "itemSchema" in content["text/event-stream"], changed(
        f"fastapi {fastapi.__version__}",
        "fastapi.routing.iter_route_contexts (or app.routes holding included routes)",
        "document_streams() misses the routes of included routers",
    )


# ------------------------------------------ google-genai: the HttpResponse in its generators


GEMINI_TOKENS = ["Gemini", " internals", " are", " watched"]


@pytest.fixture(scope="module")
def gemini_peer() -> Iterator[ScriptedGemini]:
    with ScriptedGemini(GeminiScript(tokens=GEMINI_TOKENS)) as scripted:
        yield scripted


def gemini_changed(attribute: str, consequence: str) -> str:
    return changed(f"google-genai {genai.__version__}", attribute, consequence)


def test_a_gemini_stream_keeps_its_http_response_where_we_close_and_read_it(
    gemini_peer: ScriptedGemini,
) -> None:
    """After the first chunk, the SDK's ``HttpResponse`` is a local of a generator in the
    chain (``ag_frame.f_locals``), with the aiohttp/httpx response (``response_stream``) and
    the decoder (``segment_iterator``); every generator of the chain is one we know."""

    async def first_chunk_then_look() -> tuple[Any, bool, list[str]]:
        client = genai.Client(api_key="test-key", http_options=gemini_peer.http_options)
        stream = await client.aio.models.generate_content_stream(model="m", contents="hi")
        try:
            await anext(stream)
            response = gemini.find_http_response(stream)
            decoder = getattr(response, "segment_iterator", None)
            rest = [chunk async for chunk in decoder] if inspect.isasyncgen(decoder) else []
            texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in rest]
            return response, gemini._fast_path_allowed(stream), texts
        finally:
            await stream.aclose()

    response, known_chain, texts = anyio.run(first_chunk_then_look)
    closing = "a client that leaves no longer closes the model's HTTP response at once"
    assert response is not None, gemini_changed("the generators' frame locals", closing)
    http = getattr(response, "response_stream", None)
    assert hasattr(http, "aclose") or hasattr(http, "close"), gemini_changed(
        "HttpResponse.response_stream", closing
    )
    slower = "llm_stream reads every chunk through the SDK's models, about 20x the CPU per token"
    assert known_chain, gemini_changed("the generate_content_stream generator chain", slower)
    assert texts == GEMINI_TOKENS[1:], gemini_changed("HttpResponse.segment_iterator", slower)


def test_a_sync_gemini_stream_reaches_its_http11_response_from_its_generators(
    gemini_peer: ScriptedGemini,
) -> None:
    """After the first chunk of a sync ``generate_content_stream``, the chain's generators
    (found with ``gc.get_referents``: the inner ones are ``for`` loop iterators) hold the SDK's
    ``HttpResponse``, whose httpx response has httpcore's ``network_stream``."""
    client = genai.Client(api_key="test-key", http_options=gemini_peer.http_options)
    stream = client.models.generate_content_stream(model="m", contents="hi")
    response, sock = _response_after_first_item(stream)
    interrupting = "a client that leaves a sync stream between tokens is seen at the next token"
    assert response is not None, gemini_changed("the sync generators' chain", interrupting)
    assert isinstance(sock, socket.socket), gemini_changed("its httpx response", interrupting)


def test_a_sync_langchain_stream_reaches_its_http11_response_from_its_generators(
    peer: ScriptedOpenAI,
) -> None:
    """``BaseChatModel.stream`` iterates ChatOpenAI's ``_stream``, which holds the openai
    ``Stream`` and its httpx response, found after the first chunk the same way."""
    from langchain_core import __version__ as core_version
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="m", base_url=peer.base_url, api_key="sk-test", max_retries=0)  # type: ignore[arg-type]
    stream = model.stream("hi")
    reader = langchain.for_stream(stream)
    response, sock = _response_after_first_item(stream)
    interrupting = "a client that leaves a sync stream between tokens is seen at the next token"
    dependency = f"langchain-core {core_version}"
    assert reader is not None, changed(dependency, "BaseChatModel.stream's name", interrupting)
    assert response is not None, changed(dependency, "the sync generators' chain", interrupting)
    assert isinstance(sock, socket.socket), changed(dependency, "the httpx response", interrupting)


def _response_after_first_item(stream: Any) -> tuple[Any, Any]:
    """What ``InterruptibleChain`` finds in a sync chain after its first item: the HTTP
    response, and the socket it would shut down."""
    try:
        next(stream)
        response = http_response_in_chain(stream)
        network_stream = getattr(response, "extensions", {}).get("network_stream")
        sock = None if network_stream is None else network_stream.get_extra_info("socket")
    finally:
        stream.close()
    return response, sock


def test_gemini_sdk_reads_each_chunk_from_the_segment_iterator_attribute(
    gemini_peer: ScriptedGemini,
) -> None:
    """A chunk the SDK must see (an error, a continuation) is handed back by replacing
    ``HttpResponse.segment_iterator``; the SDK reads the attribute again for every chunk."""

    async def hand_back() -> list[str]:
        client = genai.Client(api_key="test-key", http_options=gemini_peer.http_options)
        stream = await client.aio.models.generate_content_stream(model="m", contents="hi")
        first = await anext(stream)
        response = gemini.find_http_response(stream)
        decoder = response.segment_iterator
        second = await anext(decoder)
        response.segment_iterator = gemini._replay(second, decoder)
        return [first.text] + [chunk.text async for chunk in stream]

    texts = anyio.run(hand_back)
    assert texts == GEMINI_TOKENS, gemini_changed(
        "HttpResponse.__anext__ (segment_iterator)",
        "an error or a continuation in the middle of a stream would be lost",
    )


def test_llm_stream_reads_a_real_gemini_stream_through_the_fast_path(
    gemini_peer: ScriptedGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole route: only the first chunk of an async stream is an SDK model."""
    models: list[str] = []
    original = gemini._wire_json

    def recording_wire_json(response: Any) -> dict[str, Any]:
        models.append(type(response).__name__)
        return original(response)

    monkeypatch.setattr(gemini, "_wire_json", recording_wire_json)
    client = genai.Client(api_key="test-key", http_options=gemini_peer.http_options)
    app = FastAPI()

    @app.get("/async")
    async def async_answer() -> StreamResponse:
        return llm_stream(
            client.aio.models.generate_content_stream(model="m", contents="hi"), format="text"
        )

    with LiveServer(app) as server:
        answer = httpx.get(server.url + "/async", timeout=10)
    assert answer.text == "".join(GEMINI_TOKENS)
    assert models == ["GenerateContentResponse"], gemini_changed(
        "the generate_content_stream generator chain",
        f"{len(models)} of {len(GEMINI_TOKENS)} chunks were read through the SDK's models",
    )


def test_opentelemetrys_unconfigured_providers_have_the_names_we_check() -> None:
    """docs/design.md, "Private APIs we rely on": until an app sets a provider, the API's
    defaults are these classes, and a stream records nothing; once one is set, it records."""
    script = """
from opentelemetry import metrics, trace
from faststream_kit._otel import _Instruments
instruments = _Instruments()
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
assert not instruments.configured()
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
assert instruments.configured()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", (
        "OpenTelemetry's default providers changed names: see docs/design.md, 'Private APIs "
        f"we rely on'\n{result.stderr}"
    )


# ------------------------------------- botocore / aiobotocore: a before-send hook that raises


@pytest.mark.parametrize("sdk", ["boto3", "aiobotocore"])
def test_the_sdk_hands_our_before_send_exception_back_with_the_request_signed(sdk: str) -> None:
    """``s3_stream``'s fast path lets the SDK build and sign ``GetObject`` and stops it in a
    ``before-send`` hook by raising: botocore (and aiobotocore) catch an exception from that
    hook and raise it from the call, and by then the request carries its signature."""
    from faststream_kit._s3 import _FastGet, _Signed

    options: dict[str, Any] = {
        "region_name": "us-east-1",
        "endpoint_url": "http://127.0.0.1:9",  # never contacted: the hook stops the send
        "aws_access_key_id": "example",
        "aws_secret_access_key": "example",
    }
    params = {"Bucket": "b", "Key": "k", "Range": "bytes=0-9", "IfNoneMatch": '"e"'}

    async def sign() -> _Signed:
        if sdk == "boto3":
            import boto3

            client = boto3.client("s3", **options)
            return await _FastGet(None, _S3Calls(client, None), 1 << 20)._sign(params)
        async with aiobotocore.session.get_session().create_client("s3", **options) as client:
            return await _FastGet(None, _S3Calls(client, None), 1 << 20)._sign(params)

    try:
        signed = anyio.run(sign)
    except Exception as exc:
        raise AssertionError(
            changed(
                sdk,
                "the before-send event (an exception raised by its handler)",
                f"s3_stream's fast path cannot take the signed request ({exc!r})",
            )
        ) from exc
    headers = {name.lower(): value for name, value in signed.headers}
    assert signed.url.startswith("http://127.0.0.1:9/b/k")
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 "), changed(
        sdk, "when before-send fires (no longer after signing)", "the fast GET is unsigned"
    )
    assert headers["range"] == "bytes=0-9"
    assert headers["if-none-match"] == '"e"'


# ---------------------------------------------- pyreqwest: streamed_read_buffer_limit(0)


def test_pyreqwest_with_no_read_buffer_hands_over_headers_and_chunks_at_once() -> None:
    """pyreqwest's streamed response first reads ``streamed_read_buffer_limit`` bytes of body
    before it returns the headers, and hands the body over in batches of that size (64 KiB by
    default): ``upstream_stream`` asks for 0, so that the headers come at once and each chunk
    as it arrives. Checked on a real server that sends one small chunk, then waits."""
    import threading

    from pyreqwest.client import ClientBuilder

    go_on = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await anyio.to_thread.run_sync(go_on.wait, 10)
        await send({"type": "http.response.body", "body": b"second"})

    async def read(url: str) -> bytes | None:
        async with ClientBuilder().build() as client:
            request = client.get(url).streamed_read_buffer_limit(0).build_streamed()
            with anyio.fail_after(5):  # the headers, without waiting for more body
                async with request as response:
                    first = await response.body_reader.read_chunk()
                    go_on.set()
                    return None if first is None else first.to_bytes()

    try:
        with LiveServer(app) as server:
            first = anyio.run(read, server.url)
    except TimeoutError as exc:
        raise AssertionError(
            changed(
                "pyreqwest",
                "streamed_read_buffer_limit(0) (the headers or a chunk now wait for more body)",
                "upstream_stream would hold SSE and LLM streams back",
            )
        ) from exc
    finally:
        go_on.set()
    assert first == b"first"


def test_stream_zip_pulls_no_more_input_per_step_than_the_loop_archive_prepares() -> None:
    """``zip_stream`` advances stream-zip's generator on the event loop for members that need
    no CPU-heavy work (``_LoopArchive``), so it must know what one ``next()`` can pull from
    the member iterators: at most ``write_bytes + _READY_MARGIN_BYTES`` of input, and the
    step that pulls a member ends with its local header, before the member's first piece.
    Neither is documented by stream-zip (docs/design.md, "Private APIs we rely on")."""
    import random

    from stream_zip import NO_COMPRESSION_32, ZIP_32, ZIP_64, stream_zip

    from faststream_kit._zip import _PIECE_BYTES, _READY_MARGIN_BYTES, _stored_blocks

    rng = random.Random(18)
    events: list[tuple[str, int]] = []  # ("member", index), ("piece", bytes), ("out", bytes)

    def pieces(sizes: list[int]) -> Iterator[bytes]:
        for size in sizes:
            events.append(("piece", size))
            yield bytes(size)

    def members(write_bytes: int) -> Iterator[tuple[Any, ...]]:
        for index in range(12):
            sizes = [rng.choice([0, 1, 700, 16_383, 40_000, _PIECE_BYTES]) for _ in range(40)]
            if index % 3 == 2:
                # A stored member (bytes of known CRC-32): its pieces pass through as they are.
                data = bytes(sum(sizes))
                method = NO_COMPRESSION_32(len(data), zlib.crc32(data))
            else:
                method = ZIP_32 if index % 3 == 0 else ZIP_64
            events.append(("member", index))
            yield f"{index}.bin", datetime.now(UTC), 0o644, method, pieces(sizes)

    for write_bytes in (256 * 1024, 100_000, 20):
        events.clear()
        zipped = stream_zip(
            members(write_bytes),
            chunk_size=write_bytes,
            get_compressobj=_stored_blocks(write_bytes),
        )
        for chunk in zipped:
            events.append(("out", len(chunk)))
        pulled = 0
        member_pulled = False
        for kind, amount in events:
            if kind == "out":
                pulled, member_pulled = 0, False
            elif kind == "member":
                member_pulled = True
            else:
                assert not member_pulled, (
                    "stream-zip pulled a member's first piece in the step that pulled the "
                    "member: _LoopArchive would fail (see docs/design.md)"
                )
                pulled += amount
                assert pulled <= write_bytes + _READY_MARGIN_BYTES, (
                    f"stream-zip pulled {pulled} bytes in one step (chunk_size {write_bytes}): "
                    "raise _READY_MARGIN_BYTES in faststream_kit/_zip/_loop.py (docs/design.md)"
                )


def test_stream_zip_computes_its_crc32_with_the_zlib_of_its_module() -> None:
    """``zip_stream`` writes archives with a copy of the stream-zip module whose ``zlib``
    has ISA-L's or zlib-ng's ``crc32`` (3-4x zlib's), which works only while stream-zip
    calls ``zlib.crc32`` through its module global (docs/design.md, "Private APIs")."""
    import stream_zip

    from faststream_kit._crc import crc32
    from faststream_kit._zip import _stream_zip, stream_zip_with_crc32

    calls: list[int] = []

    def counting_crc32(data: Any, value: int = 0) -> int:
        calls.append(len(data))
        return zlib.crc32(data, value)

    data = b"x" * 100_000
    modified = datetime(2024, 1, 1, tzinfo=UTC)

    def members(module: types.ModuleType) -> list[tuple[Any, ...]]:
        return [("a.bin", modified, 0o644, module.ZIP_32, [data])]

    copy = stream_zip_with_crc32(counting_crc32)
    archive = b"".join(copy.stream_zip(members(copy)))
    assert sum(calls) >= len(data), (
        "stream-zip no longer calls zlib.crc32 through its module: zip_stream's CRC-32 is "
        "zlib's again (slower); see _stream_zip in faststream_kit/_zip/_stored.py"
    )
    assert archive == b"".join(stream_zip.stream_zip(members(stream_zip)))
    assert stream_zip.zlib is zlib, "the stream-zip everyone else imports is left alone"
    if crc32() is not zlib.crc32:
        assert _stream_zip().zlib.crc32 is crc32()

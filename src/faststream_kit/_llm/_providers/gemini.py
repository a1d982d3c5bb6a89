"""Google Gen AI (``google-genai``): ``generate_content_stream`` of ``client.aio.models`` and
``client.models`` (and chats' ``send_message_stream``), read as the Gemini API's JSON.

**Recognising it.** ``client.aio.models.generate_content_stream(...)`` is a coroutine that
returns an async generator of the SDK (``client.models.generate_content_stream(...)`` a sync
one); nothing is requested until it is first advanced, so the HTTP errors of the request are
raised by the first item, before any header is sent. The generator is recognised by the module
its code lives in; a stream nobody recognised, by its first item (a ``GenerateContentResponse``).

**Closing it.** The async generator is a chain of five (automatic function calling, automatic
continuation, the response models, the API client, the SSE decoder), each iterating the next
with ``async for``. ``aclose()`` on the outer one stops only that one: the others, and the HTTP
response the innermost holds open, wait for the garbage collector (the upstream keeps
generating, and billing). So :meth:`GeminiReader.close` closes that response itself: the SDK's
``HttpResponse`` is found in the chain's frames (``ag_frame.f_locals``) and its aiohttp or
httpx response is closed, then the chain. The sync generator's chain is closed by reference
counting when the outer one is (its HTTP response with it), in the worker thread; a client
that leaves while that thread waits for a token has the response's socket shut down from the
event loop (``InterruptibleChain``), so the read returns and the provider sees it at once.

**Reading it fast.** The SDK turns each SSE event into a pydantic model through three JSON
passes and a field-by-field conversion: about 330 µs per chunk, where its SSE decoder and one
``json.loads`` take 15. ``llm_stream`` reads five fields and never hands the models out. So
after the first chunk (which the SDK reads: it makes the request and raises its errors), the
JSON objects are taken from the SDK's own decoder (``HttpResponse.segment_iterator``) when the
chain is the plain ``generate_content_stream`` one and automatic function calling has no
functions to run. What the SDK layers do with an ordinary chunk changes nothing we read; any
chunk they must see (an ``error`` object, which the SDK raises as ``APIError``; a
``continuationToken`` or ``CONTINUATION`` finish, which makes it request the rest) is handed
back to them and the stream is read through the SDK from then on. When the decoder ends, the
SDK's chain is advanced once more so that it finishes its hop and closes what it opened.
``segment_iterator``, ``HttpResponse.response_stream`` and the generators' frame locals are
private to the SDK: "Private APIs we rely on" in ``docs/design.md``; ``tests/test_private_apis.py``
fails when they change. Without them the stream is read through the SDK's models (slower) and
closed with ``aclose()`` (late).
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import anyio

from ..._errors import StreamError, library_error
from ..._sse import compact_json
from .._errors import sdk_error, upstream_error
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import InterruptibleChain, Reader

__all__ = ["ITEMS", "GeminiReader", "for_item", "for_stream"]

logger = logging.getLogger("faststream_kit")

ITEMS = "a google-genai GenerateContentResponse"

_SDK_MODULE = "google.genai."

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
"""Gemini's ``finishReason`` in OpenAI's words where one means the same (docs/llm.md); any
other reason (``OTHER``, ``MALFORMED_FUNCTION_CALL``, ...) is passed on as Gemini names it.
``STOP`` after a function call is ``tool_calls``, as OpenAI says it."""

_FAST_CHAIN = frozenset(
    {
        "AsyncModels.generate_content_stream.<locals>.stream_generator",
        "AsyncModels._generate_content_stream_with_continuation",
        "AsyncModels._generate_content_stream.<locals>.async_generator",
        "BaseApiClient.async_request_streamed.<locals>.async_generator",
    }
)
"""The generators between ``generate_content_stream`` and the SDK's decoder whose work on an
ordinary chunk we know (see the module docstring); any other in the chain (a chat keeping its
history, a later SDK's new layer) keeps the stream on the SDK's own path."""

_CHAIN_DEPTH = 8
"""How deep to look for the SDK's HTTP response in its generators' frames (it is at 4)."""


def for_stream(stream: Any) -> Reader | None:
    """The SDK's generator itself, async or sync, before anything is read from it."""
    frame = getattr(stream, "ag_frame", None) or getattr(stream, "gi_frame", None)
    if frame is not None and str(frame.f_globals.get("__name__", "")).startswith(_SDK_MODULE):
        return GeminiReader()
    return None


def for_item(item: Any) -> Reader | None:
    """A ``GenerateContentResponse`` from a stream that wraps the SDK's."""
    cls = type(item)
    if cls.__name__ == "GenerateContentResponse" and cls.__module__.startswith(_SDK_MODULE):
        return GeminiReader()
    return None


class GeminiReader(Reader):
    """Reads a ``generate_content_stream``: candidate 0's parts, finish reason and usage."""

    __slots__ = ("_calls", "_chain", "_chunks", "_finish_reason", "_usage")

    def __init__(self) -> None:
        self._calls = 0
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._chunks: _AsyncChunks | None = None
        self._chain: InterruptibleChain | None = None

    def items(self, stream: Any) -> Iterable[Any] | AsyncIterable[Any]:
        if inspect.isasyncgen(stream):
            self._chunks = _AsyncChunks(stream)
            return self._chunks
        if inspect.isgenerator(stream):  # sync: read in a worker thread, through the SDK
            self._chain = InterruptibleChain(stream, _is_last_response)
            return self._chain
        result: Iterable[Any] = stream
        return result

    def interrupt(self) -> None:
        if self._chain is not None:
            self._chain.interrupt()

    def events_for(self, item: Any) -> list[LLMEvent]:
        chunk = item if type(item) is dict else _wire_json(item)
        usage = chunk.get("usageMetadata")
        if usage:
            self._usage = usage
        candidates = chunk.get("candidates")
        if not candidates:
            feedback = chunk.get("promptFeedback")
            reason = feedback.get("blockReason") if feedback else None
            if reason:
                raise prompt_blocked(reason)
            return []
        candidate = candidates[0]
        if candidate.get("index", 0) != 0:
            return []  # candidateCount > 1: the first candidate is the answer
        events: list[LLMEvent] = []
        content = candidate.get("content")
        for part in (content.get("parts") if content else None) or ():
            text = part.get("text")
            if text:
                events.append(ReasoningDelta(text) if part.get("thought") else TextDelta(text))
            call = part.get("functionCall")
            if call is not None:
                # Gemini sends a call whole: its arguments are one delta, never pieces.
                arguments = compact_json(call.get("args") or {})
                events.append(
                    ToolCallDelta(self._calls, call.get("id"), call.get("name"), arguments)
                )
                self._calls += 1
        reason = candidate.get("finishReason")
        if reason:
            self._finish_reason = reason
        return events

    def finish(self) -> Finish:
        reason = self._finish_reason
        if reason is None or reason == "STOP":
            reason = "tool_calls" if self._calls else "stop"
        else:
            reason = FINISH_REASONS.get(reason, reason)
        return Finish(reason, _usage(self._usage))

    def error(self, exc: Exception) -> Exception:
        if _sdk_class(exc, "UnknownApiResponseError"):  # the SDK could not parse an event
            return upstream_error("the model provider sent an event that is not JSON", None)
        mapped = sdk_error(exc)
        if not _sdk_class(exc, "APIError") or not isinstance(mapped, StreamError):
            return _transport_error(exc, mapped)
        code = getattr(exc, "code", None)
        details = getattr(exc, "details", None)
        if code == 429 and "Retry-After" not in mapped.headers:
            delay = _retry_delay(details)
            if delay is not None:
                return library_error("rate_limited", mapped.message, headers={"Retry-After": delay})
        if code == 400 and _error_reason(details) == "API_KEY_INVALID":
            # Gemini answers a key it does not know with 400, not 401: still our key's problem.
            return sdk_error(_Refused(401))
        return mapped

    async def close(
        self, stream: Any, items: Any, thread_limiter: anyio.CapacityLimiter | None
    ) -> None:
        if inspect.isasyncgen(stream):
            response = self._chunks.response if self._chunks is not None else None
            await close_http_response(response or find_http_response(stream))
        await super().close(stream, None if items is self._chunks else items, thread_limiter)


def _is_last_response(response: Any) -> bool:
    """A ``GenerateContentResponse`` with a finish reason that asks for no continuation:
    only the end of the body comes after it."""
    candidates = getattr(response, "candidates", None)
    if not candidates:
        return False
    reason = getattr(candidates[0], "finish_reason", None)
    if reason is None or getattr(candidates[0], "continuation_token", None):
        return False
    return str(getattr(reason, "value", reason)) != "CONTINUATION"


def prompt_blocked(reason: str) -> StreamError:
    """A prompt Gemini refused to answer (``promptFeedback.blockReason``): a 502
    ``upstream_error`` with the code ``prompt_blocked``; nothing was generated."""
    return library_error(
        "upstream_error",
        f"the model provider blocked the prompt ({reason})",
        code="prompt_blocked",
    )


class _Refused(Exception):
    """Stands for a 401, so a refused key is mapped by the one shared rule."""

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


def _sdk_class(exc: Exception, name: str) -> bool:
    return any(
        cls.__name__ == name and cls.__module__.startswith(_SDK_MODULE) for cls in type(exc).__mro__
    )


_AIOHTTP_CONNECTION_FAILURES = {"ClientConnectionError", "ClientPayloadError"}


def _transport_error(exc: Exception, mapped: Exception) -> Exception:
    """aiohttp's connection failures (the SDK's async transport when aiohttp is installed)."""
    if mapped is exc and {cls.__name__ for cls in type(exc).__mro__} & _AIOHTTP_CONNECTION_FAILURES:
        return library_error("upstream_unavailable", "the connection to the model provider failed")
    return mapped


def _error_object(details: Any) -> dict[str, Any]:
    if isinstance(details, dict):
        error = details.get("error", details)
        if isinstance(error, dict):
            return error
    return {}


def _error_reason(details: Any) -> str | None:
    for detail in _error_object(details).get("details") or ():
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
            return str(detail["reason"])
    return None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


def _retry_delay(details: Any) -> str | None:
    """``google.rpc.RetryInfo.retryDelay`` ("17s", "0.5s") as ``Retry-After`` seconds, rounded
    up: RFC 9110 §10.2.3 allows only a whole number of seconds."""
    for detail in _error_object(details).get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return str(math.ceil(float(match.group(1))))
    return None


def _usage(metadata: dict[str, Any] | None) -> dict[str, int] | None:
    """Gemini's ``usageMetadata`` in the neutral keys; thinking counts as completion, as
    OpenAI counts reasoning tokens."""
    if metadata is None:
        return None
    prompt = int(metadata.get("promptTokenCount") or 0)
    completion = int(metadata.get("candidatesTokenCount") or 0)
    completion += int(metadata.get("thoughtsTokenCount") or 0)
    total = int(metadata.get("totalTokenCount") or prompt + completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _wire_json(response: Any) -> dict[str, Any]:
    """A ``GenerateContentResponse`` model back in the API's JSON shape (camelCase)."""
    if type(response).__name__ != "GenerateContentResponse":  # another google-genai stream
        raise TypeError(f"llm_stream cannot read a {type(response).__name__}: expected {ITEMS}")
    result: dict[str, Any] = response.model_dump(mode="json", by_alias=True, exclude_none=True)
    return result


# --------------------------------------------------------------------------- the SDK's chain


def _generators(stream: Any) -> Iterable[Any]:
    """The async generators of the SDK's chain, outermost first, found in their frames."""
    seen: set[int] = set()
    pending = [stream]
    while pending and len(seen) < _CHAIN_DEPTH:
        generator = pending.pop()
        if id(generator) in seen:
            continue
        seen.add(id(generator))
        yield generator
        frame = getattr(generator, "ag_frame", None)
        if frame is not None:
            pending.extend(v for v in frame.f_locals.values() if inspect.isasyncgen(v))


def _is_http_response(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "HttpResponse" and cls.__module__ == "google.genai._api_client"


def find_http_response(stream: Any) -> Any:
    """The SDK's ``HttpResponse`` an async ``generate_content_stream`` reads, or None before
    the request was made (and if the SDK no longer keeps it where we look)."""
    for generator in _generators(stream):
        frame = generator.ag_frame
        if frame is None:
            continue
        for value in frame.f_locals.values():
            if _is_http_response(value):
                return value
    return None


async def close_http_response(response: Any) -> None:
    """Close the aiohttp or httpx response under the SDK's ``HttpResponse``: its connection
    closes, so the provider sees the client leave and stops generating."""
    http = getattr(response, "response_stream", None)
    if http is None or isinstance(http, list | str):
        return
    aclose = getattr(http, "aclose", None)  # httpx, httpx2
    if aclose is not None:
        await aclose()
        return
    close = getattr(http, "close", None)  # aiohttp's ClientResponse.close() is sync
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result


def _fast_path_allowed(stream: Any) -> bool:
    """Whether every layer of the chain is one we know, with no functions to call for us."""
    for generator in _generators(stream):
        code = getattr(generator, "ag_code", None)
        frame = getattr(generator, "ag_frame", None)
        if code is None or frame is None or code.co_qualname not in _FAST_CHAIN:
            return False
        if frame.f_locals.get("function_map"):
            return False  # automatic function calling: the SDK runs them between requests
    return True


def _needs_sdk(chunk: Any) -> bool:
    """A chunk the SDK's layers act on: an error (raised) or a continuation (requested)."""
    if type(chunk) is not dict or "error" in chunk:
        return True
    candidates = chunk.get("candidates")
    if candidates:
        candidate = candidates[0]
        return "continuationToken" in candidate or candidate.get("finishReason") == "CONTINUATION"
    return False


async def _replay(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


class _AsyncChunks:
    """The stream's chunks: the SDK's model for the first, then the decoder's JSON objects."""

    __slots__ = ("_decoder", "_started", "_stream", "response")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._started = False
        self._decoder: AsyncIterator[Any] | None = None
        self.response: Any = None

    def __aiter__(self) -> _AsyncChunks:
        return self

    async def __anext__(self) -> Any:
        decoder = self._decoder
        if decoder is None:
            return await self._through_sdk()
        try:
            chunk = await decoder.__anext__()
        except StopAsyncIteration:
            self._decoder = None  # the SDK's chain finishes its hop and closes its pieces
            return await self._through_sdk()
        if _needs_sdk(chunk):
            self._decoder = None
            self.response.segment_iterator = _replay(chunk, decoder)
            return await self._through_sdk()
        return chunk

    async def _through_sdk(self) -> Any:
        chunk = await self._stream.__anext__()
        if not self._started:
            self._started = True  # the request is made: its response is in the chain now
            self.response = find_http_response(self._stream)
            decoder = getattr(self.response, "segment_iterator", None)
            if inspect.isasyncgen(decoder) and _fast_path_allowed(self._stream):
                self._decoder = decoder
        return chunk
